"""Prosody storage back ends for the suite: internal (files), sql on SQLite, sql on PostgreSQL.

PostgreSQL is Debian's, as a private cluster: initdb into a temp dir, listening only on 127.0.0.1 at
a free port, run as the `postgres` system user (initdb refuses root), stopped with
`pg_ctl stop -m immediate` at the end whatever happens."""

import glob
import itertools
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse

from . import procs
from .net import free_port

STORAGES = ("internal", "sqlite", "postgres")
PG_USER = "prosody"


def pg_bin(name):
    # Debian's PostgreSQL, whatever its major version; not whatever is first on PATH.
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"Debian's PostgreSQL ({name}) is not installed; run tests/e2e/setup.sh")
    return found[-1]


class PostgresCluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="e2e-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self._names = itertools.count(1)
        self.os_user = self._server_user()
        if self.os_user:
            uid, gid = pwd.getpwnam(self.os_user)[2:4]
            os.chown(self.dir, uid, gid)
        self._run(pg_bin("initdb"), "-D", self.data, "-U", PG_USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", timeout=120)
        self._stop_at_exit = procs.on_exit(self.stop)
        self._run(
            pg_bin("pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w", "-t", "30",
            "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
                  " -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
            "start", timeout=60,
        )

    @staticmethod
    def _server_user():
        """initdb and postgres refuse to run as root: use Debian's `postgres` system user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("no `postgres` system user (Debian's postgresql package creates it)")
        return "postgres"

    def _run(self, *command, timeout=60):
        if self.os_user:
            command = ("runuser", "-u", self.os_user, "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        return result

    def psql(self, sql, database="postgres"):
        result = subprocess.run(
            [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout

    def new_database(self):
        name = f"prosody_e2e_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._run(pg_bin("pg_ctl"), "-D", self.data, "stop", "-m", "immediate", "-w", "-t", "20", timeout=30)
            except Exception:
                pass
        procs.forget(self._stop_at_exit)
        shutil.rmtree(self.dir, ignore_errors=True)


class Backend:
    """What one test's Prosody gets for `storage`, and a way to look into it."""

    def __init__(self, kind, workdir, cluster=None):
        self.kind = kind
        self.workdir = workdir
        self.cluster = cluster
        if kind == "internal":
            self.config = {"storage": "internal"}
        elif kind == "sqlite":
            self.path = os.path.join(workdir, "prosody.sqlite")
            self.config = {"storage": "sql", "sql": {"driver": "SQLite3", "database": self.path}}
        elif kind == "postgres":
            self.database = cluster.new_database()
            self.config = {"storage": "sql", "sql": {
                "driver": "PostgreSQL", "database": self.database, "host": "127.0.0.1",
                "port": cluster.port, "username": PG_USER, "password": "unused-trust-auth",
            }}
        else:
            raise ValueError(f"unknown storage {kind!r}")

    def sql_stores(self):
        """The (host, user, store) rows Prosody's sql storage holds; None for internal storage."""
        # Key-value and map stores live in "prosody", archives in "prosodyarchive".
        query = ('SELECT DISTINCT "host", "user", "store" FROM "prosody" UNION '
                 'SELECT DISTINCT "host", "user", "store" FROM "prosodyarchive"')
        if self.kind == "sqlite":
            db = sqlite3.connect(self.path, timeout=5)
            try:
                return set(db.execute(query).fetchall())
            finally:
                db.close()
        if self.kind == "postgres":
            out = self.cluster.psql(query, database=self.database)
            return {tuple(line.split("|")) for line in out.splitlines() if line}
        return None

    def files(self, data_path):
        """Files under Prosody's data directory (what internal storage writes)."""
        found = []
        for base, _dirs, names in os.walk(data_path):
            for name in names:
                found.append(os.path.relpath(os.path.join(base, name), data_path))
        return sorted(found)

    def user_stores(self, user, data_path, host="localhost"):
        """The names of the stores that hold anything of `user` (every back end)."""
        if self.kind != "internal":
            return {store for h, u, store in self.sql_stores() if h == host and u == user}
        stores = set()
        root = os.path.join(data_path, urllib.parse.quote(host, safe=""))
        # Internal storage: <data>/<host>/<store>/<user>.<ext>, names %-encoded.
        for store in os.listdir(root) if os.path.isdir(root) else []:
            directory = os.path.join(root, store)
            if os.path.isdir(directory) and any(name.rsplit(".", 1)[0] == user for name in os.listdir(directory)):
                stores.add(urllib.parse.unquote(store))
        return stores

    def holding(self, text, data_path):
        """Where storage holds `text` (an endpoint, say): file paths, or sql (host, user, store, key)
        rows, keys and values alike. Empty when it holds it nowhere."""
        if self.kind == "internal":
            needle = text.encode()
            found = []
            for name in self.files(data_path):
                if not os.path.isfile(os.path.join(data_path, name)):  # the admin shell's socket
                    continue
                with open(os.path.join(data_path, name), "rb") as f:
                    if needle in f.read():
                        found.append(name)
            return found
        if self.kind == "sqlite":
            db = sqlite3.connect(self.path, timeout=5)
            try:
                rows = db.execute('SELECT "host", "user", "store", "key" FROM "prosody" '
                                  'WHERE instr("key", ?) > 0 OR instr("value", ?) > 0', (text, text)).fetchall()
                rows += db.execute('SELECT "host", "user", "store", "key" FROM "prosodyarchive" '
                                   'WHERE instr("value", ?) > 0', (text,)).fetchall()
                return rows
            finally:
                db.close()
        literal = "'" + text.replace("'", "''") + "'"
        out = self.cluster.psql(
            f'SELECT "host", "user", "store", "key" FROM "prosody" '
            f'WHERE strpos("key", {literal}) > 0 OR strpos("value", {literal}) > 0 UNION ALL '
            f'SELECT "host", "user", "store", "key" FROM "prosodyarchive" WHERE strpos("value", {literal}) > 0',
            database=self.database)
        return [tuple(line.split("|")) for line in out.splitlines() if line]


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
