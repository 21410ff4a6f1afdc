"""Loopback ports."""

import socket
import time

LISTEN = "0A"  # the socket state of a listening TCP socket in /proc/net/tcp{,6}


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether a socket of this machine listens on the TCP port. Asked of the kernel rather than by
    connecting: a probe connection that the server accepts just as it is told to stop makes
    Prosody 0.12 log an error from its shutdown, which the suite rightly counts against a run."""
    wanted = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == LISTEN and fields[1].rsplit(":", 1)[1] == wanted:
                        return True
        except FileNotFoundError:
            continue
    return False


def wait_port(host, port, deadline, alive=lambda: True):
    """Waits until something listens on the port of host (a loopback address), or raises at the
    deadline or when `alive` turns false (the server process died)."""
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process exited before listening on {host}:{port}")
        if listening(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")
