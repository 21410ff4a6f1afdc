"""A push service on 127.0.0.1 that records every request and answers as each endpoint's script
says (201 by default; or e.g. 410, 429 with Retry-After, 500, or a hang longer than the module's
timeout). When an endpoint's script has run out, it answers its fallback: 201, or e.g. 503 with
Retry-After for as long as a test wants the service down (set_fallback brings it back)."""

import asyncio
import http.server
import itertools
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    status: int = 201
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow or hanging service)


@dataclass
class Request:
    method: str
    path: str
    headers: dict  # lower-case names
    body: bytes
    received: float  # time.monotonic()
    answered_with: int
    raw_headers: list = field(default_factory=list)  # (name, value) as sent, in order


class PushService:
    def __init__(self):
        self.requests = []
        self._scripts = {}
        self._fallbacks = {}
        self._lock = threading.Condition()
        self._tokens = itertools.count(1)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # Handler threads must not keep the test process alive (a scripted hang).
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="push-service", daemon=True)
        self._thread.start()

    def endpoint(self, *answers, name="sub", then=None):
        """A new endpoint URL; its first requests get `answers` in order, later ones `then` (201)."""
        path = f"/wpush/v2/{name}{next(self._tokens)}"
        with self._lock:
            self._scripts[path] = list(answers)
            self._fallbacks[path] = then or Answer(201)
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, endpoint, *answers):
        """Replaces what an endpoint answers next."""
        path = endpoint.split(str(self.port), 1)[1]
        with self._lock:
            self._scripts[path] = list(answers)

    def set_fallback(self, endpoint, answer):
        """What an endpoint answers once its script has run out (e.g. the service is back: 201)."""
        path = endpoint.split(str(self.port), 1)[1]
        with self._lock:
            self._fallbacks[path] = answer

    def _next_answer(self, path):
        with self._lock:
            script = self._scripts.get(path)
            if script is None:
                return Answer(404)
            return script.pop(0) if script else self._fallbacks.get(path, Answer(201))

    def _record(self, request):
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()

    def requests_for(self, endpoint, since=None):
        """The requests an endpoint got (those received after the time.monotonic() `since`)."""
        path = endpoint.split(str(self.port), 1)[1]
        with self._lock:
            return [r for r in self.requests if r.path == path and (since is None or r.received > since)]

    def wait_for(self, count, endpoint=None, timeout=10.0):
        """Waits until at least `count` requests arrived (for one endpoint, or in all); returns
        them. Raises AssertionError with what did arrive at the timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self.requests if endpoint is None or endpoint.endswith(r.path)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} push request(s) within {timeout}s, got {len(got)}")
                self._lock.wait(left)

    async def arrivals(self, count, endpoint=None, timeout=10.0):
        """wait_for() for async tests: the event loop (and so the XMPP clients) keeps running."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [r for r in self.requests if endpoint is None or endpoint.endswith(r.path)]
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} push request(s) within {timeout}s, got {len(got)}")
            await asyncio.sleep(0.02)

    async def arrival_since(self, endpoint, since, status=None, timeout=10.0, what="push request"):
        """The first request to `endpoint` received after `since` (time.monotonic()) and answered
        with `status` (any when None), waited for. Raises AssertionError at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = [r for r in self.requests_for(endpoint, since=since) if status is None or r.answered_with == status]
            if got:
                return got[0]
            if time.monotonic() > deadline:
                answered = "" if status is None else f" (answered {status})"
                raise AssertionError(f"{what}{answered} did not arrive within {timeout:.0f}s")
            await asyncio.sleep(0.02)

    def settle(self, seconds=1.0):
        """Lets late requests arrive (to prove that no extra push comes)."""
        time.sleep(seconds)

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self):
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                # Bounded read: a body over 8 KiB would already break the push contract.
                body = self.rfile.read(min(length, 8192))
                answer = service._next_answer(self.path)
                request = Request(
                    method=self.command, path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body, received=time.monotonic(), answered_with=answer.status,
                    raw_headers=list(self.headers.items()),
                )
                service._record(request)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (its timeout), as it should

            do_GET = do_PUT = do_DELETE = do_POST

            def log_message(self, *args):
                pass  # the tests report what matters

        return Handler
