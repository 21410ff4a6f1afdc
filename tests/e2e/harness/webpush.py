"""The browser's side of Web Push, with implementations not written here: the subscription key
pair and auth secret are made with `cryptography` (as PushManager.subscribe does), bodies are
decrypted with `http_ece` (RFC 8291), VAPID tokens verified with PyJWT (RFC 8292)."""

import base64
import json
import os
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls, endpoint):
        return cls(endpoint, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)

    @property
    def auth_b64(self) -> str:
        return b64url(self.auth)


def public_key_from_b64(text):
    """The VAPID key as disco shows it (65-byte uncompressed point) -> a cryptography key."""
    raw = unb64url(text)
    assert len(raw) == 65 and raw[0] == 4, f"VAPID key is not an uncompressed P-256 point ({len(raw)} bytes)"
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def origin(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def parse_vapid_authorization(value):
    """`vapid t=<JWT>, k=<key>` -> {"t": ..., "k": ...}"""
    scheme, _, params = value.partition(" ")
    assert scheme.lower() == "vapid", f"Authorization scheme is {scheme!r}, not vapid"
    fields = {}
    for part in params.split(","):
        name, _, val = part.strip().partition("=")
        fields[name.strip()] = val.strip()
    assert "t" in fields and "k" in fields, f"Authorization lacks t= or k=: {sorted(fields)}"
    return fields


@dataclass
class Verified:
    claims: dict
    notification: dict
    plaintext: bytes
    headers: dict


def verify_vapid(request, vapid_key_b64, endpoint, subject=None, now=None):
    """Checks the VAPID header of one push request against the key published in disco; returns
    the JWT claims."""
    fields = parse_vapid_authorization(request.headers.get("authorization", ""))
    assert fields["k"] == vapid_key_b64, "k= differs from the key in disco"
    claims = jwt.decode(
        fields["t"], key=public_key_from_b64(vapid_key_b64), algorithms=["ES256"],
        audience=origin(endpoint), options={"require": ["aud", "exp", "sub"]},
    )
    now = now or time.time()
    # RFC 8292: exp no more than 24 hours ahead (Apple refuses more); PyJWT checked it is not past.
    assert claims["exp"] <= now + 24 * 3600 + 60, f"exp is {claims['exp'] - now:.0f}s ahead"
    assert claims["aud"] == origin(endpoint) and not claims["aud"].endswith("/")
    if subject is not None:
        assert claims["sub"] == subject, f"sub is {claims['sub']!r}"
    assert re.match(r"^(mailto:|https:)", claims["sub"]), f"sub {claims['sub']!r} is not mailto: or https:"
    return claims


def check_headers(request, ttl=None):
    """The HTTP side of RFC 8030/8291 that every push service relies on."""
    h = request.headers
    assert request.method == "POST", request.method
    assert h.get("content-encoding") == "aes128gcm", h.get("content-encoding")
    assert h.get("content-type", "").split(";")[0].strip() == "application/octet-stream", h.get("content-type")
    assert "ttl" in h and re.fullmatch(r"\d+", h["ttl"]), f"TTL header {h.get('ttl')!r}"
    if ttl is not None:
        # Every attempt sends the TTL that is left (issue 11): a push sent at once has lost at most
        # the second or two it took to get there.
        assert ttl - 2 <= int(h["ttl"]) <= ttl, f"TTL {h['ttl']} for a push sent at once with a TTL of {ttl}"
    if "urgency" in h:
        assert h["urgency"] in ("very-low", "low", "normal", "high"), h["urgency"]
    if "topic" in h:
        assert re.fullmatch(r"[A-Za-z0-9]{1,32}", h["topic"]), f"Topic {h['topic']!r}"
    assert len(request.body) == int(h.get("content-length", len(request.body)))
    # RFC 8030 lets a push service refuse more than 4096 bytes of body.
    assert 0 < len(request.body) <= 4096, f"body of {len(request.body)} bytes"


def decrypt(request, subscription):
    return http_ece.decrypt(
        request.body, private_key=subscription.private_key,
        auth_secret=subscription.auth, version="aes128gcm",
    )


def verify(request, subscription, vapid_key_b64, subject=None, ttl=None):
    """Every check on one recorded push request; returns the decoded notification."""
    check_headers(request, ttl)
    claims = verify_vapid(request, vapid_key_b64, subscription.endpoint, subject)
    plaintext = decrypt(request, subscription)
    notification = json.loads(plaintext.decode("utf-8"))
    assert isinstance(notification, dict), notification
    # DESIGN.md: the JSON stays within 3,000 bytes (padding aside).
    assert len(plaintext.rstrip(b" ")) <= 3000, f"notification JSON of {len(plaintext.rstrip(b' '))} bytes"
    return Verified(claims, notification, plaintext, request.headers)
