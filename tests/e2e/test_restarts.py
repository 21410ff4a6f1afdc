"""Reloads and restarts lose no push (issue 11): a configuration reload (`prosodyctl reload`, a
SIGHUP) and a module reload (`module:reload` from the admin console) keep pushing, and a push that
was waiting at that moment (its push service down, answering 503 with Retry-After, or hanging) is
still delivered afterwards. Prosody stopped while pushes wait and started again delivers them while
their TTL lasts, with the TTL that is left, and never one whose TTL ran out; once delivered, a push
is not sent again by a later restart."""

import asyncio
import time

import pytest

from harness.prosody import BASE_MODULES
from harness.pushservice import Answer
from harness.scenario import SETTLE

BOB = "bob@localhost"
CAROL = "carol@localhost"
pytestmark = pytest.mark.push

RETRY_AFTER = 4
DOWN = Answer(503, {"Retry-After": str(RETRY_AFTER)})
UP = Answer(201)
TIMEOUT = 4  # web_push_timeout where a test makes the push service hang


def assert_ttl_left(request, pushed_at, ttl, slack=2):
    """The TTL header of a push delivered late is what was left of `ttl` since it was pushed."""
    left = ttl - (request.received - pushed_at)
    sent = int(request.headers["ttl"])
    assert left - slack <= sent <= left + 1, \
        f"TTL {sent} after {request.received - pushed_at:.1f}s of a {ttl}s TTL (about {left:.0f} left)"


async def waiting_push(w, user, first_answer):
    """`user` subscribes and logs out; alice writes to them; the push's first request gets
    `first_answer`, and every later one 503 with Retry-After until the test brings the service
    back. Returns (subscription, key, alice's client, the first request)."""
    client = await w.client(user)
    key = await client.vapid_key()
    subscription = await w.subscribe(client, endpoint=w.push.endpoint(first_answer, then=DOWN))
    await client.close()
    alice = await w.client("alice", resource=f"to-{user}")
    w.send(alice, f"{user}@localhost", f"while {user}'s push service is down")
    [first] = await w.pushes(subscription, 1)
    return subscription, key, alice, first


RELOADS = [
    pytest.param("prosodyctl", "503", id="prosodyctl_reload-503"),
    pytest.param("SIGHUP", "503", id="SIGHUP-503"),
    pytest.param("module:reload", "503", id="module_reload-503"),
    pytest.param("module:reload", "hang", id="module_reload-hang"),
]


@pytest.mark.parametrize("how, trouble", RELOADS)
async def test_reload_keeps_pushing_and_loses_no_waiting_push(world, how, trouble):
    ttl = 3600
    w = world({"web_push_ttl": ttl, "web_push_timeout": TIMEOUT}, modules=BASE_MODULES + ["admin_shell"])
    # 503: the push waits for its retry at the reload. A hang: its request is still unanswered
    # then (cut at web_push_timeout).
    first_answer = DOWN if trouble == "503" else Answer(201, delay=TIMEOUT + 2)
    subscription, key, alice, first = await waiting_push(w, "bob", first_answer)
    w.push.set_fallback(subscription.endpoint, UP)  # back, for whatever comes after the reload
    # The reload may hand the push on before the command returns: what counts is what comes after
    # it was asked for (and it must be over before the push was due anyway).
    reloading = time.monotonic()
    if how == "module:reload":
        out = w.prosody.shell("module:reload('web_push', 'localhost')")
        assert "1 host" in out, out
    else:
        w.prosody.reload_config(how)
    reloaded_at = time.monotonic()
    due = RETRY_AFTER if trouble == "503" else TIMEOUT
    assert reloaded_at - first.received < due, "the reload came after the push was due: the test proves nothing"

    # The waiting push arrives after the reload, whole, with the TTL that is left.
    delivered = await w.push.arrival_since(subscription.endpoint, reloading, status=201, timeout=RETRY_AFTER + 10,
                                           what=f"the push waiting at the {how}")
    n = w.verify(delivered, subscription, key).notification
    assert n["account"] == BOB and n["message-count"] == 1
    assert_ttl_left(delivered, first.received, ttl)

    # And the module keeps pushing: the next message is pushed too.
    await asyncio.sleep(SETTLE)
    sent = time.monotonic()
    w.send(alice, BOB, "after the reload")
    latest = await w.push.arrival_since(subscription.endpoint, sent, status=201,
                                        what=f"a push after the {how}")
    assert w.verify(latest, subscription, key).notification["account"] == BOB
    await w.close_all()


@pytest.mark.storage
async def test_restart_delivers_waiting_pushes_within_their_ttl_and_not_after(world):
    """Two pushes wait while Prosody is stopped: bob's since about 8 s before the stop, carol's
    since the stop. Prosody comes back when bob's TTL has run out and carol's has not: carol's
    arrives, with the TTL it has left; bob's never does. A second restart sends nothing again."""
    ttl = 20
    w = world({"web_push_ttl": ttl}, users=("alice", "bob", "carol"))
    early, _early_key, _alice, early_first = await waiting_push(w, "bob", DOWN)
    await asyncio.sleep(max(0.0, early_first.received + 8 - time.monotonic()))
    late, late_key, _alice, late_first = await waiting_push(w, "carol", DOWN)
    w.prosody.stop()
    stopped_at = time.monotonic()
    assert stopped_at < late_first.received + ttl - 6, "the stop took too long for the test to mean anything"
    # The push service is back, Prosody is not: until bob's push has expired.
    w.push.set_fallback(early.endpoint, UP)
    w.push.set_fallback(late.endpoint, UP)
    await asyncio.sleep(max(0.0, early_first.received + ttl + 2 - time.monotonic()))
    w.prosody.start()
    started_at = time.monotonic()
    assert started_at < late_first.received + ttl - 2, "the start took too long for carol's push to be still alive"

    # Sent as Prosody starts (maybe before start() returns): anything since the stop is the new one's.
    delivered = await w.push.arrival_since(late.endpoint, stopped_at, status=201,
                                           timeout=max(1.0, late_first.received + ttl - time.monotonic()),
                                           what="the push waiting at the stop (within its TTL)")
    n = w.verify(delivered, late, late_key).notification
    assert n["account"] == CAROL and n["message-count"] == 1
    assert_ttl_left(delivered, late_first.received, ttl)
    await asyncio.sleep(SETTLE)
    assert len(w.push.requests_for(late.endpoint, since=stopped_at)) == 1, "carol's push was sent more than once"
    assert w.push.requests_for(early.endpoint, since=stopped_at) == [], "a push was sent after its TTL ran out"

    # Delivered once: another restart does not send it again.
    w.prosody.restart()
    await asyncio.sleep(SETTLE)
    assert w.push.requests_for(late.endpoint, since=delivered.received) == [], "a delivered push was sent again"
    assert w.push.requests_for(early.endpoint, since=stopped_at) == []
    await w.close_all()
