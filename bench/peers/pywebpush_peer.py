"""pywebpush doing, per notification, what its webpush() does before the HTTP request:
encrypt the payload for the subscription (aes128gcm) and sign the VAPID claims.
Prints one JSON line: pushes per second on one core."""

import base64
import json
import sys
import time

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPusher

UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
PAYLOAD = json.dumps({"account": "juliet@capulet.lit", "important": True, "message-count": 1,
                      "last-message-body": "New Message!"}, separators=(",", ":")).encode()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    subscription = {"endpoint": "https://push.example.net/wpush/v2/bench", "keys": {"p256dh": UA_PUBLIC, "auth": AUTH}}
    key = ec.generate_private_key(ec.SECP256R1())
    vapid = Vapid02.from_der(base64.urlsafe_b64encode(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())))
    claims = {"sub": "mailto:bench@example.org", "aud": "https://push.example.net"}

    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(16):
            claims["exp"] = int(time.time()) + 12 * 3600
            WebPusher(subscription).encode(PAYLOAD, content_encoding="aes128gcm")
            vapid.sign(claims)
        count += 16
    print(json.dumps({"peer": "pywebpush", "per_sec": count / (time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
