"""After the event: `keyparty sign` on the signer's own machine (a separate
GnuPG home here), and intake on the host, with real gpg throughout."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

from keyparty import events
from keyparty import intake
from keyparty import openpgp
from keyparty import registration
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import Certification
from keyparty.models import Verification
from keyparty.models import utcnow
from keyparty.rules import moment_text
from tests.conftest import FIXTURES
from tests.conftest import attendee_named
from tests.conftest import fingerprint_of
from tests.conftest import key_bytes
from tests.conftest import phone_of
from tests.conftest import record
from tests.conftest import short_tempdir
from tests.conftest import signing_event_on_server

BASE_URL = "http://keyparty.test:8000"


def sign(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "keyparty", "sign", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def write_bundle(event, name, path: Path) -> Path:
    path.write_text(json.dumps(bundle_for(attendee_named(event, name), BASE_URL)))
    return path


def test_offline_sign_then_intake_from_files(signing_event, alice_home, tmp_path):
    bundle = write_bundle(signing_event, "Alice", tmp_path / "bundle.json")
    out = tmp_path / "out"
    result = sign(
        str(bundle),
        "--homedir",
        str(alice_home.path),
        "--digest",
        signing_event.partylist_sha256,
        "--no-upload",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "made 4, skipped 0, failed 0" in result.stdout
    # D3: the same end of the signing window as intake states.
    _, window_end = intake.signing_window(signing_event)
    assert f"Signing window (D3): until {moment_text(window_end)}." in result.stdout
    files = sorted(out.glob("*.asc"))
    assert len(files) == 4, "one file per certification"

    # Each file: the key, one user ID, its self-signature, one certification.
    for path in files:
        (block,) = openpgp.read_keys(path.read_bytes())
        (entry,) = openpgp.user_id_signatures(block)
        third_party = [s for s in entry.signatures if s.issuer_fingerprint != block.fingerprint]
        assert len(third_party) == 1
        cert = third_party[0]
        assert cert.notation("event@keyparty.org") == signing_event.id.encode()
        assert cert.expires_after == 365 * 86400

    outcomes = intake.take_in(signing_event, [(p.name, p.read_bytes()) for p in files])
    assert [o.status for o in outcomes] == ["accepted"] * 4, [o.message for o in outcomes]
    levels = sorted((o.context, o.certification.level) for o in outcomes)
    assert levels == [("email", 3), ("identity", 2), ("identity", 3), ("identity", 3)]

    # Merged into the event keyring, and gpg there agrees they are good.
    home = events.event_home(signing_event)
    alice_fpr = attendee_named(signing_event, "Alice").keys[0].fingerprint
    certs = [
        r
        for r in home.certifications([k.fingerprint for k in signing_event.keys])
        if r.issuer_fingerprint == alice_fpr and r.key_fingerprint != alice_fpr
    ]
    assert len(certs) == 4 and all(r.validity == "!" for r in certs)

    # Replays change nothing.
    again = intake.take_in(signing_event, [(p.name, p.read_bytes()) for p in files])
    assert [o.status for o in again] == ["already accepted"] * 4
    assert db.session.scalar(db.select(db.func.count()).select_from(Certification)) == 4


def test_signing_again_certifies_nothing_twice(signing_event, alice_home, tmp_path):
    bundle = write_bundle(signing_event, "Alice", tmp_path / "bundle.json")
    args = [str(bundle), "--homedir", str(alice_home.path), "--no-upload", "--out", str(tmp_path)]
    first = sign(*args, "--digest", signing_event.partylist_sha512)
    assert first.returncode == 0, first.stderr
    second = sign(*args, "--digest", signing_event.partylist_sha256)
    assert "made 0, skipped 4, failed 0" in second.stdout
    alice_fpr = attendee_named(signing_event, "Alice").keys[0].fingerprint
    bob_fpr = attendee_named(signing_event, "Bob").keys[0].fingerprint
    mine = [r for r in alice_home.certifications([bob_fpr]) if r.issuer_fingerprint == alice_fpr]
    assert len(mine) == 3


def test_a_wrong_digest_certifies_nothing(signing_event, alice_home, tmp_path):
    bundle = write_bundle(signing_event, "Alice", tmp_path / "bundle.json")
    result = sign(
        str(bundle), "--homedir", str(alice_home.path), "--digest", "00" * 32, "--no-upload"
    )
    assert result.returncode != 0
    assert "not the party list's" in result.stderr
    bob_fpr = attendee_named(signing_event, "Bob").keys[0].fingerprint
    assert alice_home.list_keys([bob_fpr]) == [] or not [
        r for r in alice_home.certifications([bob_fpr]) if r.issuer_fingerprint != bob_fpr
    ]


def test_a_key_not_on_the_frozen_list_is_refused(signing_event, alice_home, tmp_path):
    data = bundle_for(attendee_named(signing_event, "Alice"), BASE_URL)
    bob = attendee_named(signing_event, "Bob").keys[0].fingerprint
    data["party_list"] = data["party_list"].replace(bob[:4], "0000", 1)
    data["party_list_sha256"] = hashlib.sha256(data["party_list"].encode()).hexdigest()
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    result = sign(
        str(path), "--homedir", str(alice_home.path), "--digest", data["party_list_sha256"]
    )
    assert result.returncode != 0
    assert "not on the frozen party list" in result.stderr


def test_without_the_secret_key_the_signer_is_told(signing_event, tmp_path):
    empty = GnuPGHome(short_tempdir("kps"), agent=True)
    bundle = write_bundle(signing_event, "Alice", tmp_path / "bundle.json")
    result = sign(
        str(bundle), "--homedir", str(empty.path), "--digest", signing_event.partylist_sha256
    )
    assert result.returncode != 0
    assert "No secret key for" in result.stderr


def test_a_wrong_passphrase_stops_with_a_clear_message(signing_event, tmp_path):
    """Victor's key has a passphrase; --passphrase-fd gives it through loopback."""

    registration.register_keys(
        signing_event,
        [("victor", (FIXTURES / "attendees" / "victor.asc").read_bytes())],
        events.event_home(signing_event),
    )
    # Victor joined too late to be on the list; sign as Alice with a
    # passphrase-protected copy is not possible, so use Victor's own home
    # against Alice's bundle to see gpg's passphrase handling.
    home = GnuPGHome(short_tempdir("kps"), agent=True)
    home.import_keys((FIXTURES / "attendees" / "victor.secret.asc").read_bytes(), options=None)
    victor_fpr = home.secret_keys()[0].fingerprint
    bob_fpr = attendee_named(signing_event, "Bob").keys[0].fingerprint
    home.import_keys(attendee_named(signing_event, "Bob").keys[0].armored.encode())
    outcome = home.certify(
        victor_fpr, bob_fpr, ["Bob Example <bob@example.org>"], 3, 365, {}, passphrase="wrong"
    )
    assert outcome.problem == "wrong passphrase"
    good = home.certify(
        victor_fpr,
        bob_fpr,
        ["Bob Example <bob@example.org>"],
        3,
        365,
        {},
        passphrase="correct horse",
    )
    assert good.problem is None
    subprocess.run(["gpgconf", "--homedir", str(home.path), "--kill", "gpg-agent"], check=False)


def test_online_sign_with_a_token_uploads_and_the_phone_shows_outcomes(
    live_server, alice_home, tmp_path
):
    app = live_server.app
    with app.app_context():
        event = signing_event_on_server("Online Party")
        alice = attendee_named(event, "Alice")
        event_id, digest = event.id, event.partylist_sha256
        phone = phone_of(app, alice)
        db.session.remove()

    page = phone.post("/me/signing-token", data={"csrf_token": _csrf(phone)}).text
    token = re.search(r'<span id="token">([^<]+)</span>', page).group(1)

    result = sign(
        f"{live_server.url}/e/{event_id}",
        "--token",
        token,
        "--homedir",
        str(alice_home.path),
        "--digest",
        digest,
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted" in result.stdout
    me = phone.get("/me").text
    assert "Bob Example &lt;bob@example.org&gt;" in me and "Taken in by the event" in me

    wrong = sign(
        f"{live_server.url}/e/{event_id}", "--token", "nope", "--homedir", str(alice_home.path)
    )
    assert wrong.returncode != 0 and "Unknown signing token" in wrong.stderr


def _csrf(client) -> str:
    page = client.get("/me").text
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def test_the_bundle_holds_only_the_signers_own_verifications(signing_event):
    signing_event.state = "verifying"
    record(signing_event, "Bob", "Carol", 0, "identity", "photo-id", 30)
    signing_event.state = "signing"
    db.session.commit()
    data = bundle_for(attendee_named(signing_event, "Alice"), BASE_URL)
    assert len(data["verifications"]) == 4
    assert {v["fingerprint"] for v in data["verifications"]} == set(data["keys"])
    bob_fpr = attendee_named(signing_event, "Bob").keys[0].fingerprint
    assert bob_fpr not in json.dumps([v for v in data["verifications"] if "Carol" in v["user_id"]])
    assert db.session.scalar(db.select(db.func.count()).select_from(Verification)) == 5


def test_after_the_signing_window_nothing_is_certified(signing_event, alice_home, tmp_path):
    data = bundle_for(attendee_named(signing_event, "Alice"), BASE_URL)
    data["event"]["signing_window_ends"] = "2020-01-01T00:00:00+00:00"
    path = tmp_path / "late.json"
    path.write_text(json.dumps(data))
    result = sign(
        str(path), "--homedir", str(alice_home.path), "--digest", data["party_list_sha256"]
    )
    assert result.returncode != 0 and "D3" in result.stderr
    assert "ended on 2020-01-01 00:00 UTC" in result.stderr


def test_one_attendee_certifies_with_each_of_their_keys(app, event, tmp_path):
    """A sign-up sheet giving one person two keys makes one attendee; `keyparty
    sign --local-user A --local-user B` certifies with both, and intake takes both."""

    signer1 = (FIXTURES / "attendees" / "signer1.asc").read_bytes()
    sheet = (
        "name,email,fingerprint\n"
        f"Alice Example,alice@example.org,{fingerprint_of('alice')}\n"
        f"Alice Example,alice@example.org,{fingerprint_of('signer1')}\n"
    )
    inputs, signups = registration.sort_files(
        [
            ("sheet.csv", sheet.encode()),
            ("a.asc", key_bytes("alice")),
            ("s.asc", signer1),
            ("b.asc", key_bytes("bob")),
        ]
    )
    result = registration.register_keys(event, inputs, events.event_home(event), signups=signups)
    assert [a.join_token is not None for a in result.accepted] == [True, False, True]
    alice = attendee_named(event, "Alice")
    assert len(alice.keys) == 2 and len(event.attendees) == 2
    events.take_step(event, "freeze")
    for attendee in event.attendees:
        attendee.entry_confirmed_at = utcnow()
    events.take_step(event, "start-verifying")
    record(event, "Alice", "Bob", 0, "identity", "photo-id", 0)
    events.take_step(event, "cool-off")
    events.take_step(event, "start-signing")
    event.date = date.today()
    db.session.commit()

    home = GnuPGHome(short_tempdir("kps"), agent=True)
    for name in ("alice", "signer1"):
        home.import_keys((FIXTURES / "attendees" / f"{name}.secret.asc").read_bytes(), options=None)
    bundle = write_bundle(event, "Alice", tmp_path / "bundle.json")
    out = tmp_path / "out"
    result = sign(
        str(bundle),
        "--homedir",
        str(home.path),
        "--digest",
        event.partylist_sha256,
        "--local-user",
        fingerprint_of("alice"),
        "--local-user",
        fingerprint_of("signer1"),
        "--no-upload",
        "--out",
        str(out),
    )
    subprocess.run(["gpgconf", "--homedir", str(home.path), "--kill", "gpg-agent"], check=False)
    assert result.returncode == 0, result.stderr
    assert "made 2, skipped 0, failed 0" in result.stdout
    outcomes = intake.take_in(event, [(p.name, p.read_bytes()) for p in sorted(out.glob("*.asc"))])
    assert sorted(o.issuer for o in outcomes) == sorted(
        [fingerprint_of("alice"), fingerprint_of("signer1")]
    )
    assert [o.status for o in outcomes] == ["accepted", "accepted"]


def test_an_unreachable_agent_is_named(signing_event, alice_home, tmp_path):
    """gpg-agent's socket lives in the home; reached through a path over ~100
    characters it cannot be: the signer is told, and nothing is certified."""
    deep = short_tempdir() / ("x" * 60) / ("y" * 60)
    deep.parent.mkdir(parents=True)
    deep.symlink_to(alice_home.path)
    subprocess.run(
        ["gpgconf", "--homedir", str(alice_home.path), "--kill", "gpg-agent"], check=False
    )
    bundle = write_bundle(signing_event, "Alice", tmp_path / "bundle.json")
    result = sign(str(bundle), "--homedir", str(deep), "--digest", signing_event.partylist_sha256)
    assert result.returncode != 0
    assert "cannot reach its agent" in result.stderr and "Nothing was certified" in result.stderr
