"""End-to-end bench: N offline accounts with one Web Push subscription each, on a real Prosody
started by the e2e harness on loopback, get one chat message each; the module encrypts, signs and
POSTs one push per message to the push sink (pushsink.py) on loopback.

What is measured, each against the same messages with no subscription as the baseline:
  - pushes delivered per second: from the first message written to the last push received;
  - latency from a message written to its push received, at paced loads below the limit;
  - CPU time on Prosody's main thread (where all its Lua runs) and on the module's workers;
  - the round-trip time of XEP-0199 pings from another client, idle and under load.
Every account gets one message per run, so each push is one notification (the rate limits are
switched off in this config only because the same accounts get a message in each of many runs).
"""

import asyncio
import dataclasses
import os
import statistics
import time
from dataclasses import dataclass, field

import procstat
import mainthread
from xmppload import Sender, make_accounts, path_of, subscribe_all

from harness import webpush
from harness.prosody import BASE_MODULES, Prosody
from harness.pushservice import Request

# The modules a web client's account uses (the e2e suite's set) and the admin shell, through which
# the bench makes its accounts in one call.
MODULES = BASE_MODULES + ["admin_shell"]
UNLOADED = [m for m in MODULES if m != "web_push"]
SETTLE = 0.15  # after the last push: results drained by Prosody, and any extra push would be in


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


@dataclass
class Run:
    """One batch of messages: what happened and what it cost."""
    messages: int
    pushes: int
    seconds: float  # first message written -> last push received (or Prosody done, if no push)
    handled_seconds: float  # first message written -> Prosody had handled them all
    main: float  # CPU seconds on Prosody's main thread
    main_ticks: float  # the same from utime+stime
    main_wait: float  # seconds the main thread was ready to run but waited for a core
    workers: float  # CPU seconds on the module's worker threads
    other_threads: float
    sink_cpu: float
    worker_names: set
    latencies: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    duplicates: int = 0
    offered: float = 0.0  # messages per second offered (0: as fast as Prosody takes them)
    wall: float = 0.0  # seconds between the two CPU snapshots

    @property
    def push_rate(self):
        return self.pushes / self.seconds if self.seconds > 0 else 0.0

    @property
    def handled_rate(self):
        return self.messages / self.handled_seconds


class Server:
    """One Prosody version with its accounts: N subscribed, N without subscription."""

    def __init__(self, version, workdir, sink, pinger, accounts, log):
        self.version = version
        self.workdir = workdir
        self.sink = sink
        self.pinger = pinger
        self.accounts = accounts
        self.log = log
        self.prosody = None
        self.sender = None
        self.tag = 0
        self.errors = []

    def options(self, workers):
        return {
            "log": [{"levels": {"min": "info"}, "to": "file", "filename": os.path.join(self.workdir, "prosody.log")}],
            "web_push_workers": workers,
            # The whole load may be queued at once; nothing is to be refused for lack of room.
            "web_push_queue_size": 100000,
            "web_push_min_interval": 0,
            "web_push_max_pushes_per_minute": 0,
            # Prosody keeps the item count of 1,000 archives in memory by default; the bench has
            # more (offline and MAM stores of every account), and a miss reads the whole archive,
            # so each message would cost more as the bench goes on.
            "storage_archive_item_limit_cache_size": 10 * self.accounts + 100,
        }

    async def start(self, workers=2, modules=MODULES):
        """(Re)starts Prosody and warms it up: after a start, the first message to an account
        reads its stores from disk, which a server that has been running for a while has done
        long ago. Not measured."""
        await self.stop()
        self.prosody = Prosody(self.workdir, self.version, {"storage": "internal"}, self.options(workers), modules)
        self.prosody.start()
        self.pid = self.prosody.process.pid
        self.sender = await Sender.connect(self.prosody.port, "sender1")
        await self.pinger.connect(self.prosody.port)
        loaded = "web_push" in modules
        self.check(await self.batch(self.subscribed, expect_pushes=loaded), self.accounts if loaded else 0)
        self.check(await self.batch(self.plain, expect_pushes=False), 0)

    async def stop(self):
        if self.prosody is None:
            return
        if self.sender is not None:
            await self.sender.close()
            self.sender = None
        await self.pinger.disconnect()
        self.prosody.stop()
        self.errors += self.prosody.lua_errors()
        self.prosody = None

    async def setup(self):
        started = time.monotonic()
        os.makedirs(self.workdir, exist_ok=True)
        # The first start has no accounts yet: the sender and pinger are made before they log in.
        self.prosody = Prosody(self.workdir, self.version, {"storage": "internal"}, self.options(2), MODULES)
        self.prosody.start()
        await make_accounts(self.prosody, "sender", 1)
        await make_accounts(self.prosody, "pinger", 1)
        self.subscribed = await make_accounts(self.prosody, "s", self.accounts)
        self.plain = await make_accounts(self.prosody, "p", self.accounts)
        self.subscriptions, self.vapid_key = await subscribe_all(
            self.prosody.port, self.subscribed, self.sink, f"{self.version}")
        sender = await Sender.connect(self.prosody.port, "sender1")
        await sender.mam_never()
        await sender.close()
        self.prosody.stop()
        self.prosody = None
        self.log(f"Prosody {self.version}: {2 * self.accounts} accounts, {self.accounts} subscribed "
                 f"through the enable IQ, in {time.monotonic() - started:.1f} s")

    def next_tag(self):
        self.tag += 1
        return f"b{self.tag}"

    # -- one batch -----------------------------------------------------------------------

    async def batch(self, users, rate=None, expect_pushes=True):
        """Sends one message to each of `users`, all at once (rate None) or paced at `rate` per
        second, and waits for the pushes. Returns a Run."""
        _, _, sink_cpu_before = self.sink.take()
        before = procstat.threads(self.pid)
        snapshot = time.monotonic()
        if rate is None:
            sent_at, handled = await self.sender.burst(users, self.next_tag())
            first = sent_at
            sent = dict.fromkeys(users, sent_at)
        else:
            sent, handled = await self.sender.paced(users, self.next_tag(), rate)
            first = min(sent.values())
        if expect_pushes:
            await self.sink.wait_count(len(users), timeout=60)
        await asyncio.sleep(SETTLE)
        after = procstat.threads(self.pid)
        wall = time.monotonic() - snapshot
        arrivals, kept, sink_cpu = self.sink.take()
        split = procstat.Split(self.pid, before, after)
        by_path = {}
        duplicates = 0
        for path, when in arrivals:
            if path in by_path:
                duplicates += 1
            by_path.setdefault(path, when)
        latencies = []
        for user in users:
            path = path_of(self.sink.endpoint(f"{self.version}-{user}"))
            if path in by_path:
                latencies.append(by_path[path] - sent[user])
        last = max(by_path.values()) if by_path else handled
        return Run(
            messages=len(users), pushes=len(arrivals), seconds=last - first, handled_seconds=handled - first,
            main=split.main, main_ticks=split.main_ticks, workers=split.workers, other_threads=split.other,
            sink_cpu=sink_cpu - sink_cpu_before, main_wait=split.main_wait, worker_names=split.worker_names, latencies=latencies, kept=kept,
            duplicates=duplicates, offered=rate or 0.0, wall=wall,
        )

    def check(self, run, expected):
        if run.pushes != expected or run.duplicates:
            raise RuntimeError(f"Prosody {self.version}: {run.pushes} pushes for {run.messages} messages "
                               f"({run.duplicates} duplicates), expected {expected}")
        return run

    def verify(self, kept):
        """The sample of pushes the sink kept whole, verified and decrypted with http_ece and
        PyJWT (implementations not written here): the bench measured real, valid pushes."""
        for method, path, headers, body in kept:
            request = Request(method=method, path=path, headers=headers, body=body, received=0.0, answered_with=201)
            verified = webpush.verify(request, self.subscriptions[path], self.vapid_key)
            assert verified.notification.get("account", "").startswith("s"), "push for an unexpected account"
        return len(kept)

    # -- the figures ---------------------------------------------------------------------

    async def cost_per_push(self, rounds):
        """Alternating batches, all at full speed: subscribed, not subscribed. The difference in
        Prosody's main-thread CPU is what the module costs there per push."""
        subscribed, plain = [], []
        self.sink.keep(3)
        for _ in range(rounds):
            subscribed.append(self.check(await self.batch(self.subscribed), self.accounts))
            plain.append(self.check(await self.batch(self.plain, expect_pushes=False), 0))
        self.sink.keep(0)
        verified = self.verify(subscribed[0].kept)
        return subscribed, plain, verified

    async def unloaded(self, rounds):
        """The same messages with the module not loaded at all: what Prosody alone handles."""
        await self.start(modules=UNLOADED)
        return [self.check(await self.batch(self.plain, expect_pushes=False), 0) for _ in range(rounds)]

    async def paced(self, rate, batches=1):
        """`batches` batches at `rate`, as one Run (their latencies together, for a steadier p99)."""
        runs = [self.check(await self.batch(self.subscribed, rate=rate), self.accounts) for _ in range(batches)]
        return merge(runs)

    async def pings(self, count, gap, load=None, rate=None):
        """Ping round trips from the pinger's own session: with no load, or while the sender
        keeps sending messages to `load` (subscribed or plain accounts), as fast as Prosody takes
        them (rate None) or at `rate` per second. Returns the RTTs, and the messages and pushes
        per second while the pings ran."""
        if load is None:
            return await self.pinger.ping(count, gap), 0.0, 0.0
        stop = asyncio.Event()
        self.sink.take()
        loader = asyncio.ensure_future(self.sender.sustain(load, self.next_tag(), stop, rate))
        try:
            await asyncio.sleep(0.3)  # into the steady state
            pushes_before = self.sink.count()
            started = time.monotonic()
            rtts = await self.pinger.ping(count, gap)
            elapsed = time.monotonic() - started
            pushes = self.sink.count() - pushes_before
        finally:
            stop.set()
            messages = await loader
        # Everything in flight lands before anything else is measured.
        await self.sender.client.ping(timeout=60)
        await self.sink.wait_quiet(0.3, timeout=30)
        self.sink.take()
        return rtts, messages / (elapsed + 0.3), pushes / elapsed


def merge(runs):
    """Several Runs of the same kind as one: counts and CPU add up, rates come from the sums."""
    first = runs[0]
    total = dataclasses.replace(first, latencies=[], kept=[])
    for field_name in ("messages", "pushes", "seconds", "handled_seconds", "main", "main_ticks", "main_wait",
                       "workers", "other_threads", "sink_cpu", "duplicates", "wall"):
        setattr(total, field_name, sum(getattr(run, field_name) for run in runs))
    for run in runs:
        total.latencies += run.latencies
        total.kept += run.kept
    return total


async def run_version(version, workdir, sink, pinger, accounts, full, pings, log):
    """Every figure for one Prosody version; `full` adds the paced loads and the worker sweep
    for the plot. `pings` per load condition."""
    server = Server(version, workdir, sink, pinger, accounts, log)
    result = {"version": version, "accounts": accounts}
    try:
        await server.setup()
        await server.start(workers=2)
        subscribed, plain, verified = await server.cost_per_push(rounds=6)
        result["subscribed"], result["plain"], result["verified"] = subscribed, plain, verified
        result["probe"] = await mainthread.probe(server, 7, log)
        result["unloaded"] = await server.unloaded(rounds=4)
        await server.start(workers=2)
        # Loaded again: the plain figure must not have drifted while the module was away.
        result["plain_again"] = [server.check(await server.batch(server.plain, expect_pushes=False), 0)
                                 for _ in range(2)]
        log(f"Prosody {version}: costs measured")

        best = statistics.median(run.push_rate for run in subscribed)
        result["paced"] = {}
        for fraction in (0.5,):
            result["paced"][fraction] = await server.paced(best * fraction, batches=2)

        result["pings"] = {
            "idle": await server.pings(pings, 0.005),
            "flood_plain": await server.pings(pings, 0.005, server.plain),
            "flood_push": await server.pings(pings, 0.005, server.subscribed),
            "half_plain": await server.pings(pings, 0.005, server.plain, best / 2),
            "half_push": await server.pings(pings, 0.005, server.subscribed, best / 2),
        }
        log(f"Prosody {version}: pings measured")

        if full:
            result["sweep"] = {}
            for workers in (1, 2, 4):
                await server.start(workers=workers)
                bursts = [server.check(await server.batch(server.subscribed), accounts) for _ in range(2)]
                top = max(run.push_rate for run in bursts)
                paced = {}
                for fraction in (0.25, 0.5, 0.75, 0.9):
                    paced[fraction] = await server.paced(top * fraction, batches=2)
                result["sweep"][workers] = {"bursts": bursts, "paced": paced}
                log(f"Prosody {version}: {workers} worker(s) measured")
    finally:
        await server.stop()
    result["lua_errors"] = server.errors
    return result
