"""Load test: a room of phones verifying each other's keys on one keyparty server.

    .venv/bin/python bench/phones.py [--phones 300] [--seconds 30] [--scenario party|stress]
        [--join-over 10] [--earlier K] [--workers N] [--server-threads N]
        [--profile FILE] [--samples FILE]
    tests/pg.sh .venv/bin/python bench/phones.py --workers 2 ...   # on PostgreSQL

The database is PostgreSQL when KEYPARTY_DATABASE_URL names one (tests/pg.sh
makes a throw-away cluster and sets it), else the instance's SQLite file;
the printed header says which, and how many server processes.

Set-up (not measured), in this process: a fresh instance folder
(KEYPARTY_INSTANCE, a short folder under /tmp), an event, N test keys
registered (bench/import.py's cached keys, made once by its `test_keys`), the
list frozen, every attendee's entry confirmed (T4), verifying started. The
join token of each attendee comes from the registration, as `keyparty import`
prints it.

Then `keyparty serve --host 127.0.0.1 --port FREE --workers N` runs as a
child process (gunicorn, keyparty's default 32 threads per worker; the
open-file limit raised first when the phones need more, and said so) and N
phones, one thread each (512 KiB stacks) with
its own loopback address (127.0.1.1, ...), keep-alive connection and cookie,
do what a phone does:

- join once: GET /join/<token> (its page and button), POST it, follow the
  redirect to /me (session cookie);
- then, until the time bound: "scan" another attendee's badge (GET the key's
  verification page), read the CSRF token and the user ID form, POST one
  verification (context `identity`, basis `photo-id`), follow the redirect
  back to the key page, which must show the verification as recorded.

Scenarios:

- party (default, realistic): phones join at random moments in the first
  10 s (`--join-over`; in a real event they joined earlier still, to confirm
  their entry, T4); checking an ID takes 3-10 s between opening the page and
  the POST; the next person is scanned so that the POST comes 20.5-25 s after
  the previous one: the event's default pace (P4: 20 s apart, at most 10 in
  5 minutes) is kept, so no refusal is expected and any refusal counts as an
  error. About 1.3 verifications per phone in 30 s, ~60 requests/s.
  `--earlier K` starts later in the party: each attendee has already verified
  K others (inserted in the set-up, older than the pace window).
- stress (capacity, not a latency target): pace set permissive
  (`keyparty event set EVENT --pace-gap 1 --pace-window 300 --pace-max 1000`),
  no thinking: each phone goes on at once, at most one verification per
  1.1 s (under the pace gap and the 60-a-minute rate limit). With N phones
  and no think time this is a closed loop: latency is queueing by design;
  read the requests per second.

Printed: requests per second, p50/p90/p99/max latency per request kind and
for all requests, refusals (409, by rule) and rate limits (429) apart from
errors, CPU used by the server and by this client, and the command to
reproduce. The last line is `p99_ms=<all requests> errors=<count>`.
Target (2 cores, party scenario): p99 under 250 ms, zero errors.

Only 127.0.0.1 is contacted. Every gpg call names a short --homedir under
/tmp and HOME points at a scratch folder for this process and its children;
the server is stopped and every temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode
from urllib.parse import urlsplit

import benchlib

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HOST = "127.0.0.1"  # loopback only
REQUEST_TIMEOUT = 30.0
TARGET_P99_MS = 250.0
# party scenario: seconds between opening a key page and posting (checking the ID) ...
CHECK_ID = (3.0, 10.0)
# ... and between two posts of one phone: above the default P4 gap of 20 s.
BETWEEN_POSTS = (20.5, 25.0)
STRESS_MIN_CYCLE = 1.1  # stress: at most one post per 1.1 s per phone

_temp_dirs: list[Path] = []


def short_tempdir(prefix: str = "kpp") -> Path:
    """A short path under /tmp (a GnuPG home over ~100 characters breaks the agent)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    _temp_dirs.append(path)
    return path


def bench_import():
    """bench/import.py as a module: its cached test keys."""
    return benchlib.load("import")


def keyparty_command() -> str:
    beside = Path(sys.executable).with_name("keyparty")
    return str(beside) if beside.exists() else (shutil.which("keyparty") or "keyparty")


# -- set-up (not measured) ----------------------------------------------------


@dataclass
class Party:
    event_id: str
    # (fingerprint, join token), one per attendee, in list order
    attendees: list[tuple[str, str]]
    earlier: int = 0  # attendee i verified the keys i+1 .. i+earlier (mod n) before the run

    def to_scan(self, index: int) -> list[str]:
        """The keys phone `index` has not verified yet: everyone else's but the earlier ones."""
        n = len(self.attendees)
        done = {(index + j) % n for j in range(1, self.earlier + 1)}
        return [fpr for i, (fpr, _) in enumerate(self.attendees) if i != index and i not in done]


def set_up(instance: Path, keyring: Path, n: int, stress: bool, earlier: int) -> Party:
    """Event with n keys, frozen, every entry confirmed (T4), verifying started.

    With `earlier` > 0 each attendee has already verified that many others, long
    enough ago that the pace (P4) does not count them: a later moment in the party.
    """
    from datetime import timedelta

    from keyparty import create_app
    from keyparty import events
    from keyparty import registration
    from keyparty.extensions import db
    from keyparty.models import Verification
    from keyparty.models import utcnow

    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    app = create_app()
    with app.app_context():
        event = events.create_event("Phones bench", date.today())
        result = registration.register_keys(
            event, [(keyring.name, keyring.read_bytes())], events.event_home(event)
        )
        assert not result.rejected, result.rejected[:3]
        assert len(result.accepted) == n, (len(result.accepted), n)
        attendees = [(a.key.fingerprint, a.join_token) for a in result.accepted]
        assert all(token for _, token in attendees)
        assert events.take_step(event, "freeze") is None
        for attendee in event.attendees:
            attendee.entry_confirmed_at = utcnow()
        db.session.commit()
        assert events.take_step(event, "start-verifying") is None
        if stress:
            assert events.configure(event, pace_gap=1, pace_window=300, pace_max=1000) is None
        if earlier:
            uid_of = {key.fingerprint: key.user_ids[0].id for key in event.keys}
            signer_of = {key.fingerprint: key.attendee_id for key in event.keys}
            now = utcnow()
            rows = [
                {
                    "event_id": event.id,
                    "signer_id": signer_of[fpr],
                    "user_id_id": uid_of[attendees[(i + j) % n][0]],
                    "context": "identity",
                    "basis": "photo-id",
                    "level": 3,
                    "recorded_at": now - timedelta(seconds=event.pace_window_seconds + 21 * j),
                }
                for i, (fpr, _) in enumerate(attendees)
                for j in range(1, earlier + 1)
            ]
            db.session.execute(db.insert(Verification), rows)
            db.session.commit()
        party = Party(event.id, attendees, earlier)
        db.session.remove()
        db.engine.dispose()
    return party


def database_totals(instance: Path, event_id: str) -> dict:
    """What the server stored, read after it stopped."""
    from keyparty import create_app
    from keyparty import verification
    from keyparty.extensions import db
    from keyparty.models import Attendee
    from keyparty.models import Event

    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    app = create_app()
    with app.app_context():
        event = db.session.get(Event, event_id)
        totals = verification.totals(event)
        totals["joined"] = db.session.scalar(
            db.select(db.func.count())
            .select_from(Attendee)
            .where(Attendee.event_id == event_id, Attendee.joined_at.is_not(None))
        )
        db.session.remove()
        db.engine.dispose()
    return totals


# -- the server ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(
    env: dict,
    port: int,
    log: Path,
    threads: int | None,
    workers: int = 1,
    profile: str | None = None,
) -> subprocess.Popen:
    """`keyparty serve` on HOST:port, answering; with `profile`, under
    bench/sampler.py (each worker writes its collapsed stacks to profile.<pid>)."""
    command = [keyparty_command()]
    if profile:
        command = [sys.executable, str(BENCH / "sampler.py"), profile]
    command += ["serve", "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)]
    if threads:
        command += ["--threads", str(threads)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"keyparty serve exited ({server.returncode}):\n{log.read_text()}")
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request("GET", "/")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    stop_server(server)
    raise SystemExit(f"keyparty serve did not answer on {HOST}:{port} within 30 s")


def stop_server(server: subprocess.Popen, grace: float = 10) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; the server's exit status."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(grace)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def warm_up(port: int, party: Party) -> None:
    """Compile the templates of the key page before the clock runs (no session, no phone)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    for path in ("/", f"/e/{party.event_id}/k/{party.attendees[0][0]}", "/me"):
        connection.request("GET", path)
        connection.getresponse().read()
    connection.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (gunicorn's workers), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in task.read_text().split()]
    return found


def server_cpu_seconds(server: subprocess.Popen) -> dict[int, float]:
    """CPU seconds of the server's master and each worker process, by pid
    (a worker replaced during the run counts from its start)."""
    return {pid: cpu_seconds(pid) for pid in [server.pid, *children(server.pid)]}


def database_label(url: str | None) -> str:
    """What the run is on: "PostgreSQL" or "SQLite WAL" (the instance's file)."""
    if url and url.startswith("postgresql"):
        return "PostgreSQL"
    return "SQLite WAL"


def enough_descriptors(phones: int) -> str | None:
    """Raise this process's soft RLIMIT_NOFILE so that every phone can hold its
    socket (one each, plus a margin for the interpreter, gpg and the database);
    the server, started after this, inherits it. Returns a line saying so, or
    None when the limit was already enough. Exits when the hard limit is too low."""
    import resource

    needed = phones + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"{phones} phones need {needed} open files; the hard limit is {hard}: "
            f"raise it (ulimit -Hn {needed}, as root) or run fewer phones"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return f"open files: soft limit raised from {soft} to {needed} for {phones} phones"


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# -- the phones ---------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    status: int  # 0: no answer (connection error, timeout)
    ms: float
    at: float  # when the request started (time.monotonic())
    note: str = ""


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    verification_ms: list[float] = field(default_factory=list)  # page + post + redirect
    recorded: int = 0  # posts answered with the redirect back to the key page
    refusals: Counter = field(default_factory=Counter)  # 409 by rule
    problems: Counter = field(default_factory=Counter)
    # Wrong answers with a good status (no form, wrong redirect, not shown as
    # recorded): errors that the status codes do not show.
    content_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def problem(self, text: str, status: int | None = None) -> None:
        """Note a phone's problem; one after a 2xx/3xx answer is a content error."""
        with self.lock:
            self.problems[text] += 1
            if status is None or 200 <= status < 400:
                self.content_errors += 1


FORM = re.compile(r'<form method="post" action="(/e/[^"]+/u/(\d+))" class="form decide">')
INPUT = re.compile(r"<input\b[^>]*>")
REFUSAL = re.compile(r'class="flash refusal"[^>]*>([A-Z][A-Za-z0-9]*):')


def csrf_token(page: str, prefix: str) -> str | None:
    """The CSRF token of the form with this field prefix ("" for none)."""
    name = f"{prefix}-csrf_token" if prefix else "csrf_token"
    for tag in INPUT.findall(page):
        if f'name="{name}"' in tag:
            found = re.search(r'value="([^"]*)"', tag)
            return found.group(1) if found else None
    return None


class PhoneError(Exception):
    pass


def phone_address(index: int) -> str:
    """Phone `index`'s own loopback address (127.0.1.1, 127.0.1.2, ...): on the
    party's Wi-Fi every phone has its own address, and `keyparty serve` caps
    the connections of each address."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


class Phone:
    """One phone: its own address, keep-alive connection and session cookie."""

    def __init__(self, port: int, results: Results, source: str | None = None) -> None:
        self.port = port
        self.results = results
        self.source = source
        self.cookies: dict[str, str] = {}
        self.connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.connection:
            self.connection.close()
            self.connection = None

    def request(self, kind: str, method: str, path: str, form: dict | None = None):
        headers = {"User-Agent": "keyparty-bench-phone", "Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.connection is None:
            self.connection = http.client.HTTPConnection(
                HOST,
                self.port,
                timeout=REQUEST_TIMEOUT,
                source_address=(self.source, 0) if self.source else None,
            )
        at = time.monotonic()
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as problem:
            ms = (time.perf_counter() - started) * 1000
            self.close()
            self.results.add(Sample(kind, 0, ms, at, type(problem).__name__))
            raise PhoneError(f"{kind}: {type(problem).__name__}: {problem}") from None
        ms = (time.perf_counter() - started) * 1000
        if response.will_close:
            self.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if morsel.value == "" or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        page = data.decode("utf-8", "replace")
        self.results.add(Sample(kind, response.status, ms, at))
        location = response.headers.get("Location")
        target = None
        if location:
            parts = urlsplit(location)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        return response.status, page, target, ms


def run_phone(
    index: int,
    party: Party,
    port: int,
    results: Results,
    start: float,
    deadline: float,
    stress: bool,
    seed: int,
    join_over: float,
) -> None:
    rng = random.Random(seed * 100_003 + index)
    token = party.attendees[index][1]
    others = party.to_scan(index)
    rng.shuffle(others)
    phone = Phone(port, results, phone_address(index))
    problem = results.problem

    def sleep_until(moment: float) -> bool:
        """Wait until `moment`; False if that is past the time bound."""
        if moment >= deadline:
            return False
        time.sleep(max(0.0, moment - time.monotonic()))
        return True

    try:
        if not sleep_until(start + rng.uniform(0, join_over)):
            return
        # O2: the link's page shows a button; only its POST spends the link.
        status, page, _, _ = phone.request("join-page", "GET", f"/join/{token}")
        form_token = csrf_token(page, "") if status == 200 else None
        if not form_token:
            problem(f"join page answered {status} without its button", status)
            return
        fields = {"csrf_token": form_token}
        status, _, target, _ = phone.request("join", "POST", f"/join/{token}", fields)
        if status != 302 or target != "/me":
            problem(f"join answered {status} -> {target}", status)
            return
        status, _, _, _ = phone.request("me", "GET", target)
        if status != 200:
            problem(f"/me answered {status}", status)
            return
        next_post = time.monotonic()
        for fingerprint in others:
            if not sleep_until(next_post if stress else time.monotonic() + rng.uniform(0, 2)):
                return
            page_path = f"/e/{party.event_id}/k/{fingerprint}"
            status, page, _, page_ms = phone.request("page", "GET", page_path)
            if status != 200:
                problem(f"key page answered {status}", status)
                continue
            form = FORM.search(page)
            if form is None:
                problem("key page without a user ID form")
                continue
            action, uid = form.group(1), form.group(2)
            token_value = csrf_token(page, f"u{uid}")
            if not token_value:
                problem("key page without a CSRF token")
                continue
            # Checking the ID; the post also keeps the event's pace (P4).
            checked = next_post if stress else time.monotonic() + rng.uniform(*CHECK_ID)
            if not sleep_until(max(checked, next_post)):
                return
            fields = {
                f"u{uid}-context": "identity",
                f"u{uid}-basis": "photo-id",
                f"u{uid}-csrf_token": token_value,
            }
            status, page, target, post_ms = phone.request("post", "POST", action, fields)
            posted = time.monotonic()
            next_post = posted + (STRESS_MIN_CYCLE if stress else rng.uniform(*BETWEEN_POSTS))
            if status == 409:
                rule = REFUSAL.search(page)
                with results.lock:
                    results.refusals[rule.group(1) if rule else "409 without a rule"] += 1
                continue
            if status != 302 or target != page_path:
                problem(f"verify answered {status} -> {target}", status)
                continue
            with results.lock:
                results.recorded += 1
            status, page, _, back_ms = phone.request("redirect", "GET", target)
            if status != 200:
                problem(f"key page after verifying answered {status}", status)
                continue
            if 'class="done"' not in page or "flash ok" not in page:
                problem("key page after verifying does not show it recorded")
                continue
            with results.lock:
                results.verification_ms.append(page_ms + post_ms + back_ms)
    except PhoneError as failure:  # no answer: already an error sample (status 0)
        problem(str(failure), 0)
    except Exception as failure:  # a bug in this client: say so, do not hide it
        problem(f"client {type(failure).__name__}: {failure}")
    finally:
        phone.close()


# -- figures ------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def row(name: str, values: list[float]) -> str:
    figures = [percentile(values, q) for q in (50, 90, 99, 100)]
    return f"  {name:<44}{len(values):>7}" + "".join(f"{v:>9.1f}" for v in figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=300, help="phones = attendees = keys")
    parser.add_argument("--seconds", type=float, default=30, help="time bound of the load")
    parser.add_argument("--scenario", choices=("party", "stress"), default="party")
    parser.add_argument(
        "--join-over",
        type=float,
        default=10.0,
        metavar="S",
        help="phones join at random moments in the first S seconds (default 10)",
    )
    parser.add_argument(
        "--earlier",
        type=int,
        default=0,
        metavar="K",
        help="each attendee already verified K others before the run (later in the party)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--server-threads",
        type=int,
        metavar="N",
        help="server threads (`keyparty serve --threads N`); default: keyparty's own (32)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes (`keyparty serve --workers N`; default 1)",
    )
    parser.add_argument(
        "--samples", metavar="FILE", help="also write every request as CSV (kind,status,t,ms)"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="sample the server's workers' stacks during the load (bench/sampler.py): "
        "collapsed stacks in FILE.<pid>, one file per worker",
    )
    options = parser.parse_args()
    if options.phones < 2:
        parser.error("--phones must be at least 2")
    if not 0 <= options.earlier <= options.phones - 2:
        parser.error("--earlier must be between 0 and phones - 2")
    if not 1 <= options.seconds <= 600:
        parser.error("--seconds must be between 1 and 600")
    stress = options.scenario == "stress"
    if options.profile:
        options.profile = os.path.abspath(options.profile)  # the server runs elsewhere

    scratch = short_tempdir()
    os.environ["HOME"] = str(scratch)
    # PostgreSQL when KEYPARTY_DATABASE_URL names one (run under tests/pg.sh,
    # which makes a throw-away cluster), else the instance's SQLite file.
    database_url = os.environ.get("KEYPARTY_DATABASE_URL") or None
    database = database_label(database_url)
    for name in (
        "GNUPGHOME",
        "KEYPARTY_DATABASE_URL",
        "KEYPARTY_SECRET_KEY",
        "KEYPARTY_HOST_PASSWORD",
        "KEYPARTY_PUBLIC_URL",
    ):
        os.environ.pop(name, None)
    if database_url:
        os.environ["KEYPARTY_DATABASE_URL"] = database_url
    raised = enough_descriptors(options.phones)
    if raised:
        print(raised)
    server = None
    try:
        keys_module = bench_import()
        keyring = keys_module.test_keys(options.phones)
        instance = short_tempdir()
        print(f"Set-up: {options.phones} keys into a fresh instance {instance} ...", flush=True)
        started = time.perf_counter()
        party = set_up(instance, keyring, options.phones, stress, options.earlier)
        print(f"  event {party.event_id!r} verifying in {time.perf_counter() - started:.1f} s")

        port = free_port()
        env = dict(os.environ, KEYPARTY_INSTANCE=str(instance), HOME=str(scratch))
        server = start_server(
            env,
            port,
            scratch / "server.log",
            options.server_threads,
            options.workers,
            options.profile,
        )
        print(
            f"  keyparty serve pid {server.pid} on http://{HOST}:{port}/, "
            f"{options.workers} worker(s), {database}",
            flush=True,
        )
        warm_up(port, party)

        results = Results()
        threading.stack_size(512 * 1024)
        cpu_server, cpu_client, busy = (
            server_cpu_seconds(server),
            time.process_time(),
            machine_busy(),
        )
        start = time.monotonic() + 0.5  # every thread started before the first request
        deadline = start + options.seconds
        phones = [
            threading.Thread(
                target=run_phone,
                args=(
                    i,
                    party,
                    port,
                    results,
                    start,
                    deadline,
                    stress,
                    options.seed,
                    options.join_over,
                ),
                daemon=True,
            )
            for i in range(options.phones)
        ]
        for phone in phones:
            phone.start()
        print(
            f"Load: {options.phones} phones, scenario {options.scenario}, "
            f"{options.seconds:g} s ...",
            flush=True,
        )
        for phone in phones:  # a request in flight at the bound may take its timeout
            phone.join(max(0.0, deadline + REQUEST_TIMEOUT + 5 - time.monotonic()))
        wall = time.monotonic() - start
        cpu_now = server_cpu_seconds(server)
        cpu_server = sum(cpu_now[pid] - cpu_server.get(pid, 0.0) for pid in cpu_now)
        cpu_client = time.process_time() - cpu_client
        busy_now = machine_busy()
        machine = (busy_now[0] - busy[0]) / max(1, busy_now[1] - busy[1]) * (os.cpu_count() or 1)
        stuck = sum(phone.is_alive() for phone in phones)
        stop_server(server)
        if options.profile:
            written = sorted(
                str(p) for p in Path(options.profile).parent.glob(Path(options.profile).name + ".*")
            )
            print(f"profile of the server's workers: {' '.join(written) or 'none written'}")
            if written:
                print(f"  busiest: .venv/bin/python bench/sampler.py --top {' '.join(written)}")
        log = (scratch / "server.log").read_text(errors="replace")
        server = None
        stored = database_totals(instance, party.event_id)
        gpgconf = keys_module.GPGCONF
        subprocess.run(
            [gpgconf, "--homedir", str(instance / "gnupg" / party.event_id), "--kill", "all"],
            capture_output=True,
        )
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        if server is not None:
            stop_server(server)
        for path in _temp_dirs:
            shutil.rmtree(path, ignore_errors=True)

    samples = results.samples
    if options.samples:
        with open(options.samples, "w", encoding="utf-8") as out:
            out.write("kind,status,t,ms\n")
            for s in sorted(samples, key=lambda s: s.at):
                out.write(f"{s.kind},{s.status},{s.at - start:.4f},{s.ms:.2f}\n")
    answered = [s for s in samples if s.status]
    expected_409 = stress  # P4 refusals are possible only when phones go fast
    errors = [
        s for s in samples if not (200 <= s.status < 400) and not (s.status == 409 and expected_409)
    ]
    problems = results.problems
    error_count = len(errors) + results.content_errors + stuck

    print(f"\nScenario: {options.scenario}")
    if stress:
        print(
            "  pace set permissive (gap 1 s, at most 1000 in 300 s); no think time; "
            f"at most one post per {STRESS_MIN_CYCLE} s per phone (closed loop: capacity)"
        )
    else:
        print(
            f"  default pace (P4: 20 s apart, 10 in 5 min); "
            f"joins in the first {options.join_over:g} s; "
            f"{CHECK_ID[0]:g}-{CHECK_ID[1]:g} s checking the ID between page and post; "
            f"posts of one phone {BETWEEN_POSTS[0]:g}-{BETWEEN_POSTS[1]:g} s apart"
        )
    print(
        f"phones {options.phones}, keys {options.phones}, server: keyparty serve "
        f"(gunicorn, {options.workers} worker(s) x "
        f"{options.server_threads or 'default 32'} threads) on {HOST}, {database}"
    )
    print(
        f"\nrequests: {len(samples)} in {wall:.1f} s = {len(samples) / wall:.1f} req/s "
        f"(answered {len(answered)})"
    )
    print(f"  {'latency, ms':<44}{'count':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    kinds = {
        "join-page": "join link's page (GET /join/<token>)",
        "join": "join (POST /join/<token>, a write)",
        "me": "own page after joining (GET /me)",
        "page": "key page (GET /e/<event>/k/<FPR>)",
        "post": "verify (POST .../u/<uid>)",
        "redirect": "key page after verifying (GET)",
    }
    for kind, label in kinds.items():
        print(row(label, [s.ms for s in answered if s.kind == kind]))
    print(row("one verification (page + post + redirect)", results.verification_ms))
    print(row("all requests", [s.ms for s in answered]))
    joins = [s.at + s.ms / 1000 for s in answered if s.kind in ("join-page", "join", "me")]
    if joins:
        joined = max(joins)
        after = [s.ms for s in answered if s.at > joined]
        print(row(f"all requests after the last join (t > {joined - start:.1f} s)", after))
    statuses = Counter(s.status for s in samples)
    print(f"\nstatus codes: {dict(sorted(statuses.items()))}")
    new = stored["verifications"] - options.phones * options.earlier
    print(
        f"verifications recorded: {results.recorded} posts answered with the redirect, "
        f"{new} new in the database"
        + (f" (+{options.phones * options.earlier} made before the run)" if options.earlier else "")
    )
    print(f"database after the run: {stored}")
    if new != results.recorded:
        print("  MISMATCH: the database does not hold what the phones were told")
        error_count += abs(new - results.recorded)
    print(
        f"refusals (409, by rule): {dict(results.refusals) or 0}"
        + (" (expected: P4 when a phone goes fast)" if stress else " (none expected)")
    )
    print(f"rate limited (429): {statuses.get(429, 0)}")
    if problems:
        print("problems:")
        for text, count in problems.most_common(12):
            print(f"  {count:6}  {text}")
    if stuck:
        print(f"phones still waiting after the bound: {stuck}")
    tracebacks = log.count("Traceback")
    if tracebacks:
        raised = Counter(
            line.strip()[:200]
            for line in log.splitlines()
            if re.match(r"(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)\b", line.strip())
        )
        print(f"server log: {tracebacks} tracebacks:")
        for text, count in raised.most_common(6):
            print(f"  {count:6}  {text}")
    queue_warnings = log.count("Task queue depth")
    if queue_warnings:
        depth = max(int(d) for d in re.findall(r"Task queue depth is (\d+)", log))
        print(
            f"server log: waitress warned {queue_warnings} times of queued tasks (deepest {depth})"
        )
    print(
        f"\nCPU over {wall:.1f} s: server {cpu_server:.1f} s ({cpu_server / wall:.0%} of a core), "
        f"this client {cpu_client:.1f} s ({cpu_client / wall:.0%} of a core), "
        f"machine {machine:.2f} of {os.cpu_count()} cores busy, of which other processes "
        f"{max(0.0, machine - (cpu_server + cpu_client) / wall):.2f} (figures are noisy when "
        "this is high)"
    )
    p99 = percentile([s.ms for s in answered], 99)
    if not stress:
        verdict = "met" if p99 < TARGET_P99_MS and not error_count else "MISSED"
        print(f"target p99 < {TARGET_P99_MS:g} ms, zero errors: {verdict}")
    command = [".venv/bin/python", "bench/phones.py", "--phones", str(options.phones)]
    command += ["--seconds", f"{options.seconds:g}"]
    if stress:
        command += ["--scenario", "stress"]
    if options.join_over != 10:
        command += ["--join-over", f"{options.join_over:g}"]
    if options.earlier:
        command += ["--earlier", str(options.earlier)]
    if options.workers != 1:
        command += ["--workers", str(options.workers)]
    if options.server_threads:
        command += ["--server-threads", str(options.server_threads)]
    if options.seed != 1:
        command += ["--seed", str(options.seed)]
    if database_url:
        command = ["tests/pg.sh", *command]
    print(f"reproduce: {shlex.join(command)}")
    print(f"p99_ms={p99:.1f} errors={error_count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
