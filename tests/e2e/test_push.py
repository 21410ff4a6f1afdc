"""When pushes happen and what they carry: offline messages, hibernated sessions, MAM for devices
with no session, disable, and the payload options. Every push request is verified with http_ece and
PyJWT against the key published in disco. Marked `push`: the matrix runs these again with Prosody
daemonized (`prosodyctl start`; 0.12 forks after loading the module)."""

import asyncio
import time

import pytest

from harness import webpush
from harness.xmpp import is_result

BOB = "bob@localhost"
pytestmark = pytest.mark.push
CHAT_STATE = '<active xmlns="http://jabber.org/protocol/chatstates"/>'
OMEMO = ('<encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="1"><iv>AAAAAAAAAAAAAAAA</iv>'
         '</header><payload>AAAA</payload></encrypted>')


async def offline_bob(w, *answers, smacks=False):
    """Bob subscribes from his web client and logs out: he has no session."""
    bob = await w.client("bob", smacks=smacks)
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob, *answers)
    await bob.close()
    return subscription, key


@pytest.mark.storage
async def test_offline_message_gives_exactly_one_push(world):
    w = world()
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, "offline hello")
    [request] = await w.exactly(subscription, 1)
    result = w.verify(request, subscription, key, ttl=86400)
    n = result.notification
    assert n["account"] == BOB
    assert n["important"] is True
    assert n["message-count"] == 1
    # Defaults: no real body, no sender; the important body instead.
    assert n["last-message-body"] == "New Message!"
    assert "last-message-sender" not in n
    assert 12 * 3600 - 300 <= result.claims["exp"] - time.time() <= 24 * 3600
    w.assert_nothing_leaked()
    await w.close_all()


async def test_hibernated_session_gets_one_push_within_two_seconds(world):
    w = world()
    bob = await w.client("bob", smacks=True)
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob)
    await bob.drop()
    await asyncio.sleep(0.3)  # let Prosody notice the lost connection and hibernate the session
    assert w.push.requests_for(subscription.endpoint) == [], "pushed for a hibernation with nothing queued"
    alice = await w.client("alice")
    sent = time.monotonic()
    w.send(alice, str(bob.boundjid), "are you there?")
    [request] = await w.pushes(subscription, 1, timeout=5)
    assert request.received - sent < 2.0, f"push came {request.received - sent:.2f}s after the message"
    n = w.verify(request, subscription, key).notification
    assert n["account"] == BOB and n["important"] is True
    # More while still hibernated: one more push for the burst (coalesced), counting it. A closed
    # tab keeps notifying (test_notify.py), unlike mod_cloud_notify's one push per hibernation.
    for i in range(4):
        w.send(alice, str(bob.boundjid), f"burst {i}")
    requests = await w.exactly(subscription, 2, settle=3.0)
    assert w.verify(requests[1], subscription, key).notification["message-count"] == 4
    w.assert_nothing_leaked()
    await w.close_all()


async def test_stanza_pushed_in_hibernation_is_not_pushed_again_when_it_goes_offline(world):
    """When the hibernation times out, mod_smacks hands the unacknowledged message to offline
    storage (message/offline/handle again): it was pushed already, so no second push."""
    w = world({"smacks_hibernation_time": 2})
    bob = await w.client("bob", smacks=True)
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob)
    await bob.drop()
    await asyncio.sleep(0.3)
    alice = await w.client("alice")
    w.send(alice, str(bob.boundjid), "pushed once")
    [request] = await w.pushes(subscription, 1, timeout=5)
    w.verify(request, subscription, key)
    # The hibernation ends (2 s), the message moves to offline storage; wait past that.
    await w.exactly(subscription, 1, settle=3.5)
    assert "pushed once" in (await _offline_bodies(w))
    await w.close_all()


async def _offline_bodies(w):
    """Bob logs in again and collects what offline storage gives him."""
    bob = await w.client("bob", resource="later")
    bodies = []
    try:
        while True:
            bodies.append((await bob.next_message(timeout=1.5))["body"])
    except asyncio.TimeoutError:
        pass
    return bodies


async def test_archived_message_pushes_a_device_that_has_no_session(world):
    """Bob's phone subscribed and went away; his desktop is online and gets the message. MAM
    archives it, and the phone (no session) gets one push."""
    w = world()
    phone = await w.client("bob", resource="phone")
    key = await phone.vapid_key()
    subscription = await w.subscribe(phone)
    await phone.close()
    desktop = await w.client("bob", resource="desktop")
    alice = await w.client("alice")
    w.send(alice, BOB, "for every device")
    message = await desktop.next_message()
    assert message["body"] == "for every device"
    [request] = await w.exactly(subscription, 1)
    n = w.verify(request, subscription, key).notification
    assert n["account"] == BOB and n["important"] is True
    await w.close_all()


async def test_no_push_to_a_device_whose_session_is_live(world):
    w = world()
    phone = await w.client("bob", resource="phone")
    subscription = await w.subscribe(phone)
    alice = await w.client("alice")
    w.send(alice, BOB, "you are online")
    message = await phone.next_message()
    assert message["body"] == "you are online"
    await w.exactly(subscription, 0)
    await w.close_all()


@pytest.mark.storage
async def test_disable_stops_pushes(world):
    w = world()
    bob = await w.client("bob")
    key = await bob.vapid_key()
    disabled = await w.subscribe(bob)
    kept = await w.subscribe(bob)
    assert is_result(await bob.disable(disabled.endpoint))
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "only one device")
    [request] = await w.exactly(kept, 1)
    w.verify(request, kept, key)
    assert w.push.requests_for(disabled.endpoint) == []
    await w.close_all()


@pytest.mark.storage
async def test_enabling_again_replaces_the_keys(world):
    w = world()
    bob = await w.client("bob")
    key = await bob.vapid_key()
    old = await w.subscribe(bob)
    new = await w.subscribe(bob, endpoint=old.endpoint)
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "new keys")
    [request] = await w.exactly(new, 1)
    w.verify(request, new, key)
    with pytest.raises(Exception):
        webpush.decrypt(request, old)
    await w.close_all()


@pytest.mark.storage
async def test_push_max_devices_drops_the_least_recently_enabled(world):
    w = world({"push_max_devices": 2})
    bob = await w.client("bob")
    first = await w.subscribe(bob)
    second = await w.subscribe(bob)
    third = await w.subscribe(bob)
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "three devices")
    await w.exactly(second, 1)
    await w.exactly(third, 1, settle=0)
    assert w.push.requests_for(first.endpoint) == []
    await w.close_all()


# (options, message (body, extra XML), expected notification fields; None = must be absent)
PAYLOAD_CASES = {
    "defaults": ({}, ("secret text", None),
                 {"important": True, "last-message-body": "New Message!", "last-message-sender": None}),
    "with_body": ({"push_notification_with_body": True}, ("secret text", None),
                  {"important": True, "last-message-body": "secret text", "last-message-sender": None}),
    "with_sender": ({"push_notification_with_sender": True}, ("secret text", None),
                    {"important": True, "last-message-body": "New Message!",
                     "last-message-sender": "alice@localhost/e2e-alice"}),
    "important_body": ({"push_notification_important_body": "Something came in"}, ("secret text", None),
                       {"important": True, "last-message-body": "Something came in"}),
    "encrypted_is_important": ({}, (None, OMEMO),
                               {"important": True, "last-message-body": "New Message!"}),
    "not_important_pushed_when_allowed": ({"web_push_important_only": False}, (None, CHAT_STATE),
                                          {"important": False, "last-message-body": None}),
}


@pytest.mark.parametrize("case", list(PAYLOAD_CASES))
async def test_payload_options(world, case):
    options, (body, extra), expected = PAYLOAD_CASES[case]
    w = world(options)
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, body, extra_xml=extra)
    [request] = await w.exactly(subscription, 1)
    n = w.verify(request, subscription, key).notification
    assert n["account"] == BOB and n["message-count"] >= 1
    for field, value in expected.items():
        if value is None:
            assert field not in n, f"{field} present: the options say it must not be"
        else:
            assert n.get(field) == value, f"{field}: {n.get(field)!r} != {value!r}"
    if not options.get("push_notification_with_body"):
        w.assert_nothing_leaked()
    await w.close_all()


async def test_important_only_skips_unimportant_stanzas(world):
    w = world()  # web_push_important_only defaults to true
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    w.send(alice, BOB, None, extra_xml=CHAT_STATE)
    await w.exactly(subscription, 0)
    # The same path does push an important message, so the silence above means something.
    w.send(alice, BOB, "now important")
    [request] = await w.exactly(subscription, 1)
    assert w.verify(request, subscription, key).notification["important"] is True
    await w.close_all()


async def test_long_body_is_cut_to_fit(world):
    w = world({"push_notification_with_body": True})
    subscription, key = await offline_bob(w)
    alice = await w.client("alice")
    body = "é€😀x" * 1500  # 15,000 bytes of UTF-8, multi-byte characters throughout
    w.send(alice, BOB, body)
    [request] = await w.exactly(subscription, 1)
    result = w.verify(request, subscription, key)  # checks JSON <= 3000 bytes, body <= 4096
    cut = result.notification["last-message-body"]
    # A cut may end in an ellipsis; the rest must be the message's beginning, whole characters.
    assert cut and body.startswith(cut.removesuffix("…")), "the body is not a prefix of the message"
    assert len(cut) < len(body)
    await w.close_all()
