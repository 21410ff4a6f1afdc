"""The module's life in Prosody, and the options around the push request: reloading it keeps keys
and subscriptions and still pushes, loading it into a running Prosody pushes; the VAPID subject's
default; the TTL; groupchat messages."""

import pytest

from harness.prosody import BASE_MODULES

BOB = "bob@localhost"


async def offline_bob(w):
    bob = await w.client("bob")
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob)
    await bob.close()
    return subscription, key


@pytest.mark.storage
@pytest.mark.push
async def test_reload_keeps_key_and_subscriptions_and_pushes(world):
    w = world(modules=BASE_MODULES + ["admin_shell"])
    subscription, key = await offline_bob(w)
    for _ in range(2):
        out = w.prosody.shell("module:reload('web_push', 'localhost')")
        assert "1 host" in out, out
    alice = await w.client("alice")
    assert await alice.vapid_key() == key
    w.send(alice, BOB, "after reload")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key)
    # Unloading stops the workers cleanly: Prosody goes on serving.
    out = w.prosody.shell("module:unload('web_push', 'localhost')")
    assert "1 host" in out, out
    assert await alice.ping() < 1.0
    await w.close_all()


@pytest.mark.push
async def test_module_loaded_into_a_running_prosody_pushes(world):
    """Loaded after Prosody started (and, daemonized, after 0.12 forked): the module never sees
    server-started, and must push all the same."""
    w = world(modules=[m for m in BASE_MODULES if m != "web_push"] + ["admin_shell"])
    out = w.prosody.shell("module:load('web_push', 'localhost')")
    assert "1 host" in out, out
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, "to a module loaded late")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key)
    await w.close_all()


async def test_vapid_subject_defaults_to_the_contact_mailto(world):
    w = world({"web_push_vapid_subject": None,
               "contact_info": {"admin": ["xmpp:admin@localhost", "mailto:push-admin@e2e.example"]}})
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, "who sent this")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key, subject="mailto:push-admin@e2e.example")
    await w.close_all()


async def test_vapid_subject_falls_back_to_the_host_with_a_warning(world):
    w = world({"web_push_vapid_subject": None})
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, "who sent this")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key, subject="https://localhost")
    warnings = [line for line in w.prosody.module_log_lines() if "\twarn\t" in line]
    assert any("web_push_vapid_subject" in line for line in warnings), "no warning names web_push_vapid_subject"
    await w.close_all()


async def test_ttl_option(world):
    w = world({"web_push_ttl": 3600})
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, "short-lived")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key, ttl=3600)
    await w.close_all()


async def test_groupchat_message_to_bare_jid_is_pushed(world):
    """A groupchat message addressed to the account's bare JID (what a MUC sends to an offline
    member) reaches message/bare/groupchat: one push. (Every group chat message pushes with
    web_push_groupchat = "all"; the default, mentions only, is test_notify.py's.)"""
    w = world({"web_push_groupchat": "all"})
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, "in the room", mtype="groupchat")
    [request] = await w.exactly(subscription, 1)
    n = w.verify(request, subscription, key).notification
    assert n["account"] == BOB
    await w.close_all()
