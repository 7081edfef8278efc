"""Benchmark: a 1000-attendee event, step by step, on SQLite or PostgreSQL.

    .venv/bin/python bench/big_event.py [--attendees 1000] [--verifications 50000]
        [--decisions 200] [--database sqlite|postgresql] [--profile STEP]

`--database postgresql` runs the same script again under tests/pg.sh (a
throw-away PostgreSQL cluster on a Unix socket); run directly under
tests/pg.sh (KEYPARTY_DATABASE_URL set to postgresql+psycopg://...) it uses
that database. Otherwise a SQLite file in a fresh instance folder.

Set-up, not timed, cached under /tmp (delete to make again):

- the attendees' keys: N keys with two user IDs each and their secret keys
  (bench/sign.py's `cached_keys(N, signers=True)`: ed25519 + cv25519, `Bench
  User 9xxxx <...@example.org>` and `<...@work.example.net>`, made in parallel
  gpg processes), /tmp/keyparty-bench-signer-keys-N.gpg;
- who verifies whom: attendee p (in key-number order) verifies both user IDs
  of the K = V / 2N attendees after it (p+1 ... p+K, round the list);
- the certifications: each attendee certifies those K keys with their own
  secret key, one `gpg --quick-sign-key FPR =uid1 =uid2` per key with the
  event's notations (context@keyparty.org=identity, event@keyparty.org=
  big-event), level 3, 365 days; four GnuPG homes holding every secret key
  take a quarter of the signers each, in parallel. The homes are exported
  and cached in /tmp/keyparty-bench-big-certs-N-V/ with the moment they were
  made; each upload is cut from them as `keyparty sign` writes it (the key,
  one user ID, its self-signature, the one certification).

Measured, one after the other in one process, through a fresh instance
(`KEYPARTY_INSTANCE`) and `create_app()`; where a step is gpg's work, the raw
gpg commands doing the same work run just before it, on the same data:

1. import: `registration.register_keys` of the N public keys (raw: `gpg
   --import-options self-sigs-only,import-clean --import` into an empty home);
2. freeze: `events.take_step(event, "freeze")`: the party list written,
   its SHA-256 and SHA-512 digests (target < 5 s);
3. badges: GET /host/e/ID/badges through the app (Flask test client), first
   (2N QR codes drawn) and again (cached) (targets < 5 s and < 1 s);
4. join and confirm: each attendee's phone (its own test client, cookie jar
   and address) opens its join link, joins, and confirms its entry (T4);
5. verifications: V POSTs /e/ID/k/FPR/u/UID through the app, the signers
   taking turns (round r: every signer verifies user ID r%2 of its r//2-th
   key); the P4 pace is kept by an injected clock (the attendee routes'
   `_now`: round r happens at T0 + 31 s x (r // 2) + (r % 2) s: a new key
   every 31 s, the second user ID of a key 1 s later), so nothing is refused
   and no one sleeps. Each POST must answer 302. The p99 of the 500 POSTs
   around the 1000th and of the last 500 are compared (target ratio <= 1.5);
6. cooling-off and signing; the event's `signing_started_at` is then set to
   just before the cached certifications were made (the injected clock
   again: D3 takes certifications made after signing started);
7. intake: `intake.take_in(event, uploads)` with all V certifications in one
   call, what `keyparty intake EVENT FILES...` does after reading them (raw:
   the gpg commands of intake given the same input regrouped by key: import
   into an empty home with the registered keys, one `--check-sigs` showing V
   good certifications, the merge into a copy of the event home; gpg alone
   merging V separate blocks rewrites its keyring V times, hours at this
   size) (target ratio <= 1.5);
   8. owner decisions: every certification but --decisions is accepted in the
   database in one UPDATE, then `publishing.rebuild_published` (raw: one `gpg
   --import` of the keys and the accepted certifications, grouped by key,
   into an empty home);
   then --decisions owners each accept one more through the app (POST
   /me/received/ID/accepted), each applied to the published keyring (raw: one
   `gpg --import` of that certification into a copy of the published home);
9. exports: `exports.write_keyring` armored and binary, `write_per_key`,
   `write_per_user_id`, `write_wkd` (raw: one `gpg --export [--armor]` of the
   published home; per key and per user ID, the gpg loop a script would run:
   `gpg --export --armor FPR`, `gpg --export --armor --export-filter
   keep-uid=uid=UID FPR`), each best of two, checked as bench/export.py checks
   them (target ratio <= 1.1 for the keyring);
10. report: GET /host/e/ID/report through the app, with its picture (the
   graph drawn by Graphviz) (target < 2 s). The owner decisions of step 8
   started drawing it in the background (keyparty.report.draw_after_change);
   the run waits for that drawing, prints how long after the last decision
   it was kept, then times the page first and again, with the picture it
   links when that is too large to write into the page (report.INLINE_LIMIT);
   a page that says its picture is still being drawn counts as no picture.

The last line: freeze_s=... badges_first_s=... badges_cached_s=...
intake_ratio=... export_ratio=... report_s=... verify_p99_ratio=...

Every gpg call names a short --homedir under /tmp; HOME points at a scratch
folder (the run fails if a .gnupg appears there); every gpg-agent started in
our homes is stopped and every temporary folder deleted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import benchlib

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EVENT_NAME = "Big event"
EVENT_ID = "big-event"
NOTATION_DOMAIN = "keyparty.org"  # the events' default
CERT_CACHE = "/tmp/keyparty-bench-big-certs-{n}-{v}"
CERT_WORKERS = 4
CACHE_DAYS = 25  # the signing window is 30 days: older certifications would be refused (D3)
WINDOW = 500  # verification POSTs in each p99 window
TARGETS = {
    "freeze_s": 5.0,
    "badges_first_s": 5.0,
    "badges_cached_s": 1.0,
    "intake_ratio": 1.5,
    "export_ratio": 1.1,
    "report_s": 2.0,
    "verify_p99_ratio": 1.5,
}

sb = benchlib.load("sign")
bi = sb.bi
bx = benchlib.load("export")
bp = benchlib.load("phones")
GPG = sb.GPG
short_tempdir = sb.short_tempdir
remove = sb.remove


# -- the attendees and who verifies whom ----------------------------------------


@dataclass(frozen=True)
class Person:
    number: int
    fingerprint: str
    user_ids: tuple[str, ...]


def people_in(public: bytes) -> list[Person]:
    """The attendees of a generated keyring, in key-number order."""
    from keyparty import openpgp

    people = []
    for block in openpgp.read_keys(public):
        uids = tuple(e.user_id.decode() for e in openpgp.user_id_signatures(block))
        number = int(re.match(r"Bench User (\d+) ", uids[0]).group(1))
        people.append(Person(number, block.fingerprint, uids))
    return sorted(people, key=lambda p: p.number)


def verified_by(people: list[Person], per_signer: int) -> dict[str, list[Person]]:
    """Signer fingerprint -> the people they verify (the next `per_signer` on the list)."""
    n = len(people)
    return {
        p.fingerprint: [people[(i + j) % n] for j in range(1, per_signer + 1)]
        for i, p in enumerate(people)
    }


def public_keys(secret_file: Path) -> bytes:
    """The public half of the cached secret keys (cached beside them)."""
    path = secret_file.with_name(secret_file.stem + "-public.gpg")
    if not path.exists() or path.stat().st_mtime < secret_file.stat().st_mtime:
        home = short_tempdir()
        try:
            bi.gpg(home, *sb.QUIET, "--import", str(secret_file))
            path.write_bytes(bi.gpg(home, "--export").stdout)
        finally:
            remove(home)
    return path.read_bytes()


# -- the certifications (made once, cached) --------------------------------------


def certify_options(signer: str) -> list[str]:
    """What `keyparty sign` asks of gpg for this event (notations, level 3, a year)."""
    return [
        "--local-user",
        signer,
        "--cert-notation",
        f"context@{NOTATION_DOMAIN}=identity",
        "--cert-notation",
        f"event@{NOTATION_DOMAIN}={EVENT_ID}",
        "--default-cert-level",
        "3",
        "--default-cert-expire",
        "365d",
        "--no-ask-cert-level",
        "--no-ask-cert-expire",
    ]


def _certify_share(template: Path, jobs: list[tuple[str, list[Person]]]) -> bytes:
    """One worker: a copy of the home with every secret key; its signers one after
    the other, one --quick-sign-key per verified key; the certified keys exported."""
    home = sb.copy_home(template)
    try:
        base = [GPG, "--homedir", str(home), "--batch", "--no-tty", *sb.QUIET]
        base += ["--no-auto-check-trustdb"]
        for signer, targets in jobs:
            for target in targets:
                uids = [f"={u}" for u in target.user_ids]
                subprocess.run(
                    [
                        *base,
                        *certify_options(signer),
                        "--quick-sign-key",
                        target.fingerprint,
                        *uids,
                    ],
                    capture_output=True,
                    check=True,
                )
        return bi.gpg(home, "--export").stdout
    finally:
        remove(home)


def cached_certifications(secret_file: Path, pairs: dict[str, list[Person]], v: int) -> dict:
    """The cache of the V certifications (made now if missing or too old): its meta."""
    n = len(pairs)
    cache = Path(CERT_CACHE.format(n=n, v=v))
    meta_file = cache / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if meta["made_at"] > time.time() - CACHE_DAYS * 86400 and meta["count"] == v:
            meta["folder"] = str(cache)
            return meta
    shutil.rmtree(cache, ignore_errors=True)
    template = short_tempdir()
    try:
        print(f"Importing {n} secret keys for the signers (not timed) ...", flush=True)
        bi.gpg(template, *sb.QUIET, "--import", str(secret_file))
        sb.stop_agent(template)
        made_at = int(time.time()) - 2
        jobs = list(pairs.items())
        shares = [jobs[w::CERT_WORKERS] for w in range(CERT_WORKERS)]
        started = time.perf_counter()
        print(
            f"Certifying: {n} signers x {len(jobs[0][1])} keys x 2 user IDs = {v}, one gpg "
            f"--quick-sign-key per key, {CERT_WORKERS} homes in parallel (not timed) ...",
            flush=True,
        )
        with ThreadPoolExecutor(CERT_WORKERS) as pool:
            exported = list(pool.map(lambda share: _certify_share(template, share), shares))
    finally:
        remove(template)
    partial = cache.with_name(cache.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for w, data in enumerate(exported):
        (partial / f"certified-{w}.gpg").write_bytes(data)
    meta = {"made_at": made_at, "count": v, "workers": CERT_WORKERS, "event_id": EVENT_ID}
    (partial / "meta.json").write_text(json.dumps(meta))
    os.replace(partial, cache)
    print(f"  cached in {cache} after {time.perf_counter() - started:.0f} s")
    meta["folder"] = str(cache)
    return meta


def uploads_from(meta: dict) -> list[tuple[str, bytes]]:
    """One upload per certification, as `keyparty sign` writes it."""
    from keyparty import openpgp

    uploads = []
    for w in range(meta["workers"]):
        data = (Path(meta["folder"]) / f"certified-{w}.gpg").read_bytes()
        for block in openpgp.read_keys(data):
            for n, entry in enumerate(openpgp.user_id_signatures(block), 1):
                for signature in entry.signatures:
                    issuer = signature.issuer_fingerprint
                    if issuer is None or issuer == block.fingerprint:
                        continue
                    minimal = openpgp.minimal_key(block, entry.user_id, [signature])
                    name = f"{issuer[-16:]}-{block.fingerprint[-16:]}-uid{n}.asc"
                    uploads.append((name, openpgp.armor(minimal).encode()))
    assert len(uploads) == meta["count"], (len(uploads), meta["count"])
    return uploads


# -- measuring -------------------------------------------------------------------


@dataclass
class Step:
    name: str
    seconds: float
    raw: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        print(f"  {self.name}: {self.seconds:.3f} s", flush=True)  # progress

    @property
    def ratio(self) -> float | None:
        return self.seconds / self.raw if self.raw else None


class Clock:
    """The injected clock of the attendee routes (keyparty.attendee.routes._now)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def timed(run, profiler: cProfile.Profile | None = None):
    """(seconds, result) of run()."""
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    if profiler:
        profiler.disable()
    return elapsed, result


def report_view(client, event_id: str) -> tuple[str, bool]:
    """The host's report page with its picture, as a browser gets it: the page,
    and the picture it links when it is too large to write into the page.
    (page text, True when it shows a picture of the certifications as they are)."""
    response = client.get(f"/host/e/{event_id}/report")
    ok(response, 200)
    page = response.get_data(as_text=True)
    linked = re.search(r'<img src="(/host/e/[^"]+/report/picture-[0-9a-f]+\.svg)"', page)
    if linked:
        image = client.get(linked.group(1))
        ok(image, 200)
        drawn = b"<svg" in image.data
    else:
        drawn = "<svg" in page
    return page, drawn and 'id="picture-state"' not in page


def ok(response, *statuses: int) -> None:
    if response.status_code not in statuses:
        body = response.get_data(as_text=True)
        flashed = re.findall(r'class="flash[^"]*"[^>]*>(.*?)<', body, re.S)
        raise AssertionError(
            f"{response.request.method} {response.request.path}: {response.status_code} "
            f"{flashed[:2] or body[:300]}"
        )


def csrf(client, path: str, prefix: str = "") -> str:
    response = client.get(path)
    ok(response, 200)
    token = bp.csrf_token(response.get_data(as_text=True), prefix)
    assert token, f"no CSRF token on {path}"
    return token


def raw_run(*commands: list[str], out: Path | None = None) -> float:
    started = time.perf_counter()
    for command in commands:
        if out is None:
            subprocess.run(command, capture_output=True, check=True)
        else:
            with open(out, "ab") as target:
                subprocess.run(command, stdout=target, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - started


def raw_intake(event_home: Path, public: bytes, uploads, fingerprints: list[str]) -> float:
    """The gpg commands of intake, given the same input: the uploads regrouped by
    key (not timed: gpg merges thousands of separate blocks of one key one by
    one, rewriting its keyring each time); import into an empty home with the
    keys as registered, one --check-sigs (every certification must be good),
    and the merge into a copy of the event home."""
    from keyparty import openpgp

    scratch, merged = short_tempdir(), short_tempdir()
    try:
        grouped = b"".join(openpgp.group_by_key([openpgp.dearmor(data) for _, data in uploads]))
        (scratch / "in.gpg").write_bytes(b"".join(openpgp.group_by_key([public, grouped])))
        (merged / "in.gpg").write_bytes(grouped)
        shutil.copy2(event_home / "pubring.kbx", merged / "pubring.kbx")
        base = [GPG, "--batch", "--no-tty", "--trust-model", "always"]
        started = time.perf_counter()
        subprocess.run(
            [*base, "--homedir", str(scratch), "--import", str(scratch / "in.gpg")],
            capture_output=True,
            check=True,
        )
        listing = subprocess.run(
            [*base, "--homedir", str(scratch), "--with-colons", "--check-sigs", *fingerprints],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(
            [*base, "--homedir", str(merged), "--import", str(merged / "in.gpg")],
            capture_output=True,
            check=True,
        )
        elapsed = time.perf_counter() - started
    finally:
        remove(scratch)
        remove(merged)
    good, key = 0, None
    for line in listing.decode().splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            key = None
        elif fields[0] == "fpr" and key is None:
            key = fields[9]
        elif line.startswith("sig:!:") and fields[12] != key:
            good += 1
    assert good == len(uploads), (good, len(uploads))
    return elapsed


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the run ---------------------------------------------------------------------


def run(options, secret_file: Path, public: bytes, meta: dict, steps: list[Step]) -> dict:
    from sqlalchemy import insert
    from sqlalchemy import update

    from keyparty import create_app
    from keyparty import events
    from keyparty import homes
    from keyparty import intake
    from keyparty import openpgp
    from keyparty import publishing
    from keyparty import registration
    from keyparty import report
    from keyparty.attendee import routes as attendee_routes
    from keyparty.extensions import db
    from keyparty.models import Certification
    from keyparty.models import Event
    from keyparty.models import Key
    from keyparty.models import ReportDrawing
    from keyparty.models import Verification

    n, v = options.attendees, options.verifications
    per_signer = v // (2 * n)
    profiled: dict[str, cProfile.Profile] = {}

    def profiler(step: str) -> cProfile.Profile | None:
        if options.profile == step:
            profiled[step] = cProfile.Profile()
            return profiled[step]
        return None

    instance = short_tempdir()
    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    app = create_app()
    # Requests go to a second app on the same instance and database: a request
    # on `app` inside its app context would share that context (flask.g, the
    # database session) with the direct calls.
    web = create_app()
    figures: dict = {}
    with app.app_context():
        event = events.create_event(EVENT_NAME, datetime.now(UTC).date())
        assert event.id == EVENT_ID and event.notation_domain == NOTATION_DOMAIN, event.id

        # 1. import
        keyfile = instance.parent / f"{instance.name}-keys.gpg"
        keyfile.write_bytes(public)
        raw_home = short_tempdir()
        raw = raw_run(
            [
                GPG,
                "--homedir",
                str(raw_home),
                "--batch",
                *bi.CLEAN_OPTIONS,
                "--import",
                str(keyfile),
            ]
        )
        remove(raw_home)
        seconds, result = timed(
            lambda: registration.register_keys(
                event, [("attendees.gpg", public)], events.event_home(event)
            ),
            profiler("import"),
        )
        keyfile.unlink()
        assert not result.rejected and len(result.accepted) == n, result.rejected[:3]
        steps.append(Step(f"import {n} keys (register_keys)", seconds, raw))
        tokens = {a.key.fingerprint: a.join_token for a in result.accepted}

        # 2. freeze with the party list and digests
        seconds, refusal = timed(lambda: events.take_step(event, "freeze"), profiler("freeze"))
        assert refusal is None, refusal
        assert event.partylist_sha256 and event.partylist_sha512
        steps.append(Step("freeze (party list, SHA-256, SHA-512)", seconds))
        figures["freeze_s"] = seconds

        # 3. the host's badges page, first and cached
        db.session.remove()
        host = web.test_client()
        for label, key in (("first", "badges_first_s"), ("cached", "badges_cached_s")):
            seconds, response = timed(
                lambda: host.get(f"/host/e/{EVENT_ID}/badges"), profiler(f"badges-{label}")
            )
            ok(response, 200)
            page = response.get_data(as_text=True)
            assert page.count("<svg") >= 2 * n, page.count("<svg")
            steps.append(Step(f"badges page, {label} ({2 * n} QR codes)", seconds))
            figures[key] = seconds
        if options.stop_after == "badges":
            return figures

        # 4. every phone joins and confirms its own entry (T4)
        people = people_in(public)
        pairs = verified_by(people, per_signer)
        phones = {}
        started = time.perf_counter()
        for index, person in enumerate(people):
            phone = web.test_client()
            phone.environ_base["REMOTE_ADDR"] = bp.phone_address(index)
            token = tokens[person.fingerprint]
            join = csrf(phone, f"/join/{token}")
            ok(phone.post(f"/join/{token}", data={"csrf_token": join}), 302)
            form = csrf(phone, "/me")
            fields = {"csrf_token": form, "entry_correct": "y", "digest_matches": "y"}
            ok(phone.post("/me/confirm", data=fields), 302)
            phones[person.fingerprint] = (phone, form)
        steps.append(
            Step(f"{n} phones join and confirm (4 requests each)", time.perf_counter() - started)
        )
        db.session.expire_all()
        event = events.get_event(EVENT_ID)
        if event.state != "verifying":
            assert events.take_step(event, "start-verifying") is None
        unconfirmed = sum(1 for a in event.attendees if a.entry_confirmed_at is None)
        assert unconfirmed == 0, unconfirmed

        # 5. the verifications, through the app, the pace kept by an injected clock
        uid_ids = {
            key.fingerprint: {uid.text: uid.id for uid in key.user_ids} for key in event.keys
        }
        signer_ids = {key.fingerprint: key.attendee_id for key in event.keys}
        db.session.remove()
        clock = Clock()
        start = clock.now
        attendee_routes._now = clock
        # --through-app windows: only the first 1000 + WINDOW / 2 and the last
        # WINDOW verifications are POSTed; the ones between are stored as rows,
        # as the app would store them (same signer, user ID, context, basis,
        # level and injected time), so the last POSTs meet the same tables.
        through_app = set(range(v))
        if options.through_app == "windows":
            through_app = set(range(min(v, 1000 + WINDOW // 2))) | set(range(v - WINDOW, v))
        latencies: list[float] = []
        pending: list[dict] = []

        def store(rows: list[dict]) -> None:
            if rows:
                db.session.execute(insert(Verification), rows)
                db.session.commit()
                db.session.remove()
                rows.clear()

        prof = profiler("verify")
        started = time.perf_counter()
        index = 0
        for r in range(2 * per_signer):
            clock.now = start + timedelta(seconds=31 * (r // 2) + r % 2)
            for person in people:
                target = pairs[person.fingerprint][r // 2]
                uid = uid_ids[target.fingerprint][target.user_ids[r % 2]]
                index += 1
                if index - 1 not in through_app:
                    pending.append(
                        {
                            "event_id": EVENT_ID,
                            "signer_id": signer_ids[person.fingerprint],
                            "user_id_id": uid,
                            "context": "identity",
                            "basis": "photo-id",
                            "level": 3,
                            "recorded_at": clock.now.replace(tzinfo=None),
                        }
                    )
                    continue
                store(pending)
                phone, token = phones[person.fingerprint]
                fields = {
                    f"u{uid}-csrf_token": token,
                    f"u{uid}-context": "identity",
                    f"u{uid}-basis": "photo-id",
                }
                path = f"/e/{EVENT_ID}/k/{target.fingerprint}/u/{uid}"
                if prof:
                    prof.enable()
                t0 = time.perf_counter()
                response = phone.post(path, data=fields)
                latencies.append(time.perf_counter() - t0)
                if prof:
                    prof.disable()
                ok(response, 302)
        store(pending)
        seconds = time.perf_counter() - started
        assert len(latencies) == len(through_app)
        stored = db.session.scalar(
            db.select(db.func.count())
            .select_from(Verification)
            .where(Verification.event_id == EVENT_ID, Verification.withdrawn_at.is_(None))
        )
        assert stored == v, stored
        around = latencies[max(0, 1000 - WINDOW // 2) : 1000 + WINDOW // 2]
        last = latencies[-WINDOW:]
        p99_early = bp.percentile(around, 99)
        p99_late = bp.percentile(last, 99)
        figures["verify_p99_ratio"] = p99_late / p99_early
        posted = len(latencies)
        steps.append(
            Step(
                f"{v} verifications ({n} signers), {posted} POSTed",
                seconds,
                note=f"{posted / sum(latencies):.0f} POSTs/s; p99 {p99_early * 1000:.1f} ms "
                f"around the 1000th, {p99_late * 1000:.1f} ms at the last {WINDOW}"
                + ("" if posted == v else f"; {v - posted} stored as rows"),
            )
        )
        attendee_routes._now = lambda: datetime.now(UTC)
        if options.stop_after == "verify":
            return figures

        # 6. cooling-off, signing; signing "started" before the cached certifications
        event = events.get_event(EVENT_ID)
        assert events.take_step(event, "cool-off") is None
        assert events.take_step(event, "start-signing") is None
        event.signing_started_at = datetime.fromtimestamp(meta["made_at"] - 60, UTC).replace(
            tzinfo=None
        )
        db.session.commit()

        # 7. intake of every certification
        uploads = uploads_from(meta)
        fingerprints = [p.fingerprint for p in people]
        raw = raw_intake(instance / "gnupg" / EVENT_ID, public, uploads, fingerprints)
        db.session.remove()
        event = events.get_event(EVENT_ID)
        seconds, outcomes = timed(lambda: intake.take_in(event, uploads), profiler("intake"))
        refused = [(o.source, o.rule, o.message) for o in outcomes if o.status != "accepted"]
        assert not refused, refused[:3]
        steps.append(Step(f"intake of {v} certifications (take_in)", seconds, raw))
        figures["intake_ratio"] = seconds / raw

        # 8. owner decisions: all but a sample at once, the sample through the app
        db.session.remove()
        event = events.get_event(EVENT_ID)
        ids = db.session.scalars(
            db.select(Certification.id)
            .where(Certification.event_id == EVENT_ID, Certification.status == "accepted")
            .order_by(Certification.id)
        ).all()
        assert len(ids) == v, len(ids)
        sample = ids[:: max(1, len(ids) // options.decisions)][: options.decisions]
        now = datetime.now(UTC).replace(tzinfo=None)
        db.session.execute(
            update(Certification)
            .where(Certification.event_id == EVENT_ID, Certification.id.not_in(sample))
            .values(owner_decision="accepted", decided_at=now)
            .execution_options(synchronize_session=False)
        )
        homes.bump(event, Event.published_generation)
        db.session.commit()
        bulk = short_tempdir()
        rows = db.session.scalars(
            db.select(Certification.armored).where(
                Certification.event_id == EVENT_ID, Certification.owner_decision == "accepted"
            )
        )
        pieces = [openpgp.dearmor(k.armored.encode()) for k in event.keys]
        pieces += (openpgp.dearmor(armored.encode()) for armored in rows)
        (bulk / "all.gpg").write_bytes(b"".join(openpgp.group_by_key(pieces)))
        del pieces
        raw = raw_run([GPG, "--homedir", str(bulk), "--batch", "--import", str(bulk / "all.gpg")])
        remove(bulk)
        seconds, _ = timed(lambda: publishing.rebuild_published(event), profiler("publish"))
        steps.append(Step(f"publish {v - len(sample)} accepted (rebuild_published)", seconds, raw))
        owners = dict(
            db.session.execute(
                db.select(Certification.id, Key.fingerprint)
                .join(Key, Certification.key_id == Key.id)
                .where(Certification.id.in_(sample))
            ).all()
        )
        single = {
            cid: armored
            for cid, armored in db.session.execute(
                db.select(Certification.id, Certification.armored).where(
                    Certification.id.in_(sample)
                )
            ).all()
        }
        db.session.remove()
        published = instance / "gnupg" / f"{EVENT_ID}.published"
        copy = sb.copy_home(published)
        raw_times = []
        for cid in sample:
            (copy / "one.asc").write_text(single[cid])
            raw_times.append(
                raw_run([GPG, "--homedir", str(copy), "--batch", "--import", str(copy / "one.asc")])
            )
        remove(copy)
        decision_times = []
        prof = profiler("decide")
        for cid in sample:
            phone, token = phones[owners[cid]]
            if prof:
                prof.enable()
            t0 = time.perf_counter()
            response = phone.post(f"/me/received/{cid}/accepted", data={"csrf_token": token})
            decision_times.append(time.perf_counter() - t0)
            if prof:
                prof.disable()
            ok(response, 302)
        steps.append(
            Step(
                f"{len(sample)} owner decisions through the app (each)",
                sum(decision_times) / len(sample),
                sum(raw_times) / len(sample),
                note=f"p99 {bp.percentile(decision_times, 99) * 1000:.0f} ms",
            )
        )
        last_decision = datetime.now(UTC).replace(tzinfo=None)
        event = events.get_event(EVENT_ID)
        assert len(publishing.owner_accepted(event)) == v
        db.session.remove()

        # 9. exports
        steps.extend(exports(instance, n, v, people, figures, profiler("export"), options.repeat))

        # 10. the report with its picture. The decisions above started its
        # drawing in the background (report.draw_after_change); how long after
        # the last one it was kept is shown, the page is timed once it is.
        report.wait_for_drawing(EVENT_ID, 600)
        drawn_at = db.session.scalar(
            db.select(ReportDrawing.drawn_at).where(ReportDrawing.event_id == EVENT_ID)
        )
        db.session.remove()
        lag = (drawn_at - last_decision).total_seconds() if drawn_at else float("inf")
        steps.append(
            Step(
                "  picture drawn in the background",
                lag,
                note=f"kept {lag:.1f} s after the last decision (while the exports ran)"
                if lag >= 0
                else f"kept {-lag:.1f} s before the last decision (the later ones left the "
                "graph of key pairs as it was)",
            )
        )
        for label in ("first", "again"):
            seconds, (page, picture) = timed(
                lambda: report_view(host, EVENT_ID), profiler(f"report-{label}")
            )
            steps.append(
                Step(
                    f"report page, {label}",
                    seconds,
                    note="with its picture" if picture else "NO CURRENT PICTURE",
                )
            )
            figures.setdefault("report_s", seconds if picture else float("inf"))
        db.session.remove()
        db.engine.dispose()
    os.environ.pop("KEYPARTY_INSTANCE", None)
    remove(instance)
    for step, prof in profiled.items():
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(
            r"/keyparty/[a-z_/]+\.py|gnupg\.py|session\.py.*\((execute|scalar|commit)\)", 40
        )
        print(f"\ncProfile of {step}:\n{out.getvalue()}")
    return figures


def exports(instance: Path, n: int, v: int, people, figures: dict, prof, repeat: int) -> list[Step]:
    """The exports, each against the raw gpg doing the same work; checked as bench/export.py."""
    meta = {"event_id": EVENT_ID, "keys": n, "certifications": v, "user_ids": 2 * n}
    bench = bx.Bench(instance, meta)
    try:
        published = str(bench.published)
        base = [GPG, "--homedir", published, "--batch", "--no-tty", "--export", "--armor"]

        def raw_per_key() -> float:
            out = bench.file("raw-per-key")
            out.mkdir()
            started = time.perf_counter()
            for p in people:
                with open(out / f"{p.fingerprint}.asc", "wb") as target:
                    subprocess.run([*base, p.fingerprint], stdout=target, check=True)
            return time.perf_counter() - started

        def raw_per_uid() -> float:
            out = bench.file("raw-per-uid")
            out.mkdir()
            started = time.perf_counter()
            for p in people:
                for k, uid in enumerate(p.user_ids, 1):
                    keep = ["--export-filter", f"keep-uid=uid = {uid}", p.fingerprint]
                    with open(out / f"{p.fingerprint}-uid{k}.asc", "wb") as target:
                        subprocess.run([*base, *keep], stdout=target, check=True)
            return time.perf_counter() - started

        runs = {
            "raw": lambda: bench.raw("raw.asc", armor=True),
            "keyparty": lambda: bench.keyparty("write_keyring", "keyparty.asc", prof),
            "raw binary": lambda: bench.raw("raw.gpg", armor=False),
            "keyparty binary": lambda: bench.keyparty("write_keyring", "keyparty.gpg", binary=True),
            "raw named": lambda: bench.raw("named.asc", armor=True, named=True),
            "keyparty argv": lambda: bench.keyparty_argv("argv.asc"),
            "raw per-key": raw_per_key,
            "per-key": lambda: bench.keyparty("write_per_key", "per-key"),
            "raw per-uid": raw_per_uid,
            "per-uid": lambda: bench.keyparty("write_per_user_id", "per-uid"),
            "wkd": lambda: bench.keyparty("write_wkd", "wkd"),
        }
        best = bi.best_interleaved(runs, repeat)
        checks = bench.check()
    finally:
        bench.close()
    figures["export_ratio"] = max(
        best["keyparty"] / best["raw"], best["keyparty binary"] / best["raw binary"]
    )
    return [
        Step("export keyring, armored", best["keyparty"], best["raw"]),
        Step("export keyring, binary", best["keyparty binary"], best["raw binary"]),
        Step(f"export per key ({n} files)", best["per-key"], best["raw per-key"]),
        Step(f"export per user ID ({2 * n} files)", best["per-uid"], best["raw per-uid"]),
        Step("export WKD (both layouts)", best["wkd"], best["raw per-uid"], "raw: per user ID"),
        Step("  (checked)", 0.0, note="; ".join(checks)),
    ]


def chosen_database(requested: str | None) -> tuple[str, str]:
    """("sqlite", "") or ("postgresql", its URL). PostgreSQL asked for outside
    tests/pg.sh runs this script again under it (a throw-away cluster); the
    default is PostgreSQL when KEYPARTY_DATABASE_URL names one, else SQLite."""
    url = os.environ.get("KEYPARTY_DATABASE_URL", "")
    database = requested or ("postgresql" if url.startswith("postgresql") else "sqlite")
    if database == "postgresql" and not url.startswith("postgresql"):
        pg = str(ROOT / "tests" / "pg.sh")
        os.execv(pg, [pg, sys.executable, *sys.argv])
    return database, url if database == "postgresql" else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attendees", type=int, default=1000)
    parser.add_argument("--verifications", type=int, default=50000)
    parser.add_argument(
        "--decisions", type=int, default=200, help="owner decisions made through the app"
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        help="default: PostgreSQL under tests/pg.sh (KEYPARTY_DATABASE_URL), else SQLite",
    )
    parser.add_argument(
        "--through-app",
        choices=("all", "windows"),
        default="all",
        help="POST every verification (all), or only the two measured windows and the "
        "ones before the first, storing the others as rows (windows: for a busy machine)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs per export measure; best is kept"
    )
    parser.add_argument(
        "--stop-after",
        choices=("badges", "verify"),
        help="stop after this step (a quick look at one fix, or a busy machine)",
    )
    parser.add_argument(
        "--profile",
        metavar="STEP",
        help="print a cProfile of one step: import, freeze, badges-first, badges-cached, "
        "verify, intake, publish, decide, export, report-first",
    )
    options = parser.parse_args()
    n, v = options.attendees, options.verifications
    if v % (2 * n) or not 0 < v // (2 * n) < n:
        parser.error("--verifications must be 2 x --attendees x K, with 0 < K < --attendees")
    database, url = chosen_database(options.database)

    scratch = sb.scratch_home()  # forgets KEYPARTY_DATABASE_URL: set again below
    if url:
        os.environ["KEYPARTY_DATABASE_URL"] = url
    steps: list[Step] = []
    loads = [load_average()]
    try:
        secret_file = sb.cached_keys(n, signers=True)
        public = public_keys(secret_file)
        people = people_in(public)
        assert len(people) == n
        meta = cached_certifications(secret_file, verified_by(people, v // (2 * n)), v)
        loads.append(load_average())
        started = time.perf_counter()
        figures = run(options, secret_file, public, meta, steps)
        total = time.perf_counter() - started
        loads.append(load_average())
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        for path in list(bi._temp_dirs):
            remove(path)

    print(f"\ngpg: {GPG} ({sb.gpg_version()})")
    print(
        f"database: {database}; {n} attendees (two user IDs each), {v} verifications, "
        f"{v} certifications; whole run {total:.0f} s; load average (1, 5, 15 min) "
        f"at start {loads[0]}, after set-up {loads[1]}, at the end {loads[2]}"
    )
    print(f"\n  {'step':<52}{'keyparty s':>11}{'raw gpg s':>11}{'ratio':>8}  note")
    for step in steps:
        if step.name.startswith("  "):
            print(f"  {step.name:<52}{'':>30}  {step.note}")
            continue
        raw = f"{step.raw:11.3f}" if step.raw is not None else f"{'':>11}"
        ratio = f"{step.ratio:8.2f}" if step.ratio is not None else f"{'':>8}"
        print(f"  {step.name:<52}{step.seconds:11.3f}{raw}{ratio}  {step.note}")
    print("\ntargets:")
    for name, target in TARGETS.items():
        if name not in figures:
            continue
        value = figures[name]
        print(
            f"  {name:<20}{value:8.3f}  target <= {target}  {'ok' if value <= target else 'MISSED'}"
        )
    command = [".venv/bin/python", "bench/big_event.py"]
    if n != 1000:
        command += ["--attendees", str(n)]
    if v != 50000:
        command += ["--verifications", str(v)]
    if options.decisions != 200:
        command += ["--decisions", str(options.decisions)]
    if options.through_app != "all":
        command += ["--through-app", options.through_app]
    if options.stop_after:
        command += ["--stop-after", options.stop_after]
    if options.repeat != 2:
        command += ["--repeat", str(options.repeat)]
    if database == "postgresql":
        command += ["--database", "postgresql"]
    print(f"\nreproduce: {shlex.join(command)}")
    print(" ".join(f"{name}={figures[name]:.3f}" for name in TARGETS if name in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
