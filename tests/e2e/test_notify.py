"""Notifications people want (issue 13), against a real Prosody with a MUC component: a closed tab
(hibernated session) notified again for a later message; the user's XEP-0492 settings in their
bookmarks, published by slixmpp (never on one room, always on another); a busy room with one
mention among many messages; quiet while the account's other client is in use (a reply, a read
marker, a displayed update); one Topic per subscription and conversation; the declarative
payload.

The Topic and the payload's tag come from the native sender of API v2 (keyed by subscription and
conversation); the rest is the Lua module's."""

import asyncio
import xml.etree.ElementTree as ET

from slixmpp.plugins.xep_0402 import stanza as bookmarks

ALICE, BOB, CAROL = "alice@localhost", "bob@localhost", "carol@localhost"
MUC = "conference.localhost"
ROOM, OTHER_ROOM = f"balcony@{MUC}", f"crypt@{MUC}"
COMPONENTS = {MUC: "muc"}
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_NOTIFY_1 = "urn:xmpp:notification-settings:1"
NS_MARKERS = "urn:xmpp:chat-markers:0"
# What a client needs here beyond the harness's: group chats, PEP (bookmarks with XEP-0492,
# displayed updates), chat markers.
PLUGINS = ("xep_0045", "xep_0060", "xep_0163", "xep_0223", "xep_0359", "xep_0402", "xep_0490", "xep_0492")


async def closed_tab(w, *, nick=None, rooms=()):
    """Bob's web client: subscribed, in `rooms` as `nick` (if any), then its tab closed: the
    session hibernates (stream management) with the subscription tied to it."""
    tab = await w.client("bob", smacks=True, resource="tab", plugins=PLUGINS)
    key = await tab.vapid_key()
    subscription = await w.subscribe(tab)
    # After enabling: the module learns nicks (self-presence) only for accounts with a subscription.
    for room in rooms:
        await join(tab, room, nick or "bob")
    await tab.drop()
    await asyncio.sleep(0.3)  # Prosody notices the lost connection and hibernates the session
    return subscription, key


async def join(client, room, nick):
    """Joins a room and waits for the room's self-presence (status 110). The first to join creates
    the room, which stays locked until its owner accepts the default configuration (an instant
    room); for anyone else that request is refused, and changes nothing."""
    await client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=10)
    await client.iq('<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit"/></query>',
                    to=room)


async def flush(client):
    """A round trip: what the client sent before has been handled by the server."""
    await client.ping()


def notifications(w, subscription, key, requests):
    return [w.verify(request, subscription, key).notification for request in requests]


async def publish_bookmark(client, room, nick, *, setting_0=None, notify_1=None):
    """A XEP-0402 bookmark through slixmpp's own plugins: XEP-0492 0.1.0's <notify/> (:0, which
    slixmpp writes) and/or 0.2.0's (:1, added as XML: slixmpp 1.17 does not write it yet)."""
    conference = bookmarks.Conference()
    conference["autojoin"] = True
    conference["nick"] = nick
    if setting_0:
        conference["extensions"]["notify"].configure(setting_0)
    if notify_1:
        conference["extensions"].append(ET.fromstring(notify_1))
    # XEP-0402's publish options (besides XEP-0223's persist_items and whitelist): one item per room.
    client.plugin["xep_0223"].node_profiles[NS_BOOKMARKS] = {
        "pubsub#max_items": "max", "pubsub#send_last_published_item": "never",
    }
    await client.plugin["xep_0223"].store(conference, node=NS_BOOKMARKS, id=room)


async def test_a_closed_tab_is_notified_again_for_a_later_message(world):
    """mod_cloud_notify's one push per hibernation would leave the user with one notification and
    then silence: a browser cannot resume the closed tab's stream. Here every later message
    notifies too."""
    w = world()
    subscription, key = await closed_tab(w)
    alice = await w.client("alice")
    w.send(alice, f"{BOB}/tab", "are you there?")
    await w.pushes(subscription, 1, timeout=5)
    await asyncio.sleep(3)  # longer than web_push_min_interval: the next one goes at once
    w.send(alice, f"{BOB}/tab", "still there?")
    requests = await w.pushes(subscription, 2, timeout=5)
    first, second = notifications(w, subscription, key, requests)
    assert first["message-count"] == 1 and second["message-count"] == 1
    # A burst right after is one more notification (web_push_min_interval later) that counts it.
    for i in range(3):
        w.send(alice, f"{BOB}/tab", f"burst {i}")
    requests = await w.exactly(subscription, 3, settle=3.0)
    assert [n["message-count"] for n in notifications(w, subscription, key, requests)] == [1, 1, 3]
    w.assert_nothing_leaked()
    await w.close_all()


async def test_never_on_one_room_and_always_on_another(world):
    """Bob's bookmarks say never for one room (0.1.0's element, as slixmpp writes it) and always
    for the other (0.2.0's, for web clients); a mention in the first and plain messages in the
    second: only the second's push. A setting changed while the module runs applies next."""
    w = world(components=COMPONENTS)
    phone = await w.client("bob", resource="phone", plugins=PLUGINS)
    await publish_bookmark(phone, ROOM, "bob", setting_0="never")
    await publish_bookmark(phone, OTHER_ROOM, "bob",
                           notify_1=f"<notify xmlns='{NS_NOTIFY_1}'><always identity-category='client' "
                                    f"identity-type='web'/><never/></notify>")
    subscription, key = await closed_tab(w, rooms=(ROOM, OTHER_ROOM))
    alice = await w.client("alice", plugins=PLUGINS)
    await join(alice, ROOM, "alice")
    await join(alice, OTHER_ROOM, "alice")
    w.send(alice, ROOM, "bob: are you coming?", mtype="groupchat")
    w.send(alice, ROOM, "plain talk", mtype="groupchat")
    await flush(alice)
    w.send(alice, OTHER_ROOM, "plain talk in the crypt", mtype="groupchat")
    [request] = await w.exactly(subscription, 1)
    [n] = notifications(w, subscription, key, [request])
    assert n["message-count"] == 1, "the muted room's messages are not even counted"

    # The phone sets the first room to always: the next plain message there pushes.
    await publish_bookmark(phone, ROOM, "bob", setting_0="always")
    w.send(alice, ROOM, "plain again", mtype="groupchat")
    await w.exactly(subscription, 2)
    w.assert_nothing_leaked()
    await w.close_all()


async def test_a_busy_room_with_one_mention_gives_exactly_one_push(world):
    """Twenty messages in a room, one of which names Bob by the nick the room confirmed: one
    push, counting what came before it."""
    w = world(components=COMPONENTS)
    subscription, key = await closed_tab(w, nick="Bobby", rooms=(ROOM,))
    alice = await w.client("alice", plugins=PLUGINS)
    await join(alice, ROOM, "alice")
    for i in range(20):
        body = "thanks Bobby, see you" if i == 9 else f"chatter {i}"
        w.send(alice, ROOM, body, mtype="groupchat")
    await flush(alice)
    [request] = await w.exactly(subscription, 1, settle=3.0)
    [n] = notifications(w, subscription, key, [request])
    assert n["message-count"] == 10, n
    w.assert_nothing_leaked()
    await w.close_all()


async def test_a_reply_from_the_other_client_within_the_grace_gives_no_push(world):
    """Bob answers Alice from his phone; Alice's next message is not pushed to his closed tab.
    Carol, whom Bob did not answer, still gets through."""
    w = world(users=("alice", "bob", "carol"))
    subscription, key = await closed_tab(w)
    phone = await w.client("bob", resource="phone")
    alice = await w.client("alice")
    carol = await w.client("carol")
    phone.message(ALICE, "on my way")
    await flush(phone)
    w.send(alice, BOB, "see you soon")
    await flush(alice)
    await w.exactly(subscription, 0)
    w.send(carol, BOB, "dinner?")
    [request] = await w.exactly(subscription, 1)
    assert notifications(w, subscription, key, [request])[0]["account"] == BOB
    await w.close_all()


async def test_a_displayed_marker_from_another_client_cancels_a_pending_push(world):
    """Alice writes twice; the second push waits (web_push_min_interval). Bob reads the chat on his
    phone (XEP-0333 displayed): the waiting push is dropped."""
    w = world({"web_push_min_interval": 6})
    subscription, key = await closed_tab(w)
    phone = await w.client("bob", resource="phone")
    alice = await w.client("alice")
    w.send(alice, BOB, "first")
    await w.pushes(subscription, 1, timeout=5)
    w.send(alice, BOB, "second")
    second = await phone.next_message()
    while second["body"] != "second":
        second = await phone.next_message()
    phone.message(ALICE, extra_xml=f"<displayed xmlns='{NS_MARKERS}' id='{second['id']}'/>")
    await flush(phone)
    await w.exactly(subscription, 1, settle=8.0)
    await w.close_all()


async def test_a_displayed_update_from_another_client_cancels_a_pending_push(world):
    """The same with XEP-0490: the phone publishes where it has read up to."""
    w = world({"web_push_min_interval": 6})
    subscription, key = await closed_tab(w)
    phone = await w.client("bob", resource="phone", plugins=PLUGINS)
    alice = await w.client("alice")
    w.send(alice, BOB, "first")
    await w.pushes(subscription, 1, timeout=5)
    w.send(alice, BOB, "second")
    await flush(alice)
    await phone.plugin["xep_0490"].flag_chat(ALICE, "some-stanza-id")
    await w.exactly(subscription, 1, settle=8.0)
    await w.close_all()


async def test_two_subscriptions_of_one_account_get_different_topics(world):
    """The Topic (and the payload's tag) is keyed by subscription and conversation: the same for
    two pushes of one chat to one browser, different across browsers and across chats."""
    w = world({"web_push_min_interval": 0}, users=("alice", "bob", "carol"))
    bob = await w.client("bob")
    key = await bob.vapid_key()
    first = await w.subscribe(bob)
    second = await w.subscribe(bob)
    await bob.close()
    alice = await w.client("alice")
    carol = await w.client("carol")
    w.send(alice, BOB, "one")
    [a1] = await w.pushes(first, 1)
    [b1] = await w.pushes(second, 1)
    w.send(alice, BOB, "two")
    a2 = (await w.pushes(first, 2))[1]
    w.send(carol, BOB, "three")
    a3 = (await w.pushes(first, 3))[2]
    topics = [r.headers.get("topic") for r in (a1, b1, a2, a3)]
    assert all(topics), f"every push has a Topic: {topics}"
    for topic in topics:
        assert len(topic) <= 32 and topic.isalnum(), topic
    assert topics[0] != topics[1], "two browsers of one account: different Topics"
    assert topics[0] == topics[2], "one chat, one browser: the same Topic"
    assert topics[0] != topics[3], "another chat: another Topic"
    tags = [w.verify(r, s, key).notification.get("tag") for r, s in ((a1, first), (b1, second), (a2, first), (a3, first))]
    assert all(tags) and tags[0] != tags[1] and tags[0] == tags[2] and tags[0] != tags[3], tags
    assert tags[0] != topics[0], "the tag is not the Topic"
    await w.close_all()


async def test_the_declarative_payload(world):
    """web_push_client_url: the JSON also carries WebKit's declarative members, beside DESIGN.md's."""
    url = "https://chat.localhost/"
    w = world({"web_push_client_url": url, "push_notification_with_body": True, "web_push_min_interval": 0})
    bob = await w.client("bob")
    key = await bob.vapid_key()
    subscription = await w.subscribe(bob)
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, BOB, "a declarative hello")
    [request] = await w.pushes(subscription, 1)
    n = w.verify(request, subscription, key).notification
    assert n["account"] == BOB and n["important"] is True and n["message-count"] == 1
    assert n["last-message-body"] == "a declarative hello"
    assert n["web_push"] == 8030 and n["mutable"] is True and n["app_badge"] == 1, n
    d = n["notification"]
    assert (d["title"], d["body"], d["navigate"]) == (BOB, "a declarative hello", url), d
    assert d.get("tag") and d["tag"] == n.get("tag"), "the sender tags both"
    w.send(alice, BOB, "another")
    requests = await w.pushes(subscription, 2)
    assert w.verify(requests[1], subscription, key).notification["app_badge"] == 2
    # A long body is cut in both places, within 3,000 bytes of JSON (webpush.verify checks the size).
    w.send(alice, BOB, "é" * 4000)
    requests = await w.pushes(subscription, 3)
    n = w.verify(requests[2], subscription, key).notification
    assert n["notification"]["body"].endswith("…") and n["last-message-body"].endswith("…")
    await w.close_all()
