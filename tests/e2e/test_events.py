"""mod_web_push's events for other modules (README "Events for other modules"), used by a test
module (tests/e2e/modules/mod_e2e_hooks.lua), and cloud-notify-ping fired from Prosody's console."""

import asyncio

from harness import webpush
from harness.paths import BUILD, TEST_MODULES
from harness.prosody import BASE_MODULES
from harness.pushservice import Answer
from harness.xmpp import is_result, stanza_error

BOB = "bob@localhost"


def hooked_world(world, **options):
    return world({"plugin_paths": [BUILD, TEST_MODULES], **options},
                 modules=BASE_MODULES + ["e2e_hooks", "admin_shell"])


async def test_registration_veto_and_push_veto_and_amend(world):
    w = hooked_world(world)
    bob = await w.client("bob")
    key = await bob.vapid_key()
    refused = webpush.Subscription.new(w.push.endpoint(name="veto-registration"))
    error = stanza_error(await bob.enable(refused))
    assert error and error[1] == "not-allowed", error
    vetoed = await w.subscribe(bob, endpoint=w.push.endpoint(name="veto-push"))
    amended = await w.subscribe(bob)
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "hooks")
    [request] = await w.exactly(amended, 1)
    assert w.verify(request, amended, key).notification["e2e-amended"] == "bob"
    assert w.push.requests_for(vetoed.endpoint) == []
    assert w.push.requests_for(refused.endpoint) == []
    await w.close_all()


async def test_unregistered_event_names_the_reason(world):
    w = hooked_world(world)
    bob = await w.client("bob")
    gone = await w.subscribe(bob, Answer(410))
    disabled = await w.subscribe(bob)
    assert is_result(await bob.disable(disabled.endpoint))
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "to a gone subscription")
    await w.pushes(gone, 1)
    for _ in range(50):
        log = w.prosody.log_text()
        if "e2e: unregistered for bob: gone" in log:
            break
        await asyncio.sleep(0.1)
    assert "e2e: unregistered for bob: disabled" in log
    assert "e2e: unregistered for bob: gone" in log
    await w.close_all()


async def test_cloud_notify_ping_pushes_account_and_count(world):
    w = hooked_world(world)
    bob = await w.client("bob")
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob)
    await bob.close()
    w.prosody.shell(">prosody.hosts['localhost'].events.fire_event('cloud-notify-ping', { user = 'bob' })")
    [request] = await w.exactly(subscription, 1)
    n = w.verify(request, subscription, key).notification
    n.pop("e2e-amended", None)  # the test module's own mark
    # DESIGN.md: a push not caused by a stanza carries account and message-count, and the tag
    # every notification has (one per subscription and conversation; here none).
    assert isinstance(n.pop("tag", None), str), n
    assert set(n) == {"account", "message-count"}, n
    assert n["account"] == BOB
    await w.close_all()
