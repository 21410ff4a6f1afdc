"""Converse.js users get Web Push: the real Converse.js (the pinned npm release) with the plugin
and service worker that mod_web_push serves, in Firefox, against Prosody 0.12 and 13.

Everything comes from one origin, Prosody's HTTP port, as the README's "With Converse.js" sets
it up: the page (examples/converse.html) and Converse at / (mod_http_files), the plugin and the
worker at /web_push/ (the module), the XMPP WebSocket at /xmpp-websocket (mod_websocket).

The test drives Converse as a person: the login form, the question the plugin asks at the first
login, the switch in Settings. What it observes:
  - the subscription: the relay saw Firefox register a channel with the server's disco key;
  - <enable/>: Prosody's log line for it, and the pushes that follow;
  - a push: the relay answered the module 201, and Firefox acked it 100 (it decrypted the body)
    and its service worker showed a notification; registration.getNotifications() on a page of
    the origin reads back the title, body and tag it showed (Firefox's own notification backend,
    alerts.useSystemBackend = false, as headless Firefox has no desktop one);
  - <disable/>: the module's log line that it forgot the subscription ("disabled"), its
    item-not-found to a later disable, and no further push request."""

import hashlib
import json
import os
import re
import time
import uuid

import pytest
import pywebpush
import requests

from converse import Converse
from harness.prosody import PASSWORD, installed_version
from harness.xmpp import connect, stanza_error
from session import REPORT, VERSIONS
from test_firefox import SETTLE, b64url, disco_key, disable_as, no_push_after, wait_push

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENABLED = "Web Push enabled for"
FORGOTTEN = "(disabled)"

# 0.12: the sender and the body in the notification; 13: neither (the module's defaults), so the
# worker falls back to the account and to push_notification_important_body.
OPTIONS = {
    "0.12": {"push_notification_with_sender": True, "push_notification_with_body": True},
    "13": {},
}


def expected_shown(account, sender, body, options):
    """Title and body the worker must show (DESIGN.md, "The notification")."""
    title = sender.split("/")[0] if options.get("push_notification_with_sender") else account
    if options.get("push_notification_with_body"):
        text = body
    else:
        text = options.get("push_notification_important_body", "New Message!")
    return title, text


def count_in_log(prosody, text):
    return prosody.log_text().count(text)


def wait_log(prosody, text, count, timeout=15):
    deadline = time.monotonic() + timeout
    while count_in_log(prosody, text) < count:
        assert time.monotonic() < deadline, f"Prosody's log has {count_in_log(prosody, text)} of {text!r}, expected {count}"
        time.sleep(0.1)


def wait_channel(browser, predicate, what, timeout=20):
    relay = browser.relay
    return browser.loop.run(relay.wait(lambda: next((c for c in relay.channels.values() if predicate(c)), None),
                                       timeout, what), timeout + 5)


def turn_on_when_asked(converse, jid):
    """The first login of the account in this browser: the plugin opens Settings with its
    question; the user clicks the switch."""
    converse.open()
    converse.login(jid, PASSWORD)
    converse.wait_visible(".converse-web-push__question")
    assert not converse.switch_checked()
    converse.flip_switch()
    return converse.wait_state("on")


def send_and_observe(browser, converse, prosody, endpoint, count, jid, options, what):
    """Romeo writes; the count-th push to the endpoint arrives, decrypted, and the worker shows it."""
    romeo = browser.loop.run(connect(prosody, "romeo"))
    body = f"{what} {uuid.uuid4().hex[:8]}"
    romeo.message(jid, body)
    push = wait_push(browser, endpoint, count)
    assert (push.status, push.ack_code) == (201, 100), push
    title, text = expected_shown(jid, str(romeo.boundjid), body, options)
    browser.loop.run(romeo.close())
    shown = converse.wait_notifications(jid)
    assert [(n["title"], n["body"]) for n in shown] == [(title, text)], shown
    return push, shown[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_converse_user_turns_notifications_on_and_off(version, browser, make_converse_prosody):
    options = OPTIONS.get(version, {})
    prosody = make_converse_prosody(version, options)
    juliet = f"juliet@{prosody.host}"
    converse = Converse(browser, prosody.origin)
    server_key = browser.loop.run(disco_key(prosody, juliet))

    # The files Firefox runs are the ones the module serves.
    check_served_files(prosody)

    # First login: the plugin asks; the user turns notifications on.
    status = turn_on_when_asked(converse, juliet)
    wait_log(prosody, ENABLED, 1)
    assert converse.stored_choice(juliet)["enabled"] is True
    converse.close_tab()
    registration = converse.registration(juliet)
    assert registration["script"] == f"{prosody.origin}/web_push/sw.js"
    endpoint = registration["endpoint"]
    channel = browser.relay.channel_for(endpoint)
    assert channel is not None and b64url(channel.key) == server_key, "Firefox subscribed with another key"

    # The tab is closed; Romeo writes: one push, decrypted by Firefox, shown by the worker.
    push, shown = send_and_observe(browser, converse, prosody, endpoint, 1, juliet, options, "Are you there?")
    # Shown under the push's tag (per subscription and conversation), not the account's.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", shown["tag"]), shown
    REPORT.append(f"Prosody {installed_version(version)} + Converse.js: switch on ({status!r}); tab closed; "
                  f"push {push.status}, Firefox ack {push.ack_code}; shown {shown['title']!r} / {shown['body']!r}")
    converse.close_notifications()

    # A later login: <enable/> again for the new session, but no new subscription.
    channels = len(browser.relay.channels)
    converse.open()
    converse.login(juliet, PASSWORD)
    wait_log(prosody, ENABLED, 2)
    assert len(browser.relay.channels) == channels, "the plugin subscribed again with an unchanged key"

    # The user turns notifications off in Settings: <disable/>, and no push any more.
    converse.open_settings()
    assert converse.switch_checked()
    converse.flip_switch()
    converse.wait_state("off")
    wait_log(prosody, FORGOTTEN, 1)
    browser.loop.run(browser.relay.wait(lambda: channel.unregistered is not None, 10, "unregister"))
    assert converse.stored_choice(juliet)["enabled"] is False
    converse.close_tab()
    assert converse.registrations() == [], "the account's worker is still registered"
    romeo = browser.loop.run(connect(prosody, "romeo"))
    romeo.message(juliet, "After the switch went off")
    no_push_after(browser, endpoint, 1)
    browser.loop.run(romeo.close())
    answer = browser.loop.run(disable_as(prosody, juliet, endpoint))
    assert stanza_error(answer) and stanza_error(answer)[1] == "item-not-found", "the server still has it"


def check_served_files(prosody):
    session = requests.Session()
    session.trust_env = False
    for name in ("sw.js", "converse-web-push.js"):
        with open(os.path.join(ROOT, "web", name), "rb") as f:
            source = f.read()
        response = session.get(f"{prosody.origin}/web_push/{name}", timeout=10)
        assert response.status_code == 200, (name, response.status_code)
        assert hashlib.sha256(response.content).digest() == hashlib.sha256(source).digest(), \
            f"/web_push/{name} is not web/{name} (run make)"
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        etag = response.headers["ETag"]
        again = session.get(f"{prosody.origin}/web_push/{name}", headers={"If-None-Match": etag}, timeout=10)
        assert again.status_code == 304, (name, again.status_code)
    response = session.get(f"{prosody.origin}/web_push/sw.js", timeout=10)
    assert response.headers.get("Service-Worker-Allowed") == "/"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_rotated_key_makes_converse_subscribe_again_by_itself(version, browser, make_converse_prosody):
    """prosodyctl mod_web_push rotate and a restart: at the next login the plugin sees another
    key in disco, drops the browser's subscription, subscribes with the new key, enables it and
    disables the old endpoint; nothing more is pushed there."""
    options = OPTIONS.get(version, {})
    prosody = make_converse_prosody(version, options)
    juliet = f"juliet@{prosody.host}"
    converse = Converse(browser, prosody.origin)
    turn_on_when_asked(converse, juliet)
    wait_log(prosody, ENABLED, 1)
    converse.close_tab()
    old_endpoint = converse.registration(juliet)["endpoint"]
    old_channel = browser.relay.channel_for(old_endpoint)
    old_key = b64url(old_channel.key)

    prosody.stop()
    result = prosody.prosodyctl("mod_web_push", "rotate", prosody.host)
    assert result.returncode == 0, result.stdout + result.stderr
    prosody.start()
    new_key = browser.loop.run(disco_key(prosody, juliet))
    assert new_key != old_key

    # The user only logs in.
    converse.open()
    converse.login(juliet, PASSWORD)
    new_channel = wait_channel(browser, lambda c: b64url(c.key) == new_key, "subscription with the new key")
    browser.loop.run(browser.relay.wait(lambda: old_channel.unregistered is not None, 10, "unregister of the old"))
    wait_log(prosody, ENABLED, 2)
    wait_log(prosody, FORGOTTEN, 1)
    # What the plugin remembers now (it is written once the server took the new subscription).
    deadline = time.monotonic() + 10
    while (converse.stored_choice(juliet) or {}).get("key") != new_key:
        assert time.monotonic() < deadline, f"the plugin remembers {converse.stored_choice(juliet)}"
        time.sleep(0.1)
    choice = converse.stored_choice(juliet)
    converse.close_tab()
    new_endpoint = converse.registration(juliet)["endpoint"]
    assert browser.relay.channel_for(new_endpoint) is new_channel
    assert choice == {"enabled": True, "endpoint": new_endpoint, "key": new_key}

    push, shown = send_and_observe(browser, converse, prosody, new_endpoint, 1, juliet, options, "After the rotation")
    assert browser.relay.pushes_for(old_endpoint) == [], "the old endpoint was pushed to"
    REPORT.append(f"Prosody {installed_version(version)} + Converse.js: key rotated, next login subscribed "
                  f"anew; push {push.status}, ack {push.ack_code}, shown {shown['title']!r} / {shown['body']!r}")


def test_two_browsers_of_one_account_get_a_push_each(browser, second_browser, make_converse_prosody):
    """Two Firefox profiles (two relays) log in to the same account and turn notifications on;
    both tabs close; one message gives each browser its push."""
    version = VERSIONS[-1]
    options = {"push_notification_with_body": True}
    prosody = make_converse_prosody(version, options)
    juliet = f"juliet@{prosody.host}"
    clients = [Converse(b, prosody.origin) for b in (browser, second_browser)]
    for converse in clients:
        turn_on_when_asked(converse, juliet)
    wait_log(prosody, ENABLED, 2)
    endpoints = []
    for converse in clients:
        converse.close_tab()
        endpoints.append(converse.registration(juliet)["endpoint"])

    romeo = browser.loop.run(connect(prosody, "romeo"))
    body = f"To both of you {uuid.uuid4().hex[:8]}"
    romeo.message(juliet, body)
    for converse, endpoint in zip(clients, endpoints):
        push = wait_push(converse.browser, endpoint, 1)
        assert (push.status, push.ack_code) == (201, 100), push
        shown = converse.wait_notifications(juliet)
        assert [(n["title"], n["body"]) for n in shown] == [(juliet, body)], shown
    browser.loop.run(romeo.close())
    time.sleep(SETTLE)
    for converse, endpoint in zip(clients, endpoints):
        assert len(converse.browser.relay.pushes_for(endpoint)) == 1
    REPORT.append(f"Prosody {installed_version(version)} + Converse.js in two Firefox profiles: one push each, "
                  "decrypted and shown by each")


def test_the_worker_shows_tags_and_declarative_payloads(browser, make_converse_prosody):
    """What the module will send (issue 13: a per-conversation tag, declarative Web Push with
    notification.navigate) and what it must survive (no JSON at all), encrypted with pywebpush for
    the subscription Converse made, handed to Firefox by the relay: one notification each time,
    by DESIGN.md's rules, the newer of a tag replacing the older."""
    prosody = make_converse_prosody(VERSIONS[-1])
    juliet = f"juliet@{prosody.host}"
    converse = Converse(browser, prosody.origin)
    turn_on_when_asked(converse, juliet)
    converse.close_tab()
    registration = converse.registration(juliet)
    pusher = pywebpush.WebPusher({"endpoint": registration["endpoint"], "keys": registration["keys"]})

    def push(payload, count):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = browser.loop.run(browser.relay.inject(registration["endpoint"], pusher.encode(data)["body"]))
        acked = wait_push(browser, registration["endpoint"], count)
        assert acked is sent and sent.ack_code == 100, sent
        return converse.wait_notifications(juliet, count=1)

    chat = {"account": juliet, "important": True, "message-count": 1,
            "last-message-sender": "romeo@montague.lit/orchard", "last-message-body": "First", "tag": "chat-a",
            "web_push": 8030, "notification": {"title": "romeo@montague.lit", "body": "First",
                                               "navigate": "https://chat.example/", "tag": "chat-a"},
            "app_badge": 1, "mutable": True}
    shown = push(chat, 1)
    assert [(n["title"], n["body"], n["tag"]) for n in shown] == [("romeo@montague.lit", "First", "chat-a")]
    assert shown[0]["data"] == {"account": juliet, "navigate": "https://chat.example/"}

    # The same conversation again: replaced, not stacked.
    shown = push(dict(chat, **{"last-message-body": "Second"}), 2)
    assert [(n["body"], n["tag"]) for n in shown] == [("Second", "chat-a")], shown

    # Another conversation, and nothing but the account: the account, "New message", its own tag.
    shown = push({"account": juliet, "message-count": 1, "tag": "chat-b"}, 3)
    assert sorted((n["title"], n["body"], n["tag"]) for n in shown) == [
        (juliet, "New message", "chat-b"), ("romeo@montague.lit", "Second", "chat-a")], shown

    # Not JSON: still a notification.
    converse.close_notifications()
    shown = push(b"not json", 4)
    assert [(n["title"], n["body"], n["tag"]) for n in shown] == [("New message", "New message", "converse-web-push")]


UNSUBSCRIBE = """
const resolve = arguments[arguments.length - 1];
navigator.serviceWorker.getRegistration(arguments[0])
    .then((registration) => registration.pushManager.getSubscription())
    .then((subscription) => subscription.unsubscribe())
    .then(resolve, (error) => resolve(String(error)));
"""


def test_a_lost_subscription_is_replaced_at_the_next_login(browser, make_converse_prosody):
    """The browser lost the subscription (site data cleared, the push service dropped it): the
    next login subscribes again by itself, enables the new endpoint and disables the old one."""
    prosody = make_converse_prosody(VERSIONS[-1])
    juliet = f"juliet@{prosody.host}"
    converse = Converse(browser, prosody.origin)
    turn_on_when_asked(converse, juliet)
    converse.close_tab()
    old_endpoint = converse.registration(juliet)["endpoint"]
    old_channel = browser.relay.channel_for(old_endpoint)
    assert converse.client.execute_async_script(
        UNSUBSCRIBE, script_args=(converse.scope(juliet),), sandbox=None, script_timeout=15000) is True
    browser.loop.run(browser.relay.wait(lambda: old_channel.unregistered is not None, 10, "unregister"))

    channels = set(browser.relay.channels)
    converse.open()
    converse.login(juliet, PASSWORD)
    new_channel = wait_channel(browser, lambda c: c.channel_id not in channels, "a new subscription")
    wait_log(prosody, FORGOTTEN, 1)
    deadline = time.monotonic() + 10
    while (converse.stored_choice(juliet) or {}).get("endpoint") == old_endpoint:
        assert time.monotonic() < deadline, "the plugin still remembers the lost endpoint"
        time.sleep(0.1)
    converse.close_tab()
    new_endpoint = converse.registration(juliet)["endpoint"]
    assert browser.relay.channel_for(new_endpoint) is new_channel
    push, _ = send_and_observe(browser, converse, prosody, new_endpoint, 1, juliet, {}, "Found again")
    assert browser.relay.pushes_for(old_endpoint) == []
