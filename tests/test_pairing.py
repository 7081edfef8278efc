"""Signing without typing a token: `keyparty sign URL` shows a short code, the
signer allows it on their phone page, and the computer gets a signing token
(RFC 8628 device authorization). Real CLI process, real server on loopback,
real gpg; the phone is a test client on the same server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest

from keyparty import pairing
from keyparty import proof
from keyparty.extensions import db
from keyparty.models import SigningPairing
from keyparty.models import utcnow
from tests.conftest import attendee_named
from tests.conftest import phone_of
from tests.conftest import signing_event_on_server

CODE = re.compile(r"Code ([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})")


@pytest.fixture
def party(live_server):
    """A signing event on a live server: Alice verified Bob; phones for both."""
    app = live_server.app
    app.config.update(PAIRING_INTERVAL=1, PAIRING_SECONDS=60)
    with app.app_context():
        event = signing_event_on_server("Pairing Party")
        info = {"id": event.id, "digest": event.partylist_sha256}
        # Each phone holds its attendee's own session secret (O2; tests/test_proof.py
        # opens sessions through the proof itself).
        phones = {}
        for name in ("alice", "bob"):
            attendee = attendee_named(event, name.title())
            secret = proof.open_session(attendee)
            phone = app.test_client()
            with phone.session_transaction() as session:
                session.update(event_id=event.id, attendee_id=attendee.id, secret=secret)
            phones[name] = phone
        db.session.remove()
    return {**info, "url": f"{live_server.url}/e/{info['id']}", "app": app, "phones": phones}


def start_sign(party, alice_home, tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyparty",
            "sign",
            party["url"],
            "--homedir",
            str(alice_home.path),
            "--digest",
            party["digest"],
            "--out",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "KEYPARTY_SIGNING_TOKEN": ""},
    )


def read_code(process: subprocess.Popen) -> str:
    for line in process.stdout:
        found = CODE.search(line)
        if found:
            return found.group(1)
    raise AssertionError("no code printed: " + process.stderr.read())


def csrf(phone) -> str:
    page = phone.get("/me").text
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def answer(phone, page: str, code: str, what: str):
    """Press allow or deny in the box that shows `code`."""
    box = page[page.index(code) :]
    action = re.search(rf'action="(/me/pairing/\d+/{what})"', box).group(1)
    return phone.post(action, data={"csrf_token": csrf(phone)}, follow_redirects=True)


def test_a_code_allowed_on_the_phone_signs_and_uploads(party, alice_home, tmp_path):
    process = start_sign(party, alice_home, tmp_path)
    try:
        code = read_code(process)
        alice_page = party["phones"]["alice"].get("/me").text
        assert "A computer asks to sign as you, code" in alice_page and code in alice_page
        assert code not in party["phones"]["bob"].get("/me").text  # only the key's own attendee
        allowed = answer(party["phones"]["alice"], alice_page, code, "allow")
        assert f"Allowed: the computer showing {code} signs as you now." in allowed.text
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, out + err
    assert "Allowed on the phone." in out and "accepted" in out
    assert code not in party["phones"]["alice"].get("/me").text  # answered: gone


def test_a_denied_code_signs_nothing(party, alice_home, tmp_path):
    process = start_sign(party, alice_home, tmp_path)
    try:
        code = read_code(process)
        page = party["phones"]["alice"].get("/me").text
        denied = answer(party["phones"]["alice"], page, code, "deny")
        assert f"Denied: the computer showing {code} gets nothing." in denied.text
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode != 0
    assert "Denied on the phone" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_code_nobody_allows_expires(party, alice_home, tmp_path):
    party["app"].config["PAIRING_SECONDS"] = 3
    process = start_sign(party, alice_home, tmp_path)
    try:
        read_code(process)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode != 0
    assert "not allowed in time" in err


def test_polling_too_fast_is_slowed_down(app, signing_event):
    app.config.update(PAIRING_INTERVAL=5)
    alice = attendee_named(signing_event, "Alice")
    started = pairing.start(signing_event, [alice.keys[0].fingerprint])
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", started.user_code)
    now = utcnow()
    with pytest.raises(pairing.PairingError) as first:
        pairing.poll(signing_event, started.device_code, now)
    assert first.value.code == "authorization_pending"
    with pytest.raises(pairing.PairingError) as second:
        pairing.poll(signing_event, started.device_code, now + timedelta(seconds=1))
    assert second.value.code == "slow_down"
    stored = db.session.scalar(db.select(SigningPairing))
    assert stored.interval_seconds == 10
    with pytest.raises(pairing.PairingError) as wrong:
        pairing.poll(signing_event, "not-the-device-code", now + timedelta(seconds=30))
    assert wrong.value.code == "invalid_grant"


def test_pairing_asks_for_a_key_registered_here(app, signing_event):
    with pytest.raises(pairing.PairingError) as unknown:
        pairing.start(signing_event, ["0" * 40])
    assert unknown.value.code == "unknown_key"
    signing_event.state = "cooling-off"
    with pytest.raises(pairing.PairingError) as early:
        pairing.start(signing_event, [attendee_named(signing_event, "Alice").keys[0].fingerprint])
    assert early.value.code == "not_signing"


def test_the_token_page_groups_the_token_and_says_the_old_one_stops(app, signing_event):

    phone = phone_of(app, attendee_named(signing_event, "Alice"))
    me = phone.get("/me").text
    assert "Show a signing token to type instead" in me
    first = phone.post("/me/signing-token").text
    assert "no longer works" not in first
    token = re.search(r'<span id="token">([^<]+)</span>', first).group(1)
    assert re.fullmatch(r"([2-9BCDFGHJKLMNPQRSTVWXZ]{4}-){6}[2-9BCDFGHJKLMNPQRSTVWXZ]{4}", token)
    assert 'class="secondary copy"' in first
    api = app.test_client()
    typed = token.replace("-", "").lower()  # typed without dashes, in small letters
    assert (
        api.get(
            f"/api/e/{signing_event.id}/bundle", headers={"Authorization": f"Bearer {typed}"}
        ).status_code
        == 200
    )
    assert "Show a new signing token (the previous one stops working)" in phone.get("/me").text
    second = phone.post("/me/signing-token").text
    assert "This is a new token: the one shown before no longer works." in second
    old = api.get(f"/api/e/{signing_event.id}/bundle", headers={"Authorization": f"Bearer {token}"})
    assert old.status_code == 401
