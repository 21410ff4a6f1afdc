"""Push service origins on 127.0.0.1 that never deliver, each on a port of its own (an origin of
its own, so a slow one cannot hold up the suite's healthy push service):
  - "refuse": a port bound with no listener: every connection is refused;
  - "hang": accepts, reads what comes and never answers (the module's timeout must cut it);
  - "tls": accepts and answers a TLS ClientHello with a plain-text HTTP error, so every https
    handshake fails.
Counts the connections it accepted (a refused one leaves no trace)."""

import socket
import threading
import time

MODES = ("refuse", "hang", "tls")


class DeadHost:
    def __init__(self, mode):
        assert mode in MODES, mode
        self.mode = mode
        self.accepted = []  # time.monotonic() of each accepted connection
        self._conns = []
        self._lock = threading.Lock()
        self._closed = False
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._counter = 0
        if mode != "refuse":
            self._sock.listen(32)
            threading.Thread(target=self._serve, name=f"dead-host-{mode}", daemon=True).start()

    def endpoint(self, name="dead"):
        self._counter += 1
        scheme = "https" if self.mode == "tls" else "http"
        return f"{scheme}://127.0.0.1:{self.port}/wpush/v2/{name}{self._counter}"

    def connections(self, since=None):
        with self._lock:
            return [t for t in self.accepted if since is None or t > since]

    def _serve(self):
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted.append(time.monotonic())
                self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(30)
            first = conn.recv(4096)
            if self.mode == "tls" and first:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
                return
            while conn.recv(4096):  # "hang": read until the client gives up
                pass
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        """Wakes the threads blocked in accept() and recv() (shutdown does; close alone may not)."""
        self._closed = True
        with self._lock:
            sockets = [self._sock] + self._conns
        for sock in sockets:
            for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
                try:
                    step()
                except OSError:
                    pass
