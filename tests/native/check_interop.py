"""The native library's encryption and VAPID header, checked by implementations not written here:
http_ece decrypts the body for a subscription made the way a browser makes one, and PyJWT
verifies the token against the public key the library published."""

import base64
import os
import subprocess
import sys
import time

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY = os.path.join(ROOT, "build", "mod_web_push", "web_push.so")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def browser_subscription():
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return private, public, os.urandom(16)


def produce(p256dh: str, auth: str, message: str, endpoint: str, subject: str):
    out = subprocess.run(
        ["lua5.4", os.path.join(ROOT, "tests", "native", "produce.lua"), LIBRARY, p256dh, auth, message, endpoint, subject],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.splitlines()
    return out[0], out[1], bytes.fromhex(out[2])


def check(message: str, endpoint: str, audience: str) -> None:
    private, public, auth = browser_subscription()
    subject = "mailto:admin@example.org"
    vapid_public, header, body = produce(b64url(public), b64url(auth), message, endpoint, subject)

    plaintext = http_ece.decrypt(body, private_key=private, auth_secret=auth, version="aes128gcm")
    assert plaintext.rstrip(b" ") == message.encode(), "decrypted text differs"
    assert len(body) <= 4096, len(body)

    scheme, _, params = header.partition(" ")
    assert scheme == "vapid", header
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == vapid_public
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
    claims = jwt.decode(fields["t"], key=key, algorithms=["ES256"], audience=audience)
    now = time.time()
    assert claims["sub"] == subject
    assert now < claims["exp"] <= now + 24 * 3600, claims
    print(f"ok: {len(message)}-byte message -> {len(body)}-byte body, aud {claims['aud']}, exp in {int(claims['exp'] - now)} s")


def main() -> int:
    check('{"account":"juliet@capulet.lit","message-count":1}', "https://push.example.net/wpush/v2/abc", "https://push.example.net")
    check("é" * 1400, "https://fcm.googleapis.com:443/fcm/send/x", "https://fcm.googleapis.com")
    check("", "https://web.push.apple.com:8443/x", "https://web.push.apple.com:8443")
    print("3 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
