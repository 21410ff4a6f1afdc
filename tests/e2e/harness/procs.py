"""Every child process the harness starts is tracked here and killed at exit, whatever happened,
so a failing or interrupted test never leaves a Prosody or PostgreSQL behind.

A daemonized Prosody (`prosodyctl start`) is no child of ours: it forks, leaves its parent and
starts a session of its own. It is found by its environment instead (prosodyctl hands the config
file to it as PROSODY_CONFIG), so even a daemon whose pid file was never written is killed."""

import atexit
import os
import signal
import time

_live = {}
_cleanups = []
_daemon_configs = set()


def track(process):
    _live[process.pid] = process


def untrack(process):
    _live.pop(process.pid, None)


def watch_daemons(config_path):
    """Every process started with this Prosody config file is killed at exit."""
    _daemon_configs.add(config_path)


def pid_state(pid):
    """The process's state letter from /proc (R, S, Z...), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ")".
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid):
    """True while the process runs; a zombie (exited, not yet reaped by whoever adopted it) is gone."""
    state = pid_state(pid)
    return state is not None and state not in ("Z", "X")


def pids_with_config(config_path):
    """Live processes whose environment says PROSODY_CONFIG=config_path (daemonized Prosody)."""
    return pids_with_env("PROSODY_CONFIG", config_path)


def pids_with_env(name, value):
    """Live processes (other than this one) whose environment holds name=value."""
    return pids_where("environ", f"{name}={value}")


def pids_where(part, item):
    """Live processes (other than this one) whose /proc/<pid>/<part> (a NUL-separated list such as
    environ or cmdline) holds `item` as one of its entries."""
    wanted = os.fsencode(item)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/{part}", "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:
            continue
        if wanted in entries and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def kill_pid(pid, timeout=5):
    """SIGKILL to one process that is not our child; waits until it is gone (or a zombie)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def kill_daemons(config_path):
    for pid in pids_with_config(config_path):
        kill_pid(pid)


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
    for config_path in list(_daemon_configs):
        try:
            kill_daemons(config_path)
        except Exception:
            pass
        _daemon_configs.discard(config_path)
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
