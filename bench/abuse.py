"""Abuse bench: a room of phones while hostile clients lean on the server.

    .venv/bin/python bench/abuse.py [--phones 300] [--seconds 30] [--idle 500]

Set-up (not measured): bench/phones.py's set-up, twice in one instance (two
events of N keys each, frozen, entries confirmed, verifying), an event open
for registration, and `keyparty serve` with a host password, on loopback.

Then, against that one server:

1. calm: N phones (bench/phones.py's `run_phone`, party scenario, each phone
   its own loopback address 127.0.x.y) verify each other for S seconds;
2. abuse: the same on the second event while, from other loopback addresses
   (127.0.66.x, an attacker's laptops), for the same S seconds:
   - junk bodies: 4 clients post 1.4 MiB of junk to the registration form
     (under the route's limit: read and parsed) and 4 post 3 MiB (over it);
   - idle connections: `--idle` TCP connections that never send a byte,
     reopened as the server closes them;
   - slow uploads: 40 connections that send a certification upload one byte
     a second;
   - password guessing: 4 clients guess the host password as fast as the
     server answers.

Printed: the phones' request count, p50/p99 and errors in both runs, what
the abusers got (status codes), and last `p99_ratio=<abuse/calm>
errors=<phones' errors under abuse>`. Target: errors=0 and p99_ratio < 3.

Loopback only, bounded in time (each run S seconds, every abuser stops at
its end) and count (the abusers' connections are fixed numbers).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import benchlib

phones = benchlib.load("phones")

HOST = phones.HOST
PASSWORD = "correct horse battery staple"
ATTACKER = "127.0.66.{}"


def run_phones(party, port: int, seconds: float, seed: int) -> tuple[list, int]:
    """bench/phones.py's party scenario; returns (answered latencies in ms, errors)."""
    results = phones.Results()
    start = time.monotonic() + 0.5
    deadline = start + seconds
    threads = [
        threading.Thread(
            target=phones.run_phone,
            args=(i, party, port, results, start, deadline, False, seed, 10.0),
            daemon=True,
        )
        for i in range(len(party.attendees))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + phones.REQUEST_TIMEOUT + 5 - time.monotonic()))
    stuck = sum(t.is_alive() for t in threads)
    answered = [s.ms for s in results.samples if s.status]
    errors = [s for s in results.samples if not (200 <= s.status < 400)]
    for text, count in results.problems.most_common(5):
        print(f"    phone problem x{count}: {text}")
    return answered, len(errors) + results.content_errors + stuck


class Abusers:
    """Every abusive client, as threads that stop at `stop`."""

    def __init__(self, port: int, register_path: str, upload_path: str, idle: int) -> None:
        self.port = port
        self.register_path = register_path
        self.upload_path = upload_path
        self.idle = idle
        self.stop = threading.Event()
        self.got: Counter = Counter()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def note(self, what: str) -> None:
        with self.lock:
            self.got[what] += 1

    def connect(self, source: str, timeout: float = 10) -> socket.socket:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((HOST, self.port))
        return s

    def post(self, source: str, path: str, body: bytes, headers: dict) -> int:
        c = http.client.HTTPConnection(HOST, self.port, timeout=30, source_address=(source, 0))
        try:
            c.request("POST", path, body=body, headers=headers)
            response = c.getresponse()
            response.read()
            return response.status
        finally:
            c.close()

    def junk(self, source: str, size: int) -> None:
        body = b"name=x&key_text=" + b"A" * size
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        while not self.stop.is_set():
            try:
                self.note(
                    f"junk {size >> 10} KiB: {self.post(source, self.register_path, body, headers)}"
                )
            except OSError as problem:
                self.note(f"junk {size >> 10} KiB: {type(problem).__name__}")
                time.sleep(0.05)

    def idle_connections(self, source: str) -> None:
        held: list[socket.socket] = []
        while not self.stop.is_set():
            while len(held) < self.idle and not self.stop.is_set():
                try:
                    held.append(self.connect(source, 2))
                    self.note("idle: opened")
                except OSError:
                    self.note("idle: refused")
                    break
            # Drop what the server closed; open again next round.
            alive = []
            for s in held:
                s.setblocking(False)
                try:
                    closed = s.recv(1) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    s.close()
                    self.note("idle: closed by the server")
                else:
                    alive.append(s)
            held = alive
            self.stop.wait(1.0)
        for s in held:
            s.close()

    def slow_upload(self, source: str) -> None:
        request = (
            f"POST {self.upload_path} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Authorization: Bearer nothing\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        while not self.stop.is_set():
            try:
                s = self.connect(source)
            except OSError:
                self.note("slow: refused")
                self.stop.wait(0.5)
                continue
            try:
                for byte in request:
                    if self.stop.is_set():
                        break
                    s.sendall(bytes([byte]))
                    self.stop.wait(1.0)
                self.note("slow: stopped at the end of the run")
            except OSError:
                self.note("slow: cut off by the server")
            finally:
                s.close()

    def guess_passwords(self, source: str) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                c = http.client.HTTPConnection(
                    HOST, self.port, timeout=30, source_address=(source, 0)
                )
                c.request("GET", "/host/login")
                response = c.getresponse()
                page = response.read().decode()
                cookie = (response.getheader("Set-Cookie") or "").split(";")[0]
                token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
                while not self.stop.is_set() and token:
                    n += 1
                    body = urlencode({"csrf_token": token.group(1), "password": f"guess{n}"})
                    c.request(
                        "POST",
                        "/host/login",
                        body=body,
                        headers={
                            "Content-Type": "application/x-www-form-urlencoded",
                            "Cookie": cookie,
                        },
                    )
                    response = c.getresponse()
                    response.read()
                    self.note(f"password guess: {response.status}")
                c.close()
            except (OSError, http.client.HTTPException) as problem:
                self.note(f"password guess: {type(problem).__name__}")
                self.stop.wait(0.1)

    def start(self) -> None:
        plan = []
        plan += [(self.junk, ATTACKER.format(1), 1400 * 1024) for _ in range(4)]
        plan += [(self.junk, ATTACKER.format(1), 3 * 1024 * 1024) for _ in range(4)]
        plan += [(self.idle_connections, ATTACKER.format(2))]
        plan += [(self.slow_upload, ATTACKER.format(3)) for _ in range(40)]
        plan += [(self.guess_passwords, ATTACKER.format(4)) for _ in range(4)]
        for target, *args in plan:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)


def summary(name: str, latencies: list[float], errors: int) -> float:
    p50, p99 = phones.percentile(latencies, 50), phones.percentile(latencies, 99)
    print(
        f"  {name:<6} requests {len(latencies):>6}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  errors {errors}"
    )
    return p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--idle", type=int, default=500, help="idle connections of the attacker")
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    if not 2 <= options.phones <= 2000 or not 1 <= options.seconds <= 120:
        parser.error("--phones 2..2000, --seconds 1..120")

    scratch = phones.short_tempdir()
    os.environ["HOME"] = str(scratch)
    for name in (
        "GNUPGHOME",
        "KEYPARTY_DATABASE_URL",
        "KEYPARTY_SECRET_KEY",
        "KEYPARTY_PUBLIC_URL",
    ):
        os.environ.pop(name, None)
    server = None
    try:
        keyring = phones.bench_import().test_keys(options.phones)
        instance = phones.short_tempdir()
        print(f"Set-up: two events of {options.phones} keys in {instance} ...", flush=True)
        calm_party = phones.set_up(instance, keyring, options.phones, False, 0)
        abused_party = phones.set_up(instance, keyring, options.phones, False, 0)
        from keyparty import create_app
        from keyparty import events
        from keyparty.extensions import db

        with create_app().app_context():
            open_event = events.create_event("Open registration").id
            db.session.remove()
            db.engine.dispose()
        port = phones.free_port()
        env = dict(os.environ, KEYPARTY_INSTANCE=str(instance), HOME=str(scratch))
        env["KEYPARTY_HOST_PASSWORD"] = PASSWORD
        server = phones.start_server(env, port, scratch / "server.log", None)
        phones.warm_up(port, calm_party)
        print(f"  keyparty serve pid {server.pid} on http://{HOST}:{port}/", flush=True)

        print(f"Calm: {options.phones} phones, {options.seconds:g} s ...", flush=True)
        calm, calm_errors = run_phones(calm_party, port, options.seconds, options.seed)

        abusers = Abusers(
            port,
            f"/e/{open_event}/register",
            f"/api/e/{abused_party.event_id}/certifications",
            options.idle,
        )
        print(
            f"Abuse: {options.phones} phones, {options.seconds:g} s, while 8 junk posters, "
            f"{options.idle} idle connections, 40 slow uploads and 4 password guessers run ...",
            flush=True,
        )
        abusers.start()
        abused, abused_errors = run_phones(abused_party, port, options.seconds, options.seed)
        abusers.finish()
        phones.stop_server(server)
        server = None
    finally:
        if server is not None:
            phones.stop_server(server)
        for path in phones._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)

    print("\nphones (party scenario of bench/phones.py), all requests:")
    calm_p99 = summary("calm", calm, calm_errors)
    abused_p99 = summary("abuse", abused, abused_errors)
    print("\nwhat the abusers got:")
    for what, count in sorted(abusers.got.items()):
        print(f"  {what:<44}{count:>8}")
    print(f"\ncommand: {Path(sys.executable).name} bench/abuse.py " + " ".join(sys.argv[1:]))
    print(f"p99_ratio={abused_p99 / calm_p99:.2f} errors={abused_errors}")
    return 0 if abused_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
