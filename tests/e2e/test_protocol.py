"""The wire protocol (DESIGN.md, urn:xmpp:webpush:0): discovery of the VAPID key, enable, disable,
and the documented errors for bad requests, from a real XMPP client."""

import base64

import pytest

from harness import webpush
from harness.xmpp import NS, enable_xml, is_result, stanza_error


async def test_disco_shows_the_vapid_key(world):
    w = world()
    alice = await w.client("alice")
    bob = await w.client("bob")
    key = await alice.vapid_key()
    # 65-byte uncompressed P-256 point, base64url without padding: what
    # PushManager.subscribe({applicationServerKey}) takes.
    assert "=" not in key and "+" not in key and "/" not in key, key
    point = webpush.public_key_from_b64(key)
    assert point.curve.name == "secp256r1"
    # One key per host: every account sees the same one.
    assert await bob.vapid_key() == key
    await w.close_all()


@pytest.mark.storage
async def test_enable_and_disable(world):
    w = world()
    bob = await w.client("bob")
    subscription = await w.subscribe(bob)
    # Enabling the same endpoint again (new keys) is allowed: it replaces the keys.
    again = webpush.Subscription.new(subscription.endpoint)
    assert is_result(await bob.enable(again))
    assert is_result(await bob.disable(subscription.endpoint))
    # Gone now: a second disable does not find it.
    assert stanza_error(await bob.disable(subscription.endpoint))[1] == "item-not-found"
    await w.close_all()


async def test_disable_errors(world):
    w = world()
    bob = await w.client("bob")
    assert stanza_error(await bob.disable(None))[1] == "bad-request"
    assert stanza_error(await bob.disable(w.push.endpoint()))[1] == "item-not-found"
    await w.close_all()


def _b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def garbage_cases(endpoint, p256dh, auth):
    """(name, enable payload, expected condition, word the error text must contain)"""
    off_curve = _b64(b"\x04" + b"\xff" * 64)  # x and y beyond the field prime: no curve point
    return [
        ("no children", enable_xml(), "bad-request", "endpoint"),
        ("no endpoint", enable_xml(None, p256dh, auth), "bad-request", "endpoint"),
        ("no p256dh", enable_xml(endpoint, None, auth), "bad-request", "p256dh"),
        ("no auth", enable_xml(endpoint, p256dh, None), "bad-request", "auth"),
        ("empty endpoint", enable_xml("", p256dh, auth), "bad-request", "endpoint"),
        ("empty p256dh", enable_xml(endpoint, "", auth), "bad-request", "p256dh"),
        ("p256dh not base64url", enable_xml(endpoint, "not*base64url!", auth), "bad-request", "p256dh"),
        ("p256dh too short", enable_xml(endpoint, _b64(b"\x04" + b"\x01" * 11), auth), "bad-request", "p256dh"),
        ("p256dh not on the curve", enable_xml(endpoint, off_curve, auth), "bad-request", "p256dh"),
        ("p256dh compressed point", enable_xml(endpoint, _b64(b"\x02" + b"\x01" * 32), auth), "bad-request", "p256dh"),
        ("auth too short", enable_xml(endpoint, p256dh, _b64(b"abc")), "bad-request", "auth"),
        ("auth not base64url", enable_xml(endpoint, p256dh, "%%%%"), "bad-request", "auth"),
        ("auth huge", enable_xml(endpoint, p256dh, "A" * 20000), "bad-request", "auth"),
        ("endpoint not a URL", enable_xml("not a url", p256dh, auth), "bad-request", "endpoint"),
        ("endpoint relative", enable_xml("/wpush/v2/x", p256dh, auth), "bad-request", "endpoint"),
        ("endpoint too long", enable_xml(endpoint + "/" + "x" * 10000, p256dh, auth), "bad-request", "endpoint"),
        ("endpoint unicode junk", enable_xml("\u2603\U0001f4a9://\u00e9", p256dh, auth), "bad-request", "endpoint"),
        ("endpoint not http(s)", enable_xml("ftp://127.0.0.1/x", p256dh, auth), "not-acceptable", None),
        ("nested garbage", f'<enable xmlns="{NS}"><endpoint><x>{endpoint}</x></endpoint><p256dh>{p256dh}</p256dh>'
                           f'<auth>{auth}</auth></enable>', "bad-request", "endpoint"),
    ]


async def test_garbage_enable_requests_get_the_documented_errors(world):
    w = world()
    bob = await w.client("bob")
    good = webpush.Subscription.new(w.push.endpoint())
    failures = []
    for name, payload, condition, word in garbage_cases(good.endpoint, good.p256dh, good.auth_b64):
        answer = await bob.iq(payload)
        error = stanza_error(answer)
        if error is None:
            failures.append(f"{name}: accepted")
        elif error[1] != condition:
            failures.append(f"{name}: {error[1]} instead of {condition}")
        elif word and word not in (error[2] or ""):
            failures.append(f"{name}: error text {error[2]!r} does not name {word}")
    # An enable IQ of type get is not a request the protocol knows.
    answer = await bob.iq(enable_xml(good.endpoint, good.p256dh, good.auth_b64), itype="get")
    if answer.get("type") != "error":
        failures.append("enable as type=get: not an error")
    # The server keeps serving: pings answer quickly, a good request still works, and none of the
    # garbage became a subscription that gets pushed.
    assert await bob.ping() < 1.0
    subscription = await w.subscribe(bob, endpoint=good.endpoint)
    key = await bob.vapid_key()
    await bob.close()
    alice = await w.client("alice")
    w.send(alice, "bob@localhost", "after the garbage")
    [request] = await w.exactly(subscription, 1)
    w.verify(request, subscription, key)
    assert len(w.push.requests) == 1, "a garbage request became a subscription"
    assert not failures, "\n".join(failures)
    await w.close_all()


@pytest.mark.parametrize("endpoint_template", [
    "http://127.0.0.1:{port}/wpush/v2/x",   # not https
    "https://127.0.0.1:{port}/wpush/v2/x",  # loopback is not a public address
    "https://[::1]:{port}/wpush/v2/x",
])
async def test_endpoint_policy_without_insecure_endpoints(world, endpoint_template):
    w = world({"web_push_allow_insecure_endpoints": False})
    bob = await w.client("bob")
    subscription = webpush.Subscription.new(endpoint_template.format(port=w.push.port))
    error = stanza_error(await bob.enable(subscription))
    assert error is not None, f"{subscription.endpoint} accepted without web_push_allow_insecure_endpoints"
    assert error[1] == "not-acceptable", error
    await w.close_all()


async def test_endpoint_hosts_restricts_endpoints(world):
    w = world({"web_push_endpoint_hosts": ["push.example.net", "*.push.example.org"]})
    bob = await w.client("bob")
    error = stanza_error(await bob.enable(webpush.Subscription.new(w.push.endpoint())))
    assert error is not None, "a host outside web_push_endpoint_hosts was accepted"
    assert error[1] == "not-acceptable", error
    # A listed host is accepted (no push is caused here, so nothing is ever sent there).
    for endpoint in ("http://push.example.net/wpush/v2/x", "http://eu.push.example.org/wpush/v2/y"):
        assert is_result(await bob.enable(webpush.Subscription.new(endpoint))), endpoint
    error = stanza_error(await bob.enable(webpush.Subscription.new("http://push.example.org.evil.test/x")))
    assert error is not None, "a host that only starts like an allowed suffix was accepted"
    assert error[1] == "not-acceptable", error
    await w.close_all()


# The port rule (issue 11): https endpoints use port 443 unless an entry of web_push_endpoint_hosts
# names the port. Names under example.net/.org/.com: refused or accepted at enable time, before any
# connection, and every accepted one is disabled again before the test ends, so none is ever dialled.
async def check_endpoints(bob, accepted, refused):
    failures = []
    for endpoint in refused:
        error = stanza_error(await bob.enable(webpush.Subscription.new(endpoint)))
        if error is None:
            failures.append(f"{endpoint}: accepted")
            await bob.disable(endpoint)
        elif error[1] != "not-acceptable":
            failures.append(f"{endpoint}: {error[1]} instead of not-acceptable")
    for endpoint in accepted:
        answer = await bob.enable(webpush.Subscription.new(endpoint))
        if is_result(answer):
            assert is_result(await bob.disable(endpoint))
        else:
            failures.append(f"{endpoint}: refused ({stanza_error(answer)})")
    assert not failures, "\n".join(failures)


async def test_endpoint_port_other_than_443_is_refused_by_default(world):
    w = world({"web_push_allow_insecure_endpoints": False})
    bob = await w.client("bob")
    await check_endpoints(
        bob,
        accepted=["https://push.example.net/wpush/v2/a", "https://push.example.net:443/wpush/v2/b"],
        refused=["https://push.example.net:25/wpush/v2/c", "https://push.example.net:8443/wpush/v2/d",
                 "https://push.example.net:80/wpush/v2/e"],
    )
    await w.close_all()


async def test_endpoint_port_named_in_endpoint_hosts_is_allowed(world):
    w = world({"web_push_allow_insecure_endpoints": False,
               "web_push_endpoint_hosts": ["push.example.net:25", "*.push.example.org:8443", "push.example.com"]})
    bob = await w.client("bob")
    await check_endpoints(
        bob,
        accepted=["https://push.example.net:25/wpush/v2/a", "https://eu.push.example.org:8443/wpush/v2/b",
                  "https://push.example.com/wpush/v2/c"],
        refused=["https://push.example.net:26/wpush/v2/d",     # another port than the entry's
                 "https://eu.push.example.org:25/wpush/v2/e",  # another port than the pattern's
                 "https://push.example.com:25/wpush/v2/f"],    # an entry without a port: 443 only
    )
    await w.close_all()


async def test_insecure_endpoints_lift_the_port_rule(world):
    w = world({"web_push_allow_insecure_endpoints": True})
    bob = await w.client("bob")
    await check_endpoints(bob, accepted=["https://push.example.net:25/wpush/v2/a"], refused=[])
    await w.close_all()
