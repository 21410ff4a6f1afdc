"""The XMPP side of the end-to-end bench, with slixmpp (through the e2e harness's client): accounts,
subscriptions made with the real enable IQ, a sender that offers messages at a given rate or as
fast as Prosody takes them, and a pinger (XEP-0199) in a process of its own."""

import asyncio
import logging
import multiprocessing
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))

from harness import webpush  # noqa: E402
from harness.prosody import PASSWORD  # noqa: E402
from harness.xmpp import Client, is_result  # noqa: E402

from pushsink import die_with_parent  # noqa: E402

HOST = "localhost"
# slixmpp leaves a cancelled reader task per closed client for the garbage collector, which asyncio
# reports as "Task was destroyed but it is pending!": hundreds of lines of noise per bench.
logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def message_xml(user, tag, index):
    # A chat message with a body: important, so each one makes one push to an offline account.
    return (f'<message to="{user}@{HOST}" type="chat" id="{tag}-{index}">'
            f'<body>bench message {index}</body></message>')


async def make_accounts(prosody, prefix, count):
    """Creates `count` accounts in one admin-shell call (prosodyctl per account would take minutes)."""
    out = prosody.shell(
        f'> local um = require "core.usermanager"; local n = 0; for i = 1, {count} do '
        f'if um.create_user("{prefix}" .. i, "{PASSWORD}", "{HOST}") then n = n + 1 end end; return n',
        timeout=120)
    made = int(out.split("Result:")[-1].strip().split()[0])
    if made != count:
        raise RuntimeError(f"created {made} of {count} accounts")
    return [f"{prefix}{i}" for i in range(1, count + 1)]


async def subscribe_all(port, users, sink, name, parallel=20):
    """Each user logs in, enables one subscription (made as a browser makes it) for an endpoint of
    the push sink, and logs out: the account is then offline, with a subscription. Returns
    {endpoint path: Subscription} and the VAPID key from disco."""
    subscriptions = {}
    vapid = []
    queue = list(users)

    async def one(user):
        client = await Client(f"{user}@{HOST}/bench").online(port, presence=False)
        try:
            if not vapid:
                vapid.append(await client.vapid_key())
            subscription = webpush.Subscription.new(sink.endpoint(f"{name}-{user}"))
            answer = await client.enable(subscription)
            if not is_result(answer):
                raise RuntimeError(f"enable refused for {user}")
            subscriptions[path_of(subscription.endpoint)] = subscription
        finally:
            await client.close()

    async def worker():
        while queue:
            await one(queue.pop())

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return subscriptions, vapid[0]


def path_of(endpoint):
    return "/" + endpoint.split("/", 3)[3]


class Sender:
    """One logged-in account that sends the load as raw stanzas (serialising through slixmpp's
    stanza objects would make the bench client slower than the server it measures)."""

    def __init__(self, client):
        self.client = client

    @classmethod
    async def connect(cls, port, user="sender"):
        return cls(await Client(f"{user}@{HOST}/load").online(port, presence=False))

    async def burst(self, users, tag):
        """All messages in one write; returns (send time, time Prosody had handled them all):
        Prosody answers the ping after every stanza before it on the same stream."""
        data = "".join(message_xml(user, tag, i) for i, user in enumerate(users))
        sent = time.monotonic()
        self.client.send_raw(data)
        await self.client.ping(timeout=60)
        return sent, time.monotonic()

    async def paced(self, users, tag, rate):
        """Messages at `rate` per second, each written when it is due. Returns the send time of
        each user's message and the time Prosody had handled them all."""
        sent = {}
        start = time.monotonic()
        index = 0
        while index < len(users):
            now = time.monotonic()
            due = min(len(users), int((now - start) * rate) + 1)
            if due > index:
                self.client.send_raw("".join(message_xml(users[i], tag, i) for i in range(index, due)))
                for i in range(index, due):
                    sent[users[i]] = now
                index = due
            else:
                await asyncio.sleep(max(0.0, start + index / rate - now))
        await self.client.ping(timeout=60)
        return sent, time.monotonic()

    async def sustain(self, users, tag, stop, rate=None):
        """Messages to `users`, round after round, until `stop` is set. With no rate, as fast as
        Prosody takes them: each round is written when Prosody has handled the one before, so
        it is never idle and its input never piles up. With a rate, paced as in paced(). Returns
        the number of messages sent."""
        sent = 0
        start = time.monotonic()
        while not stop.is_set():
            if rate is None:
                self.client.send_raw("".join(message_xml(u, f"{tag}-{sent}", i) for i, u in enumerate(users)))
                sent += len(users)
                await self.client.ping(timeout=60)
                continue
            due = int((time.monotonic() - start) * rate) + 1
            if due > sent:
                self.client.send_raw("".join(
                    message_xml(users[i % len(users)], tag, i) for i in range(sent, due)))
                sent = due
            else:
                await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
        return sent

    async def mam_never(self):
        """Asks Prosody not to archive what this account sends (XEP-0313 preferences). The load
        generator's own archive would otherwise grow by every message of the bench, reach
        Prosody's archive quota and make each message pay for a truncation, which is no part of
        what a push costs."""
        answer = await self.client.iq('<prefs xmlns="urn:xmpp:mam:2" default="never"/>')
        if answer.get("type") != "result":
            raise RuntimeError("the sender's archive preferences were refused")

    async def close(self):
        await self.client.close()


def _pinger_main(conn, user):
    """Child process: one XMPP session that pings the server when told to."""
    die_with_parent()
    import logging
    logging.disable(logging.WARNING)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    state = {"client": None}
    commands = asyncio.Queue()

    def on_readable():
        try:
            commands.put_nowait(conn.recv())
        except EOFError:  # the parent is gone
            loop.remove_reader(conn.fileno())
            commands.put_nowait(("stop",))

    loop.add_reader(conn.fileno(), on_readable)

    async def main():
        while True:
            command = await commands.get()
            try:
                if command[0] == "connect":
                    if state["client"] is not None:
                        await state["client"].close()
                    state["client"] = await Client(f"{user}@{HOST}/ping").online(command[1], presence=False)
                    conn.send(("ok", None))
                elif command[0] == "ping":
                    count, gap = command[1], command[2]
                    rtts = []
                    for _ in range(count):
                        rtts.append(await state["client"].ping(timeout=30))
                        await asyncio.sleep(gap)
                    conn.send(("ok", rtts))
                elif command[0] == "disconnect":
                    if state["client"] is not None:
                        await state["client"].close()
                        state["client"] = None
                    conn.send(("ok", None))
                else:
                    return
            except Exception as error:  # reported to the parent, which fails the bench
                conn.send(("error", f"{type(error).__name__}: {error}"))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


class Pinger:
    """A slixmpp client in its own process, so that the load generator's work in this process
    never sits between a ping and its answer."""

    def __init__(self, user="pinger1"):
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_pinger_main, args=(child, user), name="pinger", daemon=True)
        self.process.start()
        child.close()
        self.pid = self.process.pid

    async def _ask(self, *command, timeout=120):
        self._conn.send(command)
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        loop.add_reader(self._conn.fileno(), lambda: answer.done() or answer.set_result(self._conn.recv()))
        try:
            status, value = await asyncio.wait_for(answer, timeout)
        finally:
            loop.remove_reader(self._conn.fileno())
        if status != "ok":
            raise RuntimeError(f"pinger: {value}")
        return value

    async def connect(self, port):
        await self._ask("connect", port)

    async def ping(self, count, gap):
        """Round-trip times in seconds of `count` pings, one after the other, `gap` apart."""
        return await self._ask("ping", count, gap)

    async def disconnect(self):
        await self._ask("disconnect")

    def close(self):
        if self.process.is_alive():
            try:
                self._conn.send(("stop",))
            except OSError:
                pass
            self.process.join(3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(3)
