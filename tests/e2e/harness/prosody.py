"""Starts a real Prosody on loopback with a private config and data directory, and mod_web_push
loaded from the checkout's build/ folder.

Two Prosody versions are supported: the system's 0.12 (Debian bookworm) and 13 (bookworm-backports,
unpacked into .cache/prosody13 by setup.sh). Both run with lua5.4.

Two ways to start it, as admins do (E2E_START, or the `start_mode` argument):
  - "foreground": `prosody -F`, a child of the test (Debian's systemd unit does this);
  - "daemon": `prosodyctl start`, which runs `prosody -D`. Prosody 0.12 forks in mod_posix's
    server-started handler, after every module is loaded; 13 forks before loading modules. The
    serving process is found through the pid file, stopped with `prosodyctl stop`, and killed at
    exit whatever happens (procs.watch_daemons).

lua-unbound (E2E_LUA_UNBOUND, or the `lua_unbound` argument): "as-installed" leaves Lua's module
search alone; "hidden" makes `require "lunbound"` fail in every Prosody and prosodyctl process of
that instance (LUA_INIT_5_4), so they behave as on a machine without the package: Prosody falls
back to its old resolver and prints a banner about it on stdout before any command's output.
"""

import os
import re
import signal
import subprocess
import time

from . import procs
from .paths import ROOT, BUILD
from .net import free_port, wait_port

PROSODY13_ROOT = os.path.join(ROOT, ".cache", "prosody13", "root")

# Which Prosody each version name means: (main script, prosodyctl, version file).
INSTALLS = {
    "0.12": ("/usr/bin/prosody", "/usr/bin/prosodyctl", "/usr/lib/prosody/prosody.version"),
    "13": (
        os.path.join(PROSODY13_ROOT, "usr/bin/prosody"),
        os.path.join(PROSODY13_ROOT, "usr/bin/prosodyctl"),
        os.path.join(PROSODY13_ROOT, "usr/lib/prosody/prosody.version"),
    ),
}

HOST = "localhost"
PASSWORD = "e2e-password"

# The modules a web client's account uses: stream management for hibernation, MAM and offline
# storage for the two "no live session" paths, carbons because real web clients enable it.
BASE_MODULES = ["roster", "saslauth", "disco", "ping", "smacks", "mam", "offline", "carbons", "web_push"]

START_MODES = ("foreground", "daemon")
START_MODE = os.environ.get("E2E_START", "foreground")
assert START_MODE in START_MODES, f"E2E_START must be one of {START_MODES}"

LUA_UNBOUND_STATES = ("as-installed", "hidden")
LUA_UNBOUND = os.environ.get("E2E_LUA_UNBOUND", "as-installed")
assert LUA_UNBOUND in LUA_UNBOUND_STATES, f"E2E_LUA_UNBOUND must be one of {LUA_UNBOUND_STATES}"
# Run by lua5.4 before the script: a loader for lunbound that fails, which Prosody's dependency
# check (a pcall of require) takes for a missing package.
HIDE_LUA_UNBOUND = "package.preload['lunbound'] = function () error('lua-unbound hidden by the e2e harness') end"
# What Prosody prints when lua-unbound cannot be loaded.
UNBOUND_BANNER = "Prosody was unable to find lua-unbound"

# A VAPID public key as prosodyctl mod_web_push prints it: the base64url (no padding) of a 65-byte
# uncompressed P-256 point, which is 87 characters and starts with "B" (the 0x04 prefix).
KEY_PATTERN = re.compile(r"^B[A-Za-z0-9_-]{86}$")


def key_in_output(text):
    """The one VAPID public key in a command's output, recognised by its form wherever it is (a
    machine without lua-unbound prints a banner first). Fails unless there is exactly one."""
    keys = [line.strip() for line in text.splitlines() if KEY_PATTERN.match(line.strip())]
    assert len(keys) == 1, f"expected one VAPID public key in the output, found {len(keys)}:\n{text}"
    return keys[0]


def installed_version(version):
    """The exact version string of an installed Prosody, e.g. "0.12.3"."""
    with open(INSTALLS[version][2]) as f:
        return f.read().strip()


def lua_value(value):
    """Python value -> Lua literal, for the config file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(lua_value(v) for v in value) + " }"
    if isinstance(value, dict):
        return "{ " + "; ".join(f"{k} = {lua_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no Lua literal for {value!r}")


class Prosody:
    """One private Prosody: its directory holds config, data, log and pid file."""

    host = HOST

    def __init__(self, workdir, version, storage_config, options=None, modules=None, components=None,
                 start_mode=None, lua_unbound=None):
        self.workdir = workdir
        self.version = version
        self.options = dict(options or {})
        self.modules = list(modules or BASE_MODULES)
        # host -> component module, e.g. {"conference.localhost": "muc"} for group chats
        self.components = dict(components or {})
        self.storage_config = storage_config
        self.start_mode = start_mode or START_MODE
        assert self.start_mode in START_MODES, self.start_mode
        self.lua_unbound = lua_unbound or LUA_UNBOUND
        assert self.lua_unbound in LUA_UNBOUND_STATES, self.lua_unbound
        self.port = free_port()
        self.process = None  # foreground: the Popen of `prosody -F`
        self.pid = None  # the serving process, in either mode
        self.problems = []  # what stop() found wrong (a Prosody that would not stop)
        self.config_path = os.path.join(workdir, "prosody.cfg.lua")
        self.log_path = os.path.join(workdir, "prosody.log")
        self.data_path = os.path.join(workdir, "data")
        self.pid_path = os.path.join(workdir, "prosody.pid")
        for sub in ("data", "certs"):
            os.makedirs(os.path.join(workdir, sub), exist_ok=True)
        self.write_config()

    # -- configuration -------------------------------------------------------------------

    def global_options(self):
        options = {
            # Tests run as root on CI; a private instance owns everything it touches.
            "run_as_root": True,
            "pidfile": self.pid_path,
            # prosodyctl start/stop/reload are what the daemon mode runs; 13 refuses them on a
            # machine with an init system unless told otherwise, 0.12 warns.
            "prosodyctl_service_warnings": False,
            "data_path": self.data_path,
            "certificates": os.path.join(self.workdir, "certs"),
            "plugin_paths": [BUILD],
            "modules_enabled": self.modules,
            # No s2s: the tests must never reach out beyond loopback.
            "modules_disabled": ["s2s"],
            "c2s_ports": [self.port],
            "c2s_interfaces": ["127.0.0.1"],
            "c2s_direct_tls_ports": [],
            "legacy_ssl_ports": [],
            "c2s_require_encryption": False,
            "allow_unencrypted_plain_auth": True,
            "authentication": "internal_hashed",
            "default_archive_policy": True,
            "log": [{"levels": {"min": "debug"}, "to": "file", "filename": self.log_path}],
            "web_push_allow_insecure_endpoints": True,
            "web_push_vapid_subject": "mailto:admin@e2e.example",
        }
        options.update(self.storage_config)
        options.update(self.options)
        return options

    def write_config(self):
        lines = ["-- written by tests/e2e/harness/prosody.py"]
        for key, value in self.global_options().items():
            if value is None:
                continue
            lines.append(f"{key} = {lua_value(value)}")
        lines.append(f'VirtualHost "{HOST}"')
        for component, module in self.components.items():
            lines.append(f'Component "{component}" "{module}"')
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- processes -----------------------------------------------------------------------

    def env(self):
        env = dict(os.environ)
        if self.lua_unbound == "hidden":
            env["LUA_INIT_5_4"] = HIDE_LUA_UNBOUND
        return env

    def command(self, script, *args):
        # Explicitly lua5.4 (DESIGN.md): Prosody 13's scripts are unpacked, not installed.
        return ["lua5.4", INSTALLS[self.version][0 if script == "prosody" else 1], "--config", self.config_path, *args]

    def prosodyctl(self, *args, timeout=30):
        return subprocess.run(
            self.command("prosodyctl", *args),
            capture_output=True, text=True, timeout=timeout, cwd=self.workdir, env=self.env(),
        )

    def register(self, user, password=PASSWORD):
        result = self.prosodyctl("register", user, HOST, password)
        if result.returncode != 0:
            raise RuntimeError(f"prosodyctl register {user} failed: {result.stdout}{result.stderr}")
        return f"{user}@{HOST}"

    def shell(self, command, timeout=30):
        """A command on Prosody's admin console (needs "admin_shell" in the modules)."""
        result = self.prosodyctl("shell", command, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"prosodyctl shell failed: {result.stdout}{result.stderr}")
        return result.stdout

    def start(self, timeout=15, attempts=3):
        """Starts Prosody (in this instance's start mode) and waits until its c2s port accepts. A
        port taken in the meantime by another program (Prosody then logs an error but keeps running,
        and something else would answer on that port) means a new port and another try."""
        assert not self.alive(), "already running"
        for _ in range(attempts):
            self._spawn(timeout)
            if "Failed to open server port" not in self.log_text(since_start=True):
                self.check_version()
                return
            known = len(self.problems)
            self.stop()
            del self.problems[known:]  # stopping this half-started instance is no finding
            self.port = free_port()
            self.write_config()
        raise RuntimeError(f"Prosody {self.version} found no free port in {attempts} tries")

    def _spawn(self, timeout):
        self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        deadline = time.monotonic() + timeout
        if self.start_mode == "daemon":
            self._spawn_daemon(deadline)
        else:
            self._spawn_foreground()
        try:
            wait_port("127.0.0.1", self.port, deadline, alive=self.alive)
        except Exception:
            raise RuntimeError(f"Prosody {self.version} did not start:\n{self.tail()}")
        # Listening is logged before the port is opened; the error, if any, comes right after.
        wait_for_line = time.monotonic() + 5
        while "Activated service 'c2s'" not in self.log_text(since_start=True) and time.monotonic() < wait_for_line:
            time.sleep(0.02)

    def _spawn_foreground(self):
        out = open(os.path.join(self.workdir, "stdout.txt"), "ab")
        self.process = subprocess.Popen(
            self.command("prosody", "-F"), stdout=out, stderr=subprocess.STDOUT,
            cwd=self.workdir, start_new_session=True, env=self.env(),
        )
        out.close()
        procs.track(self.process)
        self.pid = self.process.pid

    def _spawn_daemon(self, deadline):
        """`prosodyctl start`: it runs `prosody -D` and returns once the pid file is locked (0.12:
        written after the fork, when every module is loaded; 13: after its readiness notice)."""
        procs.watch_daemons(self.config_path)
        # A pid file left by a killed instance must not be mistaken for the new one's.
        if os.path.exists(self.pid_path):
            os.remove(self.pid_path)
        # Output to a file, not a pipe: a daemon that failed to detach would hold a pipe open.
        with open(os.path.join(self.workdir, "stdout.txt"), "ab") as out:
            out.write(b"$ prosodyctl start\n")
            out.flush()
            try:
                result = subprocess.run(
                    self.command("prosodyctl", "start"), stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.workdir, env=self.env(), start_new_session=True,
                    timeout=max(1.0, deadline - time.monotonic()) + 10,
                )
            except subprocess.TimeoutExpired:
                procs.kill_daemons(self.config_path)
                raise RuntimeError(f"prosodyctl start did not return:\n{self.tail()}")
        if result.returncode != 0:
            procs.kill_daemons(self.config_path)
            raise RuntimeError(f"prosodyctl start failed ({result.returncode}):\n{self.tail()}")
        self.pid = self._pid_from_file(deadline + 5)

    def _pid_from_file(self, deadline):
        while time.monotonic() < deadline:
            try:
                with open(self.pid_path) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                text = ""
            if text.isdigit() and procs.pid_alive(int(text)):
                return int(text)
            time.sleep(0.05)
        procs.kill_daemons(self.config_path)
        raise RuntimeError(f"Prosody {self.version} wrote no pid file of a live process:\n{self.tail()}")

    def check_version(self):
        """The log must name the version asked for, so a launcher mistake cannot pass silently."""
        expected = installed_version(self.version)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            match = re.search(r"Prosody version (\S+)", self.log_text(since_start=True))
            if match:
                assert match.group(1) == expected, f"started {match.group(1)}, wanted {expected}"
                return
            time.sleep(0.05)
        raise AssertionError("Prosody's log does not name its version")

    def stop(self, timeout=10):
        """A clean shutdown: SIGTERM to `prosody -F`, or `prosodyctl stop`. A Prosody still running
        after `timeout` seconds is killed, and that is recorded in self.problems (the suite's
        teardown fails the test with it): shutdown must finish well within what prosodyctl waits."""
        if self.start_mode == "daemon":
            return self._stop_daemon(timeout)
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.problems.append(f"Prosody {self.version} still ran {timeout}s after SIGTERM; killed")
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        procs.untrack(self.process)
        self.process = None
        self.pid = None

    def _stop_daemon(self, timeout):
        if self.pid is None:
            return
        if procs.pid_alive(self.pid):
            result = self.prosodyctl("stop", timeout=timeout + 5)
            if result.returncode != 0:
                self.problems.append(f"prosodyctl stop answered {result.returncode}: {result.stdout}{result.stderr}")
            deadline = time.monotonic() + timeout
            while procs.pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if procs.pid_alive(self.pid):
                self.problems.append(f"Prosody {self.version} (pid {self.pid}) still ran {timeout}s after prosodyctl stop; killed")
                procs.kill_pid(self.pid)
        # Nothing else may run on this config either (a second daemon would be a harness bug).
        leftover = procs.pids_with_config(self.config_path)
        if leftover:
            self.problems.append(f"processes left running with this config after stop: {leftover}")
            procs.kill_daemons(self.config_path)
        self.pid = None

    def kill(self):
        """A crash, not a shutdown: nothing gets a chance to flush."""
        if self.start_mode == "daemon":
            if self.pid is not None:
                procs.kill_pid(self.pid)
            self.pid = None
            return
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        if self.process is not None:
            procs.untrack(self.process)
        self.process = None
        self.pid = None

    def restart(self):
        self.stop()
        self.start()

    def alive(self):
        if self.start_mode == "daemon":
            return self.pid is not None and procs.pid_alive(self.pid)
        return self.process is not None and self.process.poll() is None

    def reload_config(self, how="prosodyctl", timeout=10):
        """A configuration reload, as admins trigger it: `prosodyctl reload` (SIGHUP to the pid of
        the pid file) or a SIGHUP sent straight to the serving process. Returns once Prosody logged
        that it reloaded."""
        assert self.alive(), "not running"
        before = self.log_text().count("Reloading configuration file")
        if how == "prosodyctl":
            result = self.prosodyctl("reload")
            assert result.returncode == 0, f"prosodyctl reload: {result.stdout}{result.stderr}"
        elif how == "SIGHUP":
            os.kill(self.pid, signal.SIGHUP)
        else:
            raise ValueError(how)
        deadline = time.monotonic() + timeout
        while self.log_text().count("Reloading configuration file") <= before:
            if time.monotonic() > deadline:
                raise AssertionError(f"Prosody did not log a configuration reload after {how}")
            time.sleep(0.05)

    # -- log -----------------------------------------------------------------------------

    def log_text(self, since_start=False):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read()
        except FileNotFoundError:
            return ""

    def tail(self, lines=40):
        text = self.log_text()
        stdout = os.path.join(self.workdir, "stdout.txt")
        if os.path.exists(stdout):
            with open(stdout, errors="replace") as f:
                text += "\n[stdout]\n" + f.read()
        return "\n".join(text.splitlines()[-lines:])

    def lua_errors(self):
        """Lua runtime errors and tracebacks in the log: a healthy run has none. (The module's own
        error-level lines about a failed push are allowed; a Lua error names a .lua file.)"""
        bad = []
        for line in self.log_text().splitlines():
            lower = line.lower()
            if "traceback" in lower or (("\terror\t" in line or "\twarn\t" in line) and re.search(r"\.lua:\d+:", line)):
                bad.append(line)
        return bad

    def module_log_lines(self):
        """Lines logged by mod_web_push itself (source "<host>:web_push", or the module's name)."""
        return [line for line in self.log_text().splitlines() if "web_push" in line.split("\t", 1)[0]]

    def leaked(self, secrets):
        """Which of `secrets` (message bodies, subscription keys, tokens) appear in any line the
        module logged. DESIGN.md: none may."""
        lines = self.module_log_lines()
        return [s for s in secrets if s and any(s in line for line in lines)]
