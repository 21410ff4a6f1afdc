"""Fixtures of the browser test: one Firefox for the whole run, with the push relay, the web
client's origin and a trap for anything leaving loopback; and private Prosody instances started
with the end-to-end suite's launcher (tests/e2e/harness), plus mod_websocket for the page.

The servers run on an asyncio loop in a thread of their own, so that the test itself can block
on Marionette calls while the relay keeps talking to Firefox."""

import asyncio
import os
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from harness import procs  # noqa: E402
from harness.net import free_port, wait_port  # noqa: E402
from harness.prosody import BASE_MODULES, Prosody, installed_version  # noqa: E402

from firefox import Firefox, Trap, firefox_version  # noqa: E402
from relay import PushRelay  # noqa: E402
from webserver import WebServer  # noqa: E402

VERSIONS = os.environ.get("BROWSER_PROSODY", "0.12 13").split()
# What each test shows at the end of the run: the notification the service worker received.
REPORT = []


class Loop:
    """An asyncio loop in a daemon thread; run() executes a coroutine there and waits for it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="browser-test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout=30):
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# The script every page call goes through: it waits for the page's harness, calls one of its
# functions and hands back {ok: value} or {error: text}, so a JavaScript failure reads well here.
CALL = """
const [name, args] = [arguments[0], arguments[1]];
const resolve = arguments[arguments.length - 1];
const run = () => Promise.resolve()
	.then(() => window.webPushTest[name](...args))
	.then((value) => resolve({ ok: value === undefined ? null : value }),
		(error) => resolve({ error: `${error}\\n${error && error.stack || ""}` }));
if (window.webPushTest) { run(); } else { window.addEventListener("web-push-test-ready", run, { once: true }); }
"""

NOTIFICATIONS = """
const resolve = arguments[arguments.length - 1];
navigator.serviceWorker.ready
	.then((registration) => registration.getNotifications())
	.then((list) => resolve(list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }))),
		(error) => resolve({ error: String(error) }));
"""


class Page:
    """The test page at http://localhost:PORT/, in Firefox's one tab."""

    def __init__(self, browser):
        self.browser = browser
        self.client = browser.firefox.client

    def call(self, name, *args, timeout=30):
        answer = self.client.execute_async_script(
            CALL, script_args=(name, list(args)), sandbox=None, script_timeout=int(timeout * 1000))
        if "error" in answer:
            raise AssertionError(f"page: {name} failed: {answer['error']}")
        return answer["ok"]

    def received(self):
        return self.call("received")

    def wait_received(self, count, timeout=15):
        """The first `count` messages the service worker posted to this page."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the service worker posted {len(got)} message(s) within {timeout} s, expected {count}:\n"
                    + self.browser.relay.report() + "\n--- Firefox log (tail) ---\n" + self.browser.firefox.log_tail(30))
            time.sleep(0.1)

    def notifications(self):
        answer = self.client.execute_async_script(NOTIFICATIONS, sandbox=None, script_timeout=10000)
        if isinstance(answer, dict) and "error" in answer:
            raise AssertionError(f"getNotifications failed: {answer['error']}")
        return answer


class Browser:
    def __init__(self, loop, workdir):
        self.loop = loop
        self.workdir = workdir
        self.relay, self.trap, self.web = loop.run(self._start_servers())
        self.firefox = Firefox(workdir, self.relay.server_url, self.trap.port, free_port())
        try:
            self.firefox.start()
        finally:
            if self.firefox.process is not None:
                procs.track(self.firefox.process)
        self.version = self.firefox.capabilities().get("browserVersion")

    async def _start_servers(self):
        return await PushRelay().start(), await Trap().start(), await WebServer().start()

    def open_page(self):
        """A fresh load of the test page; notifications are allowed for its origin (what a user's
        click on "Allow" does)."""
        client = self.firefox.client
        client.navigate(self.web.origin + "/")
        client.set_permission({"name": "notifications"}, "granted")
        page = Page(self)
        state = page.call("ready")
        assert state["active"], f"service worker not active: {state}"
        # The relay's state is per Firefox profile: no subscription may be left from a previous
        # test (each test unsubscribes), so a stale one cannot make a test pass.
        assert page.call("currentEndpoint") is None, "a push subscription was left over"
        return page

    def close(self):
        process = self.firefox.process
        self.firefox.stop()
        if process is not None:
            procs.untrack(process)
        self.loop.run(self._stop_servers())

    async def _stop_servers(self):
        await self.relay.close()
        await self.trap.close()
        await self.web.close()


def pytest_configure(config):
    # marionette-driver's dependencies use APIs Python deprecates; not ours to fix.
    for module in ("mozinfo", "mozrunner", "mozdevice", "mozprocess"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}.*")


def pytest_report_header(config):
    return [
        f"browser: {firefox_version()} (Debian's firefox-esr), headless, driven by marionette-driver",
        "Prosody: " + ", ".join(f"{installed_version(v)} ({v})" for v in VERSIONS),
    ]


def pytest_terminal_summary(terminalreporter):
    if not REPORT:
        return
    terminalreporter.section("what Firefox's service worker received")
    for line in REPORT:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def loop():
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def browser(loop, tmp_path_factory):
    browser = Browser(loop, str(tmp_path_factory.mktemp("firefox")))
    try:
        yield browser
    finally:
        browser.close()
        # Nothing may have tried to leave loopback.
        assert not browser.trap.attempts, f"Firefox tried to reach beyond loopback: {browser.trap.attempts}"


@pytest.fixture
def page(browser):
    page = browser.open_page()
    yield page
    # Leave no subscription behind for the next test.
    try:
        page.call("unsubscribe")
    except Exception:
        pass


@pytest.fixture
def make_prosody(tmp_path, request):
    """make_prosody(version, options) -> a started Prosody with juliet and romeo, mod_websocket on
    an http port of 127.0.0.1 (`prosody.websocket_url`), and the module from build/."""
    started = []

    def make(version, options=None):
        workdir = tmp_path / f"prosody-{version}"
        workdir.mkdir()
        http_port = free_port()
        settings = {
            "http_ports": [http_port],
            "http_interfaces": ["127.0.0.1"],
            "https_ports": [],
            "https_interfaces": [],
            # The page connects to ws://127.0.0.1:PORT/: let requests for that Host reach the
            # VirtualHost, and let SASL PLAIN and friends work without TLS, as on loopback.
            "http_default_host": "localhost",
            "consider_websocket_secure": True,
            # The relay hands out http://127.0.0.1 endpoints.
            "web_push_allow_insecure_endpoints": True,
        }
        settings.update(options or {})
        prosody = Prosody(str(workdir), version, {"storage": "internal"}, settings, BASE_MODULES + ["websocket"])
        started.append(prosody)
        for user in ("juliet", "romeo"):
            prosody.register(user)
        prosody.start()
        wait_port("127.0.0.1", http_port, time.monotonic() + 10, alive=prosody.alive)
        prosody.websocket_url = f"ws://127.0.0.1:{http_port}/xmpp-websocket"
        return prosody

    try:
        yield make
    finally:
        problems = []
        for prosody in started:
            prosody.stop()
            problems += prosody.lua_errors()
            if getattr(request.node, "rep_call_failed", False):
                sys.stderr.write(f"\n--- {prosody.log_path} (tail) ---\n{prosody.tail(60)}\n")
        assert not problems, "Lua errors in Prosody's log:\n" + "\n".join(problems[:20])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call_failed = report.failed


def pytest_sessionfinish(session, exitstatus):
    procs.kill_all()
