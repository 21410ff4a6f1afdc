"""What most tests do: a Prosody with the module, the push service, clients, subscriptions, and
waits for push requests that are then verified with the independent implementations."""

import asyncio
import os

from . import webpush
from .xmpp import connect, is_result

# How long a test waits to be sure that no further push request comes: longer than the module's
# web_push_min_interval (2 s), the delay of a coalesced follow-up push.
SETTLE = float(os.environ.get("E2E_SETTLE", "2.2"))


class World:
    def __init__(self, prosody, push_service):
        self.prosody = prosody
        self.push = push_service
        self.clients = []
        self.secrets = []  # bodies and keys that must never appear in the module's log lines
        self.subscriptions = {}  # endpoint -> every Subscription enabled for it
        self.vapid_keys = set()  # every key disco showed during the test

    async def client(self, user, **kwargs):
        client = await connect(self.prosody, user, **kwargs)
        self.clients.append(client)
        return client

    async def subscribe(self, client, *answers, endpoint=None):
        """A browser-made subscription for a fresh endpoint, enabled from `client`."""
        subscription = webpush.Subscription.new(endpoint or self.push.endpoint(*answers))
        self.vapid_keys.add(await client.vapid_key())
        answer = await client.enable(subscription)
        assert is_result(answer), f"enable refused: {answer.get('type')} {list(answer)}"
        self.secrets += [subscription.p256dh, subscription.auth_b64]
        self.subscriptions.setdefault(subscription.endpoint, []).append(subscription)
        return subscription

    def send(self, sender, to, body=None, **kwargs):
        if body:
            self.secrets.append(body)
        sender.message(to, body, **kwargs)

    async def pushes(self, subscription, count=1, timeout=10):
        return await self.push.arrivals(count, subscription.endpoint, timeout)

    async def exactly(self, subscription, count, timeout=10, settle=SETTLE):
        """Waits for `count` requests to the endpoint, then a while longer to see that no more come."""
        if count:
            await self.pushes(subscription, count, timeout)
        await asyncio.sleep(settle)
        got = self.push.requests_for(subscription.endpoint)
        assert len(got) == count, f"expected exactly {count} push request(s), got {len(got)}"
        return got

    def verify(self, request, subscription, vapid_key, **kwargs):
        kwargs.setdefault("subject", self.prosody.global_options()["web_push_vapid_subject"])
        return webpush.verify(request, subscription, vapid_key, **kwargs)

    def verify_every_request(self):
        """Run after each test: every request the push service recorded for a subscription made
        here passes every check (headers, VAPID against a key disco showed, decryption, JSON),
        including those a test did not look at itself."""
        for request in list(self.push.requests):
            endpoint = f"http://127.0.0.1:{self.push.port}{request.path}"
            candidates = self.subscriptions.get(endpoint)
            if not candidates:
                continue
            webpush.check_headers(request)
            fields = webpush.parse_vapid_authorization(request.headers.get("authorization", ""))
            assert fields["k"] in self.vapid_keys, "a push signed with a key disco never showed"
            errors = []
            for subscription in reversed(candidates):
                try:
                    self.verify(request, subscription, fields["k"])
                    break
                except Exception as error:  # noqa: BLE001 - tried with each key pair enabled
                    errors.append(error)
            else:
                raise AssertionError(f"a push to {request.path} fails verification: {errors[0]!r}")

    async def close_all(self):
        for client in self.clients:
            await client.close()

    def assert_nothing_leaked(self, extra=()):
        leaked = self.prosody.leaked(list(self.secrets) + list(extra))
        assert not leaked, f"the module logged {len(leaked)} secret value(s) (message text or keys)"
