"""Starts a real Prosody on loopback with a private config and data directory, and mod_web_push
loaded from the checkout's build/ folder.

Two Prosody versions are supported: the system's 0.12 (Debian bookworm) and 13 (bookworm-backports,
unpacked into .cache/prosody13 by setup.sh). Both run with lua5.4.
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

    def __init__(self, workdir, version, storage_config, options=None, modules=None, components=None):
        self.workdir = workdir
        self.version = version
        self.options = dict(options or {})
        self.modules = list(modules or BASE_MODULES)
        # host -> component module, e.g. {"conference.localhost": "muc"} for group chats
        self.components = dict(components or {})
        self.storage_config = storage_config
        self.port = free_port()
        self.process = None
        self.config_path = os.path.join(workdir, "prosody.cfg.lua")
        self.log_path = os.path.join(workdir, "prosody.log")
        self.data_path = os.path.join(workdir, "data")
        for sub in ("data", "certs"):
            os.makedirs(os.path.join(workdir, sub), exist_ok=True)
        self.write_config()

    # -- configuration -------------------------------------------------------------------

    def global_options(self):
        options = {
            # Tests run as root on CI; a private instance owns everything it touches.
            "run_as_root": True,
            "pidfile": os.path.join(self.workdir, "prosody.pid"),
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

    def command(self, script, *args):
        # Explicitly lua5.4 (DESIGN.md): Prosody 13's scripts are unpacked, not installed.
        return ["lua5.4", INSTALLS[self.version][0 if script == "prosody" else 1], "--config", self.config_path, *args]

    def prosodyctl(self, *args, timeout=30):
        return subprocess.run(
            self.command("prosodyctl", *args),
            capture_output=True, text=True, timeout=timeout, cwd=self.workdir,
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
        """Starts Prosody and waits until its c2s port accepts. A port taken in the meantime by
        another program (Prosody then logs an error but keeps running, and something else would
        answer on that port) means a new port and another try."""
        assert self.process is None, "already running"
        for _ in range(attempts):
            self._spawn(timeout)
            if "Failed to open server port" not in self.log_text(since_start=True):
                self.check_version()
                return
            self.stop()
            self.port = free_port()
            self.write_config()
        raise RuntimeError(f"Prosody {self.version} found no free port in {attempts} tries")

    def _spawn(self, timeout):
        self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        out = open(os.path.join(self.workdir, "stdout.txt"), "ab")
        self.process = subprocess.Popen(
            self.command("prosody", "-F"), stdout=out, stderr=subprocess.STDOUT,
            cwd=self.workdir, start_new_session=True,
        )
        out.close()
        procs.track(self.process)
        deadline = time.monotonic() + timeout
        try:
            wait_port("127.0.0.1", self.port, deadline, alive=lambda: self.process.poll() is None)
        except Exception:
            raise RuntimeError(f"Prosody {self.version} did not start:\n{self.tail()}")
        # Listening is logged before the port is opened; the error, if any, comes right after.
        wait_for_line = time.monotonic() + 5
        while "Activated service 'c2s'" not in self.log_text(since_start=True) and time.monotonic() < wait_for_line:
            time.sleep(0.02)

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
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        procs.untrack(self.process)
        self.process = None

    def kill(self):
        """A crash, not a shutdown: nothing gets a chance to flush."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        if self.process is not None:
            procs.untrack(self.process)
        self.process = None

    def restart(self):
        self.stop()
        self.start()

    def alive(self):
        return self.process is not None and self.process.poll() is None

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
