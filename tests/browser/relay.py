"""A push service on 127.0.0.1 for Firefox: Mozilla's Web Push WebSocket protocol towards the
browser, RFC 8030 push endpoints towards the application server (our module).

It behaves like Mozilla's autopush where the test can see the difference:
  - Firefox connects to ws://127.0.0.1:PORT/ (the "push-notification" subprotocol) and says
    hello; it registers a channel per subscription, with the applicationServerKey;
  - each channel gets an endpoint http://127.0.0.1:PORT/push/<token>; a POST there must carry a
    TTL, Content-Encoding aes128gcm and a VAPID Authorization whose key is the one the channel was
    registered with and whose ES256 token verifies (PyJWT and cryptography check it, not our code);
  - the body goes to Firefox untouched, base64url-encoded, as a "notification"; Firefox decrypts
    it and acks with code 100 (delivered) or 101 (decryption failed), and the relay records that;
  - a channel Firefox unregistered answers 410 Gone, an unknown one 404.

Nothing here decrypts anything: Firefox is the judge of the module's encryption.
"""

import asyncio
import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field

import jwt
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives.asymmetric import ec

MAX_BODY = 4096  # RFC 8030 promises at least this much; autopush refuses more


def b64url_decode(text):
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Channel:
    channel_id: str
    key: bytes  # the applicationServerKey Firefox registered with (65-byte P-256 point)
    token: str
    registered: float
    unregistered: float = None


@dataclass(repr=False)
class Push:
    """One POST to an endpoint, and what became of it."""
    token: str
    status: int  # what the relay answered the application server
    reason: str = ""  # why it refused, for the test's report
    headers: dict = field(default_factory=dict)
    body_length: int = 0
    version: str = None  # the notification id sent to Firefox, when accepted
    data: str = None  # the body, base64url, as Firefox gets it

    def __repr__(self):
        # Short, and without the body or the VAPID token, for assertion messages.
        return (f"<push to {self.token[:8]}…: answered {self.status} {self.reason}, {self.body_length} bytes, "
                f"ack {self.ack_code}>")
    ack_code: int = None  # Firefox's ack: 100 delivered, 101 decryption failed, 102 not delivered
    received: float = 0.0


class PushRelay:
    def __init__(self):
        self.channels = {}  # channel id -> Channel
        self.by_token = {}  # endpoint token -> Channel
        self.pushes = []
        self.events = []  # (time, what) of the WebSocket side, for failure reports
        self.uaid = None
        self.port = None
        self._ws = None
        self._undelivered = []  # Push waiting for Firefox to (re)connect
        self._changed = asyncio.Condition()
        self._runner = None

    # -- life cycle ---------------------------------------------------------------------

    async def start(self):
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/", self._websocket)
        app.router.add_post("/push/{token}", self._push)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def close(self):
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def server_url(self):
        return f"ws://127.0.0.1:{self.port}"

    @property
    def connected(self):
        return self._ws is not None and not self._ws.closed

    # -- what the tests ask -------------------------------------------------------------

    def channel_for(self, endpoint):
        token = endpoint.rstrip("/").rsplit("/", 1)[-1]
        return self.by_token.get(token)

    def pushes_for(self, endpoint):
        token = endpoint.rstrip("/").rsplit("/", 1)[-1]
        return [p for p in self.pushes if p.token == token]

    async def wait(self, predicate, timeout, what):
        """Waits until predicate() is true (checked whenever the relay's state changes)."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except asyncio.TimeoutError:
                raise AssertionError(f"push relay: no {what} within {timeout} s; it saw:\n" + self.report())
        return predicate()

    def report(self):
        lines = [f"  {t:.3f} {what}" for t, what in self.events[-30:]]
        for p in self.pushes:
            lines.append(f"  POST /push/{p.token[:8]}… -> {p.status} {p.reason} (ack {p.ack_code})")
        return "\n".join(lines) or "  nothing"

    async def _notify(self):
        async with self._changed:
            self._changed.notify_all()

    def _event(self, what):
        self.events.append((time.monotonic(), what))

    # -- the browser's side: Mozilla's WebSocket protocol ---------------------------------

    async def _websocket(self, request):
        ws = web.WebSocketResponse(protocols=("push-notification",), autoping=True)
        await ws.prepare(request)
        if self._ws is not None and not self._ws.closed:
            # One browser per relay; a new connection replaces the old one, as autopush does.
            await self._ws.close()
        self._ws = ws
        self._event("browser connected")
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                await self._on_message(ws, message.data)
        finally:
            if self._ws is ws:
                self._ws = None
            self._event("browser disconnected")
            await self._notify()
        return ws

    async def _on_message(self, ws, text):
        try:
            message = json.loads(text)
        except ValueError:
            self._event("browser sent invalid JSON")
            return
        kind = message.get("messageType") if isinstance(message, dict) else None
        if kind is None or kind == "ping":
            # Firefox's keepalive is "{}"; the answer is the same.
            await ws.send_str("{}")
            return
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            self._event(f"browser sent unknown {kind!r}")
            return
        await handler(ws, message)
        await self._notify()

    async def _on_hello(self, ws, message):
        # Firefox sends its uaid only when it has subscriptions to keep; otherwise it gets a new one.
        uaid = message.get("uaid")
        if not (isinstance(uaid, str) and uaid and (uaid == self.uaid or self.uaid is None)):
            uaid = uuid.uuid4().hex
        self.uaid = uaid
        self._event(f"hello (use_webpush={message.get('use_webpush')})")
        await ws.send_json({"messageType": "hello", "uaid": uaid, "status": 200, "use_webpush": True, "broadcasts": {}})
        pending, self._undelivered = self._undelivered, []
        for push in pending:
            await self._deliver(push)

    async def _on_register(self, ws, message):
        channel_id = message.get("channelID")
        key = message.get("key")
        if not isinstance(channel_id, str) or not isinstance(key, str):
            await ws.send_json({"messageType": "register", "channelID": channel_id, "status": 400})
            return
        try:
            key_bytes = b64url_decode(key)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_bytes)
        except Exception:
            self._event("register with an applicationServerKey that is not a P-256 point")
            await ws.send_json({"messageType": "register", "channelID": channel_id, "status": 400})
            return
        channel = Channel(channel_id, key_bytes, uuid.uuid4().hex, time.monotonic())
        self.channels[channel_id] = channel
        self.by_token[channel.token] = channel
        self._event(f"register channel {channel_id[:8]}…")
        await ws.send_json({
            "messageType": "register", "channelID": channel_id, "status": 200,
            "pushEndpoint": f"http://127.0.0.1:{self.port}/push/{channel.token}",
        })

    async def _on_unregister(self, ws, message):
        channel = self.channels.get(message.get("channelID"))
        if channel is not None and channel.unregistered is None:
            channel.unregistered = time.monotonic()
        self._event(f"unregister channel {str(message.get('channelID'))[:8]}… (code {message.get('code')})")
        await ws.send_json({"messageType": "unregister", "channelID": message.get("channelID"), "status": 200})

    async def _on_ack(self, ws, message):
        for update in message.get("updates") or []:
            for push in self.pushes:
                if push.version is not None and push.version == update.get("version"):
                    push.ack_code = update.get("code")
                    self._event(f"ack {push.version[:8]}… code {push.ack_code}")

    async def _on_nack(self, ws, message):
        # A service worker that threw or rejected in its push handler (codes 301-303).
        self._event(f"nack {str(message.get('version'))[:8]}… code {message.get('code')}")

    async def inject(self, endpoint, body):
        """Hands Firefox `body` (already encrypted for the subscription) on the endpoint's
        channel, as if an application server had POSTed it: for what a service worker does with
        payloads the module does not send (yet). Returns the Push, whose ack_code Firefox sets."""
        token = endpoint.rstrip("/").rsplit("/", 1)[-1]
        push = Push(token=token, status=201, reason="injected by the test", body_length=len(body),
                    received=time.monotonic(), version=uuid.uuid4().hex, data=b64url_encode(body))
        self.pushes.append(push)
        await self._deliver(push)
        await self._notify()
        return push

    async def _deliver(self, push):
        if not self.connected:
            self._undelivered.append(push)
            return
        channel = self.by_token[push.token]
        await self._ws.send_json({
            "messageType": "notification", "channelID": channel.channel_id, "version": push.version,
            "data": push.data, "headers": {"encoding": "aes128gcm"},
        })
        self._event(f"notification {push.version[:8]}… to channel {channel.channel_id[:8]}…")

    # -- the application server's side: RFC 8030 -----------------------------------------

    async def _push(self, request):
        token = request.match_info["token"]
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        push = Push(token=token, status=0, headers=headers, body_length=len(body), received=time.monotonic())
        self.pushes.append(push)
        channel = self.by_token.get(token)
        status, reason = self._check(channel, headers, body)
        push.status, push.reason = status, reason
        if status == 201:
            push.version = uuid.uuid4().hex
            push.data = b64url_encode(body)
            await self._deliver(push)
        await self._notify()
        response_headers = {"TTL": headers.get("ttl", "0")}
        if status == 201:
            response_headers["Location"] = f"http://127.0.0.1:{self.port}/m/{push.version}"
        return web.Response(status=status, text=reason, headers=response_headers)

    def _check(self, channel, headers, body):
        """(status, reason) for a POST, as autopush would answer it."""
        if channel is None:
            return 404, "no such subscription"
        if channel.unregistered is not None:
            return 410, "subscription expired"
        if "ttl" not in headers or not headers["ttl"].isdigit():
            return 400, "missing TTL header"
        if headers.get("content-encoding", "").lower() != "aes128gcm":
            return 415, "Content-Encoding must be aes128gcm"
        # RFC 8030 section 5.3 and 5.4, as autopush checks them.
        if "urgency" in headers and headers["urgency"] not in ("very-low", "low", "normal", "high"):
            return 400, "invalid Urgency"
        if "topic" in headers and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", headers["topic"]):
            return 400, "invalid Topic"
        if not body:
            return 400, "empty body"
        if len(body) > MAX_BODY:
            return 413, "body too large"
        problem = self._vapid_problem(channel, headers.get("authorization", ""))
        if problem:
            return 401, problem
        return 201, ""

    def _vapid_problem(self, channel, authorization):
        """RFC 8292: `vapid t=<JWT>, k=<key>`; the key must be the subscription's
        applicationServerKey and the token must verify with it, for this origin, unexpired."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            return "Authorization is not vapid"
        fields = {}
        for part in params.split(","):
            name, _, value = part.strip().partition("=")
            fields[name.strip()] = value.strip()
        if "t" not in fields or "k" not in fields:
            return "vapid Authorization without t= and k="
        try:
            key_bytes = b64url_decode(fields["k"])
        except Exception:
            return "vapid k= is not base64url"
        if key_bytes != channel.key:
            return "vapid key is not the subscription's applicationServerKey"
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_bytes)
        try:
            claims = jwt.decode(
                fields["t"], public_key, algorithms=["ES256"],
                audience=f"http://127.0.0.1:{self.port}", options={"require": ["exp", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            return f"vapid token rejected: {type(error).__name__}"
        if claims["exp"] > time.time() + 24 * 3600:
            return "vapid token expires more than 24 h ahead"
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return "vapid sub is not a mailto: or https: URL"
        return None
