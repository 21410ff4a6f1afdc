"""Deleted accounts (issue 11): when an account is deleted, every subscription of it is forgotten
with its queued and retrying pushes; when the same name is registered again, the new owner's
offline messages never reach the old owner's browser, and the new account's first enable does not
write the old subscriptions back. Deleted in-band (XEP-0077), with `prosodyctl deluser` (0.12: from
another process, so the running server hears nothing of it; 13: through the admin shell), and with
the admin shell's user:delete. On 13 with registration_delete_grace_period, in-band removal first
only disables the account: nothing is pushed to it either."""

import asyncio
import os
import time

import pytest

from harness.prosody import BASE_MODULES, PASSWORD
from harness.pushservice import Answer
from harness.scenario import SETTLE
from harness.xmpp import is_result, register_in_band, remove_account_in_band, stanza_error

BOB = "bob@localhost"
VERSION = os.environ.get("E2E_PROSODY", "0.12")
pytestmark = [pytest.mark.storage, pytest.mark.push]

# The old owner's push service is down while the account is deleted: the push made just before is
# waiting to be retried (a Retry-After long enough that the deletion is over before it is due).
RETRY_AFTER = 4
DOWN = Answer(503, {"Retry-After": str(RETRY_AFTER)})
OPTIONS = {"allow_registration": True}
MODULES = BASE_MODULES + ["register", "admin_shell"]

METHODS = ["in-band", "prosodyctl deluser", "shell user:delete"]


def out_of_process(method):
    """0.12's prosodyctl deletes the account itself, in its own process; 13's asks the server."""
    return method == "prosodyctl deluser" and VERSION == "0.12"


async def delete_bob(w, method):
    if method == "in-band":
        bob = await w.client("bob", resource="leaving")
        answer = await remove_account_in_band(bob)
        assert is_result(answer), f"in-band removal refused: {stanza_error(answer)}"
    elif method == "prosodyctl deluser":
        result = w.prosody.prosodyctl("deluser", BOB)
        assert result.returncode == 0, f"prosodyctl deluser: {result.stdout}{result.stderr}"
    else:
        out = w.prosody.shell(f'user:delete("{BOB}")')
        assert "error" not in out.lower(), out


async def register_bob_again(w, method):
    """The same name, by the same kind of means as it was deleted."""
    if method == "in-band":
        bob = await register_in_band(w.prosody, "bob")
        await bob.close()
    elif method == "prosodyctl deluser":
        w.prosody.register("bob")
    else:
        out = w.prosody.shell(f'user:create("{BOB}", "{PASSWORD}")')
        assert "error" not in out.lower(), out


def push_stores(w, user):
    return {store for store in w.prosody.backend.user_stores(user, w.prosody.data_path) if "push" in store}


def assert_account_exists(w, exists):
    stores = w.prosody.backend.user_stores("bob", w.prosody.data_path)
    assert ("accounts" in stores) == exists, f"bob's account {'missing' if exists else 'still there'}: {stores}"


@pytest.mark.parametrize("method", METHODS)
async def test_deleted_account_gets_no_pushes_and_its_name_registered_again_gets_none_of_them(world, method):
    w = world(OPTIONS, modules=MODULES)
    retrying = not out_of_process(method)
    bob = await w.client("bob")
    key = await bob.vapid_key()
    # The old owner's browser. Deleted from another process, the server cannot know in time about a
    # push already under way; so there the old endpoint delivers and nothing is left to retry.
    old = await w.subscribe(bob, endpoint=w.push.endpoint(then=DOWN if retrying else Answer(201)))
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "to the old owner")
    [first] = await w.pushes(old, 1)
    if retrying:
        assert first.answered_with == 503

    await delete_bob(w, method)
    deleted_at = time.monotonic()
    if retrying:
        assert deleted_at < first.received + RETRY_AFTER, "the deletion ended after the retry was due: proves nothing"
    assert_account_exists(w, False)
    assert push_stores(w, "bob") == set(), "storage still holds push data of the deleted account"
    assert w.prosody.backend.holding(old.endpoint, w.prosody.data_path) == []

    await register_bob_again(w, method)
    assert_account_exists(w, True)
    # Offline messages to the new owner, who has no subscription yet.
    for i in range(2):
        w.send(alice, BOB, f"to the new owner {i}")
    await asyncio.sleep(SETTLE)

    # The new owner subscribes: the old subscription must not come back with it.
    bob = await w.client("bob", resource="new-owner")
    new = await w.subscribe(bob)
    await bob.close()
    problems = []
    written_back = w.prosody.backend.holding(old.endpoint, w.prosody.data_path)
    if written_back:
        problems.append(f"the new owner's enable wrote the old subscription back: {written_back}")
    assert w.prosody.backend.holding(new.endpoint, w.prosody.data_path) != [], "the new subscription is not stored"
    w.send(alice, BOB, "to the new owner, subscribed")
    [request] = await w.exactly(new, 1)
    w.verify(request, new, key)
    # Past the time the old push's retry was due: not one request to the old endpoint since.
    await asyncio.sleep(max(0.0, deleted_at + RETRY_AFTER + 1.5 - time.monotonic()))
    late = w.push.requests_for(old.endpoint, since=deleted_at)
    if late:
        problems.append(f"the deleted account's endpoint got {len(late)} request(s) after the deletion "
                        f"(answered {[r.answered_with for r in late]})")
    assert not problems, "\n".join(problems)
    await w.close_all()


@pytest.mark.skipif(VERSION == "0.12", reason="registration_delete_grace_period is Prosody 13's (0.12 deletes at once)")
async def test_account_removed_with_a_grace_period_is_disabled_and_gets_no_pushes(world):
    w = world({**OPTIONS, "registration_delete_grace_period": "1 day"}, modules=MODULES)
    bob = await w.client("bob")
    subscription = await w.subscribe(bob, endpoint=w.push.endpoint(then=DOWN))
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "before the removal")
    [first] = await w.pushes(subscription, 1)
    assert first.answered_with == 503

    await delete_bob(w, "in-band")
    disabled_at = time.monotonic()
    assert disabled_at < first.received + RETRY_AFTER, "the removal ended after the retry was due: proves nothing"
    assert "(disabled, pending deletion)" in w.prosody.log_text(), "the account was not merely disabled"
    assert_account_exists(w, True)
    for i in range(3):
        w.send(alice, BOB, f"to a disabled account {i}")
    # Past the retry that was due, and past any coalesced follow-up push.
    await asyncio.sleep(max(SETTLE, disabled_at + RETRY_AFTER + 1.5 - time.monotonic()))
    assert w.push.requests_for(subscription.endpoint, since=disabled_at) == [], \
        "a disabled account's endpoint got a request"
    await w.close_all()
