"""Strangers' bytes (issue 11): every case is a key in gnupg-home-fixtures/strange/,
tried through registration (web and command line), the party list, signing with
real gpg, intake, export and delivery."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest

from keyparty import events
from keyparty import exports
from keyparty import intake
from keyparty import openpgp
from keyparty import publishing
from keyparty import registration
from keyparty import signing
from keyparty import verification
from keyparty.bundle import bundle_for
from keyparty.cli import export_command
from keyparty.cli import import_command
from keyparty.extensions import db
from keyparty.models import utcnow
from tests.conftest import FIXTURES
from tests.conftest import at
from tests.conftest import attendee_named
from tests.conftest import key_bytes
from tests.conftest import short_tempdir
from tests.test_delivery import smtp_server as smtp_server  # noqa: F401  (the fixture)

STRANGE = json.loads((FIXTURES / "strange" / "strange.json").read_text(encoding="utf-8"))["keys"]


def strange_bytes(name: str) -> bytes:
    return (FIXTURES / STRANGE[name]["path"]).read_bytes()


def packet_user_ids(name: str) -> list[bytes]:
    return [uid for block in openpgp.read_keys(strange_bytes(name)) for uid in block.user_ids]


def register_strange(event, *names: str) -> registration.RegistrationResult:
    inputs = [(f"{n}.asc", strange_bytes(n)) for n in names]
    return registration.register_keys(event, inputs, events.event_home(event))


def key_of(event, fingerprint):
    return next(k for k in event.keys if k.fingerprint == fingerprint)


# -- exact user IDs ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exact-uids", "escapes", "addresses", "international"])
def test_stored_user_ids_are_the_exact_packet_bytes(event, name):
    result = register_strange(event, name)
    assert not result.rejected, [r.message for r in result.rejected]
    key = result.accepted[0].key
    stored = [uid.text.encode("utf-8") for uid in key.user_ids]
    assert sorted(stored) == sorted(packet_user_ids(name))
    # What gpg lists, decoded completely, is the same (no "\\n" two-character escapes).
    listed = events.event_home(event).list_keys([key.fingerprint])[0].user_ids
    assert sorted(u.raw for u in listed) == sorted(stored)


def test_the_party_list_and_the_bundle_hold_exact_user_ids(event):
    register_strange(event, "exact-uids")
    registration.register_keys(event, [("alice.asc", key_bytes("alice"))], events.event_home(event))
    assert events.take_step(event, "freeze") is None
    text = event.partylist
    assert "Nina Newline" in text
    # The list is a text file: the newline is shown, never written raw into an entry.
    assert "Nina Newline\nSecond Line" not in text


def _signing_event(event, name: str, contexts=("identity",), after_registration=None):
    """Alice verified every user ID of the strange key `name`; signing has started."""
    assert not register_strange(event, name).rejected
    if after_registration:
        after_registration(key_of(event, STRANGE[name]["fingerprint"]))
        db.session.commit()
    alice_result = registration.register_keys(
        event, [("alice.asc", key_bytes("alice"))], events.event_home(event)
    )
    assert not alice_result.rejected
    assert events.take_step(event, "freeze") is None
    for attendee in event.attendees:
        attendee.entry_confirmed_at = utcnow()
    db.session.commit()
    assert events.take_step(event, "start-verifying") is None
    alice = attendee_named(event, "Alice")
    target = key_of(event, STRANGE[name]["fingerprint"])
    for n, uid in enumerate(target.user_ids):
        for context in contexts:
            offered = verification.contexts_offered(event, uid)
            if context not in offered:
                continue
            made, refusal = verification.record(
                alice, alice, uid, context, "photo-id", at(event, n)
            )
            assert refusal is None, refusal
    assert events.take_step(event, "cool-off") is None
    assert events.take_step(event, "start-signing") is None
    event.date = date.today()
    db.session.commit()
    return event, alice, target


@pytest.mark.parametrize("name", ["exact-uids", "escapes"])
def test_every_user_id_gpg_can_address_is_certified_exactly_and_comes_out_byte_identical(
    event, alice_home, tmp_path, name
):
    event, alice, target = _signing_event(event, name)
    bundle = bundle_for(alice, "http://keyparty.test:8000")
    signers = signing.choose_signers(alice_home, bundle, [])
    report = signing.certify_all(alice_home, bundle, signers)
    assert not report.failed, report.failed
    assert len(report.made) == len(target.user_ids)
    files = signing.write_files(alice_home, bundle, signers, tmp_path / "certs")
    outcomes = intake.take_in(event, [(p.name, p.read_bytes()) for p in files])
    assert [o.status for o in outcomes] == ["accepted"] * len(files), [o.message for o in outcomes]
    for certification in publishing.certifications_received(target.attendee):
        assert publishing.decide(certification, "accepted") is None
    exported = exports.write_per_user_id(event, tmp_path / "uids")
    certified = set()
    for path in exported:
        for block in openpgp.read_keys(path.read_bytes()):
            if block.fingerprint != target.fingerprint:
                continue
            for entry in openpgp.user_id_signatures(block):
                if any(s.issuer_fingerprint == alice.keys[0].fingerprint for s in entry.signatures):
                    certified.add(entry.user_id)
    assert certified == set(packet_user_ids(name))


# -- a user ID that is not UTF-8 -------------------------------------------------------


def test_a_user_id_that_is_not_utf8_is_refused_naming_the_encoding(event):
    result = register_strange(event, "latin1-uid")
    assert not result.accepted
    (refused,) = result.rejected
    assert refused.problem == "user-id-not-utf8"
    assert "not UTF-8" in refused.message and "Latin-1 or Windows-1252" in refused.message
    assert "gpg --quick-add-uid" in refused.message
    assert not events.event_home(event).list_keys([STRANGE["latin1-uid"]["fingerprint"]])


def test_a_user_id_that_is_not_utf8_never_disturbs_the_other_keys_of_the_file(
    event, runner, tmp_path
):
    path = FIXTURES / STRANGE["latin1-keyring"]["path"]
    result = runner.invoke(import_command, [event.id, str(path)])
    assert result.exit_code == 1, result.output
    good = [f for f in STRANGE["latin1-keyring"]["fingerprints"]]
    assert f"accepted {good[0]}" in result.output and f"accepted {good[2]}" in result.output
    assert "not UTF-8" in result.output
    assert "2 accepted, 1 refused" in result.output
    home = events.event_home(event)
    assert {k.fingerprint for k in home.list_keys()} == {good[0], good[2]}


def test_the_web_form_refuses_a_user_id_that_is_not_utf8_in_both_languages(client, event):
    for lang, words in (("en", "not UTF-8"), ("ja", "UTF-8")):
        client.get(f"/lang/{lang}")
        page = client.post(
            f"/e/{event.id}/register",
            data={"name": "José", "key_text": strange_bytes("latin1-uid").decode()},
        )
        assert page.status_code == 400
        assert words in page.text
        if lang == "ja":
            assert "Latin-1" in page.text and "エンコーディング" in page.text


# -- keys judged by what can be used ---------------------------------------------------


def test_a_debian_shaped_key_with_dead_rsa1024_subkeys_is_accepted(event):
    result = register_strange(event, "debian-shaped")
    assert not result.rejected, [r.message for r in result.rejected]
    assert result.accepted[0].key.algorithm == "rsa4096"


def test_a_live_rsa1024_subkey_is_still_refused(event):
    (refused,) = register_strange(event, "live-weak-subkey").rejected
    assert refused.problem == "weak-algorithm" and "RSA with 1024 bits" in refused.message


def test_one_user_id_gpg_cannot_certify_never_takes_the_others_down(event, alice_home, tmp_path):
    event, alice, target = _signing_event(event, "exact-uids")
    bundle = bundle_for(alice, "http://keyparty.test:8000")
    # One user ID in the bundle is not on the key gpg holds: only it fails.
    bundle["verifications"][0]["user_id"] = "Not On The Key <nobody@example.org>"
    signers = signing.choose_signers(alice_home, bundle, [])
    report = signing.certify_all(alice_home, bundle, signers)
    assert len(report.failed) == 1 and len(report.made) == len(target.user_ids) - 1


# -- addresses ---------------------------------------------------------------------------


def test_only_real_addresses_are_addresses_and_offered_for_email(event):
    key = register_strange(event, "addresses").accepted[0].key
    by_text = {uid.text: uid for uid in key.user_ids}
    for uid_text, email in zip(
        STRANGE["addresses"]["user_ids"], STRANGE["addresses"]["emails"], strict=True
    ):
        uid = by_text[uid_text]
        assert uid.email == email, uid_text
        assert ("email" in verification.contexts_offered(event, uid)) == (email is not None)


def test_a_key_without_encryption_gets_a_warning_and_no_email_context(event, runner):
    path = FIXTURES / STRANGE["no-encryption"]["path"]
    result = runner.invoke(import_command, [event.id, str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: This key has no usable encryption subkey" in result.output
    key = event.keys[0]
    assert not key.can_encrypt
    assert "email" not in verification.contexts_offered(event, key.user_ids[0])


def test_the_wkd_writes_only_inside_its_folder_and_only_real_addresses(
    event, alice_home, tmp_path, runner
):
    event, alice, target = _signing_event(event, "addresses")
    bundle = bundle_for(alice, "http://keyparty.test:8000")
    signers = signing.choose_signers(alice_home, bundle, [])
    signing.certify_all(alice_home, bundle, signers)
    files = signing.write_files(alice_home, bundle, signers, tmp_path / "certs")
    intake.take_in(event, [(p.name, p.read_bytes()) for p in files])
    wkd = tmp_path / "deep" / "wkd"
    result = runner.invoke(export_command, [event.id, "--wkd", str(wkd)])
    assert result.exit_code == 0, result.output
    everything = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    outside = {p for p in everything if not str(p).startswith(("deep/wkd/", "certs/"))}
    assert not outside
    domains = {p.parts[2] for p in everything if str(p).startswith("deep/wkd/")}
    assert domains == {
        "example.org",
        "example.net",
        "openpgpkey.example.org",
        "openpgpkey.example.net",
        "example.jp",
        "openpgpkey.example.jp",
    } or domains >= {"example.org", "example.net"}
    assert not any(".." in d for d in domains)


# -- terminals ---------------------------------------------------------------------------


def test_terminal_escapes_in_user_ids_never_reach_the_terminal(event, runner):
    path = FIXTURES / STRANGE["escapes"]["path"]
    result = runner.invoke(import_command, [event.id, str(path)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "Eve \\x1b[2J\\x1b]0;pwned\\x07Escape" in result.output


# -- messages that name the real cause ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem", "words"),
    [
        ("no-uid", "no-user-id", "no user ID at all"),
        ("critical-subpacket", "critical-subpacket", "subpacket of type 99 marked critical"),
        ("pubring", "keybox", "GnuPG's keyring file"),
        ("utf16", "utf-16", "UTF-16"),
        ("pgp-message", "wrong-block", "PGP MESSAGE block, not a public key"),
        ("many-uids", "too-many-user-ids", "2000 user IDs; keyparty takes up to 100"),
    ],
)
def test_refusals_name_the_real_cause(event, runner, name, problem, words):
    result = register_strange(event, name)
    assert not result.accepted
    assert [r.problem for r in result.rejected] == [problem]
    assert words in result.rejected[0].message
    cli = runner.invoke(import_command, [event.id, str(FIXTURES / STRANGE[name]["path"])])
    assert cli.exit_code == 1 and words in cli.output


def test_the_same_key_twice_in_one_paste_is_one_key(client, event):
    page = client.post(
        f"/e/{event.id}/register",
        data={"name": "Twice", "key_text": strange_bytes("twice").decode()},
    )
    assert page.status_code == 302, page.text  # on to the proof step (O2)
    assert [k.fingerprint for k in event.keys] == [STRANGE["twice"]["fingerprint"]]


def test_a_photo_id_is_left_out_instead_of_refusing_the_key(event, runner):
    path = FIXTURES / STRANGE["photo"]["path"]
    assert path.stat().st_size > 1024 * 1024
    result = runner.invoke(import_command, [event.id, str(path)])
    assert result.exit_code == 0, result.output
    assert "photo ID was left out" in result.output
    assert len(event.keys[0].armored) < 10_000


def test_a_signup_sheet_row_that_is_short_is_refused_with_its_row_number(event, runner, tmp_path):
    sheet = tmp_path / "signups.csv"
    sheet.write_text("name,email,fingerprint\nAlice,alice@example.org\n")
    key = tmp_path / "alice.asc"
    key.write_bytes(key_bytes("alice"))
    result = runner.invoke(import_command, [event.id, str(sheet), str(key)])
    assert result.exit_code != 0
    assert "row 2" in result.output and "Traceback" not in result.output


def test_the_same_key_gives_the_same_answer_armored_or_binary():
    for name in STRANGE:
        data = strange_bytes(name)
        try:
            armored = openpgp.read_keys(data)
        except openpgp.KeyMaterialRefused as refused:
            assert refused.problem
            continue
        binary = openpgp.dearmor(data)
        again = openpgp.read_keys(binary)
        assert [b.data for b in again] == [b.data for b in armored], name


def test_fixture_paths_exist():
    for entry in STRANGE.values():
        assert (FIXTURES / entry["path"]).is_file()
        if entry.get("secret"):
            assert (FIXTURES / entry["secret"]).is_file()
    assert Path(FIXTURES / "strange" / "strange.json").is_file()


# -- delivery: addresses as they go on the wire, failures said once ------------------


def _email_certified(event, alice_home, tmp_path, name):
    event, alice, target = _signing_event(event, name, contexts=("email",))
    bundle = bundle_for(alice, "http://keyparty.test:8000")
    signers = signing.choose_signers(alice_home, bundle, [])
    report = signing.certify_all(alice_home, bundle, signers)
    assert report.made and not report.failed, report
    files = signing.write_files(alice_home, bundle, signers, tmp_path / "certs")
    outcomes = intake.take_in(event, [(p.name, p.read_bytes()) for p in files])
    assert all(o.status == "accepted" for o in outcomes), [o.message for o in outcomes]
    return event


def test_idna_domains_go_out_encoded_and_a_non_ascii_local_part_needs_smtputf8(
    event,
    alice_home,
    tmp_path,
    smtp_server,  # noqa: F811  (the fixture imported above)
):
    from keyparty import delivery
    from tests.test_delivery import Collector
    from tests.test_delivery import plain

    event = _email_certified(event, alice_home, tmp_path, "international")
    collector = Collector()
    port = smtp_server(collector)  # aiosmtpd without SMTPUTF8
    report = delivery.deliver(event, "http://keyparty.test:8000", plain(port), tmp_path / "o")
    assert [rcpt for _, rcpt, _ in collector.mails] == [["ida@xn--bcher-kva.example"]]
    assert b"To: ida@xn--bcher-kva.example" in collector.mails[0][2]
    assert report.failed == [
        (
            "ümit@example.org",
            "the address has a non-ASCII local part, which needs a mail server that offers "
            "SMTPUTF8, and this one does not",
        )
    ]
    assert not report.ok
    # Said once: the next run does not try it again, and says nothing more.
    again = delivery.deliver(event, "http://keyparty.test:8000", plain(port), tmp_path / "o")
    assert again.failed == [] and again.sent == [] and again.lines == ["Nothing to deliver."]


def test_a_mail_that_can_never_be_encrypted_fails_once_and_the_host_page_shows_it_red(
    app,
    event,
    alice_home,
    tmp_path,
    smtp_server,  # noqa: F811  (the fixture imported above)
    client,
):
    from keyparty import delivery
    from keyparty.models import Certification
    from tests.test_delivery import Collector
    from tests.test_delivery import plain

    def as_before_the_check(key):
        # An instance from before keyparty checked encryption keys at registration.
        key.can_encrypt = True

    event, alice, target = _signing_event(
        event, "no-encryption", contexts=("email",), after_registration=as_before_the_check
    )
    bundle = bundle_for(alice, "http://keyparty.test:8000")
    signers = signing.choose_signers(alice_home, bundle, [])
    signing.certify_all(alice_home, bundle, signers)
    files = signing.write_files(alice_home, bundle, signers, tmp_path / "certs")
    intake.take_in(event, [(p.name, p.read_bytes()) for p in files])
    collector = Collector()
    port = smtp_server(collector)
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_SECURITY="none")
    app.config["SMTP_SENDER"] = "party@example.org"
    page = client.post(f"/host/e/{event.id}/deliver", follow_redirects=True)
    assert collector.mails == []
    assert 'class="flash error"' in page.text
    assert "Failed, not sent to sigrid@example.org" in page.text
    assert "no usable encryption subkey" in page.text
    assert "will not be tried again" in page.text
    assert "[GNUPG:]" not in page.text
    (certification,) = db.session.scalars(
        db.select(Certification).where(Certification.context == "email")
    ).all()
    assert certification.delivery_failed_at is not None and certification.delivery_error
    again = delivery.deliver(event, "http://keyparty.test:8000", plain(port), tmp_path / "o")
    assert again.lines == ["Nothing to deliver."]


def test_a_user_id_that_is_not_utf8_never_passes_for_a_registered_one_with_u_fffd(
    event, alice_home, tmp_path
):
    """Intake matches user IDs on their bytes: "Jos\\xe9" decoded with replacement is
    "Jos\\ufffd", the text of another user ID that is registered."""
    from tests.test_intake_forgeries import gpg_as_signer

    maker = [*gpg_as_signer(alice_home)[:1], "--homedir", str(short_tempdir("kpm"))]
    maker += gpg_as_signer(alice_home)[3:]
    registered = "Jos\ufffd Twin <jose@example.org>"
    subprocess.run([*maker, "--quick-gen-key", registered, "ed25519"], check=True)
    listing = subprocess.run([*maker, "--with-colons", "-k"], capture_output=True).stdout
    target = next(f.split(b":")[9].decode() for f in listing.splitlines() if f[:3] == b"fpr")
    twin = b"Jos\xe9 Twin <jose@example.org>"
    subprocess.run(
        [*(a.encode() for a in maker), b"--quick-add-uid", target.encode(), twin], check=True
    )
    full = subprocess.run([*maker, "--export", target], capture_output=True).stdout
    [block] = openpgp.read_keys(full)
    only_valid = openpgp.keep_user_ids(block, lambda uid: uid == registered.encode())
    result = registration.register_keys(
        event,
        [("jose.asc", only_valid), ("alice.asc", key_bytes("alice"))],
        events.event_home(event),
    )
    assert not result.rejected, [r.message for r in result.rejected]
    for step in ("freeze", "start-verifying", "cool-off", "start-signing"):
        assert events.take_step(event, step) is None
    # Alice certifies the twin with her own gpg, and sends it as if for the registered one.
    alice = gpg_as_signer(alice_home)
    subprocess.run([*alice, "--import"], input=full, check=True, capture_output=True)
    subprocess.run(
        [*(a.encode() for a in alice), b"--quick-sign-key", target.encode(), b"=" + twin],
        check=True,
        capture_output=True,
    )
    [signed] = openpgp.read_keys(
        subprocess.run([*alice, "--export", target], capture_output=True).stdout
    )
    entry = next(e for e in openpgp.user_id_signatures(signed) if e.user_id == twin)
    mine = [s for s in entry.signatures if s.issuer_fingerprint != target]
    upload = openpgp.minimal_key(signed, twin, mine)
    outcomes = intake.take_in(event, [("twin.asc", upload)])
    # Refused as not on the list: with the user IDs matched on replaced text it got as
    # far as the event notation (D2), as if it were a certification of the registered one.
    assert [(o.status, o.rule) for o in outcomes] == [("refused", "list")], [
        o.message for o in outcomes
    ]
    home = events.event_home(event)
    assert [u.raw for u in home.list_keys([target])[0].user_ids] == [registered.encode()]


def test_the_registration_page_warns_a_key_that_cannot_receive_encrypted_mail(client, event):
    for lang, words in (("en", "no usable encryption subkey"), ("ja", "暗号化用副鍵がない")):
        client.get(f"/lang/{lang}")
        page = client.post(
            f"/e/{event.id}/register",
            data={"name": "Sigrid", "key_text": strange_bytes("no-encryption").decode()},
            follow_redirects=True,
        )
        # Said on the proof step that follows (O2), which offers signing for such a key.
        assert page.status_code == 200, page.text
        assert words in page.text


def test_the_host_import_page_warns_a_key_that_cannot_receive_encrypted_mail(client, event):
    import io

    response = client.post(
        f"/host/e/{event.id}/import",
        data={"files": [(io.BytesIO(strange_bytes("no-encryption")), "sigrid.asc")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert "1 accepted, 0 refused" in response.text
    assert "no usable encryption subkey" in response.text
