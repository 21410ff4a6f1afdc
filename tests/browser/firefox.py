"""Debian's Firefox ESR, headless, with a fresh profile, driven through Marionette
(marionette-driver, Mozilla's own client).

The profile points Firefox's push service at the test's relay, and keeps Firefox on loopback:
every background service that would call home is switched off, and as a last guard every
non-loopback HTTP(S) or WebSocket request goes to a "proxy" on 127.0.0.1 that only counts and
refuses (loopback addresses bypass proxies, so the test's own servers are reached directly)."""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time

from marionette_driver.marionette import Marionette

from harness import procs

FIREFOX = os.environ.get("FIREFOX", "firefox-esr")


def firefox_version():
    """E.g. "Mozilla Firefox 153.7.0esr"."""
    result = subprocess.run([FIREFOX, "--version"], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, MOZ_HEADLESS="1"))
    return result.stdout.strip() or result.stderr.strip()


def preferences(relay_url, marionette_port, trap_port):
    return {
        # Push through the test's relay (ws:// is allowed only with the testing pref), and no
        # notification permission prompt (headless: nobody could click it).
        "dom.push.enabled": True,
        "dom.push.connection.enabled": True,
        "dom.push.serverURL": relay_url,
        "dom.push.testing.allowInsecureServerURL": True,
        "dom.push.testing.ignorePermission": True,
        "dom.push.loglevel": "Debug",
        "dom.serviceWorkers.enabled": True,
        "dom.serviceWorkers.testing.enabled": True,
        # Service workers stay alive while the test waits on them.
        "dom.serviceWorkers.idle_timeout": 60000,
        "dom.serviceWorkers.idle_extended_timeout": 60000,
        # Firefox's own notification windows instead of the desktop's notification daemon, which
        # a headless machine lacks (showNotification fails with NS_ERROR_FAILURE without this);
        # so the test can also read back what the service worker showed.
        "alerts.useSystemBackend": False,
        "marionette.port": marionette_port,
        "remote.prefs.recommended": True,
        # What Firefox prints about push and service workers goes to its log file.
        "devtools.console.stdout.chrome": True,
        "devtools.console.stdout.content": True,
        "browser.dom.window.dump.enabled": True,
        # A quiet start: no first-run pages, no session restore, no default-browser question.
        "browser.startup.page": 0,
        "browser.startup.homepage": "about:blank",
        "browser.startup.homepage_override.mstone": "ignore",
        "startup.homepage_welcome_url": "about:blank",
        "browser.shell.checkDefaultBrowser": False,
        "browser.sessionstore.resume_from_crash": False,
        "browser.aboutwelcome.enabled": False,
        "browser.newtabpage.enabled": False,
        "browser.tabs.warnOnClose": False,
        "datareporting.policy.firstRunURL": "",
        "toolkit.startup.max_resumed_crashes": -1,
        # Nothing calls home: updates, telemetry, studies, remote settings, safe browsing...
        "app.update.enabled": False,
        "app.update.auto": False,
        "app.normandy.enabled": False,
        "app.normandy.api_url": "",
        "app.shield.optoutstudies.enabled": False,
        "datareporting.healthreport.uploadEnabled": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.enabled": False,
        "toolkit.telemetry.unified": False,
        "toolkit.telemetry.archive.enabled": False,
        "toolkit.telemetry.server": "",
        "telemetry.fog.test.localhost_port": -1,
        "browser.ping-centre.telemetry": False,
        # With MOZ_DISABLE_NONLOCAL_CONNECTIONS set, this exact value makes remote settings skip
        # every fetch (Firefox ignores the pref otherwise).
        "services.settings.server": "data:,#remote-settings-dummy/v1",
        "security.remote_settings.intermediates.enabled": False,
        "security.remote_settings.crlite_filters.enabled": False,
        "security.OCSP.enabled": 0,
        "browser.safebrowsing.malware.enabled": False,
        "browser.safebrowsing.phishing.enabled": False,
        "browser.safebrowsing.downloads.enabled": False,
        "browser.safebrowsing.downloads.remote.enabled": False,
        "browser.safebrowsing.blockedURIs.enabled": False,
        "browser.safebrowsing.update.enabled": False,
        "browser.safebrowsing.provider.google4.updateURL": "",
        "browser.safebrowsing.provider.google5.updateURL": "",
        "browser.safebrowsing.provider.mozilla.updateURL": "",
        "extensions.update.enabled": False,
        "extensions.getAddons.cache.enabled": False,
        "extensions.blocklist.enabled": False,
        "extensions.systemAddon.update.enabled": False,
        "browser.search.update": False,
        "browser.region.network.url": "",
        "browser.region.update.enabled": False,
        "browser.topsites.contile.enabled": False,
        "browser.newtabpage.activity-stream.feeds.telemetry": False,
        "browser.newtabpage.activity-stream.telemetry": False,
        "browser.newtabpage.activity-stream.feeds.section.topstories": False,
        "browser.newtabpage.activity-stream.feeds.snippets": False,
        "browser.discovery.enabled": False,
        "browser.translations.enable": False,
        "browser.ml.enable": False,
        "browser.uitour.enabled": False,
        "geo.provider.network.url": "",
        "identity.fxaccounts.enabled": False,
        # Media plugins (OpenH264, Widevine) would be downloaded about 20 s after start.
        "media.gmp-manager.url": "",
        "media.gmp-manager.updateEnabled": False,
        "media.gmp-manager.chromium-update-url": "",
        "media.gmp-gmpopenh264.enabled": False,
        "media.gmp-widevinecdm.enabled": False,
        "media.gmp-widevinecdm.visible": False,
        "media.gmp-widevinecdm.allow-chromium-update": False,
        "media.eme.enabled": False,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        "captivedetect.canonicalURL": "",
        "network.trr.mode": 5,
        "network.dns.disablePrefetch": True,
        "network.prefetch-next": False,
        "network.predictor.enabled": False,
        "network.http.speculative-parallel-limit": 0,
        "network.sntp.pools": "",
        "general.useragent.updates.enabled": False,
        # The last guard: anything not on loopback goes to the trap (which refuses it).
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": trap_port,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": trap_port,
        "network.proxy.share_proxy_settings": True,
        "network.proxy.no_proxies_on": "localhost, 127.0.0.1, [::1]",
        "network.proxy.allow_hijacking_localhost": False,
    }


def pref_line(name, value):
    if isinstance(value, bool):
        literal = "true" if value else "false"
    elif isinstance(value, int):
        literal = str(value)
    else:
        literal = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f'user_pref("{name}", {literal});'


class Trap:
    """A 'proxy' on loopback that accepts, records the request line (e.g. `CONNECT host:443`) and
    closes: what Firefox tried to reach beyond loopback, reached nowhere."""

    def __init__(self):
        self.attempts = []
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader, writer):
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            self.attempts.append(line.decode(errors="replace").strip()[:200])
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except Exception:
            pass
        finally:
            writer.close()

    async def close(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class Firefox:
    def __init__(self, workdir, relay_url, trap_port, marionette_port):
        self.workdir = workdir
        self.profile = tempfile.mkdtemp(prefix="profile-", dir=workdir)
        self.log_path = os.path.join(workdir, "firefox.log")
        self.marionette_port = marionette_port
        with open(os.path.join(self.profile, "user.js"), "w") as f:
            for name, value in preferences(relay_url, marionette_port, trap_port).items():
                f.write(pref_line(name, value) + "\n")
        self.process = None
        self.client = None

    def start(self, timeout=60):
        log = open(self.log_path, "ab")
        # MOZ_DISABLE_NONLOCAL_CONNECTIONS: Firefox's own test guard, it refuses connections beyond
        # loopback.
        env = dict(os.environ, MOZ_HEADLESS="1", MOZ_CRASHREPORTER_DISABLE="1", MOZ_DISABLE_NONLOCAL_CONNECTIONS="1",
                   MOZ_DISABLE_AUTO_SAFE_MODE="1", HOME=self.workdir)
        self.process = subprocess.Popen(
            [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", self.profile, "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Firefox exited ({self.process.returncode}) at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Firefox's Marionette did not answer within {timeout} s:\n{self.log_tail()}")
            try:
                client = Marionette(host="127.0.0.1", port=self.marionette_port, socket_timeout=30,
                                    startup_timeout=5)
                client.start_session(timeout=5)
                self.client = client
                break
            except Exception:
                time.sleep(0.2)
        self.client.timeout.script = 30
        self.client.timeout.page_load = 30
        return self

    def capabilities(self):
        return self.client.session_capabilities

    def stop(self):
        if self.client is not None:
            try:
                self.client.delete_session()
            except Exception:
                pass
            self.client = None
        if self.process is not None and self.process.poll() is None:
            # Firefox has many child processes, all in its own process group: end them together.
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
        self.process = None
        # Whatever still runs with this profile (a Firefox that restarted itself, in a session of
        # its own) is ours too.
        for pid in self.profile_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def profile_processes(self):
        """Pids of the processes whose command line names this run's profile directory."""
        return procs.pids_where("cmdline", self.profile)

    def cleanup(self):
        shutil.rmtree(self.profile, ignore_errors=True)

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
