"""The browser test's moving parts, used by conftest.py's fixtures: one Firefox with the push
relay, the web client's origin and a trap for anything leaving loopback; the page it shows; and
the asyncio loop (in a thread of its own) the servers and the XMPP client run on, so that the test
itself can block on Marionette calls while the relay keeps talking to Firefox."""

import asyncio
import os
import threading
import time

from harness import procs
from harness.net import free_port

from firefox import Firefox, Trap
from relay import PushRelay
from webserver import WebServer

VERSIONS = os.environ.get("BROWSER_PROSODY", "0.12 13").split()
# What each test shows at the end of the run: the notification the service worker received.
REPORT = []


def record_pid(process):
    """tests/browser/run kills whatever is left of these process groups when the run ends, even
    after a timeout killed this process before it could clean up."""
    procs.track(process)
    path = os.environ.get("BROWSER_TEST_PIDS")
    if path:
        with open(path, "a") as f:
            f.write(f"{process.pid}\n")


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
        # Cancel what the XMPP clients left running, so that nothing is destroyed while pending.
        async def cancel_the_rest():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5) if tasks else None
        try:
            self.run(cancel_the_rest(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


# The script every page call goes through: it waits for the page's harness, calls one of its
# functions and hands back {ok: value} or {error: text}, so a JavaScript failure reads well here.
CALL = """
const [name, args] = [arguments[0], arguments[1]];
const resolve = arguments[arguments.length - 1];
// On a page without the test harness (the demo page), what the test needs from plain browser APIs.
const plain = {
	ready: async () => ({ active: !!(await navigator.serviceWorker.ready).active }),
	currentEndpoint: async () => {
		const subscription = await (await navigator.serviceWorker.ready).pushManager.getSubscription();
		return subscription ? subscription.endpoint : null;
	},
	unsubscribe: async () => {
		const subscription = await (await navigator.serviceWorker.ready).pushManager.getSubscription();
		return subscription ? subscription.unsubscribe() : false;
	},
};
const run = () => Promise.resolve()
	.then(() => (window.webPushTest || plain)[name](...args))
	.then((value) => resolve({ ok: value === undefined ? null : value }),
		(error) => resolve({ error: `${error}\\n${error && error.stack || ""}` }));
if (window.webPushTest || !document.querySelector('script[src="/test/harness.js"]')) {
	run();
} else {
	window.addEventListener("web-push-test-ready", run, { once: true });
}
"""

NOTIFICATIONS = """
const resolve = arguments[arguments.length - 1];
navigator.serviceWorker.ready
	.then((registration) => registration.getNotifications())
	.then((list) => resolve(list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }))),
		(error) => resolve({ error: String(error) }));
"""


CLOSE_NOTIFICATIONS = """
const resolve = arguments[arguments.length - 1];
navigator.serviceWorker.ready
	.then((registration) => registration.getNotifications())
	.then((list) => { list.forEach((n) => n.close()); resolve(list.length); }, (error) => resolve(String(error)));
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

    def notifications(self, count=1, timeout=10):
        """The notifications the service worker shows, once there are `count` of them (the worker
        tells the page before it shows one, so they may come a moment after the message)."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.client.execute_async_script(NOTIFICATIONS, sandbox=None, script_timeout=10000)
            if isinstance(shown, dict) and "error" in shown:
                raise AssertionError(f"getNotifications failed: {shown['error']}")
            if len(shown) >= count or time.monotonic() > deadline:
                return shown
            time.sleep(0.1)


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
                record_pid(self.firefox.process)
        self.version = self.firefox.capabilities().get("browserVersion")

    async def _start_servers(self):
        return await PushRelay().start(), await Trap().start(), await WebServer().start()

    def open_page(self, path="/test/", expect_subscription=False):
        """A fresh load of a page of the web client's origin (the test page by default, or the
        demo page); notifications are allowed for the origin (what a user's click on "Allow"
        does)."""
        client = self.firefox.client
        client.navigate(self.web.origin + path)
        client.set_permission({"name": "notifications"}, "granted")
        page = Page(self)
        state = page.call("ready")
        assert state["active"], f"service worker not active: {state}"
        # The relay's state is per Firefox profile: no subscription may be left from a previous
        # test (each test unsubscribes), so a stale one cannot make a test pass.
        if not expect_subscription:
            assert page.call("currentEndpoint") is None, "a push subscription was left over"
            # Notifications shown in an earlier test must not count in this one.
            client.execute_async_script(CLOSE_NOTIFICATIONS, sandbox=None, script_timeout=10000)
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
