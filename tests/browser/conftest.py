"""Fixtures of the browser test: one Firefox for the whole run (session.py), and private Prosody
instances started with the end-to-end suite's launcher (tests/e2e/harness), plus mod_websocket
for the page."""

import os
import shutil
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
# The end-to-end suite's launcher and XMPP client, imported as its package `harness`.
sys.path.append(os.path.join(ROOT, "tests", "e2e"))

from harness.pytest_hooks import pytest_runtest_makereport, pytest_sessionfinish, stop_and_check  # noqa: E402,F401
from harness.net import free_port, wait_port  # noqa: E402
from harness.prosody import BASE_MODULES, Prosody, installed_version  # noqa: E402

from firefox import firefox_version  # noqa: E402
from session import REPORT, VERSIONS, Browser, Loop, record_pid  # noqa: E402



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
    """make_prosody(version, options, modules) -> a started Prosody with juliet and romeo,
    mod_websocket on an http port of 127.0.0.1 (`prosody.websocket_url`, `prosody.origin` the
    http://localhost:PORT origin of that port), and the module from build/; `modules` are loaded
    besides."""
    started = []

    def make(version, options=None, modules=()):
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
        prosody = Prosody(str(workdir), version, {"storage": "internal"}, settings,
                          BASE_MODULES + ["websocket", *modules])
        started.append(prosody)
        for user in ("juliet", "romeo"):
            prosody.register(user)
        prosody.start()
        record_pid(prosody.process)
        wait_port("127.0.0.1", http_port, time.monotonic() + 10, alive=prosody.alive)
        prosody.websocket_url = f"ws://127.0.0.1:{http_port}/xmpp-websocket"
        prosody.origin = f"http://localhost:{http_port}"
        return prosody

    try:
        yield make
    finally:
        stop_and_check(started, request.node)



@pytest.fixture
def make_converse_prosody(make_prosody, tmp_path):
    """make_converse_prosody(version, options) -> a Prosody that serves, on one origin
    (`prosody.origin`), what the README's "With Converse.js" tells an admin to set up:
    examples/converse.html at /, Converse.js (the pinned npm package's dist/) at /converse/ through
    mod_http_files, mod_websocket, and mod_web_push with its plugin and service worker at
    /web_push/. Also /blank.html, a page of that origin on which the test reads the browser's
    state without Converse running."""

    def make(version, options=None):
        site = tmp_path / f"site-{version}"
        site.mkdir()
        shutil.copyfile(os.path.join(ROOT, "examples", "converse.html"), site / "index.html")
        (site / "blank.html").write_text('<!DOCTYPE html><meta charset="utf-8"><title>blank</title>\n')
        dist = os.path.join(HERE, "node_modules", "converse.js", "dist")
        assert os.path.isfile(os.path.join(dist, "converse.min.js")), f"{dist} is missing (tests/browser/setup.sh installs it)"
        os.symlink(dist, site / "converse")
        settings = {"http_files_dir": str(site), "http_paths": {"files": "/"}}
        settings.update(options or {})
        return make_prosody(version, settings, modules=["http_files"])

    return make


@pytest.fixture(scope="session")
def second_browser(loop, tmp_path_factory):
    """Another Firefox profile with its own push relay: a second browser of the same user."""
    browser = Browser(loop, str(tmp_path_factory.mktemp("firefox-2")))
    try:
        yield browser
    finally:
        browser.close()
        assert not browser.trap.attempts, f"Firefox tried to reach beyond loopback: {browser.trap.attempts}"
