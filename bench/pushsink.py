"""A lean push service for the end-to-end bench: HTTP/1.1 keep-alive on 127.0.0.1, answers 201 to
every request at once and records when each one arrived (time.monotonic(), the clock every process
on the machine shares) and for which endpoint path.

It runs in a process of its own, so that the bench's XMPP clients never delay a timestamp, and is an
asyncio Protocol rather than http.server: parsing is a few bytes operations per request, so its own
CPU time (reported with each run) stays far below what the module spends per push. The tests' push
service (tests/e2e/harness/pushservice.py) checks far more and is far slower; this one only counts,
and keeps the first few requests whole so the bench can have them verified and decrypted."""

import asyncio
import multiprocessing
import os
import resource
import socket
import time

MAX_HEAD = 16 * 1024
MAX_BODY = 8 * 1024
ANSWER = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Recorder:
    def __init__(self, keep):
        self.arrivals = []  # (path, monotonic seconds)
        self.kept = []  # (method, path, headers, body) of the first `keep` requests since reset
        self.keep = keep

    def reset(self):
        self.arrivals, self.kept = [], []


class PushProtocol(asyncio.Protocol):
    def __init__(self, recorder):
        self.recorder = recorder
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        now = time.monotonic()
        buffer = self.buffer + data if self.buffer else data
        answers = 0
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    return self.refuse()
                break
            head = buffer[:end]
            length = content_length(head)
            if length is None or length > MAX_BODY:
                return self.refuse()
            total = end + 4 + length
            if len(buffer) < total:
                break
            line_end = head.find(b"\r\n")
            request_line = head[:line_end if line_end >= 0 else len(head)].split(b" ")
            if len(request_line) != 3:
                return self.refuse()
            method, path = request_line[0].decode("latin-1"), request_line[1].decode("latin-1")
            recorder = self.recorder
            recorder.arrivals.append((path, now))
            if len(recorder.kept) < recorder.keep:
                recorder.kept.append((method, path, parse_headers(head), bytes(buffer[end + 4:total])))
            buffer = buffer[total:]
            answers += 1
        self.buffer = buffer
        if answers:
            # Pipelined requests (none expected from the module) get their answers in one write.
            self.transport.write(ANSWER * answers)

    def refuse(self):
        self.transport.write(BAD)
        self.transport.close()
        self.buffer = b""


def content_length(head):
    index = head.lower().find(b"\r\ncontent-length:")
    if index < 0:
        return 0
    value_end = head.find(b"\r\n", index + 2)
    value = head[index + 17:value_end if value_end >= 0 else len(head)].strip()
    return int(value) if value.isdigit() else None


def parse_headers(head):
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(conn, keep):
    """The child process: listens, then answers the parent's commands on `conn` (a Pipe end)."""
    die_with_parent()
    loop = asyncio.new_event_loop()
    recorder = Recorder(keep)
    server = loop.run_until_complete(
        loop.create_server(lambda: PushProtocol(recorder), "127.0.0.1", 0, backlog=512))
    conn.send(server.sockets[0].getsockname()[1])
    stopped = loop.create_future()

    def on_command():
        try:
            command, argument = conn.recv()
        except EOFError:
            command, argument = "stop", None
        if command == "count":
            conn.send(len(recorder.arrivals))
        elif command == "take":
            # Everything since the last take, and a fresh start.
            conn.send((recorder.arrivals, recorder.kept, cpu_seconds()))
            recorder.reset()
        elif command == "keep":
            recorder.keep = argument
            conn.send(True)
        elif command == "cpu":
            conn.send(cpu_seconds())
        elif command == "stop":
            if not stopped.done():
                stopped.set_result(None)

    loop.add_reader(conn.fileno(), on_command)
    loop.run_until_complete(stopped)
    server.close()
    loop.close()


def die_with_parent():
    """If the bench process dies however it dies, this child goes too (PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


class PushSink:
    """The parent's handle on the child process."""

    def __init__(self, keep=4):
        context = multiprocessing.get_context("fork")
        self._conn, child_conn = context.Pipe()
        self.process = context.Process(target=serve, args=(child_conn, keep), name="push-sink", daemon=True)
        self.process.start()
        child_conn.close()
        if not self._conn.poll(10):
            raise RuntimeError("the push sink did not start")
        self.port = self._conn.recv()
        self.pid = self.process.pid

    def endpoint(self, name):
        return f"http://127.0.0.1:{self.port}/wpush/bench/{name}"

    def _ask(self, command, argument=None, timeout=10):
        self._conn.send((command, argument))
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the push sink did not answer {command!r}")
        return self._conn.recv()

    def count(self):
        return self._ask("count")

    def take(self):
        """(arrivals, kept requests, sink CPU seconds so far); starts counting afresh."""
        return self._ask("take")

    def keep(self, count):
        return self._ask("keep", count)

    def cpu(self):
        return self._ask("cpu")

    async def wait_count(self, count, timeout):
        """Polls until `count` requests arrived; returns how many did (maybe fewer, at the timeout)."""
        deadline = time.monotonic() + timeout
        got = self.count()
        while got < count and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            got = self.count()
        return got

    async def wait_quiet(self, quiet, timeout):
        """Waits until no request arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            await asyncio.sleep(0.02)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()

    def close(self):
        if self.process.is_alive():
            try:
                self._conn.send(("stop", None))
            except OSError:
                pass
            self.process.join(3)
        if self.process.is_alive():
            os.kill(self.process.pid, 9)
            self.process.join(3)
