"""What both pytest suites (tests/e2e and tests/browser) do around their Prosody instances: stop
them after each test, fail the test on any Lua error in Prosody's log, show the log's tail when
the test failed, and kill every process left when the session ends. A conftest imports the two
hooks by name and calls stop_and_check from its Prosody fixture. A Prosody that had to be killed
because it would not stop is a failure too (prosody.problems)."""

import sys

import pytest

from . import procs


def stop_and_check(started, node):
    problems = []
    for prosody in started:
        prosody.stop()
        problems += prosody.problems
        problems += prosody.lua_errors()
        if getattr(node, "rep_call_failed", False) or problems:
            sys.stderr.write(f"\n--- {prosody.log_path} (tail) ---\n{prosody.tail(60)}\n")
    assert not problems, "Prosody stopped badly or logged Lua errors:\n" + "\n".join(problems[:20])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call_failed = report.failed


def pytest_sessionfinish(session, exitstatus):
    procs.kill_all()
