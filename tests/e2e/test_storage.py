"""What the module keeps: the VAPID key and the subscriptions survive restarts (and a crash), a
subscription the push service calls gone stays gone, and it all lives in the storage Prosody is
configured with (internal files, SQLite or PostgreSQL)."""

import pytest

from harness.xmpp import is_result, stanza_error

BOB = "bob@localhost"
pytestmark = pytest.mark.storage


async def test_key_and_subscriptions_survive_a_restart(world):
    w = world()
    bob = await w.client("bob")
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob)
    await bob.close()
    w.prosody.restart()
    bob = await w.client("bob")
    assert await bob.vapid_key() == key, "the VAPID key changed across a restart"
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "after restart")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key)
    await w.close_all()


async def test_subscription_survives_a_crash(world):
    """SIGKILL right after the enable answer: what was answered must have been stored."""
    w = world()
    bob = await w.client("bob")
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob)
    w.prosody.kill()
    w.prosody.start()
    alice = await w.client("alice")
    assert await alice.vapid_key() == key
    w.send(alice, BOB, "after a crash")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key)
    await w.close_all()


@pytest.mark.parametrize("status", [410, 404])
async def test_gone_subscription_is_removed_for_good(world, status):
    from harness.pushservice import Answer

    w = world()
    bob = await w.client("bob")
    gone = await w.subscribe(bob, Answer(status))
    kept = await w.subscribe(bob)
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "first")
    await w.exactly(gone, 1)
    await w.exactly(kept, 1, settle=0)
    # Removed at once: the next message is pushed to the other device only.
    w.send(alice, BOB, "second")
    await w.exactly(kept, 2)
    assert len(w.push.requests_for(gone.endpoint)) == 1
    await alice.close()
    # And after a restart too.
    w.prosody.restart()
    alice = await w.client("alice")
    w.send(alice, BOB, "third")
    await w.exactly(kept, 3)
    assert len(w.push.requests_for(gone.endpoint)) == 1
    bob = await w.client("bob")
    assert stanza_error(await bob.disable(gone.endpoint))[1] == "item-not-found"
    assert is_result(await bob.disable(kept.endpoint))
    await w.close_all()


async def test_subscriptions_live_in_the_configured_storage(world):
    w = world()
    backend = w.prosody.backend
    files_before = backend.files(w.prosody.data_path)
    stores_before = backend.sql_stores()
    bob = await w.client("bob")
    await bob.vapid_key()
    await w.subscribe(bob)
    await bob.close()
    files_after = backend.files(w.prosody.data_path)
    new_files = [f for f in files_after if f not in files_before and not f.endswith(".log")]
    if backend.kind == "internal":
        assert any("push" in f for f in new_files), f"no file of the module's stores: {files_after}"
    else:
        stores = backend.sql_stores()
        new_stores = stores - stores_before
        assert any("push" in store for _host, _user, store in new_stores), f"no sql rows of the module: {stores}"
        # Nothing beside the database: the module writes no files of its own.
        assert new_files == [], f"files written despite sql storage: {new_files}"
    await w.close_all()
