"""A real Firefox receives and decrypts what mod_web_push sends.

Firefox subscribes through the client developer's code (examples/subscribe.js, with strophe.js
over Prosody's WebSocket), the module encrypts and POSTs to the relay's endpoint, the relay hands
the body to Firefox untouched, and Firefox's ack says whether it decrypted it (100) or not (101).
The service worker (examples/service-worker.js) reports the JSON it got to the page."""

import base64
import json
import os
import re
import time
import uuid

import pytest
import pywebpush
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from marionette_driver.by import By
from py_vapid import Vapid02

from session import REPORT, VERSIONS, Page
from harness.prosody import PASSWORD, installed_version
from harness.xmpp import connect, stanza_error

# How long to wait to be sure that no push request comes.
SETTLE = 3.0


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def wait_push(browser, endpoint, count, timeout=15):
    """The count-th POST to `endpoint`, once the relay answered it and, if it was accepted,
    Firefox acked it."""
    relay = browser.relay

    def arrived():
        pushes = relay.pushes_for(endpoint)
        if len(pushes) < count:
            return None
        push = pushes[count - 1]
        return push if push.status != 201 or push.ack_code is not None else None

    return browser.loop.run(relay.wait(arrived, timeout, f"push #{count} to the subscription"), timeout + 5)


def no_push_after(browser, endpoint, count):
    """Asserts that the endpoint got no more than `count` POSTs, SETTLE seconds from now."""
    time.sleep(SETTLE)
    pushes = browser.relay.pushes_for(endpoint)
    assert len(pushes) == count, f"expected no further push, got {[p.status for p in pushes[count:]]}"


# -- the harness itself, checked against an implementation not written here ---------------------

def test_relay_and_worker_with_pywebpush(browser, page):
    """pywebpush encrypts and signs; Firefox must decrypt (ack 100) and the worker must report and
    show it. A body encrypted for other keys must fail (ack 101). After unsubscribe, 410."""
    vapid = Vapid02()
    vapid.generate_keys()
    server_key = b64url(vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    subscription = page.call("subscribeWithKey", server_key)
    endpoint = subscription["endpoint"]
    assert endpoint.startswith(f"http://127.0.0.1:{browser.relay.port}/push/"), endpoint
    channel = browser.relay.channel_for(endpoint)
    assert channel is not None and b64url(channel.key) == server_key, "Firefox registered another key"

    session = requests.Session()
    session.trust_env = False  # loopback only, whatever proxy the environment names

    def send(subscription_info, payload):
        try:
            return pywebpush.webpush(subscription_info, json.dumps(payload), vapid_private_key=vapid,
                                     vapid_claims={"sub": "mailto:browser-test@example.org"},
                                     requests_session=session, timeout=10).status_code
        except pywebpush.WebPushException as error:
            return error.response.status_code if error.response is not None else str(error)

    payload = {"account": "selftest@localhost", "important": True, "message-count": 1}
    assert send(subscription, payload) == 201
    push = wait_push(browser, endpoint, 1)
    assert push.ack_code == 100, f"Firefox did not decrypt pywebpush's body: ack {push.ack_code}"
    got = page.wait_received(1)
    assert got == [{"type": "web-push", "notification": payload}]
    shown = page.notifications()
    assert [(n["title"], n["tag"]) for n in shown] == [("selftest@localhost", "selftest@localhost")], shown

    # The same endpoint, but keys Firefox does not have: it must refuse to decrypt.
    other = dict(subscription, keys=page_free_keys())
    assert send(other, payload) == 201
    push = wait_push(browser, endpoint, 2)
    assert push.ack_code == 101, f"a body for other keys was acked {push.ack_code}, not 101"
    time.sleep(0.5)
    assert len(page.received()) == 1, "the worker got a body Firefox could not decrypt"

    page.call("unsubscribe")
    browser.loop.run(browser.relay.wait(lambda: channel.unregistered is not None, 10, "unregister"))
    assert send(subscription, payload) == 410


def page_free_keys():
    """A p256dh and auth of a subscription that does not exist."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"p256dh": b64url(key), "auth": b64url(os.urandom(16))}


# -- the module ------------------------------------------------------------------------------

def expected_notification(account, sender, body, options):
    """The notification JSON of DESIGN.md for one chat message, under the module's options."""
    expected = {"account": account, "important": True, "message-count": 1}
    if options.get("push_notification_with_sender"):
        expected["last-message-sender"] = sender
    if options.get("push_notification_with_body"):
        expected["last-message-body"] = body
    else:
        expected["last-message-body"] = options.get("push_notification_important_body", "New Message!")
    return expected


# 0.12 with the sender and the body in the notification; 13 with the defaults (neither).
OPTIONS = {
    "0.12": {"push_notification_with_sender": True, "push_notification_with_body": True},
    "13": {},
}


@pytest.mark.parametrize("version", VERSIONS)
def test_firefox_receives_what_the_module_sends(version, browser, page, make_prosody):
    options = OPTIONS.get(version, {})
    prosody = make_prosody(version, options)
    juliet = f"juliet@{prosody.host}"
    secrets = []

    # The web client: log in over WebSocket, disco, subscribe, enable, log out (examples/).
    enabled = page.call("connectAndEnable", prosody.websocket_url, f"{juliet}/firefox", PASSWORD)
    subscription = enabled["subscription"]
    endpoint = subscription["endpoint"]
    secrets += [subscription["keys"]["p256dh"], subscription["keys"]["auth"]]
    channel = browser.relay.channel_for(endpoint)
    assert channel is not None, "Firefox's endpoint is not one the relay handed out"
    # Firefox subscribed with the key the server publishes in disco (read here with slixmpp).
    server_key = browser.loop.run(disco_key(prosody, juliet))
    assert enabled["serverKey"] == server_key == b64url(channel.key)

    # Juliet is offline; Romeo writes to her.
    romeo = browser.loop.run(connect(prosody, "romeo"))
    body = f"Wherefore art thou, Romeo? {uuid.uuid4().hex[:8]}"
    secrets.append(body)
    romeo.message(juliet, body)

    push = wait_push(browser, endpoint, 1)
    assert push.status == 201, f"the relay refused the module's push: {push.status} {push.reason}"
    assert push.ack_code == 100, f"Firefox could not decrypt the module's push: ack {push.ack_code}"
    got = page.wait_received(1)
    notification = dict(got[0]["notification"])
    # The sender's tag (one per conversation and subscription, opaque); the worker shows the
    # notification under it.
    expected_tag = notification.pop("tag", None)
    assert expected_tag and re.fullmatch(r"[A-Za-z0-9_-]{22}", expected_tag), f"tag {expected_tag!r}"
    expected = expected_notification(juliet, str(romeo.boundjid), body, options)
    assert notification == expected, f"the service worker got {notification}, expected {expected}"
    shown = page.notifications()
    assert len(shown) == 1 and shown[0]["tag"] == expected_tag, shown
    assert shown[0]["body"] == expected["last-message-body"], shown
    headers = push.headers
    REPORT.append(
        f"Prosody {installed_version(version)} + Firefox {browser.version}: POST answered {push.status}, "
        f"{push.body_length}-byte aes128gcm body (TTL {headers.get('ttl')}, Urgency {headers.get('urgency', '-')}, "
        f"Topic {headers.get('topic', '-')}), Firefox ack {push.ack_code} (decrypted)\n"
        f"  service worker got: {json.dumps(notification)}\n"
        f"  notification shown: title {shown[0]['title']!r}, body {shown[0]['body']!r}")

    # Firefox drops the subscription behind the server's back: the relay answers 410 to the next
    # push, and the module forgets the subscription.
    page.call("unsubscribe")
    browser.loop.run(browser.relay.wait(lambda: channel.unregistered is not None, 10, "unregister"))
    secrets += ["Are you there?", "Hello?", "Goodnight."]
    romeo.message(juliet, "Are you there?")
    gone = wait_push(browser, endpoint, 2)
    assert gone.status == 410, f"{gone.status} {gone.reason}"
    time.sleep(1.0)  # the module handles the answer on its next turn of the network loop
    romeo.message(juliet, "Hello?")
    no_push_after(browser, endpoint, 2)
    answer = browser.loop.run(disable_as(prosody, juliet, endpoint))
    assert stanza_error(answer) and stanza_error(answer)[1] == "item-not-found", \
        "the module still had the subscription the push service answered 410 for"

    # A client that turns notifications off (disableWebPush in examples/): subscribe again, then
    # disable; nothing is pushed to that browser any more.
    enabled = page.call("connectAndEnable", prosody.websocket_url, f"{juliet}/firefox", PASSWORD)
    second = enabled["subscription"]["endpoint"]
    assert second != endpoint
    assert page.call("connectAndDisable", prosody.websocket_url, f"{juliet}/firefox", PASSWORD) is True
    assert page.call("currentEndpoint") is None
    romeo.message(juliet, "Goodnight.")
    no_push_after(browser, second, 0)

    browser.loop.run(romeo.close())
    leaked = prosody.leaked(secrets)
    assert not leaked, f"the module logged {len(leaked)} secret value(s)"


async def disco_key(prosody, jid):
    client = await connect(prosody, jid + "/disco", presence=False)
    try:
        return await client.vapid_key()
    finally:
        await client.close()


async def disable_as(prosody, jid, endpoint):
    client = await connect(prosody, jid + "/check", presence=False)
    try:
        return await client.disable(endpoint)
    finally:
        await client.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_closed_tab_wakes_the_worker(version, browser, page, make_prosody):
    """The usual web client: logged in with stream management, available, and then its tab is
    closed. Prosody hibernates the session; a message to it is pushed to the subscription that
    session enabled, and Firefox wakes the service worker with no page of the client open."""
    options = {"push_notification_with_body": True}
    prosody = make_prosody(version, options)
    juliet = f"juliet@{prosody.host}"
    hibernations = prosody.log_text().count(HIBERNATING)
    state = page.call("connectEnableAndStay", prosody.websocket_url, f"{juliet}/tab", PASSWORD)
    assert state["resumable"], "Prosody did not offer stream resumption"
    endpoint = state["subscription"]["endpoint"]

    # Closing the tab closes its WebSocket without a goodbye.
    browser.firefox.client.navigate("about:blank")
    deadline = time.monotonic() + 10
    while prosody.log_text().count(HIBERNATING) == hibernations:
        assert time.monotonic() < deadline, "Prosody did not hibernate the closed tab's session"
        time.sleep(0.05)

    romeo = browser.loop.run(connect(prosody, "romeo"))
    body = f"Did my tab close? {uuid.uuid4().hex[:8]}"
    romeo.message(juliet, body)
    push = wait_push(browser, endpoint, 1)
    assert (push.status, push.ack_code) == (201, 100), push
    browser.loop.run(romeo.close())

    # Back on the client's origin: what the worker showed while no page was open.
    reopened = browser.open_page(expect_subscription=True)
    shown = reopened.notifications()
    expected = expected_notification(juliet, None, body, options)
    # Tagged by conversation (the payload's tag, made by the sender) or, without one, the account.
    assert [n["body"] for n in shown] == [expected["last-message-body"]] and shown[0]["tag"], shown
    REPORT.append(f"Prosody {installed_version(version)}, closed tab (hibernated session): Firefox ack "
                  f"{push.ack_code}; notification shown with no page open: {shown[0]['title']!r} / {shown[0]['body']!r}")


def test_a_declarative_push_still_reaches_the_worker(browser, page, make_prosody):
    """With web_push_client_url the payload is also a declarative push message (WebKit's format).
    Firefox ESR recognises it (its webPush.declarative counter counts it) but does not show it by
    itself: it wakes the service worker with the whole JSON, as for any push, and the worker shows
    the one notification. (With a worker that has no push handler, Firefox ESR shows nothing.)"""
    client_url = browser.web.origin + "/"
    options = {"web_push_client_url": client_url, "push_notification_with_body": True}
    prosody = make_prosody(VERSIONS[0], options)
    juliet = f"juliet@{prosody.host}"
    enabled = page.call("connectAndEnable", prosody.websocket_url, f"{juliet}/firefox", PASSWORD)
    endpoint = enabled["subscription"]["endpoint"]
    romeo = browser.loop.run(connect(prosody, "romeo"))
    body = f"Declaratively yours {uuid.uuid4().hex[:8]}"
    romeo.message(juliet, body)
    push = wait_push(browser, endpoint, 1)
    assert (push.status, push.ack_code) == (201, 100), (push.status, push.reason, push.ack_code)
    notification = page.wait_received(1)[0]["notification"]
    declarative = notification.get("notification", {})
    assert notification["web_push"] == 8030 and notification["mutable"] is True, notification
    assert notification["app_badge"] == 1, notification
    assert (declarative.get("title"), declarative.get("body"), declarative.get("navigate")) == (juliet, body, client_url)
    assert notification["last-message-body"] == body, "DESIGN.md's members stay"
    shown = page.notifications()
    assert [n["body"] for n in shown] == [body], f"one notification, the worker's: {shown}"
    browser.loop.run(romeo.close())
    REPORT.append(f"Firefox {browser.version}, declarative payload: the worker got it (web_push 8030, navigate "
                  f"{declarative.get('navigate')!r}) and showed one notification; Firefox showed none of its own")


# mod_smacks's log line when a session's connection is lost and it is kept for resumption.
HIBERNATING = "Session going into hibernation"


# -- the demo page, as a person uses it ---------------------------------------------------------

def test_the_demo_page_by_hand(browser, make_prosody):
    """examples/demo.html, driven through its form and buttons as the README tells an admin to:
    enable, receive a push in the page's list, disable."""
    prosody = make_prosody(VERSIONS[0], {"push_notification_with_body": True})
    juliet = f"juliet@{prosody.host}"
    browser.open_page("/demo.html")
    client = browser.firefox.client
    for name, value in (("service", prosody.websocket_url), ("jid", juliet), ("password", PASSWORD)):
        element = client.find_element(By.ID, name)
        element.clear()
        element.send_keys(value)

    def status_after_click(button, prefix):
        client.find_element(By.ID, button).click()
        deadline = time.monotonic() + 20
        while True:
            status = client.find_element(By.ID, "status").text
            if status.startswith(prefix):
                return status
            assert time.monotonic() < deadline and not status.startswith("Not "), f"demo page says: {status}"
            time.sleep(0.1)

    status_after_click("enable", "Enabled:")
    endpoint = Page(browser).call("currentEndpoint")
    romeo = browser.loop.run(connect(prosody, "romeo"))
    body = f"By hand {uuid.uuid4().hex[:8]}"
    romeo.message(juliet, body)
    push = wait_push(browser, endpoint, 1)
    assert (push.status, push.ack_code) == (201, 100), (push.status, push.reason, push.ack_code)
    deadline = time.monotonic() + 15
    while not client.find_elements(By.CSS_SELECTOR, "#received li"):
        assert time.monotonic() < deadline, "the demo page lists no push"
        time.sleep(0.1)
    listed = json.loads(client.find_element(By.CSS_SELECTOR, "#received li").text)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", listed.pop("tag", "")), "the push has no tag"
    assert listed == expected_notification(juliet, None, body, {"push_notification_with_body": True})

    status_after_click("disable", "Disabled:")
    assert Page(browser).call("currentEndpoint") is None
    romeo.message(juliet, "after disable")
    no_push_after(browser, endpoint, 1)
    browser.loop.run(romeo.close())


def test_nothing_left_loopback(browser):
    """Firefox's background services stayed quiet: the proxy trap saw no request."""
    assert browser.trap.attempts == []
