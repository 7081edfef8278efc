"""kill -9 of `keyparty serve` at random moments loses nothing accepted and
keeps nothing refused.

One instance holds three events: one open for registration, one verifying,
one signing (with certifications made by the fixture attendees' own keys).
Loops of real HTTP requests (registration, verification, upload of
certifications, owner decisions, delivery) run against the server while it
is killed with SIGKILL at random moments and started again. Afterwards
`keyparty check` finds every home equal to the database, every request that
was answered as a success is in the database, the exported keyring carries
exactly the certifications their owners accepted, and no refused key is
anywhere.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from keyparty import create_app
from keyparty import events
from keyparty import openpgp
from keyparty import proof
from keyparty import signing
from keyparty import verification
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Verification
from keyparty.registration import hash_token
from tests.conftest import FIXTURES
from tests.conftest import register
from tests.conftest import short_tempdir
from tests.test_consistency import third_party_signatures
from tests.test_serve import free_port

pytestmark = pytest.mark.slow

PEOPLE = ("alice", "bob", "carol", "dalia", "hanako")
KILLS_PER_LOOP = 6
CSRF = re.compile(rb'name="([\w-]*csrf_token)" type="hidden" value="([^"]+)"')


class Server:
    """`keyparty serve` in its own process, killed with SIGKILL on demand."""

    def __init__(self, instance: Path) -> None:
        self.instance = instance
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.kills = 0
        self.startup_repairs = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        # Not killed while starting: the kill comes once it serves.
        with self.lock:
            self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keyparty", "serve", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--per-address", "64"],
            # Rate limits outlive a kill (they are in the database): this
            # one client registers more keys than a person would.
            env={
                **os.environ,
                "KEYPARTY_INSTANCE": str(self.instance),
                "KEYPARTY_REGISTRATION_LIMIT": "1000",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if "rebuilt; the homes now match" in line:
                self.startup_repairs += 1
            if line.startswith("gunicorn:"):
                break
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        while time.monotonic() < deadline:
            try:
                if Client(self).request("GET", "/")[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        raise AssertionError("keyparty serve did not start:\n" + "".join(lines))

    def kill(self) -> None:
        # The whole process group: gunicorn's master and its worker.
        with self.lock:
            if self.process.poll() is not None:
                return
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Client:
    """A browser: keeps its session cookie, reads CSRF tokens from pages."""

    def __init__(self, server: Server, cookie: str | None = None) -> None:
        self.server = server
        self.cookie = cookie

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = f"session={self.cookie}"
        # Each request from another loopback address, as many phones would
        # send them: the per-address rate limits are not what is tested here.
        source = f"127.0.{random.randint(200, 250)}.{random.randint(1, 250)}"
        c = http.client.HTTPConnection(
            "127.0.0.1", self.server.port, timeout=30, source_address=(source, 0)
        )
        try:
            c.request(method, path, body=body, headers=headers)
            response = c.getresponse()
            data = response.read()
        finally:
            c.close()
        for value in response.headers.get_all("Set-Cookie") or []:
            found = re.match(r"session=([^;]*)", value)
            if found:
                self.cookie = found.group(1)
        return response.status, data

    def csrf(self, path: str) -> str:
        status, page = self.request("GET", path)
        assert status == 200, (path, status)
        return CSRF.search(page).group(2).decode()

    def post_form(self, path: str, fields: dict, token_from: str, prefix: str = ""):
        fields = {**fields, f"{prefix}csrf_token": self.csrf(token_from)}
        body = urlencode(fields).encode()
        return self.request(
            "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}
        )


def run_with_kills(server: Server, items: list, attempt, rng: random.Random) -> list:
    """Do every item (attempt(item) -> result or raises OSError when the
    server died) while a killer thread SIGKILLs the server at random moments,
    up to KILLS_PER_LOOP times; restart after each kill. Returns the results."""
    results = [None] * len(items)
    done = threading.Event()
    dead = threading.Event()

    def killer():
        for _ in range(KILLS_PER_LOOP):
            if done.wait(rng.uniform(0.2, 1.2)):
                return
            server.kill()
            dead.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    index = 0
    deadline = time.monotonic() + 300
    while index < len(items):
        assert time.monotonic() < deadline, "the loop did not finish"
        try:
            results[index] = attempt(items[index])
            index += 1
        except (OSError, http.client.HTTPException, AttributeError):
            # The answer never came (killed in the middle): wait for the
            # killer, start again, and try the same item again.
            time.sleep(0.05)
            if server.process.poll() is not None:
                dead.clear()
                server.start()
    done.set()
    thread.join()
    if server.process.poll() is not None:
        server.start()
    return results


def fresh_keys(count: int) -> list[bytes]:
    home = GnuPGHome(short_tempdir("kpg"))
    keys = []
    for n in range(count):
        uid = f"Crash Tester {n} <crash{n}@example.org>"
        subprocess.run(
            ["gpg", "--homedir", str(home.path), "--batch", "--no-tty", "--passphrase", ""]
            + ["--quick-gen-key", uid, "ed25519", "sign", "1y"],
            check=True,
            capture_output=True,
        )
        keys.append(
            subprocess.run(
                ["gpg", "--homedir", str(home.path), "--armor", "--export", f"={uid}"],
                check=True,
                capture_output=True,
            ).stdout
        )
    subprocess.run(["gpgconf", "--homedir", str(home.path), "--kill", "all"], check=False)
    return keys


def prepare(instance: Path, tmp: Path) -> dict:
    """Three events and what the loops send; built in-process like the host would."""
    app = create_app({"TESTING": True})
    with app.app_context():
        reg = events.create_event("Crash Registration", date.today())
        verifying = events.create_event("Crash Verifying", date.today())
        signing_event = events.create_event("Crash Signing", date.today())
        for event in (verifying, signing_event):
            register(event, *PEOPLE)
            assert events.take_step(event, "freeze") is None
            for attendee in event.attendees:
                assert verification.confirm_entry(attendee, datetime.now(UTC)) is None
            assert events.take_step(event, "start-verifying") is None
            assert events.configure(event, pace_gap=1, pace_window=1, pace_max=1000) is None
        # Everyone verified every user ID of everyone else's key at the signing event.
        moment = datetime.now(UTC) - timedelta(hours=2)
        for signer in signing_event.attendees:
            for key in signing_event.keys:
                if key.attendee_id == signer.id:
                    continue
                for uid in key.user_ids:
                    moment += timedelta(seconds=30)
                    # Email certifications go to their owners by mail (C3): delivery.
                    # (A third of them, so that most go through owner decisions.)
                    context = "email" if uid.email and (signer.id + uid.id) % 3 == 0 else "identity"
                    made, refusal = verification.record(
                        signer, signer, uid, context, "photo-id", moment
                    )
                    assert refusal is None, refusal
        assert events.take_step(signing_event, "cool-off") is None
        assert events.take_step(signing_event, "start-signing") is None
        tokens = {}
        uploads = []
        for person, signer in zip(PEOPLE, signing_event.attendees, strict=True):
            tokens[signer.id] = f"token-{person}-0123456789"
            signer.signing_token_sha256 = hash_token(tokens[signer.id])
            db.session.commit()
            home = GnuPGHome(short_tempdir("kps"), agent=True)
            home.import_keys((FIXTURES / "attendees" / f"{person}.secret.asc").read_bytes(), None)
            bundle = bundle_for(signer, "http://127.0.0.1")
            signers = signing.choose_signers(home, bundle, [])
            report = signing.certify_all(home, bundle, signers)
            assert not report.failed, report.failed
            files = signing.write_files(home, bundle, signers, tmp / person)
            uploads += [(tokens[signer.id], f.read_bytes()) for f in files]
            subprocess.run(["gpgconf", "--homedir", str(home.path), "--kill", "all"], check=False)
        serializer = app.session_interface.get_signing_serializer(app)
        # Each phone's session as a join opens it (O2: event, attendee, secret).
        cookies = {
            a.id: serializer.dumps(
                {"event_id": a.event_id, "attendee_id": a.id, "secret": proof.open_session(a)}
            )
            for a in verifying.attendees + signing_event.attendees
        }
        verify_items = [
            (cookies[signer.id], key.fingerprint, uid.id)
            for signer in verifying.attendees
            for key in verifying.keys
            if key.attendee_id != signer.id
            for uid in key.user_ids
        ]
        plan = {
            "reg": reg.id,
            "verifying": verifying.id,
            "signing": signing_event.id,
            "verify_items": verify_items,
            "uploads": uploads,
            "owners": [cookies[a.id] for a in signing_event.attendees],
        }
        db.session.remove()
        db.engine.dispose()
    return plan


def keyparty(instance: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "keyparty", *args],
        env={**os.environ, "KEYPARTY_INSTANCE": str(instance)},
        capture_output=True,
        text=True,
    )


def test_sigkill_at_random_moments_loses_nothing_and_keeps_nothing_refused(instance, tmp_path):
    rng = random.Random(int(os.environ.get("KEYPARTY_CRASH_SEED", "10")))
    plan = prepare(instance, tmp_path)
    good = fresh_keys(12)
    bad = [(FIXTURES / "bad" / name).read_bytes() for name in ("expired.asc", "revoked.asc")]
    server = Server(instance)
    server.start()
    try:
        # Registration: good keys and refused ones, interleaved.
        reg_items = [("good", k) for k in good] + [("bad", k) for k in bad * 3]
        rng.shuffle(reg_items)
        registered = run_with_kills(
            server,
            reg_items,
            lambda item: Client(server).post_form(
                f"/e/{plan['reg']}/register",
                {"name": "Crash Tester", "key_text": item[1].decode()},
                f"/e/{plan['reg']}/register",
            ),
            rng,
        )
        # A key registered goes on to its proof-of-possession page (O2).
        assert [status for status, _ in registered].count(302) == len(good)

        # Verification: one decision per user ID, from each signer's phone.
        def verify(item):
            cookie, fingerprint, uid_id = item
            path = f"/e/{plan['verifying']}/k/{fingerprint}"
            while True:
                status, page = Client(server, cookie).post_form(
                    f"{path}/u/{uid_id}",
                    {f"u{uid_id}-context": "identity", f"u{uid_id}-basis": "photo-id"},
                    path,
                    prefix=f"u{uid_id}-",
                )
                if status == 409 and b"P4" in page:
                    time.sleep(0.5)  # rushed (the pace is 1 s here): again, as a person would
                    continue
                return status

        verified = run_with_kills(server, plan["verify_items"], verify, rng)
        # 302: recorded; 409: a retry after a kill found it already recorded.
        assert set(verified) <= {302, 409}, verified

        # Intake: each certification uploaded by its signer (one per request, P2).
        def upload(item):
            token, data = item
            status, body = Client(server).request(
                "POST",
                f"/api/e/{plan['signing']}/certifications",
                data,
                {"Authorization": f"Bearer {token}"},
            )
            assert status == 200, body
            return body

        uploaded = run_with_kills(server, plan["uploads"], upload, rng)
        assert all(b'"accepted"' in b or b'"already accepted"' in b for b in uploaded)

        # Owner decisions: every owner accepts everything received.
        app = create_app({"TESTING": True})
        with app.app_context():
            decisions = [
                (cookie, c.id)
                for cookie, attendee in zip(
                    plan["owners"],
                    db.session.get(Event, plan["signing"]).attendees,
                    strict=True,
                )
                for c in db.session.query(Certification).filter_by(
                    event_id=plan["signing"], status="accepted"
                )
                if c.key.attendee_id == attendee.id
            ]
            db.session.remove()
            db.engine.dispose()

        def decide(item):
            cookie, cid = item
            status, _ = Client(server, cookie).post_form(
                f"/me/received/{cid}/accepted", {}, "/me/received"
            )
            assert status == 302
            return status

        run_with_kills(server, decisions, decide, rng)

        # Delivery (C3 email certifications to the outbox), pressed again after each kill.
        def deliver(_):
            path = f"/host/e/{plan['signing']}"
            status, _ = Client(server).post_form(f"{path}/deliver", {}, path)
            assert status == 302
            return status

        run_with_kills(server, list(range(4)), deliver, rng)
        server.stop()
        # What the last kill may have left is repaired at start: start once more.
        server.start()
    finally:
        server.stop()

    checked = keyparty(instance, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = tmp_path / "keyring.gpg"
    written = keyparty(instance, "export", plan["signing"], "--keyring", str(exported))
    assert written.returncode == 0, written.stderr

    app = create_app({"TESTING": True})
    with app.app_context():
        reg = db.session.get(Event, plan["reg"])
        good_fprs = {openpgp.read_keys(k)[0].fingerprint for k in good}
        bad_fprs = {openpgp.read_keys(k)[0].fingerprint for k in bad}
        assert {k.fingerprint for k in reg.keys} == good_fprs, "nothing accepted lost"
        held = {r.fingerprint for r in events.event_home(reg).list_keys()}
        assert held == good_fprs and not held & bad_fprs, "nothing refused kept"

        verifying = db.session.get(Event, plan["verifying"])
        recorded = db.session.query(Verification).filter_by(event_id=verifying.id).count()
        assert recorded == len(plan["verify_items"])

        signing_event = db.session.get(Event, plan["signing"])
        accepted = (
            db.session.query(Certification)
            .filter_by(event_id=signing_event.id, status="accepted")
            .all()
        )
        assert len(accepted) == len(plan["uploads"]), "every upload answered is stored"
        # Email certifications are accepted by the mailed link only (C3).
        assert all(c.owner_decision == "accepted" for c in accepted if c.context != "email")
        published = [c for c in accepted if c.owner_decision == "accepted"]
        assert third_party_signatures(exported.read_bytes()) == len(published)
        outbox = events.event_files(signing_event) / "outbox"
        delivered = [c for c in accepted if c.delivered_at is not None]
        assert len(delivered) == sum(c.context == "email" for c in accepted) > 0
        for c in delivered:
            mail = (outbox / f"{signing_event.id}-{c.id}.eml").read_bytes()
            assert b"-----END PGP MESSAGE-----" in mail, "a delivered mail is whole"
        db.session.remove()
        db.engine.dispose()
    print(
        f"\nSIGKILL test: {server.kills} kills; {len(good)} keys registered, "
        f"{len(bad) * 3} refused; {recorded} verifications; {len(accepted)} certifications "
        f"accepted, {len(published)} published; {len(delivered)} delivered; "
        f"{server.startup_repairs} start-up repairs"
    )
    assert server.kills >= 4 * KILLS_PER_LOOP - 4
