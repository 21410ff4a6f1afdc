"""Every child process the harness starts is tracked here and killed at exit, whatever happened,
so a failing or interrupted test never leaves a Prosody or PostgreSQL behind."""

import atexit
import os
import signal

_live = {}
_cleanups = []


def track(process):
    _live[process.pid] = process


def untrack(process):
    _live.pop(process.pid, None)


def on_exit(function):
    """Registers a cleanup (e.g. `pg_ctl stop`) that runs at exit if not run before."""
    _cleanups.append(function)
    return function


def forget(function):
    if function in _cleanups:
        _cleanups.remove(function)


def kill_all():
    for process in list(_live.values()):
        if process.poll() is None:
            try:
                # Each child runs in its own session: kill its whole group.
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                process.wait(5)
            except Exception:
                pass
        untrack(process)
    while _cleanups:
        function = _cleanups.pop()
        try:
            function()
        except Exception:
            pass


atexit.register(kill_all)


def _on_signal(signum, frame):
    # Stop now: an exception would only fail the current test and let the run go on.
    kill_all()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
