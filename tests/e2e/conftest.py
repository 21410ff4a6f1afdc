"""Fixtures of the end-to-end suite. Which Prosody and which storage a run uses comes from the
environment (tests/e2e/run sets them): E2E_PROSODY = 0.12 | 13, E2E_STORAGE = internal | sqlite |
postgres, E2E_START = foreground | daemon, E2E_LUA_UNBOUND = as-installed | hidden."""

import inspect
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.pytest_hooks import pytest_runtest_makereport, pytest_sessionfinish, stop_and_check  # noqa: E402,F401
from harness import aio  # noqa: E402
from harness.paths import MODULE_DIR  # noqa: E402
from harness.prosody import Prosody, installed_version  # noqa: E402
from harness.pushservice import PushService  # noqa: E402
from harness.storage import Backend, PostgresCluster, STORAGES  # noqa: E402

VERSION = os.environ.get("E2E_PROSODY", "0.12")
STORAGE = os.environ.get("E2E_STORAGE", "internal")
# The longest any single test may take; every wait inside has its own, shorter, timeout.
TEST_TIMEOUT = float(os.environ.get("E2E_TEST_TIMEOUT", "90"))

assert STORAGE in STORAGES, f"E2E_STORAGE must be one of {STORAGES}"


def pytest_report_header(config):
    return f"mod_web_push e2e: Prosody {installed_version(VERSION)} ({VERSION}), storage {STORAGE}, module {MODULE_DIR}"


def pytest_configure(config):
    config.addinivalue_line("markers", "storage: exercises what the module keeps in storage (run for every back end)")
    config.addinivalue_line("markers", "hardening: push service failures and floods")
    config.addinivalue_line("markers", "push: a push scenario (run again with Prosody daemonized by prosodyctl start)")
    config.addinivalue_line("markers", "harness: checks of the harness itself (run in every run of the matrix)")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Runs `async def` tests in a fresh event loop, bounded by TEST_TIMEOUT."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    aio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}), TEST_TIMEOUT)
    return True


@pytest.fixture(scope="session")
def pg_cluster():
    if STORAGE != "postgres":
        yield None
        return
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def push_service():
    service = PushService()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def make_prosody(tmp_path, pg_cluster, request):
    """make_prosody(options={...}, users=("alice", "bob")) -> a started Prosody with those
    accounts. Stopped after the test; its log must show no Lua error."""
    started = []

    def make(options=None, users=("alice", "bob"), modules=None, start=True, components=None):
        workdir = tmp_path / f"prosody{len(started)}"
        workdir.mkdir()
        backend = Backend(STORAGE, str(workdir), pg_cluster)
        prosody = Prosody(str(workdir), VERSION, backend.config, options, modules, components)
        prosody.backend = backend
        started.append(prosody)
        for user in users:
            prosody.register(user)
        if start:
            prosody.start()
        return prosody

    try:
        yield make
    finally:
        stop_and_check(started, request.node)



@pytest.fixture
def world(make_prosody, push_service):
    """world(options={...}) -> a World: a started Prosody with alice and bob, and the push service."""
    from harness.scenario import World

    made = []

    def make(options=None, users=("alice", "bob"), **kwargs):
        made.append(World(make_prosody(options, users, **kwargs), push_service))
        return made[-1]

    yield make
    for w in made:
        w.verify_every_request()
