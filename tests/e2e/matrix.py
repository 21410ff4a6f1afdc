"""Runs the end-to-end suite once per (Prosody version, storage), then the push scenarios (tests
marked `push`) once more per Prosody version with Prosody daemonized by `prosodyctl start`; a few
runs side by side. Prints each run's output under a title that names its Prosody version, storage,
start mode and whether lua-unbound is present, then a summary.

lua-unbound: Prosody prints a banner on stdout before any prosodyctl command's output when it is
missing (a fresh machine without recommended packages). setup.sh installs it; the SQLite runs hide
it again (E2E_LUA_UNBOUND=hidden in their environment), so every test that reads prosodyctl output
runs both ways on both versions. E2E_LUA_UNBOUND set by the caller applies to every run.

The runs are independent (own ports, data directories and PostgreSQL cluster) and mostly wait on
sockets and timers, so running them in parallel costs little CPU and saves minutes. On SIGINT or
SIGTERM every run is stopped (each pytest then kills its own Prosody and PostgreSQL)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from harness import procs  # noqa: E402
from harness.prosody import LUA_UNBOUND_STATES, START_MODES, installed_version  # noqa: E402

ORIGIN = {"0.12": "Debian bookworm", "13": "bookworm-backports, unpacked in .cache/prosody13"}
RUN_TIMEOUT = 900
# Every process of this matrix carries it in its environment (pytest, prosodyctl, a daemonized
# Prosody that left pytest's process tree): what still carries it when the runs are over is killed.
RUN_ID = uuid.uuid4().hex


def title(version):
    return f"Prosody {installed_version(version)} ({ORIGIN[version]})"


class Run:
    def __init__(self, version, storage, start, unbound, workdir, pytest_args):
        self.version, self.storage, self.start_mode, self.unbound = version, storage, start, unbound
        self.name = f"{version}-{storage}" + ("-daemon" if start == "daemon" else "")
        self.log = os.path.join(workdir, self.name + ".log")
        self.junit = os.path.join(workdir, self.name + ".xml")
        # On sql back ends only what touches storage; the rest does not depend on it. Daemonized,
        # the push scenarios. The harness's own checks everywhere.
        if start == "daemon":
            selection = ["-m", "push or harness"]
        else:
            selection = [] if storage == "internal" else ["-m", "storage or harness"]
        self.command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "--color=no",
            f"--junitxml={self.junit}", *selection, HERE, *pytest_args,
        ]
        self.process = None
        self.returncode = None

    def start(self):
        env = dict(os.environ, E2E_PROSODY=self.version, E2E_STORAGE=self.storage, E2E_START=self.start_mode,
                   E2E_LUA_UNBOUND=self.unbound, E2E_MATRIX_RUN=RUN_ID)
        self.started = time.monotonic()
        with open(self.log, "wb") as out:
            # Its own session, so that stopping it reaches pytest and nothing else.
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                            env=env, cwd=ROOT, start_new_session=True)

    def poll(self):
        if self.process is None or self.returncode is not None:
            return self.returncode
        if self.process.poll() is not None:
            self.returncode = self.process.returncode
        elif time.monotonic() - self.started > RUN_TIMEOUT:
            self.stop()
            self.returncode = -1
        return self.returncode

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # pytest's handler kills its Prosody and PostgreSQL, then exits
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def last_line(self):
        with open(self.log, errors="replace") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        return lines[-1] if lines else "(no output)"

    def counts(self):
        """passed/failed/skipped, one outcome per test (a failed call plus a teardown error is one)."""
        outcome = {}
        if os.path.exists(self.junit):
            for case in ET.parse(self.junit).getroot().iter("testcase"):
                key = (case.get("classname"), case.get("name"))
                if case.find("failure") is not None or case.find("error") is not None:
                    outcome[key] = "failed"
                elif case.find("skipped") is not None:
                    outcome.setdefault(key, "skipped")
                else:
                    outcome.setdefault(key, "passed")
        counts = {k: list(outcome.values()).count(k) for k in ("passed", "failed", "skipped")}
        if self.returncode != 0 and counts["failed"] == 0:
            counts["failed"] = 1  # it crashed, timed out or ran no test: that is a failure too
        return counts


def describe(run):
    start = "prosodyctl start" if run.start_mode == "daemon" else "prosody -F"
    unbound = "lua-unbound hidden" if run.unbound == "hidden" else "lua-unbound"
    return f"storage {run.storage}, {start}, {unbound}"


def main():
    versions = os.environ.get("E2E_VERSIONS", "0.12 13").split()
    storages = os.environ.get("E2E_STORAGES", "internal sqlite postgres").split()
    starts = os.environ.get("E2E_STARTS", "foreground daemon").split()
    forced_unbound = os.environ.get("E2E_LUA_UNBOUND")
    assert all(s in START_MODES for s in starts), f"E2E_STARTS: {starts}"
    assert forced_unbound in (None, *LUA_UNBOUND_STATES), f"E2E_LUA_UNBOUND: {forced_unbound}"
    parallel = max(1, int(os.environ.get("E2E_JOBS", "3")))
    workdir = tempfile.mkdtemp(prefix="e2e-matrix-")

    def unbound(storage):
        return forced_unbound or ("hidden" if storage == "sqlite" else "as-installed")

    runs = []
    if "foreground" in starts:
        runs += [Run(v, s, "foreground", unbound(s), workdir, sys.argv[1:]) for s in storages for v in versions]
    if "daemon" in starts:
        # Daemonized on one storage (internal unless narrowed away): what the fork changes is the
        # sender's threads, not storage.
        storage = "internal" if "internal" in storages else storages[0]
        runs += [Run(v, storage, "daemon", unbound(storage), workdir, sys.argv[1:]) for v in versions]
    started = time.monotonic()

    def kill_leftovers():
        """Whatever still runs with this matrix's mark once every pytest is done: a daemon that
        escaped its test's cleanup. Killed, and named."""
        left = procs.pids_with_env("E2E_MATRIX_RUN", RUN_ID)
        for pid in left:
            procs.kill_pid(pid)
        return left

    def on_signal(signum, _frame):
        for run in runs:
            run.stop()
        kill_leftovers()
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print(f"mod_web_push end-to-end: {len(runs)} runs (Prosody version x storage, and daemonized), "
          f"{parallel} at a time", flush=True)
    # The longest runs first (the whole suite, then the daemonized push scenarios), so the short sql
    # runs fill the gaps at the end.
    waiting = sorted(runs, key=lambda r: (r.storage != "internal", r.start_mode != "foreground"))
    active = []
    while waiting or active:
        while waiting and len(active) < parallel:
            run = waiting.pop(0)
            run.start()
            active.append(run)
        for run in list(active):
            if run.poll() is not None:
                active.remove(run)
                print(f"  finished: {title(run.version)}, {describe(run)}: {run.last_line()} "
                      f"[{time.monotonic() - run.started:.0f}s]", flush=True)
        time.sleep(0.2)

    leftovers = kill_leftovers()
    failed = bool(leftovers)
    order = sorted(runs, key=lambda r: (r.start_mode != "foreground", versions.index(r.version), storages.index(r.storage)))
    for run in order:
        print(f"\n================ {title(run.version)} -- {describe(run)} ================")
        with open(run.log, errors="replace") as f:
            print(f.read().rstrip())
        failed |= run.returncode != 0

    print(f"\n================ mod_web_push end-to-end summary ({time.monotonic() - started:.0f}s) ================")
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for run in order:
        c = run.counts()
        for k in totals:
            totals[k] += c[k]
        print(f"  {title(run.version):<66} {describe(run):<56} {c['passed']:3} passed, {c['failed']:3} failed, "
              f"{c['skipped']} skipped")
    print(f"e2e: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    if leftovers:
        print(f"e2e: FAILED: {len(leftovers)} process(es) outlived their run and were killed: {leftovers}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
