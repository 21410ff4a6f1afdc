"""The harness itself, without mod_web_push: the chosen Prosody starts on loopback with the chosen
storage and start mode, and slixmpp logs in; a daemonized Prosody is the process its pid file
names and is gone after stop; lua-unbound is present or absent as the run says. When these fail,
the module tests after them say nothing."""

import os
import subprocess

import pytest

from harness import procs
from harness.prosody import BASE_MODULES, UNBOUND_BANNER
from harness.storage import wait_until
from harness.xmpp import connect

pytestmark = pytest.mark.harness


def pid_in_file(prosody):
    try:
        with open(prosody.pid_path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def child_pids():
    found = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                found |= {int(pid) for pid in f.read().split()}
        except OSError:
            pass
    return found


async def test_prosody_starts_and_slixmpp_logs_in(make_prosody):
    prosody = make_prosody(modules=[m for m in BASE_MODULES if m != "web_push"])
    alice = await connect(prosody, "alice", smacks=True)
    bob = await connect(prosody, "bob")
    alice.message(bob.boundjid.bare, "hello")
    message = await bob.next_message()
    assert message["body"] == "hello"
    assert await alice.ping() < 1.0
    # The accounts live in the storage asked for, not silently in files.
    stores = prosody.backend.sql_stores()
    if stores is None:
        assert "localhost/accounts/alice.dat" in prosody.backend.files(prosody.data_path)
    else:
        assert ("localhost", "alice", "accounts") in stores, stores
    await alice.close()
    await bob.close()


async def test_start_mode_is_what_the_run_says_and_stop_leaves_nothing(make_prosody):
    prosody = make_prosody(modules=[m for m in BASE_MODULES if m != "web_push"])
    # The pid file may come a moment after the port opens (`prosody -F`).
    assert wait_until(lambda: pid_in_file(prosody) == prosody.pid, 5), \
        f"the pid file names {pid_in_file(prosody)}, not the serving process {prosody.pid}"
    if prosody.start_mode == "daemon":
        # prosodyctl start ran `prosody -D`: the server detached (another session, not our child)
        # and says so in its log.
        assert prosody.process is None
        assert os.getsid(prosody.pid) != os.getsid(0), "the daemon stayed in the test's session"
        assert prosody.pid not in child_pids(), "the daemon is a child of the test"
        assert "Successfully daemonized to PID" in prosody.log_text()
    else:
        assert prosody.pid == prosody.process.pid
        assert "Successfully daemonized" not in prosody.log_text()
    alice = await connect(prosody, "alice")
    assert await alice.ping() < 1.0
    await alice.close()
    pid = prosody.pid
    prosody.stop()
    assert not procs.pid_alive(pid), "Prosody outlived stop()"
    assert procs.pids_with_config(prosody.config_path) == []
    assert prosody.problems == [], prosody.problems
    # And it starts again the same way.
    prosody.start()
    assert prosody.alive()


def test_lua_unbound_is_present_or_absent_as_the_run_says(make_prosody):
    """The runs that say lua-unbound is hidden really run Prosody without it (it prints its banner),
    and the others really have it (setup.sh installs it): so `make test` covers both."""
    prosody = make_prosody(users=(), start=False)
    result = prosody.prosodyctl("about")
    banner = UNBOUND_BANNER in result.stdout
    if prosody.lua_unbound == "hidden":
        assert banner, f"lua-unbound was to be hidden, but Prosody found it:\n{result.stdout}"
    else:
        loadable = subprocess.run(["lua5.4", "-e", 'require "lunbound"'], capture_output=True).returncode == 0
        assert loadable, "lua-unbound is not installed (tests/e2e/setup.sh installs it)"
        assert not banner, f"lua-unbound is installed, yet Prosody printed its banner:\n{result.stdout}"
