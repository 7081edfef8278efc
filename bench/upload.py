"""Benchmark: online uploads of certifications to `keyparty serve`, at event size.

    .venv/bin/python bench/upload.py [--keys 300 1000] [--verified 50] [--signers 1]
        [--uploads U] [--concurrent] [--server gunicorn|waitress] [--stack-kib K]
        [--malloc-debug] [--no-extensions] [--stack-probe KIB ...]

What it drives (issue 13, item 5: the server died with a segfault in
libpython on the first online upload at 1000 keys, never at 300). For each
event size N:

- set-up, in this process: N target keys with two user IDs (bench/sign.py's
  cached keys) and --signers signer keys registered on a real event, frozen,
  every entry confirmed, each signer's verifications of every user ID of the
  first --verified targets recorded, cooling-off, signing (bench/sign.py's
  `build_event`); a signing token issued to each signer (as the phone's token
  page or pairing does);
- the server, as a child process, with PYTHONFAULTHANDLER=1 (and
  PYTHONMALLOC=debug with --malloc-debug): `keyparty serve` (gunicorn
  gthread, the default), or waitress as keyparty served before
  (`--server waitress`: 32 threads, 1000 connections); `--stack-kib K` sets
  every thread's stack to K KiB (`threading.stack_size`) before the server
  starts, to look for C recursion that only a small stack shows;
  `--no-extensions` lets the server load no compiled module but CPython's
  own (SQLAlchemy's Cython modules from their sources, no markupsafe
  speedups); `--stack-probe KIB...` only loads every key of the event in a
  thread with each stack size and reports the smallest that sufficed;
- per signer, what `keyparty sign http://HOST/e/EVENT --token T` does: the
  bundle downloaded over HTTP (`signing.load_bundle`), checked, certified
  with `signing.certify_all` in a copy of the signer's home, written
  (`signing.write_files`), then uploaded one certification per request
  (`signing.upload`), each request timed (`--uploads U`: only the first U
  of each signer's; `--concurrent`: the signers at the same time, a thread
  each);
- afterwards: the server must still be running, its log must hold no fatal
  error, no worker killed by a signal and no traceback; it is stopped with
  SIGTERM and its exit status checked (gunicorn's arbiter 0, waitress -15);
  every upload must be answered "accepted" and stored.

Printed per size: upload latency (p50, p99, max, ms), the answers, what the
server's log said, its exit status. Last line
`crashes=<count> upload_p99_ms=<largest N>`; the run exits 1 on any crash
or failed upload.

Only 127.0.0.1 is contacted; HOME is a scratch folder (the run fails if a
.gnupg appears there); the server is stopped by its pid; every temporary
folder is deleted.
"""

from __future__ import annotations

import argparse
import http.client
import inspect
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
RECORD = threading.Lock()  # signers upload from threads with --concurrent

sb = benchlib.load("sign")
phones = benchlib.load("phones")
bi = sb.bi
short_tempdir = sb.short_tempdir
remove = sb.remove

# The server child: optional thread stack size, then gunicorn (keyparty serve) or waitress.
LAUNCHER = """
import sys, threading
server, host, port, stack_kib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if stack_kib:
    threading.stack_size(stack_kib * 1024)
if server == "waitress":
    import waitress
    from keyparty import create_app
    waitress.serve(create_app(), host=host, port=port, threads=32, connection_limit=1000,
                   channel_timeout=60, ident="keyparty")
else:
    import importlib.util
    from keyparty.cli import main
    sys.argv = ["keyparty", "serve", "--host", host, "--port", str(port)]
    # Every signer comes from 127.0.0.1 here: the per-address cap is not under
    # test (keyparty before gunicorn had none).
    if importlib.util.find_spec("keyparty.serving"):
        sys.argv += ["--per-address", "1000"]
    main()
"""

# --no-extensions: the server loads no compiled module but CPython's own
# (SQLAlchemy's Cython modules from their Python sources, markupsafe's
# speedups refused), through a sitecustomize on its PYTHONPATH.
NO_EXTENSIONS = """
import importlib.abc, importlib.util, os, sys

class _PurePython(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "markupsafe._speedups":
            raise ImportError("compiled speedups refused (bench/upload.py --no-extensions)")
        if not (name.startswith("sqlalchemy.") and name.endswith("_cy")) or not path:
            return None
        source = os.path.join(list(path)[0], name.rsplit(".", 1)[1] + ".py")
        return importlib.util.spec_from_file_location(name, source) if os.path.exists(source) else None

sys.meta_path.insert(0, _PurePython())
"""

# What a dying server leaves in its log: faulthandler, gunicorn's arbiter, Python.
FATAL = re.compile(
    r"Fatal Python error|Segmentation fault|SIGSEGV|SIGABRT|SIGBUS|was sent|"
    r"Worker exited|Traceback|MemoryError|stack overflow"
)


@dataclass
class Run:
    keys: int
    latencies_ms: list[float] = field(default_factory=list)
    answers: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    returncode: int | None = None
    alive_after: bool = False
    stored: int = 0
    uploads: int = 0

    @property
    def crashed(self) -> bool:
        return bool(self.log_lines) or not self.alive_after

    def p(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def issue_tokens(instance: Path, signers: list[str]) -> dict[str, str]:
    """A signing token for each signer, as the phone's token page issues it."""
    from keyparty import create_app
    from keyparty.extensions import db
    from keyparty.models import Key

    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    try:
        app = create_app()
        with app.app_context():
            tokens = {}
            for fingerprint in signers:
                key = db.session.scalar(db.select(Key).where(Key.fingerprint == fingerprint))
                try:
                    from keyparty.pairing import issue_signing_token
                except ImportError:  # keyparty before pairing (bench of older code)
                    from keyparty.registration import hash_token

                    token = os.urandom(16).hex()
                    key.attendee.signing_token_sha256 = hash_token(token)
                else:
                    token = issue_signing_token(key.attendee)
                tokens[fingerprint] = token
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        return tokens
    finally:
        os.environ.pop("KEYPARTY_INSTANCE", None)


def stored_certifications(instance: Path) -> int:
    from keyparty import create_app
    from keyparty.extensions import db
    from keyparty.models import Certification

    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    try:
        app = create_app()
        with app.app_context():
            count = db.session.scalar(
                db.select(db.func.count())
                .select_from(Certification)
                .where(Certification.status == "accepted")
            )
            db.session.remove()
            db.engine.dispose()
        return count
    finally:
        os.environ.pop("KEYPARTY_INSTANCE", None)


def start_server(
    instance: Path,
    scratch: Path,
    log: Path,
    server: str,
    stack_kib: int,
    malloc_debug: bool,
    no_extensions: bool = False,
) -> tuple[subprocess.Popen, int]:
    port = phones.free_port()
    env = dict(os.environ, KEYPARTY_INSTANCE=str(instance), HOME=str(scratch))
    env["PYTHONFAULTHANDLER"] = "1"
    # The bundle names the server the signer downloads it from (else a LAN address).
    env["KEYPARTY_PUBLIC_URL"] = f"http://{HOST}:{port}"
    # One signer uploads hundreds in a minute here; the limits are not under test.
    env["KEYPARTY_RATE_LIMIT_FACTOR"] = "1000"
    if malloc_debug:
        env["PYTHONMALLOC"] = "debug"
    if no_extensions:
        shim = short_tempdir()
        (shim / "sitecustomize.py").write_text(NO_EXTENSIONS)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(shim)]))
    command = [sys.executable, "-c", LAUNCHER, server, HOST, str(port), str(stack_kib)]
    with log.open("wb") as out:
        child = subprocess.Popen(
            command, env=env, cwd=scratch, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the server exited ({child.returncode}):\n{log.read_text()}")
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request("GET", "/")
            if connection.getresponse().status == 200:
                return child, port
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    stop_server(child)
    raise SystemExit(f"the server did not answer on {HOST}:{port} within 120 s")


def stop_server(child: subprocess.Popen) -> int:
    return phones.stop_server(child, grace=20)


def sign_online(
    url: str, token: str, template: Path, sha256: str, run: Run, limit: int | None
) -> None:
    """What `keyparty sign URL --token T --digest D` does, each upload timed."""
    from keyparty import signing
    from keyparty.gpg import GnuPGHome

    home_path = sb.copy_home(template)
    out = short_tempdir()
    try:
        bundle = signing.load_bundle(url, token)
        signing.check_bundle(bundle)
        assert signing.check_digest(bundle, sha256)
        home = GnuPGHome(home_path, create=False, agent=True)
        signers = signing.choose_signers(home, bundle, [])
        report = signing.certify_all(home, bundle, signers)
        assert not report.failed, report.failed[:3]
        files = signing.write_files(home, bundle, signers, out)[:limit]
        with RECORD:
            run.uploads += len(files)
        # keyparty before issue 11 took the server from the bundle (bench of older code)
        older = next(iter(inspect.signature(signing.upload).parameters)) == "bundle"
        for path in files:
            started = time.perf_counter()
            try:
                outcomes = signing.upload(bundle if older else url, token, [path])
            except Exception as problem:  # noqa: BLE001 - a dying server answers nothing
                with RECORD:
                    run.failures.append(f"{path.name}: {type(problem).__name__}: {problem}")
                    run.answers["no answer"] += 1
                continue
            with RECORD:
                run.latencies_ms.append((time.perf_counter() - started) * 1000)
                for outcome in outcomes:
                    run.answers[outcome["status"]] += 1
                    if outcome["status"] != "accepted":
                        run.failures.append(f"{path.name}: {outcome}")
    finally:
        remove(out)
        remove(home_path)


def one_size(n: int, options, template: Path, signers: list[str], signer_public: bytes) -> Run:
    run = Run(n)
    targets = sb.cached_keys(n).read_bytes()
    started = time.perf_counter()
    party = sb.build_event(
        short_tempdir(),
        f"Upload bench {n}",
        targets,
        signer_public,
        signers,
        verified=options.verified,
    )
    tokens = issue_tokens(party.instance, signers)
    print(
        f"N = {n}: event {party.event_id} with {n + len(signers)} keys, "
        f"{len(signers)} signer(s) x {options.verified} keys verified, "
        f"built in {time.perf_counter() - started:.1f} s (not timed)",
        flush=True,
    )
    scratch = Path(os.environ["HOME"])
    log = short_tempdir() / "server.log"
    child, port = start_server(
        party.instance,
        scratch,
        log,
        options.server,
        options.stack_kib,
        options.malloc_debug,
        options.no_extensions,
    )
    try:
        url = f"http://{HOST}:{port}/e/{party.event_id}"

        def one(fingerprint: str) -> None:
            sign_online(url, tokens[fingerprint], template, party.sha256, run, options.uploads)

        if options.concurrent:
            # Each signer on their own machine at the same time (a thread each).
            with ThreadPoolExecutor(len(signers)) as pool:
                list(pool.map(one, signers))
        else:
            for fingerprint in signers:
                one(fingerprint)
                if child.poll() is not None:
                    break
        time.sleep(0.5)  # let a dying worker's last words reach the log
        run.alive_after = child.poll() is None
    finally:
        run.returncode = stop_server(child)
    text = log.read_text(errors="replace")
    run.log_lines = [line for line in text.splitlines() if FATAL.search(line)]
    if run.log_lines:
        keep = Path("/tmp") / f"upload-bench-server-{n}-{os.getpid()}.log"
        keep.write_text(text)
        print(f"  server log kept: {keep}")
    remove(log.parent)
    run.stored = stored_certifications(party.instance)
    remove(party.instance)
    return run


# --stack-probe: what the crash report named, on its own: load every key of the
# event with its user IDs and attendee (as intake did through `event.keys`),
# end the session and collect garbage, in a thread with a stack of K KiB.
STACK_PROBE = """
import faulthandler, gc, sys, threading
faulthandler.enable()

def work():
    from keyparty import create_app, events
    from keyparty.extensions import db
    app = create_app()
    with app.app_context():
        event = events.get_event(sys.argv[2])
        keys = {k.fingerprint: k for k in event.keys}
        loaded = sum(len(k.user_ids) + (k.attendee is not None) for k in keys.values())
        db.session.remove()
        del keys, event
        gc.collect()
    print("loaded", loaded, flush=True)

threading.stack_size(int(sys.argv[1]) * 1024)
thread = threading.Thread(target=work)
thread.start()
thread.join()
"""


def stack_probe(options, signers: list[str], signer_public: bytes) -> list[tuple[int, int, int]]:
    """(N, stack KiB, exit status) for each size and stack: a child process each."""
    scratch = Path(os.environ["HOME"])
    found = []
    for n in sorted(set(options.keys)):
        party = sb.build_event(
            short_tempdir(),
            f"Stack probe {n}",
            sb.cached_keys(n).read_bytes(),
            signer_public,
            signers,
            verified=1,
        )
        env = dict(os.environ, KEYPARTY_INSTANCE=str(party.instance))
        for kib in options.stack_probe:
            child = subprocess.run(
                [sys.executable, "-c", STACK_PROBE, str(kib), party.event_id],
                env=env,
                cwd=scratch,
                capture_output=True,
                text=True,
            )
            found.append((n, kib, child.returncode))
            print(f"  N = {n}, stack {kib} KiB: exit {child.returncode} {child.stdout.strip()}")
        remove(party.instance)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[300, 1000], metavar="N")
    parser.add_argument("--verified", type=int, default=50, help="targets each signer verified")
    parser.add_argument("--signers", type=int, default=1)
    parser.add_argument("--uploads", type=int, help="upload only the first U of each signer's")
    parser.add_argument(
        "--concurrent", action="store_true", help="the signers upload at the same time"
    )
    parser.add_argument("--server", choices=["gunicorn", "waitress"], default="gunicorn")
    parser.add_argument("--stack-kib", type=int, default=0, help="thread stack size (0: default)")
    parser.add_argument("--malloc-debug", action="store_true", help="PYTHONMALLOC=debug")
    parser.add_argument(
        "--no-extensions",
        action="store_true",
        help="the server loads no compiled module but CPython's own",
    )
    parser.add_argument(
        "--stack-probe",
        type=int,
        nargs="+",
        metavar="KIB",
        help="only load every key of the event in a thread with each of these stack sizes",
    )
    options = parser.parse_args()

    # Under tests/pg.sh the event lives in its throw-away PostgreSQL.
    database = os.environ.get("KEYPARTY_DATABASE_URL")
    scratch = sb.scratch_home()
    if database:
        os.environ["KEYPARTY_DATABASE_URL"] = database
    runs = []
    try:
        template, signers, signer_public = sb.signer_home(
            sb.cached_keys(options.signers, signers=True)
        )
        if options.stack_probe:
            probed = stack_probe(options, signers, signer_public)
        else:
            for n in sorted(set(options.keys)):
                runs.append(one_size(n, options, template, signers, signer_public))
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        for path in list(bi._temp_dirs):
            remove(path)

    if options.stack_probe:
        # The smallest stack that sufficed at each size: equal when nothing
        # recurses with the number of keys.
        for n in sorted(set(options.keys)):
            enough = [kib for m, kib, code in probed if m == n and code == 0]
            print(f"N = {n}: smallest stack that sufficed {min(enough, default=None)} KiB")
        return 0
    print(f"\nserver: {options.server}", end="")
    print(f", thread stacks {options.stack_kib} KiB" if options.stack_kib else "", end="")
    print(", PYTHONMALLOC=debug" if options.malloc_debug else "")
    expected_rc = 0 if options.server == "gunicorn" else -signal.SIGTERM
    crashes = 0
    for run in runs:
        print(f"\nN = {run.keys} keys: {run.uploads} uploads, one request each")
        print(
            f"  upload ms: p50 {run.p(0.5):.0f}  p99 {run.p(0.99):.0f}  "
            f"max {max(run.latencies_ms, default=float('nan')):.0f}"
        )
        print(f"  answers: {dict(run.answers)}; stored accepted: {run.stored}")
        print(
            f"  server running after the uploads: {run.alive_after}; "
            f"exit status after SIGTERM: {run.returncode} (expected {expected_rc})"
        )
        for line in run.log_lines[:20]:
            print(f"  server log: {line}")
        for failure in run.failures[:5]:
            print(f"  failed: {failure}")
        bad = run.crashed or run.returncode != expected_rc
        crashes += bad
        if bad or run.failures or run.stored != run.uploads:
            print("  FAILED")
    command = [".venv/bin/python", "bench/upload.py", "--keys", *map(str, sorted(options.keys))]
    for name in ("verified", "signers", "uploads", "stack_kib"):
        value = getattr(options, name)
        if value != parser.get_default(name):
            command += [f"--{name.replace('_', '-')}", str(value)]
    if options.server != "gunicorn":
        command += ["--server", options.server]
    if options.concurrent:
        command.append("--concurrent")
    if options.malloc_debug:
        command.append("--malloc-debug")
    if options.no_extensions:
        command.append("--no-extensions")
    print(f"\nreproduce: {shlex.join(command)}")
    print(f"crashes={crashes} upload_p99_ms={runs[-1].p(0.99):.0f}")
    failed = any(r.failures or r.stored != r.uploads for r in runs)
    return 1 if crashes or failed else 0


if __name__ == "__main__":
    sys.exit(main())
