"""`keyparty serve`: gunicorn with threaded workers, hardened for a shared Wi-Fi.

Why gunicorn (gthread): it speaks TLS itself (phones need HTTPS before they
give the in-page scanner their camera), runs a bounded thread pool per
worker process, waits for idle and kept-alive connections in an epoll loop
(no select() limit at 1024 descriptors), and runs several worker processes
(`--workers N`) on one listening socket. Werkzeug's server is a development
server; waitress speaks no TLS and its select() loop fails past 1024
descriptors; cheroot does the TLS handshake in its accepting thread, where
one stalled handshake holds every new connection.

What keyparty adds (KeypartyWorker):
- a cap on the connections one client address holds open at once (per
  worker process): past it, new connections from that address are closed at
  once, so one laptop opening hundreds of idle or slow connections holds at
  most a small share of the threads;
- new connections wait in the epoll loop until they send their first byte
  (gunicorn would give each a thread for up to 5 s first);
- a read and write timeout on every client socket (SO_RCVTIMEO/SO_SNDTIMEO,
  kept by the kernel across TLS wrapping and gunicorn's blocking reads): a
  client that stops sending or reading in the middle of a request frees its
  thread after that many seconds;
- a deadline (twice the read timeout) for the request line and headers,
  counted from when a thread starts reading them, so a client that sends a
  byte now and then cannot hold a thread either.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from functools import partial

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker

from keyparty.config import DEFAULT_THREADS

# Defaults for `keyparty serve`, sized for a room of phones on 2 cores.
THREADS = DEFAULT_THREADS
PER_ADDRESS = 8
READ_TIMEOUT = 10.0
# Longer than a phone waits between two taps (checking an ID takes a while):
# a kept-alive connection costs a descriptor in the epoll loop, no thread.
KEEPALIVE = 75
WORKER_CONNECTIONS = 4000

log = logging.getLogger("keyparty.serve")


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class _CountedConn(TConn):
    """A connection that gives its address's slot back when it closes, once."""

    def __init__(self, worker: KeypartyWorker, *args) -> None:
        super().__init__(*args)
        self._worker = worker
        self._released = False

    def close(self, graceful: bool = False) -> None:
        try:
            super().close(graceful)
        finally:
            if not self._released:
                self._released = True
                self._worker.release(self.client)


class KeypartyWorker(ThreadWorker):
    """gunicorn's gthread worker with a per-address connection cap and socket timeouts."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.per_address = int(self.cfg.env.get("KEYPARTY_PER_ADDRESS", PER_ADDRESS))
        self.read_timeout = float(self.cfg.env.get("KEYPARTY_READ_TIMEOUT", READ_TIMEOUT))
        # The request line and headers must arrive within this many seconds.
        self.header_timeout = 2 * self.read_timeout
        self.open_by_address: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        # Connections whose thread is reading a request line and headers, since when.
        self.reading: dict[TConn, float] = {}

    @staticmethod
    def address_of(client) -> str:
        return client[0] if isinstance(client, tuple) else str(client)

    def release(self, client) -> None:
        address = self.address_of(client)
        with self._count_lock:
            self.open_by_address[address] -= 1
            if self.open_by_address[address] <= 0:
                del self.open_by_address[address]

    def accept(self, listener) -> None:
        """Accept one connection, unless its address already holds its share."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        address = self.address_of(client_addr)
        with self._count_lock:
            full = self.open_by_address[address] >= self.per_address
            if not full:
                self.open_by_address[address] += 1
        if full:
            # Reset, not a polite close: nothing of this connection lingers.
            client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client_sock.close()
            return
        timeout = _timeval(self.read_timeout)
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        self.nr_conns += 1
        conn = _CountedConn(self, self.cfg, client_sock, client_addr, listener.getsockname())
        # Wait in the poller, not in a thread, until the client sends something:
        # a silent connection costs a descriptor, never a thread. Closed when
        # it has sent nothing by the header deadline.
        conn.timeout = time.monotonic() + self.header_timeout
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def handle(self, conn):
        # The header deadline runs from when a thread starts reading, not
        # while the request waits for a free thread: a busy server is no slow
        # client (counting the wait cut off hundreds of phones, a thousand
        # joining at once, with no answer).
        self.reading[conn] = time.monotonic()
        return super().handle(conn)

    def handle_request(self, req, conn):
        # Headers read (in a worker thread): the deadline is met.
        self.reading.pop(conn, None)
        return super().handle_request(req, conn)

    def finish_request(self, conn, fs) -> None:
        self.reading.pop(conn, None)
        super().finish_request(conn, fs)

    def murder_pending(self) -> None:
        """Also cut off clients that dribble their headers past the deadline
        (a byte every few seconds beats any read timeout): shutting the
        socket down wakes the thread blocked on it, which then closes it."""
        super().murder_pending()
        now = time.monotonic()
        for conn, since in list(self.reading.items()):
            if now - since > self.header_timeout:
                self.reading.pop(conn, None)
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)


# Paths that carry a secret (join, confirmation and delivery links) and bearer tokens.
_SECRETS = re.compile(r"(/(?:join|confirm)/)[^\s/?'\"]+|(Bearer\s+)\S+")


def redact(text: str) -> str:
    """`text` with every token of a link or Authorization header replaced by …"""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "…", text)


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RedactingLogger(Logger):
    """gunicorn's logger, with tokens taken out of every line (a malformed
    request line is logged whole, and a join link stays valid after it)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_Redact())


class _Server(BaseApplication):
    def __init__(self, make_app, options: dict) -> None:
        self.make_app = make_app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        return self.make_app()


def run(
    make_app,
    host: str,
    port: int,
    *,
    workers: int = 1,
    threads: int = THREADS,
    per_address: int = PER_ADDRESS,
    read_timeout: float = READ_TIMEOUT,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve the app made by `make_app()` (called once in each worker process) until stopped.

    Raises SystemExit when gunicorn cannot start (port taken, bad TLS files).
    """
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": [bind],
        "workers": workers,
        "threads": threads,
        "worker_class": "keyparty.serving.KeypartyWorker",
        "worker_connections": WORKER_CONNECTIONS,
        "keepalive": KEEPALIVE,
        # A worker whose main loop stops answering for this long is replaced.
        "timeout": 120,
        "graceful_timeout": 5,
        # Requests are small: a request line and headers of a few KiB.
        "limit_request_line": 4094,
        "limit_request_fields": 60,
        "limit_request_field_size": 8190,
        "raw_env": [
            # Each worker's database pool holds one connection per thread.
            f"KEYPARTY_THREADS={threads}",
            f"KEYPARTY_PER_ADDRESS={per_address}",
            f"KEYPARTY_READ_TIMEOUT={read_timeout}",
        ],
        # No access log: request paths carry join and confirmation tokens.
        "accesslog": None,
        "logger_class": "keyparty.serving.RedactingLogger",
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "keyparty",
        "preload_app": False,
    }
    if tls_cert:
        options |= {"certfile": tls_cert, "keyfile": tls_key}
    _Server(make_app, options).run()
