"""`make demo`: one Web Push round trip on loopback, shown step by step.

A private Prosody with mod_web_push, a local push service and two accounts. Juliet's web client
(slixmpp, acting as the browser too) reads the VAPID key from disco, makes a subscription the way
PushManager.subscribe() does, enables it and goes offline. Romeo sends her a message. The push
service prints the request it got, and the notification decrypted with http_ece, with the VAPID
token verified by PyJWT. Then everything stops."""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from harness import aio, procs, webpush  # noqa: E402
from harness.prosody import Prosody, installed_version  # noqa: E402
from harness.pushservice import PushService  # noqa: E402
from harness.xmpp import connect, is_result, stanza_error  # noqa: E402

OPTIONS = {
    # The demo shows the message text and sender; both are off by default (privacy).
    "push_notification_with_body": True,
    "push_notification_with_sender": True,
    "web_push_vapid_subject": "mailto:admin@localhost.example",
}


def step(text):
    print(f"\n== {text}", flush=True)


def shorten(value, keep=24):
    return value if len(value) <= 2 * keep + 5 else f"{value[:keep]}…{value[-keep:]}"


def show_request(request):
    print(f"{request.method} {request.path} HTTP/1.1")
    for name, value in request.raw_headers:
        if name.lower() == "authorization":
            # Shortened for the screen; the whole token is verified below.
            fields = webpush.parse_vapid_authorization(value)
            value = f"vapid t={shorten(fields['t'])}, k={shorten(fields['k'], 12)}"
        print(f"{name}: {value}")
    print(f"[{len(request.body)} bytes of aes128gcm body]")


async def round_trip(prosody, push):
    step(f"Juliet's web client logs in to Prosody {installed_version(prosody.version)} on 127.0.0.1:{prosody.port}")
    juliet = await connect(prosody, "juliet", resource="browser")
    key = await juliet.vapid_key()
    print(f"VAPID public key from disco: {key}")

    step("The browser subscribes with that key; the client enables Web Push")
    subscription = webpush.Subscription.new(push.endpoint())
    print(f"endpoint: {subscription.endpoint}")
    answer = await juliet.enable(subscription)
    if not is_result(answer):
        raise SystemExit(f"enable refused: {stanza_error(answer)}")
    print("enable: result")
    await juliet.close()
    print("Juliet's client closes (no session left)")

    step("Romeo sends Juliet a message")
    romeo = await connect(prosody, "romeo", resource="orchard")
    sent = time.monotonic()
    romeo.message("juliet@localhost", "Wherefore art thou?")
    [request] = await push.arrivals(1, subscription.endpoint, timeout=15)
    print(f"the push service got a request {1000 * (request.received - sent):.0f} ms later:\n")
    show_request(request)

    step("Verified with PyJWT against the disco key, decrypted with http_ece")
    result = webpush.verify(request, subscription, key, subject=OPTIONS["web_push_vapid_subject"])
    print("VAPID claims:", json.dumps(result.claims))
    print("notification:", json.dumps(result.notification, indent=2, ensure_ascii=False))
    await romeo.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prosody", choices=["0.12", "13"], default="0.12", help="which Prosody to run")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="web-push-demo-")
    push = PushService()
    prosody = Prosody(workdir, args.prosody, {"storage": "internal"}, OPTIONS)
    try:
        step(f"Push service listening on 127.0.0.1:{push.port}; Prosody's config: {prosody.config_path}")
        for user in ("juliet", "romeo"):
            prosody.register(user)
        prosody.start()
        aio.run(round_trip(prosody, push), 45)
        return 0
    except BaseException:
        print(f"\n-- Prosody's log (tail) --\n{prosody.tail(30)}", file=sys.stderr)
        raise
    finally:
        step("Stopping Prosody and the push service")
        prosody.stop()
        push.close()
        procs.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
