"""Registration with real gpg: good keys land, bad input is refused and leaves no trace."""

import logging
import re
import subprocess
from datetime import date

import pytest

from keyparty import events
from keyparty import openpgp
from keyparty import registration
from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Key
from tests.conftest import MANIFEST
from tests.conftest import fingerprint_of
from tests.conftest import fixture_bytes
from tests.conftest import key_bytes
from tests.conftest import register
from tests.conftest import short_tempdir


def stored_state(event):
    """Everything a refused registration must leave as it was."""
    db.session.expire_all()
    keys = db.session.scalars(db.select(Key).where(Key.event_id == event.id)).all()
    return (
        db.session.scalar(db.select(db.func.count()).select_from(Attendee)),
        sorted((k.fingerprint, k.armored) for k in keys),
        sorted(r.fingerprint for r in events.event_home(event).list_keys()),
    )


def web_registration(event, data, name="Somebody", email=None):
    return registration.register_keys(
        event, [("your key", data)], events.event_home(event), one_key=True, name=name, email=email
    )


BAD_INPUTS = [
    ("bad/not-openpgp.txt", "not-openpgp", "gpg --armor --export"),
    ("bad/truncated.asc", "corrupt-armor", "END"),
    ("bad/corrupted.asc", "corrupt-armor", "Copy the whole block"),
    ("bad/two-keys.asc", "several-keys", "one key at a time"),
    ("bad/two-keys-one-block.asc", "several-keys", "one key at a time"),
    ("bad/secret.asc", "secret-key", "SECRET key"),
    ("bad/secret.gpg", "secret-key", "SECRET key"),
    ("bad/revoked.asc", "revoked", "revoked"),
    ("bad/expired.asc", "expired", "--quick-set-expire"),
    ("bad/rsa1024.asc", "weak-algorithm", "RSA with 1024 bits"),
    ("bad/dsa1024.asc", "weak-algorithm", "DSA with 1024 bits"),
    ("bad/rsa2048-weak-subkey.asc", "weak-algorithm", "A subkey"),
    ("bad/elgamal-sign.asc", "weak-algorithm", "Elgamal signing key"),
    ("bad/v3.asc", "v3", "version 3"),
    ("bad/long-uid.asc", "long-user-id", "1024 bytes"),
    ("bad/huge.asc", "too-large", "1 MiB"),
    ("bad/compressed.asc", "compressed", "compress"),
    ("bad/future.asc", "unusable", "clock"),
]


@pytest.mark.parametrize(("path", "problem", "hint"), BAD_INPUTS)
def test_bad_input_is_refused_and_nothing_changes(event, path, problem, hint):
    register(event, "alice")
    before = stored_state(event)
    result = web_registration(event, fixture_bytes(path))
    assert not result.accepted
    (rejected,) = result.rejected
    assert rejected.problem == problem
    assert hint in rejected.message
    assert stored_state(event) == before


def test_a_key_expiring_before_the_event_is_refused(app):
    late_event = events.create_event("Far future party", date(2031, 1, 1))
    result = web_registration(late_event, fixture_bytes("bad/expires-2030.asc"))
    assert result.rejected[0].problem == "expires-before-event"
    assert "2030-01-01" in result.rejected[0].message


def test_a_secret_key_is_never_written_anywhere(event, caplog, instance):
    caplog.set_level(logging.DEBUG)
    secret = fixture_bytes("bad/secret.asc")
    result = web_registration(event, secret)
    assert result.rejected[0].problem == "secret-key"
    body = b"".join(secret.splitlines()[3:6])  # a stretch of the secret key's base64
    assert body.decode() not in caplog.text
    for path in instance.rglob("*"):
        if path.is_file():
            assert body not in path.read_bytes(), f"secret key material in {path}"


def test_a_good_key_is_stored_with_its_user_ids_and_a_join_token(event):
    result = web_registration(event, key_bytes("carol"), name="Carol", email="carol@example.org")
    (accepted,) = result.accepted
    key = accepted.key
    assert key.fingerprint == fingerprint_of("carol")
    assert [u.text for u in key.user_ids] == MANIFEST["keys"]["carol"]["user_ids"]
    assert key.attendee.name == "Carol"
    assert accepted.join_token and len(accepted.join_token) >= 20
    # Only the token's hash is kept.
    assert key.attendee.join_token_sha256 == registration.hash_token(accepted.join_token)
    assert accepted.join_token not in key.attendee.join_token_sha256
    # The database is the record: the stored armor is the key itself.
    (block,) = openpgp.read_keys(key.armored.encode())
    assert block.fingerprint == key.fingerprint
    assert [r.fingerprint for r in events.event_home(event).list_keys()] == [key.fingerprint]


def test_the_same_key_twice_updates_and_makes_no_second_attendee(event):
    first = web_registration(event, key_bytes("bob"), name="Bob")
    again = web_registration(event, key_bytes("bob"), name="Mallory")
    assert again.accepted[0].updated
    assert again.accepted[0].join_token is None, "a re-upload must not hand out a join link"
    assert db.session.scalar(db.select(db.func.count()).select_from(Attendee)) == 1
    assert again.accepted[0].key.attendee.name == "Bob", "someone else's upload can't rename"
    assert first.accepted[0].key.id == again.accepted[0].key.id


def test_no_key_change_after_the_freeze(frozen_event):
    before = stored_state(frozen_event)
    changed = web_registration(frozen_event, key_bytes("alice"))
    assert changed.rejected[0].problem == "frozen"
    assert "frozen" in changed.rejected[0].message
    newcomer = web_registration(frozen_event, key_bytes("zoe"))
    assert newcomer.rejected[0].problem == "frozen"
    assert stored_state(frozen_event) == before


def test_a_flooded_key_is_stored_without_third_party_signatures(event):
    flooded = fixture_bytes("bad/flooded.asc")
    (block,) = openpgp.read_keys(flooded)
    result = web_registration(event, flooded)
    (accepted,) = result.accepted
    stored = accepted.key.armored.encode()
    assert len(stored) < len(flooded) / 20
    stored_block = openpgp.read_keys(stored)[0]
    assert stored_block.fingerprint == block.fingerprint
    # Signature packets left: self-signatures only (one per user ID and subkey).
    packets = subprocess.run(
        ["gpg", "--homedir", str(short_tempdir()), "--list-packets"],
        input=stored,
        capture_output=True,
        check=True,
    ).stdout.decode()
    issuers = re.findall(r"keyid ([0-9A-F]{16})", packets)
    assert issuers and set(issuers) == {block.fingerprint[-16:]}


def test_a_user_id_without_self_signature_is_not_listed(event):
    result = web_registration(event, fixture_bytes("bad/no-selfsig-uid.asc"))
    (accepted,) = result.accepted
    expected = MANIFEST["keys"]["no-selfsig-uid"]["user_ids"][:1]
    assert [u.text for u in accepted.key.user_ids] == expected


def test_a_keyring_registers_every_good_key_and_reports_each_bad_one(event):
    data = key_bytes("alice") + fixture_bytes("bad/rsa1024.asc") + key_bytes("hanako")
    result = registration.register_keys(event, [("ring.asc", data)], events.event_home(event))
    assert sorted(a.key.fingerprint for a in result.accepted) == sorted(
        [fingerprint_of("alice"), fingerprint_of("hanako")]
    )
    (rejected,) = result.rejected
    assert rejected.problem == "weak-algorithm"
    assert "key 2 of 3" in rejected.source
    home_keys = {r.fingerprint for r in events.event_home(event).list_keys()}
    assert home_keys == {fingerprint_of("alice"), fingerprint_of("hanako")}


def test_a_refused_key_in_a_batch_leaves_no_trace_in_the_gnupg_home(event):
    data = key_bytes("alice") + fixture_bytes("bad/revoked.asc")
    result = registration.register_keys(event, [("ring.asc", data)], events.event_home(event))
    assert [r.problem for r in result.rejected] == ["revoked"]
    assert [r.fingerprint for r in events.event_home(event).list_keys()] == [
        fingerprint_of("alice")
    ]


def test_signups_name_the_attendees(event):
    signups = registration.read_signups(fixture_bytes("signups.csv").decode())
    inputs = [(f"{n}.asc", key_bytes(n)) for n in ("alice", "bob", "hanako")]
    result = registration.register_keys(event, inputs, events.event_home(event), signups=signups)
    names = {a.key.fingerprint: a.key.attendee.name for a in result.accepted}
    assert names[fingerprint_of("hanako")] == signups[fingerprint_of("hanako")].name
    assert fingerprint_of("bob") in signups, "grouped fingerprints are normalised"


def test_a_signup_sheet_without_the_needed_columns_says_which():
    with pytest.raises(ValueError, match="fingerprint"):
        registration.read_signups("name,email\nA,a@example.org\n")


def test_the_gnupg_home_can_be_rebuilt_from_the_database(registered_event):
    home = events.event_home(registered_event)
    before = sorted(r.fingerprint for r in home.list_keys())
    (home.path / "pubring.kbx").unlink()
    assert events.rebuild_home(registered_event) == 3
    assert sorted(r.fingerprint for r in home.list_keys()) == before
