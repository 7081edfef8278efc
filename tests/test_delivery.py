"""C3 and O1: email certifications reach their owners encrypted, one mail per
user ID, over a real SMTP server on loopback (aiosmtpd); the one-time link
accepts. Certifications are made by `keyparty sign` and taken in by intake,
as at a real event."""

from __future__ import annotations

import email
import re
import shutil
import socket
import ssl
import subprocess
from datetime import UTC
from datetime import datetime
from email import policy
from email.utils import parsedate_to_datetime

import pytest
from aiosmtpd.controller import Controller

from keyparty import delivery
from keyparty import intake
from keyparty import openpgp
from keyparty.delivery import DeliveryError
from keyparty.delivery import SmtpSettings
from keyparty.extensions import db
from keyparty.models import Certification
from keyparty.registration import hash_token
from tests.conftest import FIXTURES
from tests.conftest import attendee_named
from tests.conftest import phone_of
from tests.conftest import record
from tests.conftest import short_tempdir
from tests.test_signing import sign
from tests.test_signing import write_bundle

BASE_URL = "http://keyparty.test:8000"
SENDER = "party@example.org"
LINK = re.compile(r"http://keyparty\.test:8000/confirm/([A-Za-z0-9_-]+)")


# -- the event: Alice certified Bob's two addresses and Carol's bare name ------


@pytest.fixture
def email_event(signing_event, alice_home, tmp_path):
    """signing_event plus Alice's email verification of Bob's second user ID;
    Alice signs with `keyparty sign` and intake takes every certification in."""
    event = signing_event
    event.state = "verifying"
    record(event, "Alice", "Bob", 1, "email", "photo-id", 10)
    event.state = "signing"
    db.session.commit()
    bundle = write_bundle(event, "Alice", tmp_path / "bundle.json")
    out = tmp_path / "signed"
    result = sign(
        str(bundle),
        "--homedir",
        str(alice_home.path),
        "--digest",
        event.partylist_sha256,
        "--no-upload",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.asc"))
    outcomes = intake.take_in(event, [(p.name, p.read_bytes()) for p in files])
    assert [o.status for o in outcomes] == ["accepted"] * 5, [o.message for o in outcomes]
    return event


def email_certifications(event) -> dict[str, Certification]:
    """The accepted email certifications, by user ID."""
    rows = db.session.scalars(
        db.select(Certification).where(
            Certification.event_id == event.id, Certification.context == "email"
        )
    )
    return {c.user_id_text: c for c in rows}


# -- a real SMTP server on loopback ---------------------------------------------


class Collector:
    """Keeps every mail it is given; refuses the recipients in `refuse`."""

    def __init__(self, refuse=()):
        self.refuse = set(refuse)
        self.mails: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(content, policy=policy.default)
            for _, rcpt, content in self.mails
            if rcpt == [address]
        ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    """Start aiosmtpd on 127.0.0.1 with a handler; stopped after the test."""
    started = []

    def start(handler, **options) -> int:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return port

    yield start
    for controller in started:
        controller.stop()


def plain(port: int) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security="none", sender=SENDER)


# -- Bob's own machine, to read what he received -------------------------------


@pytest.fixture
def bob_decrypts():
    home = short_tempdir("kpb")
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty"]
    secret = FIXTURES / "attendees" / "bob.secret.asc"
    subprocess.run([*gpg, "--import", str(secret)], check=True, capture_output=True)

    def decrypt(data: bytes) -> bytes:
        loopback = ["--pinentry-mode", "loopback", "--passphrase", ""]
        result = subprocess.run(
            [*gpg, *loopback, "--decrypt"], input=data, capture_output=True, check=True
        )
        return result.stdout

    yield decrypt
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    shutil.rmtree(home, ignore_errors=True)


def check_outer(mail, address: str) -> bytes:
    """RFC 3156 PGP/MIME with the headers a server wants; returns the ciphertext."""
    assert mail["From"] == SENDER and mail["To"] == address
    # In the owner's language, or in both when the event does not know it.
    assert mail["Subject"] in (
        "Your key was certified at Test Party / Test Party であなたの鍵が署名されました",
        "Test Party であなたの鍵が署名されました",
    )
    assert abs((parsedate_to_datetime(mail["Date"]) - datetime.now(UTC)).total_seconds()) < 120
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", mail["Message-ID"])
    assert mail["MIME-Version"] == "1.0"
    assert mail.get_content_type() == "multipart/encrypted"
    assert mail.get_param("protocol") == "application/pgp-encrypted"
    control, encrypted = mail.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted"
    assert control.get_payload().strip() == "Version: 1"
    assert encrypted.get_content_type() == "application/octet-stream"
    assert encrypted.get_param("name") == "encrypted.asc"
    ciphertext = encrypted.get_payload().encode("ascii")
    assert ciphertext.startswith(b"-----BEGIN PGP MESSAGE-----")
    return ciphertext


def check_inner(event, inner, user_id: str) -> str:
    """The letter and the key with Alice's email certification; returns the token."""
    assert inner.get_content_type() == "multipart/mixed"
    letter = inner.get_body(("plain",))
    assert letter.get_content_charset() == "utf-8"
    text = letter.get_content()
    assert "Alice Example" in text and "Test Party" in text
    assert user_id in text and '"email" context' in text
    assert "not told" in text
    (token,) = LINK.findall(text)
    (attachment,) = inner.iter_attachments()
    bob = attendee_named(event, "Bob").keys[0].fingerprint
    alice = attendee_named(event, "Alice").keys[0].fingerprint
    assert attachment.get_content_type() == "application/pgp-keys"
    assert attachment.get_filename() == f"{bob}-certified.asc"
    (block,) = openpgp.read_keys(attachment.get_content())
    assert block.fingerprint == bob
    (entry,) = openpgp.user_id_signatures(block)
    assert entry.user_id.decode() == user_id
    (certification,) = [s for s in entry.signatures if s.issuer_fingerprint != bob]
    assert certification.issuer_fingerprint == alice
    assert certification.notation("context@keyparty.org") == b"email"
    return token


# -- the tests ---------------------------------------------------------------------


def test_each_email_certification_goes_encrypted_to_its_own_address(
    email_event, smtp_server, bob_decrypts, tmp_path, client
):
    collector = Collector()
    port = smtp_server(collector)
    report = delivery.deliver(email_event, BASE_URL, plain(port), tmp_path / "outbox")
    assert not report.written and not report.refused
    assert len(report.sent) == 2
    assert report.skipped_no_address == 0

    # One mail per user ID, each to that user ID's address only.
    assert sorted(rcpt for _, rcpt, _ in collector.mails) == [
        ["bob@example.net"],
        ["bob@example.org"],
    ]
    assert all(sender == SENDER for sender, _, _ in collector.mails)
    by_uid = email_certifications(email_event)
    for address in ("bob@example.org", "bob@example.net"):
        (mail,) = collector.to(address)
        content = mail.as_bytes()
        # Nothing readable outside the encryption: no link, no signer (P5).
        assert b"/confirm/" not in content and b"Alice" not in content
        ciphertext = check_outer(mail, address)
        user_id = f"Bob Example <{address}>"
        inner = email.message_from_bytes(bob_decrypts(ciphertext), policy=policy.default)
        token = check_inner(email_event, inner, user_id)
        certification = by_uid[user_id]
        assert certification.delivered_at is not None
        assert certification.delivery_token_sha256 == hash_token(token)

    # Following the link accepts, once (O1).
    (mail,) = collector.to("bob@example.org")
    inner = email.message_from_bytes(
        bob_decrypts(mail.get_payload()[1].get_payload().encode()), policy=policy.default
    )
    token = LINK.findall(inner.get_body(("plain",)).get_content())[0]
    certification = by_uid["Bob Example <bob@example.org>"]
    assert certification.owner_decision is None
    # Opening the link changes nothing (a mail scanner may open it); the button does.
    page = client.get(f"/confirm/{token}").text
    assert "Confirm and publish" in page
    # The page says what the button confirms: this user ID, certified by whom, how.
    assert "Bob Example &lt;bob@example.org&gt;" in page and "Alice Example" in page
    assert "Certified by" in page and "What they checked" in page
    assert client.get("/confirm/not-a-token").status_code == 404
    db.session.refresh(certification)
    assert certification.owner_decision is None
    answer = client.post(f"/confirm/{token}")
    assert answer.status_code == 200, answer.text
    db.session.refresh(certification)
    assert certification.owner_decision == "accepted"
    assert certification.decided_at is not None and certification.delivery_token_sha256 is None
    assert client.post(f"/confirm/{token}").status_code == 404, "the link works once"
    assert delivery.confirm(token) is None
    other = by_uid["Bob Example <bob@example.net>"]
    assert other.owner_decision is None, "one link accepts one certification"

    # Everything went out: a second run sends nothing.
    again = delivery.deliver(email_event, BASE_URL, plain(port), tmp_path / "outbox")
    assert again.sent == [] and len(collector.mails) == 2
    assert not (tmp_path / "outbox").exists(), "with a server, no files"


def test_a_refused_recipient_does_not_stop_the_others(email_event, smtp_server, tmp_path):
    collector = Collector(refuse={"bob@example.org"})
    port = smtp_server(collector)
    outbox = tmp_path / "outbox"
    report = delivery.deliver(email_event, BASE_URL, plain(port), outbox)
    assert report.refused == [("bob@example.org", "550 no such user")]
    assert [rcpt for _, rcpt, _ in collector.mails] == [["bob@example.net"]]
    assert "Not sent to bob@example.org now: 550 no such user" in report.summary

    by_uid = email_certifications(email_event)
    refused = by_uid["Bob Example <bob@example.org>"]
    assert refused.delivered_at is None and refused.delivery_token_sha256 is None
    assert by_uid["Bob Example <bob@example.net>"].delivered_at is not None
    assert delivery.pending(email_event) == [refused]

    # Once the server takes it, a retry sends it with a new link.
    collector.refuse.clear()
    retry = delivery.deliver(email_event, BASE_URL, plain(port), outbox)
    assert retry.sent == [refused] and not retry.refused
    assert [rcpt for _, rcpt, _ in collector.mails][-1] == ["bob@example.org"]
    assert refused.delivered_at is not None and refused.delivery_token_sha256
    assert not outbox.exists(), "with a server, no files"


def test_without_smtp_the_mails_are_written_to_the_outbox(email_event, tmp_path, bob_decrypts):
    outbox = tmp_path / "outbox"
    report = delivery.deliver(email_event, BASE_URL, None, outbox, sender=SENDER)
    by_uid = email_certifications(email_event)
    expected = sorted(
        outbox / f"{email_event.id}-{by_uid[f'Bob Example <{a}>'].id}.eml"
        for a in ("bob@example.org", "bob@example.net")
    )
    assert sorted(report.written) == expected and report.sent == []
    assert sorted(outbox.iterdir()) == expected, "nothing for Carol's bare name"
    assert f"wrote 2 encrypted mail(s) as .eml files into {outbox}" in report.summary
    assert "No SMTP server is configured" in report.summary

    for path in expected:
        mail = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        address = mail["To"]
        ciphertext = check_outer(mail, address)
        inner = email.message_from_bytes(bob_decrypts(ciphertext), policy=policy.default)
        token = check_inner(email_event, inner, f"Bob Example <{address}>")
        assert by_uid[f"Bob Example <{address}>"].delivered_at is not None
        assert delivery.confirm(token).owner_decision == "accepted"

    assert delivery.deliver(email_event, BASE_URL, None, outbox, sender=SENDER).written == []


def test_an_email_verification_needs_an_address(email_event):
    """C3 starts at the event: an address-less user ID cannot be verified in
    the email context, so no such certification is ever made through keyparty."""
    from keyparty import verification as verifications
    from tests.conftest import at

    email_event.state = "verifying"
    alice = attendee_named(email_event, "Alice")
    bare_uid = attendee_named(email_event, "Carol").keys[0].user_ids[2]
    _, refusal = verifications.record(
        alice, alice, bare_uid, "email", "photo-id", at(email_event, 30)
    )
    assert refusal.rule == "C3" and "no email address" in refusal.message


def test_user_ids_without_an_address_are_never_mailed(email_event, tmp_path):
    """Even an email certification on an address-less user ID (one made
    before keyparty refused them) is never pending, never written."""
    carol_key = attendee_named(email_event, "Carol").keys[0]
    bare = Certification(
        event_id=email_event.id,
        key_id=carol_key.id,
        user_id_id=carol_key.user_ids[2].id,
        user_id_text="Carol Example",
        context="email",
        signature_sha256="0" * 64,
        status="accepted",
        armored=carol_key.armored,
    )
    db.session.add(bare)
    db.session.commit()
    assert bare.user_id.email is None
    assert bare not in delivery.pending(email_event)
    report = delivery.deliver(email_event, BASE_URL, None, tmp_path)
    assert report.skipped_no_address == 1
    assert "without an address are never mailed (C3)" in report.summary
    assert not any(str(bare.id) in p.name for p in report.written)
    assert bare.delivered_at is None and bare.delivery_token_sha256 is None


def test_pending_holds_only_undecided_undelivered_email_certifications(email_event):
    pending = delivery.pending(email_event)
    assert {c.user_id_text for c in pending} == {
        "Bob Example <bob@example.org>",
        "Bob Example <bob@example.net>",
    }
    assert all(c.context == "email" and c.status == "accepted" for c in pending)
    declined, other = pending
    declined.owner_decision = "declined"
    db.session.commit()
    assert delivery.pending(email_event) == [other]


def test_starttls_that_the_server_does_not_offer_sends_nothing(email_event, smtp_server, tmp_path):
    collector = Collector()
    port = smtp_server(collector)
    settings = SmtpSettings(host="127.0.0.1", port=port, security="starttls", sender=SENDER)
    with pytest.raises(DeliveryError, match="does not offer STARTTLS; nothing was sent"):
        delivery.deliver(email_event, BASE_URL, settings, tmp_path / "outbox")
    assert collector.mails == []
    for certification in email_certifications(email_event).values():
        assert certification.delivered_at is None and certification.delivery_token_sha256 is None
    assert len(delivery.pending(email_event)) == 2


@pytest.fixture
def self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_certificate_that_does_not_verify_stops_delivery(
    email_event, smtp_server, self_signed, security, tmp_path
):
    collector = Collector()
    options = {"tls_context": self_signed} if security == "starttls" else {}
    options |= {"ssl_context": self_signed} if security == "tls" else {}
    port = smtp_server(collector, **options)
    settings = SmtpSettings(host="127.0.0.1", port=port, security=security, sender=SENDER)
    with pytest.raises(DeliveryError, match="certificate could not be verified"):
        delivery.deliver(email_event, BASE_URL, settings, tmp_path / "outbox")
    assert collector.mails == []
    assert len(delivery.pending(email_event)) == 2


def test_smtp_settings_from_config(monkeypatch):
    monkeypatch.delenv("KEYPARTY_SMTP_PASSWORD", raising=False)
    assert delivery.smtp_settings({}) is None
    assert delivery.smtp_settings({"SMTP_HOST": " "}) is None
    assert delivery.smtp_settings({"SMTP_HOST": "mail.example.org"}) == SmtpSettings(
        "mail.example.org", 587, "starttls", None, None, "keyparty@localhost"
    )
    assert (
        delivery.smtp_settings({"SMTP_HOST": "mail.example.org", "SMTP_SECURITY": "TLS"}).port
        == 465
    )

    monkeypatch.setenv("KEYPARTY_SMTP_PASSWORD", "s3cret")
    settings = delivery.smtp_settings(
        {
            "SMTP_HOST": "mail.example.org",
            "SMTP_PORT": "2587",
            "SMTP_USER": "party",
            "SMTP_SENDER": "Key party <party@example.org>",
            "SMTP_PASSWORD": "ignored: the password comes from the environment only",
        }
    )
    assert (settings.port, settings.user, settings.password) == (2587, "party", "s3cret")
    assert "s3cret" not in repr(settings)

    refused = {
        "Port 465 speaks TLS": {"SMTP_PORT": 465},
        "set SMTP_SECURITY=starttls": {"SMTP_SECURITY": "tls", "SMTP_PORT": 587},
        "is not one of starttls": {"SMTP_SECURITY": "ssl"},
        "only for a mail server on this machine": {"SMTP_SECURITY": "none"},
        "is not a number": {"SMTP_PORT": "smtp"},
        "not an email address": {"SMTP_SENDER": "keyparty"},
    }
    for words, config in refused.items():
        with pytest.raises(DeliveryError, match=words):
            delivery.smtp_settings({"SMTP_HOST": "mail.example.org", **config})
    monkeypatch.delenv("KEYPARTY_SMTP_PASSWORD")
    with pytest.raises(DeliveryError, match="KEYPARTY_SMTP_PASSWORD"):
        delivery.smtp_settings({"SMTP_HOST": "mail.example.org", "SMTP_USER": "party"})
    local = delivery.smtp_settings({"SMTP_HOST": "localhost", "SMTP_SECURITY": "none"})
    assert (local.security, local.port) == ("none", 25)


def test_confirm_knows_only_delivered_links(email_event, tmp_path):
    assert delivery.confirm("") is None
    assert delivery.confirm("not-a-token") is None
    assert delivery.confirm("x" * 10_000) is None
    # A hash set but the mail not out (yet, or it failed): the link does nothing.
    certification = delivery.pending(email_event)[0]
    certification.delivery_token_sha256 = hash_token("early")
    db.session.commit()
    assert delivery.confirm("early") is None
    assert certification.owner_decision is None


def test_names_from_strangers_stay_in_their_place(email_event, app, tmp_path, bob_decrypts):
    """A header cannot be injected through an event name, nor a terminal
    escape or a bidi override through a signer's name; the outbox mails
    come from the configured sender."""
    email_event.name = "Fête des clés\r\nBcc: victim@example.com"
    attendee_named(email_event, "Alice").name = "Alice \u202eelpmaxE\x1b[31m"
    db.session.commit()
    app.config["SMTP_SENDER"] = "keys@example.org"
    report = delivery.deliver(email_event, BASE_URL, None, tmp_path / "outbox")
    raw = report.written[0].read_bytes()
    raw.decode("ascii")  # every header encoded for the wire
    mail = email.message_from_bytes(raw, policy=policy.default)
    assert mail["Subject"].startswith(
        "Your key was certified at Fête des clés Bcc: victim@example.com / "
    )
    assert "\n" not in mail["Subject"] and "Bcc" not in mail
    assert mail["Bcc"] is None and mail["From"] == "keys@example.org"
    assert mail["Message-ID"].endswith("@example.org>")
    inner = email.message_from_bytes(
        bob_decrypts(mail.get_payload()[1].get_payload().encode()), policy=policy.default
    )
    text = inner.get_body(("plain",)).get_content()
    assert "\u202e" not in text and "\x1b" not in text
    assert "Alice \ufffdelpmaxE\ufffd[31m" in text


def test_mails_read_in_sq_and_rnp_with_the_certification_and_notations(email_event, tmp_path):
    """Bob reads his mail with Sequoia instead of gpg; rnp lists its packets."""
    outbox = tmp_path / "outbox"
    report = delivery.deliver(email_event, BASE_URL, None, outbox, sender=SENDER)
    alice = attendee_named(email_event, "Alice").keys[0].fingerprint
    assert len(report.written) == 2
    for path in report.written:
        mail = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        ciphertext = tmp_path / "message.asc"
        ciphertext.write_bytes(check_outer(mail, mail["To"]))
        assert "Encrypted" in sq("inspect", str(ciphertext))
        assert "Public-key encrypted session key packet" in rnp_packets(ciphertext)
        plain = sq(
            "decrypt",
            "--recipient-key",
            str(FIXTURES / "attendees" / "bob.secret.asc"),
            str(ciphertext),
        )
        inner = email.message_from_string(plain, policy=policy.default)
        (attachment,) = inner.iter_attachments()
        key = tmp_path / "certified.asc"
        key.write_bytes(attachment.get_content())
        assert f"Alleged certifier: {alice}" in sq("inspect", "--certifications", str(key))
        dump = sq("packet", "dump", str(key))
        assert "Notation: context@keyparty.org (human readable): email" in dump
        assert f"Notation: event@keyparty.org (human readable): {email_event.id}" in dump
        assert "notation data: context@keyparty.org = email" in rnp_packets(key)


def sq(*args: str) -> str:
    result = subprocess.run(["sq", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rnp_packets(path) -> str:
    result = subprocess.run(
        ["rnp", "--list-packets", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _letters(event, tmp_path, decrypt) -> dict[str, tuple[str, str]]:
    """address -> (Subject, decrypted letter) of each mail written to the outbox."""
    outbox = tmp_path / "outbox"
    delivery.deliver(event, BASE_URL, None, outbox, sender=SENDER)
    found = {}
    for path in outbox.iterdir():
        mail = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        inner = email.message_from_bytes(
            decrypt(check_outer(mail, mail["To"])), policy=policy.default
        )
        found[mail["To"]] = (mail["Subject"], inner.get_body(("plain",)).get_content())
    return found


def test_the_mail_comes_in_the_owners_language_or_both(app, email_event, tmp_path, bob_decrypts):
    bob = attendee_named(email_event, "Bob")
    # Unknown language: both, the link once.
    subject, text = _letters(email_event, tmp_path / "both", bob_decrypts)["bob@example.org"]
    assert "Your key was certified at Test Party" in subject and "署名されました" in subject
    assert '"email" context' in text and "メールアドレス" in text
    assert len(LINK.findall(text)) == 1
    # Bob's phone switched to Japanese: his mails come in Japanese only.
    phone = phone_of(app, bob)
    phone.get("/lang/ja?next=/me")
    db.session.refresh(bob)
    assert bob.language == "ja"
    for certification in email_certifications(email_event).values():
        certification.delivered_at = None
    db.session.commit()
    subject, text = _letters(email_event, tmp_path / "ja", bob_decrypts)["bob@example.org"]
    assert "Your key was certified" not in subject and "署名されました" in subject
    assert "Hello," not in text and "こんにちは" in text
    assert "Bob Example <bob@example.org>" in text and len(LINK.findall(text)) == 1
