"""Two `keyparty serve` processes, as on two machines: each its own instance
folder (its own GnuPG homes, working copies), one database, one secret key.
Registrations, verifications, uploads and owner decisions go through both at
once; every accepted write is stored once, nothing is lost, and both
servers export the same keyring.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
import sqlalchemy as sa

from keyparty import events
from keyparty import openpgp
from keyparty import signing
from keyparty.config import database_url
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Key
from keyparty.models import UserID
from keyparty.models import Verification
from keyparty.models import utcnow
from keyparty.registration import hash_token
from tests.conftest import challenge_on
from tests.conftest import code_in
from tests.conftest import decrypt_with
from tests.conftest import short_tempdir
from tests.test_serve import free_port

PEOPLE = 8
# Each attendee verifies both user IDs of the next two attendees.
NEIGHBOURS = 2

pytestmark = pytest.mark.slow


class Phone:
    """One browser: its own cookies, talking to whichever server it is given."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect(),
        )

    def request(self, url: str, form: dict | None = None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(urllib.request.Request(url, data=data), timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def csrf(page: str, prefix: str = "") -> str:
    name = f"{prefix}-csrf_token" if prefix else "csrf_token"
    found = re.search(rf'name="{re.escape(name)}" type="hidden" value="([^"]+)"', page)
    assert found, f"no {name} on the page"
    return found.group(1)


def start_server(instance, env) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        # Every simulated phone comes from 127.0.0.1: lift the per-address cap.
        [sys.executable, "-m", "keyparty", "serve", "--host", "127.0.0.1", "--port", str(port)]
        + ["--per-address", "256"],
        env={
            **env,
            "KEYPARTY_INSTANCE": str(instance),
            "KEYPARTY_PUBLIC_URL": url,
            # Every simulated phone comes from 127.0.0.1.
            "KEYPARTY_RATE_LIMIT_FACTOR": "100",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/", timeout=5):
                return process, url
        except OSError:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read()) from None
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{url} never answered")


def make_keys(home: GnuPGHome) -> list[tuple[str, bytes]]:
    """PEOPLE ed25519 keys with two user IDs and an encryption subkey each."""
    gpg = ["gpg", "--homedir", str(home.path), "--batch", "--pinentry-mode", "loopback"]
    made = []
    for n in range(PEOPLE):
        uid = f"Person {n} <p{n}@example.org>"
        subprocess.run(
            [*gpg, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "cert,sign", "2y"],
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            [*gpg, "--with-colons", "--list-secret-keys", f"={uid}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line[:3] == "fpr")
        for extra in (
            ["--quick-add-uid", fingerprint, f"Person {n} <p{n}@example.net>"],
            ["--passphrase", "", "--quick-add-key", fingerprint, "cv25519", "encr", "2y"],
        ):
            subprocess.run([*gpg, *extra], check=True, capture_output=True)
        armored = subprocess.run(
            [*gpg, "--armor", "--export", fingerprint], check=True, capture_output=True
        ).stdout
        made.append((fingerprint, armored))
    return made


def at_once(jobs):
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: job(), jobs))


def canonical(keyring: bytes) -> set[tuple[str, bytes, str]]:
    """What an export says: every (key, user ID, signature) in it, whatever the order."""
    return {
        (block.fingerprint, entry.user_id, hashlib.sha256(signature.raw).hexdigest())
        for block in openpgp.read_keys(keyring)
        for entry in openpgp.user_id_signatures(block)
        for signature in entry.signatures
    }


def test_two_servers_on_one_database_lose_nothing_and_export_alike(app, instance, event):
    signer_home = GnuPGHome(short_tempdir("kps"), agent=True)
    second = short_tempdir()
    env = {
        **os.environ,
        "KEYPARTY_DATABASE_URL": database_url(instance),
        "KEYPARTY_SECRET_KEY": app.config["SECRET_KEY"],
        # Every phone registers from loopback: no per-address limit here.
        "KEYPARTY_REGISTRATION_LIMIT": "1000",
    }
    servers = []
    event_id = event.id
    db.session.commit()
    try:
        keys = make_keys(signer_home)
        servers = [start_server(instance, env), start_server(second, env)]
        urls = [url for _, url in servers]

        def via(n: int) -> str:
            return urls[n % 2]

        # Registration: everyone at once, alternately on each server.
        def register(n: int):
            phone = Phone()
            status, page = phone.request(f"{via(n)}/e/{event_id}/register")
            assert status == 200, page
            fingerprint, armored = keys[n]
            status, page = phone.request(
                f"{via(n)}/e/{event_id}/register",
                {"csrf_token": csrf(page), "name": f"Person {n}", "key_text": armored.decode()},
            )
            # O2: the registrant proves possession, answered on the other server.
            assert status == 302, page
            prove = re.search(r'href="(/e/[^"]+/prove/[A-Za-z0-9_-]+)"', page).group(1)
            status, page = phone.request(f"{via(n + 1)}{prove}")
            assert status == 200, page
            letter = decrypt_with(signer_home, challenge_on(page))
            status, page = phone.request(
                f"{via(n + 1)}{prove}", {"csrf_token": csrf(page), "code": code_in(letter)}
            )
            assert status == 200 and "/join/" in page, page
            join = re.search(r"(/join/[A-Za-z0-9_-]+)", page).group(1)
            return phone, join

        registered = at_once([lambda n=n: register(n) for n in range(PEOPLE)])
        db.session.expire_all()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Key)) == PEOPLE

        # The host freezes (from this third process) and everyone confirmed.
        assert events.take_step(event, "freeze") is None
        for attendee in event.attendees:
            attendee.entry_confirmed_at = utcnow()
        assert events.configure(event, pace_gap=1, pace_window=300, pace_max=10) is None
        assert events.take_step(event, "start-verifying") is None
        by_fingerprint = {k.fingerprint: k for k in event.keys}
        uid_ids = {f: [u.id for u in by_fingerprint[f].user_ids] for f, _ in keys}
        db.session.commit()

        phones = []
        for n, (phone, join) in enumerate(registered):
            status, page = phone.request(f"{via(n)}{join}")
            assert status == 200, page
            status, _ = phone.request(f"{via(n)}{join}", {"csrf_token": csrf(page)})
            assert status == 302
            phones.append(phone)

        # Verifications: each person verifies both user IDs of the next two,
        # every request on the other server than the one before.
        def verify_neighbours(n: int) -> int:
            phone, recorded, turn = phones[n], 0, n
            for step in range(1, NEIGHBOURS + 1):
                fingerprint = keys[(n + step) % PEOPLE][0]
                for uid in uid_ids[fingerprint]:
                    turn += 1
                    page_url = f"{via(turn)}/e/{event_id}/k/{fingerprint}"
                    status, page = phone.request(page_url)
                    assert status == 200, page
                    status, page = phone.request(
                        f"{page_url}/u/{uid}",
                        {
                            f"u{uid}-csrf_token": csrf(page, f"u{uid}"),
                            f"u{uid}-context": "identity",
                            f"u{uid}-basis": "photo-id",
                        },
                    )
                    assert status == 302, page
                    recorded += 1
                time.sleep(1.2)  # P4: the next person after the gap
            return recorded

        recorded = sum(at_once([lambda n=n: verify_neighbours(n) for n in range(PEOPLE)]))
        assert recorded == PEOPLE * NEIGHBOURS * 2
        db.session.expire_all()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Verification)) == recorded

        assert events.take_step(event, "cool-off") is None
        assert events.take_step(event, "start-signing") is None
        event.date = date.today()
        tokens = {}
        for attendee in event.attendees:
            tokens[attendee.keys[0].fingerprint] = f"token-{attendee.id}"
            attendee.signing_token_sha256 = hash_token(tokens[attendee.keys[0].fingerprint])
        db.session.commit()

        # Each signer certifies on their own machine (here one home holding
        # every secret key, one signer at a time).
        uploads = []
        for n, (fingerprint, _) in enumerate(keys):
            bundle = signing.load_bundle(f"{via(n)}/e/{event_id}", tokens[fingerprint])
            signers = signing.choose_signers(signer_home, bundle, [fingerprint])
            report = signing.certify_all(signer_home, bundle, signers)
            assert len(report.made) == NEIGHBOURS * 2, report
            out = short_tempdir("kpc")
            for path in signing.write_files(signer_home, bundle, signers, out):
                uploads.append((tokens[fingerprint], path.read_bytes()))
            shutil.rmtree(out)
        assert len(uploads) == recorded

        def upload(turn: int, token: str, data: bytes) -> list[str]:
            request = urllib.request.Request(
                f"{via(turn)}/api/e/{event_id}/certifications",
                data=data,
                method="POST",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/pgp-keys",
                },
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                outcomes = json.load(response)["outcomes"]
            return [o["status"] if o["status"] != "refused" else str(o) for o in outcomes]

        jobs = [lambda t=t, u=u: upload(t, *u) for t, u in enumerate(uploads)]
        # The first certification sent to both servers at the same moment too.
        jobs += [lambda: upload(1, *uploads[0])]
        statuses = [s for outcome in at_once(jobs) for s in outcome]
        assert sorted(statuses) == ["accepted"] * recorded + ["already accepted"]
        db.session.expire_all()
        accepted = db.session.scalars(
            sa.select(Certification).where(Certification.status == "accepted")
        ).all()
        assert len(accepted) == recorded
        assert len({c.signature_sha256 for c in accepted}) == recorded

        # Owners accept what they received, on both servers at once.
        owner_of = {
            c.id: db.session.get(Attendee, db.session.get(UserID, c.user_id_id).key.attendee_id)
            for c in accepted
        }
        phone_of_attendee = {
            db.session.scalar(sa.select(Key.attendee_id).where(Key.fingerprint == f)): phones[n]
            for n, (f, _) in enumerate(keys)
        }
        db.session.commit()

        def accept(turn: int, certification_id: int) -> int:
            phone = phone_of_attendee[owner_of[certification_id].id]
            status, page = phone.request(f"{via(turn)}/me/received")
            assert status == 200, page
            status, _ = phone.request(
                f"{via(turn)}/me/received/{certification_id}/accepted",
                {"csrf_token": csrf(page)},
            )
            return status

        answers = at_once([lambda t=t, c=c: accept(t, c) for t, c in enumerate(owner_of)])
        assert answers == [302] * recorded
        db.session.expire_all()
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(Certification)
                .where(Certification.owner_decision == "accepted")
            )
            == recorded
        )

        # Both servers export the same keyring, holding every accepted one.
        exports = []
        for url in urls:
            with urllib.request.urlopen(f"{url}/host/e/{event_id}/keyring.asc", timeout=60) as r:
                exports.append(canonical(r.read()))
        assert exports[0] == exports[1]
        certifications = {
            (f, u, s) for f, u, s in exports[0] if s in {c.signature_sha256 for c in accepted}
        }
        assert len(certifications) == recorded
    finally:
        for process, url in servers:
            process.terminate()
            # Shown by pytest when the test fails.
            print(f"--- keyparty serve at {url}\n{process.communicate(timeout=30)[0]}")
        subprocess.run(
            ["gpgconf", "--homedir", str(signer_home.path), "--kill", "gpg-agent"], check=False
        )
        shutil.rmtree(signer_home.path, ignore_errors=True)
        shutil.rmtree(second, ignore_errors=True)
