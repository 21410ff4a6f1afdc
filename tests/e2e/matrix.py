"""Runs the end-to-end suite once per (Prosody version, storage), a few runs side by side, and
prints each run's output under a title that names its Prosody version, then a summary.

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
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from harness.prosody import installed_version  # noqa: E402

ORIGIN = {"0.12": "Debian bookworm", "13": "bookworm-backports, unpacked in .cache/prosody13"}
RUN_TIMEOUT = 900


def title(version):
    return f"Prosody {installed_version(version)} ({ORIGIN[version]})"


class Run:
    def __init__(self, version, storage, workdir, pytest_args):
        self.version, self.storage = version, storage
        self.name = f"{version}-{storage}"
        self.log = os.path.join(workdir, self.name + ".log")
        self.junit = os.path.join(workdir, self.name + ".xml")
        # On sql back ends only what touches storage; the rest does not depend on it.
        selection = [] if storage == "internal" else ["-m", "storage"]
        self.command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "--color=no",
            f"--junitxml={self.junit}", *selection, HERE, *pytest_args,
        ]
        self.process = None
        self.returncode = None

    def start(self):
        env = dict(os.environ, E2E_PROSODY=self.version, E2E_STORAGE=self.storage)
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


def main():
    versions = os.environ.get("E2E_VERSIONS", "0.12 13").split()
    storages = os.environ.get("E2E_STORAGES", "internal sqlite postgres").split()
    parallel = max(1, int(os.environ.get("E2E_JOBS", "3")))
    workdir = tempfile.mkdtemp(prefix="e2e-matrix-")
    runs = [Run(v, s, workdir, sys.argv[1:]) for s in storages for v in versions]
    started = time.monotonic()

    def on_signal(signum, _frame):
        for run in runs:
            run.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print(f"mod_web_push end-to-end: {len(runs)} runs (Prosody version x storage), {parallel} at a time", flush=True)
    waiting = list(runs)
    active = []
    while waiting or active:
        while waiting and len(active) < parallel:
            run = waiting.pop(0)
            run.start()
            active.append(run)
        for run in list(active):
            if run.poll() is not None:
                active.remove(run)
                print(f"  finished: {title(run.version)}, storage {run.storage}: {run.last_line()} "
                      f"[{time.monotonic() - run.started:.0f}s]", flush=True)
        time.sleep(0.2)

    failed = False
    for run in sorted(runs, key=lambda r: (versions.index(r.version), storages.index(r.storage))):
        print(f"\n================ {title(run.version)} -- storage: {run.storage} ================")
        with open(run.log, errors="replace") as f:
            print(f.read().rstrip())
        failed |= run.returncode != 0

    print(f"\n================ mod_web_push end-to-end summary ({time.monotonic() - started:.0f}s) ================")
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for run in sorted(runs, key=lambda r: (versions.index(r.version), storages.index(r.storage))):
        c = run.counts()
        for k in totals:
            totals[k] += c[k]
        print(f"  {title(run.version):<70} {run.storage:<9} {c['passed']:3} passed, {c['failed']:3} failed, {c['skipped']} skipped")
    print(f"e2e: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
