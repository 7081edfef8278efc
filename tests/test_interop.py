"""Signers with other OpenPGP tools get the same outcome as gpg users, and
keyparty's exports read in them (DESIGN.md "Other OpenPGP tools").

- Sequoia's `sq` 0.27 (Debian 12; `make system-test` installs it): `sq certify
  [OPTIONS] CERTIFIER-KEY CERTIFICATE USERID` makes only generic (0x10)
  certifications, counts a year as 365.2425 days, `--amount` writes a depth-0
  trust signature, `--time` sets the creation time.
- PGPy (PyPI `pgpy`, a test extra): 0x10-0x13, notations, expiry, any hash.
- rnp 0.16 cannot certify; it and sq read the exports.

Every certification goes through both doors (the upload API and
`keyparty intake`).
"""

from __future__ import annotations

import subprocess
import warnings
from datetime import UTC
from datetime import timedelta

import pytest

from keyparty import publishing
from keyparty.extensions import db
from keyparty.models import Certification
from tests.conftest import FIXTURES
from tests.conftest import attendee_named

with warnings.catch_warnings():
    # PGPy 0.6 imports imghdr (deprecated in Python 3.11, gone in 3.13).
    warnings.simplefilter("ignore", DeprecationWarning)
    import pgpy
    from pgpy.constants import HashAlgorithm
    from pgpy.constants import SignatureType

BOB_UID = "Bob Example <bob@example.org>"
CAROL_UID = "Carol Example <carol@example.org>"
ALICE_SECRET = FIXTURES / "attendees" / "alice.secret.asc"


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def accepted_level(event) -> int:
    (row,) = db.session.scalars(
        db.select(Certification).where(
            Certification.event_id == event.id, Certification.status == "accepted"
        )
    ).all()
    return row.level


# --- sq certify ------------------------------------------------------------------


def sq_certify(event, tmp_path, *options: str, uid=BOB_UID, target="Bob", context="identity"):
    """`sq certify` by Alice, as a careful sq user would run it; the whole
    certificate it prints is the upload."""
    certificate = tmp_path / f"{target}.asc"
    certificate.write_text(attendee_named(event, target).keys[0].armored)
    notations = ["--notation", "event@keyparty.org", event.id]
    if context:
        notations += ["--notation", "context@keyparty.org", context]
    return run(
        "sq", "certify", *notations, *options, str(ALICE_SECRET), str(certificate), uid
    ).encode()


def test_the_installed_sq_is_the_one_these_tests_speak():
    assert run("sq", "--version").startswith("sq 0.27")
    help_text = subprocess.run(["sq", "certify", "--help"], capture_output=True, text=True).stdout
    for option in ("--notation <NAME> <VALUE>", "--expires-in", "--amount", "--depth", "--time"):
        assert option in help_text


@pytest.mark.parametrize(
    "options",
    [
        ("--expires-in", "1y"),
        # 2 x 365.2425 days: 730 days and 11 hours, inside the two-year cap (D1).
        ("--expires-in", "2y"),
        # A depth-0 trust signature: an ordinary certification with an amount (T1).
        ("--expires-in", "1y", "--amount", "60"),
    ],
    ids=["1y", "2y", "amount-60"],
)
def test_sq_certifications_that_follow_the_rules_are_accepted(
    door, signing_event, tmp_path, options
):
    answer = door(sq_certify(signing_event, tmp_path, *options))
    assert (answer.status, answer.ok) == ("accepted", True), answer.message
    assert accepted_level(signing_event) == 0  # generic, with its context notation (C2)


@pytest.mark.parametrize(
    "options, context, rule, words",
    [
        (("--expires-in", "1y"), None, "C1", "no context notation"),
        (("--expires-in", "1y"), "fingerprint", "C1", "'fingerprint' is not a context"),
        (("--expires-in", "3y"), "identity", "D1", "cap of 730 days"),
        (("--expires-in", "never"), "identity", "D1", "never expires"),
        (("--expires-in", "1y", "--depth", "1", "--amount", "60"), "identity", "T1", "trust"),
        (
            ("--expires-in", "1y", "--depth", "2", "--regex", "example"),
            "identity",
            "T1",
            "trust signature",
        ),
    ],
    ids=["no-context", "unknown-context", "3y", "never", "depth-1", "depth-2-regex"],
)
def test_sq_certifications_that_break_a_rule_are_refused_under_it(
    door, signing_event, tmp_path, options, context, rule, words
):
    data = sq_certify(signing_event, tmp_path, *options, context=context)
    answer = door(data)
    assert (answer.status, answer.rule) == ("refused", rule), answer.message
    assert words in answer.message


def test_an_sq_certification_dated_before_signing_started_is_d3(door, signing_event, tmp_path):
    before = signing_event.signing_started_at - timedelta(minutes=5)
    data = sq_certify(
        signing_event, tmp_path, "--expires-in", "1y", "--time", f"{before:%Y%m%dT%H%M%S}"
    )
    answer = door(data)
    assert (answer.status, answer.rule) == ("refused", "D3"), answer.message
    assert "in the calm of the signing phase" in answer.message


# --- PGPy ------------------------------------------------------------------------


def pgpy_certify(
    event,
    sig_type=SignatureType.Positive_Cert,
    *,
    uid=BOB_UID,
    target="Bob",
    context="identity",
    expires=timedelta(days=365),
    **options,
) -> bytes:
    """Alice's certification made with PGPy; the whole certificate is the upload."""
    alice, _ = pgpy.PGPKey.from_file(str(ALICE_SECRET))
    key, _ = pgpy.PGPKey.from_blob(attendee_named(event, target).keys[0].armored)
    notation = {"event@keyparty.org": event.id}
    if context:
        notation["context@keyparty.org"] = context
    user_id = next(u for u in key.userids if u.userid == uid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        user_id |= alice.certify(user_id, sig_type, notation=notation, expires=expires, **options)
    return str(key).encode()


@pytest.mark.parametrize(
    "sig_type, level",
    [
        (SignatureType.Generic_Cert, 0),
        (SignatureType.Casual_Cert, 2),
        (SignatureType.Positive_Cert, 3),
    ],
    ids=["0x10", "0x12", "0x13"],
)
def test_pgpy_certifications_up_to_the_basis_are_accepted(door, signing_event, sig_type, level):
    answer = door(pgpy_certify(signing_event, sig_type))
    assert (answer.status, answer.ok) == ("accepted", True), answer.message
    assert accepted_level(signing_event) == level


@pytest.mark.parametrize(
    "changes, rule, words",
    [
        ({"sig_type": SignatureType.Persona_Cert}, "C2", "persona certification"),
        (
            {"sig_type": SignatureType.Positive_Cert, "uid": CAROL_UID, "target": "Carol"},
            "C2",
            "more than your verification gives",
        ),
        ({"context": None}, "C1", "no context notation"),
        ({"expires": None}, "D1", "never expires"),
        ({"expires": timedelta(days=3 * 365)}, "D1", "cap of 730 days"),
        ({"hash": HashAlgorithm.SHA1}, "hash", "hashed with SHA-1"),
        ({"hash": HashAlgorithm.MD5}, "hash", "hashed with MD5"),
    ],
    ids=["0x11", "0x13-on-known-for-years", "no-context", "no-expiry", "3y", "SHA-1", "MD5"],
)
def test_pgpy_certifications_that_break_a_rule_are_refused_under_it(
    door, signing_event, changes, rule, words
):
    answer = door(pgpy_certify(signing_event, **changes))
    assert (answer.status, answer.rule) == ("refused", rule), answer.message
    assert words in answer.message
    assert "changed after it was made" not in answer.message


def test_a_pgpy_certification_dated_before_signing_started_is_d3(door, signing_event):
    before = signing_event.signing_started_at.replace(tzinfo=UTC) - timedelta(hours=1)
    answer = door(pgpy_certify(signing_event, created=before))
    assert (answer.status, answer.rule) == ("refused", "D3"), answer.message


# --- exports read in sq and rnp -------------------------------------------------


def test_exports_parse_in_sq_and_rnp_with_certifications_and_notations(
    runner, certified_event, tmp_path
):
    event = certified_event
    bob = attendee_named(event, "Bob")
    alice = attendee_named(event, "Alice").keys[0].fingerprint
    for c in publishing.certifications_received(bob):
        if c.context == "identity":
            assert publishing.decide(c, "accepted") is None
    published = 2  # Bob's two user IDs in the identity context
    keyring = tmp_path / "keyring.asc"
    binary = tmp_path / "keyring.gpg"
    per_key = tmp_path / "per-key"
    for args in (["--keyring", str(keyring)], ["--keyring", str(binary), "--binary"]):
        result = runner.invoke(args=["export", event.id, *args])
        assert result.exit_code == 0, result.output
    result = runner.invoke(args=["export", event.id, "--per-key", str(per_key)])
    assert result.exit_code == 0, result.output
    bob_file = per_key / f"{bob.keys[0].fingerprint}.asc"

    for path in (keyring, binary, bob_file):
        inspected = run("sq", "inspect", "--certifications", str(path))
        assert inspected.count(f"Alleged certifier: {alice}") == published, inspected
        dump = run("sq", "packet", "dump", str(path))
        assert dump.count("Notation: context@keyparty.org (human readable): identity") == published
        assert dump.count(f"Notation: event@keyparty.org (human readable): {event.id}") == published
        packets = run("rnp", "--list-packets", str(path))
        assert packets.count("notation data: context@keyparty.org = identity") == published
    # Bob's own file: Alice's fingerprint only as the issuer of her certifications.
    assert packets.count(f"issuer fingerprint: 0x{alice.lower()}") == published
