"""Intake refuses every forged or rule-breaking certification with its rule
id, and keeps nothing of it. Certifications are made here with real gpg on
purpose wrong, the way a careless or malicious uploader would."""

from __future__ import annotations

import subprocess
from datetime import timedelta

from keyparty import events
from keyparty import intake
from keyparty import openpgp
from keyparty import verification
from keyparty.extensions import db
from keyparty.models import Certification
from keyparty.models import Verification
from tests.conftest import attendee_named

BOB_UID = "Bob Example <bob@example.org>"


def fingerprint(event, name):
    return attendee_named(event, name).keys[0].fingerprint


def gpg_as_signer(home) -> list[str]:
    """gpg in the signer's own home, answering no questions, passphrase-less key."""
    return [
        "gpg",
        "--homedir",
        str(home.path),
        "--batch",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--trust-model",
        "always",
    ]


def certify(
    home,
    event,
    signer,
    uid=BOB_UID,
    target="Bob",
    *,
    level=3,
    expire="365d",
    context="identity",
    event_id=None,
    extra=(),
    command="--quick-sign-key",
):
    """Certify with raw gpg options, returning the exported key with that user ID."""
    notations = []
    if context:
        notations += ["--cert-notation", f"context@keyparty.org={context}"]
    notations += ["--cert-notation", f"event@keyparty.org={event_id or event.id}"]
    target_fpr = fingerprint(event, target)
    subprocess.run(
        [
            *gpg_as_signer(home),
            "--local-user",
            signer,
            "--default-cert-level",
            str(level),
            "--default-cert-expire",
            expire,
            *notations,
            *extra,
            command,
            target_fpr,
            f"={uid}",
        ],
        check=True,
        capture_output=True,
    )
    return home.export_user_id(target_fpr, uid)


def single(outcomes):
    (outcome,) = [o for o in outcomes if o.issuer]
    return outcome


def assert_refused(event, data, rule, words, uploader=None):
    before = events.event_home(event).export([k.fingerprint for k in event.keys])
    outcome = single(intake.take_in(event, [("forged.asc", data)], uploader))
    assert (outcome.status, outcome.rule) == ("refused", rule), outcome.message
    assert words in outcome.message
    assert events.event_home(event).export([k.fingerprint for k in event.keys]) == before
    stored = db.session.scalars(db.select(Certification)).all()
    assert stored and stored[-1].status == "refused" and stored[-1].rule == rule
    assert stored[-1].armored is None


def test_a_good_one_passes(signing_event, homes):
    alice = fingerprint(signing_event, "Alice")
    outcome = single(intake.take_in(signing_event, [("ok", certify(homes, signing_event, alice))]))
    assert outcome.status == "accepted", outcome.message


def test_a_tampered_byte(signing_event, homes):
    data = certify(homes, signing_event, fingerprint(signing_event, "Alice"))
    (block,) = openpgp.read_keys(data)
    (entry,) = openpgp.user_id_signatures(block)
    cert = next(s for s in entry.signatures if s.issuer_fingerprint != block.fingerprint)
    broken = cert.raw[:-3] + bytes([cert.raw[-3] ^ 0x01]) + cert.raw[-2:]
    assert_refused(signing_event, data.replace(cert.raw, broken), "integrity", "does not verify")


def test_a_key_that_is_not_registered(signing_event, homes):
    stranger = homes.secret_keys()
    signer1 = next(k.fingerprint for k in stranger if k.user_ids[0].text.startswith("Signer 1"))
    data = certify(homes, signing_event, signer1)
    assert_refused(signing_event, data, "T2", "not issued by a key registered")


def test_another_attendees_certification_uploaded_by_alice(signing_event, homes):
    carol = fingerprint(signing_event, "Carol")
    data = certify(homes, signing_event, carol)
    alice = attendee_named(signing_event, "Alice")
    assert_refused(signing_event, data, "T2", "another attendee's key", uploader=alice)


def tsign(home, event, answers: str) -> bytes:
    """Alice makes a trust signature on Bob's first user ID with gpg's --edit-key
    `tsign`, answering its questions (trust level, depth, domain) with `answers`."""
    subprocess.run(
        [
            *gpg_as_signer(home),
            "--local-user",
            fingerprint(event, "Alice"),
            "--default-cert-level",
            "3",
            "--default-cert-expire",
            "365d",
            "--cert-notation",
            "context@keyparty.org=identity",
            "--cert-notation",
            f"event@keyparty.org={event.id}",
            "--command-fd",
            "0",
            "--status-fd",
            "2",
            "--edit-key",
            fingerprint(event, "Bob"),
        ],
        input=f"1\ntsign\n{answers}\ny\nsave\n".encode(),
        check=True,
        capture_output=True,
    )
    return home.export_user_id(fingerprint(event, "Bob"), BOB_UID)


def test_a_trust_signature(signing_event, homes):
    # Full trust, depth 1, no domain.
    data = tsign(homes, signing_event, "2\n1\n")
    assert_refused(signing_event, data, "T1", "trust signature")


def test_no_expiry(signing_event, homes):
    data = certify(homes, signing_event, fingerprint(signing_event, "Alice"), expire="0")
    assert_refused(signing_event, data, "D1", "never expires")


def test_too_long_an_expiry(signing_event, homes):
    data = certify(homes, signing_event, fingerprint(signing_event, "Alice"), expire="5y")
    assert_refused(signing_event, data, "D1", "cap of 730 days")


def test_no_context_notation(signing_event, homes):
    data = certify(homes, signing_event, fingerprint(signing_event, "Alice"), context=None)
    assert_refused(signing_event, data, "C1", "no context notation")


def test_a_user_id_the_signer_did_not_verify(signing_event, homes):
    data = certify(
        homes,
        signing_event,
        fingerprint(signing_event, "Alice"),
        uid="Carol Example (work) <carol@work.example.net>",
        target="Carol",
    )
    assert_refused(signing_event, data, "T2", "did not verify this user ID")


def test_a_context_the_signer_did_not_verify_in(signing_event, homes):
    data = certify(homes, signing_event, fingerprint(signing_event, "Alice"), context="pseudonym")
    assert_refused(signing_event, data, "T2", "'pseudonym' context")


def test_a_withdrawn_verification(signing_event, homes):
    alice = attendee_named(signing_event, "Alice")
    (bob_identity,) = [
        v
        for v in verification.active_verifications(alice)
        if v.user_id.text == BOB_UID and v.context == "identity"
    ]
    bob_identity.withdrawn_at = bob_identity.recorded_at + timedelta(minutes=1)
    db.session.commit()
    data = certify(homes, signing_event, alice.keys[0].fingerprint)
    assert_refused(signing_event, data, "P6", "You withdrew your verification")


def test_a_local_certification(signing_event, homes):
    data = certify(
        homes, signing_event, fingerprint(signing_event, "Alice"), command="--quick-lsign-key"
    )
    target = fingerprint(signing_event, "Bob")
    # A plain export drops local signatures; this is what a careless upload would hold.
    data = homes._run(
        [
            "--export",
            "--export-options",
            "export-local-sigs",
            "--export-filter",
            f"keep-uid=uid = {BOB_UID}",
            target,
        ]
    ).data
    assert_refused(signing_event, data, "export", "not exportable")


def test_made_after_the_signing_window(signing_event, homes):
    late = signing_event.date + timedelta(days=signing_event.signing_window_days + 5)
    data = certify(
        homes,
        signing_event,
        fingerprint(signing_event, "Alice"),
        extra=["--faked-system-time", late.strftime("%Y%m%dT120000")],
    )
    assert_refused(signing_event, data, "D3", "after the signing window closed")


def test_a_certification_from_an_earlier_event(signing_event, homes):
    data = certify(
        homes, signing_event, fingerprint(signing_event, "Alice"), event_id="fosdem-2025"
    )
    assert_refused(signing_event, data, "D2", "earlier event never counts")


def test_nothing_is_taken_before_signing_starts(signing_event, homes):
    data = certify(homes, signing_event, fingerprint(signing_event, "Alice"))
    signing_event.state = "cooling-off"
    db.session.commit()
    assert_refused(signing_event, data, "lifecycle", "while the event is signing")


def test_the_command_line_intake_prints_each_outcome(app, runner, signing_event, homes, tmp_path):
    good = tmp_path / "good.asc"
    good.write_bytes(certify(homes, signing_event, fingerprint(signing_event, "Alice")))
    bad = tmp_path / "bad.asc"
    bad.write_bytes(
        certify(
            homes,
            signing_event,
            fingerprint(signing_event, "Alice"),
            uid="Bob Example <bob@example.net>",
            expire="0",
        )
    )
    result = runner.invoke(args=["intake", signing_event.id, str(good), str(bad)])
    assert result.exit_code == 1
    assert "accepted  good.asc" in result.output
    assert "refused   bad.asc" in result.output and "D1" in result.output
    assert "1 accepted, 1 refused" in result.output
    assert db.session.scalar(db.select(db.func.count()).select_from(Verification)) == 4


def test_an_upload_that_is_not_openpgp(signing_event):
    (outcome,) = intake.take_in(signing_event, [("x.txt", b"hello")])
    assert outcome.status == "refused" and outcome.rule == "input"


def test_the_api_takes_one_certification_per_request(app, signing_event, homes):
    from keyparty.registration import hash_token

    alice = attendee_named(signing_event, "Alice")
    alice.signing_token_sha256 = hash_token("t0ken")
    db.session.commit()
    client = app.test_client()
    data = certify(homes, signing_event, alice.keys[0].fingerprint)
    response = client.post(
        f"/api/e/{signing_event.id}/certifications",
        data=data,
        headers={"Authorization": "Bearer t0ken"},
    )
    assert response.status_code == 200
    assert [o["status"] for o in response.json["outcomes"]] == ["accepted"]
    nobody = client.post(f"/api/e/{signing_event.id}/certifications", data=data)
    assert nobody.status_code == 401


def test_a_tampered_copy_beside_the_real_one_is_told_apart(signing_event, homes):
    """Same key, user ID, issuer and second as a good certification, but its
    policy URL changed (no rule looks at it): only the signature says no."""
    alice = fingerprint(signing_event, "Alice")
    good = certify(homes, signing_event, alice, extra=["--cert-policy-url", "https://a.example/p"])
    tampered = good.replace(b"https://a.example/p", b"https://b.example/p")
    assert tampered != good
    outcomes = intake.take_in(signing_event, [("good", good), ("tampered", tampered)])
    assert sorted((o.source, o.status, o.rule) for o in outcomes if o.issuer) == [
        ("good", "accepted", None),
        ("tampered", "refused", "integrity"),
    ]
    # And once the real one is in the event keyring, the copy still fails alone.
    again = single(
        intake.take_in(signing_event, [("tampered-again", tampered.replace(b"b.ex", b"c.ex"))])
    )
    assert (again.status, again.rule) == ("refused", "integrity")


def test_uploads_in_several_batches_are_judged_as_in_one(signing_event, homes, monkeypatch):
    """Intake checks and stores BATCH uploads at a time (so no gpg call grows
    with a big `keyparty intake`): with batches of one, a good certification,
    its tampered copy and a second copy of the good one get the same answers
    as in one batch, and only the good one reaches the event keyring."""
    monkeypatch.setattr(intake, "BATCH", 1)
    alice = fingerprint(signing_event, "Alice")
    good = certify(homes, signing_event, alice, extra=["--cert-policy-url", "https://a.example/p"])
    tampered = good.replace(b"https://a.example/p", b"https://b.example/p")
    outcomes = intake.take_in(
        signing_event, [("good", good), ("tampered", tampered), ("good-again", good)]
    )
    assert [(o.source, o.status, o.rule) for o in outcomes] == [
        ("good", "accepted", None),
        ("tampered", "refused", "integrity"),
        ("good-again", intake.ALREADY_ACCEPTED, None),
    ]
    stored = db.session.scalars(
        db.select(Certification).where(Certification.status == "accepted")
    ).all()
    assert [c.issuer_fingerprint for c in stored] == [alice]
    keyring = events.event_home(signing_event).export([fingerprint(signing_event, "Bob")])
    assert keyring.count(b"https://a.example/p") == 1
    assert b"https://b.example/p" not in keyring
