"""Server CPU per phone request, in one process, without the network.

    .venv/bin/python bench/phone_cpu.py [--phones 100] [--rounds 3] [--profile FILE]
    tests/pg.sh .venv/bin/python bench/phone_cpu.py     # the same on PostgreSQL

bench/phones.py measures a room of phones through `keyparty serve`; its CPU
per request is the figure to cut, but a run takes minutes and a loaded
machine blurs it. This runs the same requests a phone makes, through Flask's
test client in this process (the app object `keyparty serve` runs, minus
gunicorn), and reports the CPU time (time.process_time, this process only:
the database server's own CPU is not in it on PostgreSQL) per request kind:

- join page (GET /join/<token>), join (POST), /me after the redirect;
- key page (GET /e/ID/k/FPR), verification (POST), key page after the redirect.

Set-up as bench/phones.py's (its `set_up`: N keys, frozen, confirmed,
verifying), with the pace made permissive (the clock does not move: P4 would
refuse the rounds otherwise). Each phone joins, then verifies `--rounds`
other keys. The last line is `cpu_ms_per_request=<mean over all kinds>`.
`--profile FILE` writes a cProfile of the timed requests (pstats format).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import phones  # noqa: E402  (bench/phones.py: its set-up and its temporary folders)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="verifications per phone")
    parser.add_argument("--profile", help="write a cProfile of the timed requests here")
    parser.add_argument(
        "--statements", action="store_true", help="print the SQL of each kind's first request"
    )
    args = parser.parse_args()

    home = phones.short_tempdir("kpch")
    os.environ["HOME"] = str(home)
    for name in ("GNUPGHOME", "KEYPARTY_SECRET_KEY", "KEYPARTY_PUBLIC_URL"):
        os.environ.pop(name, None)
    try:
        keyring = phones.bench_import().test_keys(args.phones)
        instance = phones.short_tempdir("kpci")
        party = phones.set_up(instance, keyring, args.phones, stress=True, earlier=0)
        return run(party, args)
    finally:
        for path in phones._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)


def run(party, args) -> int:
    from keyparty import create_app

    app = create_app()
    app.config["RATE_LIMIT_FACTOR"] = 1000  # one address for every phone here
    cpu: dict[str, list[float]] = defaultdict(list)
    queries: dict[str, int] = defaultdict(int)
    statements = [0]

    from sqlalchemy import event as sa_event

    from keyparty.extensions import db

    with app.app_context():
        engine = db.engine

    shown: set[str] = set()
    current = [""]

    def count(_conn, _cursor, statement, *_args):
        statements[0] += 1
        if args.statements and current[0] not in shown:
            print(f"  [{current[0]}] {' '.join(statement.split())[:300]}")

    sa_event.listen(engine, "before_cursor_execute", count)
    # CPU time, as the table: waiting for the database is not counted.
    profiler = cProfile.Profile(time.process_time) if args.profile else None

    def timed(kind, call, *a, **kw):
        if profiler:
            profiler.enable()
        before = statements[0]
        current[0] = kind
        start = time.process_time()
        response = call(*a, **kw)
        cpu[kind].append(time.process_time() - start)
        queries[kind] += statements[0] - before
        shown.add(kind)
        if profiler:
            profiler.disable()
        return response

    # Warm-up (templates compiled), not counted.
    with app.test_client() as warm:
        warm.get(f"/e/{party.event_id}/k/{party.attendees[0][0]}")
    n = len(party.attendees)
    clients = []
    for _fpr, token in party.attendees:
        client = app.test_client()
        page = timed("join page", client.get, f"/join/{token}")
        csrf = phones.csrf_token(page.text, "")
        answer = timed("join", client.post, f"/join/{token}", data={"csrf_token": csrf})
        assert answer.status_code == 302, answer.status_code
        me = timed("me", client.get, "/me")
        assert me.status_code == 200
        clients.append(client)
    for round_ in range(1, args.rounds + 1):
        for index, client in enumerate(clients):
            fpr = party.attendees[(index + round_) % n][0]
            path = f"/e/{party.event_id}/k/{fpr}"
            page = timed("key page", client.get, path)
            assert page.status_code == 200, page.status_code
            action, uid = phones.FORM.search(page.text).groups()
            prefix = f"u{uid}-"
            form = {
                prefix + "csrf_token": phones.csrf_token(page.text, f"u{uid}"),
                prefix + "context": "identity",
                prefix + "basis": "photo-id",
            }
            posted = timed("verify", client.post, action, data=form)
            assert posted.status_code == 302, (posted.status_code, posted.data[-800:])
            after = timed("key page after", client.get, path)
            assert b"Recorded" in after.data
    if profiler:
        profiler.dump_stats(args.profile)
    print(f"database: {app.config['SQLALCHEMY_DATABASE_URI'].split(':', 1)[0]}")
    print(f"{'request':<16} {'count':>6} {'cpu ms mean':>12} {'statements':>11}")
    total = 0.0
    kinds = 0
    for kind, times in cpu.items():
        mean = 1000 * sum(times) / len(times)
        total += mean
        kinds += 1
        per = queries[kind] / len(times)
        print(f"{kind:<16} {len(times):>6} {mean:>12.2f} {per:>11.1f}")
    print(f"cpu_ms_per_request={total / kinds:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
