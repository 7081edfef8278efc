"""Delivery of email certifications to their key owners (C3, O1).

An `email` certification reaches its owner only encrypted to their key and
sent to the address in the certified user ID (the caff model): receiving it
proves control of the address, reading it control of the key. Each mail
holds one certification on one user ID and a one-time link; following the
link accepts the certification (O1). Ignoring it declines, and the signer is
not told. User IDs without an address are never mailed (they would bounce).

Mail goes out over one SMTP connection when the host configured a server,
or is written as .eml files into an outbox for the host to send. Only a
hash of each link's token is stored.
"""

from __future__ import annotations

import io
import itertools
import os
import secrets
import smtplib
import ssl
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from email import policy
from email.charset import QP
from email.charset import Charset
from email.encoders import encode_7or8bit
from email.generator import BytesGenerator
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from email.utils import formataddr
from email.utils import make_msgid
from email.utils import parseaddr
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import joinedload

from keyparty import homes
from keyparty import publishing
from keyparty.addresses import Mailbox
from keyparty.addresses import mailbox
from keyparty.escaping import one_line
from keyparty.events import event_home
from keyparty.extensions import db
from keyparty.gpg import GnuPGError
from keyparty.gpg import GnuPGHome
from keyparty.gpg import NoEncryptionKey
from keyparty.i18n import LANGUAGES
from keyparty.i18n import current_language
from keyparty.i18n import gettext
from keyparty.i18n import in_language
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import UserID
from keyparty.models import utcnow
from keyparty.network import is_loopback
from keyparty.partylist import group_digest
from keyparty.partylist import group_fingerprint
from keyparty.proof import join_url
from keyparty.registration import hash_token

# The standard port of each way of talking to the server; "none" is for a
# mail server on this machine only.
STANDARD_PORTS = {"starttls": 587, "tls": 465, "none": 25}
SMTP_TIMEOUT = 60
DEFAULT_SENDER = "keyparty@localhost"
# "-- " with its space: mail programs hide what follows.
SIGNATURE_SEPARATOR = "-- "


class DeliveryError(RuntimeError):
    """Mail cannot go out as configured; the message says what to change."""


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the host's mail server.

    security: "starttls" (port 587: a plain connection upgraded to TLS before
    anything is sent), "tls" (port 465: TLS from the first byte) or "none"
    (a mail server on this machine only). The server's certificate is always
    verified. `port` defaults to the standard port of `security`.
    """

    host: str
    port: int | None = None
    security: str = "starttls"
    user: str | None = None
    # From the environment only (KEYPARTY_SMTP_PASSWORD), never stored or shown.
    password: str | None = field(default=None, repr=False)
    sender: str = DEFAULT_SENDER

    def __post_init__(self) -> None:
        security = (self.security or "").strip().lower()
        if security not in STANDARD_PORTS:
            raise DeliveryError(
                f"SMTP security {self.security!r} is not one of starttls (port 587, the usual "
                "submission port), tls (port 465, TLS from the first byte) or none (a mail "
                "server on this machine only)."
            )
        object.__setattr__(self, "security", security)
        if self.port is None:
            object.__setattr__(self, "port", STANDARD_PORTS[security])
        # The two mix-ups that make a connection hang or fail with an obscure
        # TLS error (pius #51, #70): say what to set instead.
        if security == "starttls" and self.port == 465:
            raise DeliveryError(
                "Port 465 speaks TLS from the first byte: set SMTP_SECURITY=tls for it "
                "(starttls is for port 587)."
            )
        if security == "tls" and self.port in (25, 587):
            raise DeliveryError(
                f"Port {self.port} starts in plain text and upgrades with STARTTLS: set "
                "SMTP_SECURITY=starttls for it (tls is for port 465)."
            )
        if security == "none" and not (
            self.host.strip().lower().rstrip(".") == "localhost"
            or is_loopback(self.host.strip("[]"))
        ):
            raise DeliveryError(
                f"SMTP security none sends mail and passwords unencrypted: it is allowed only "
                f"for a mail server on this machine, not {self.host}. Use starttls or tls."
            )
        if self.user and not self.password:
            raise DeliveryError(
                "SMTP_USER is set but no password: put it in the environment variable "
                "KEYPARTY_SMTP_PASSWORD (it is never stored)."
            )
        if not _envelope_address(self.sender):
            raise DeliveryError(
                f"SMTP sender {self.sender!r} is not an email address such as "
                "'keyparty@example.org' or 'Key party <keyparty@example.org>'."
            )


def _envelope_address(sender: str) -> str | None:
    """The bare address of a From value ("Name <a@b>" or "a@b")."""
    _, address = parseaddr(sender)
    return address if "@" in address and address == address.strip() else None


def smtp_settings(config: Mapping) -> SmtpSettings | None:
    """The mail server from app.config (SMTP_*) and KEYPARTY_SMTP_PASSWORD; None
    when SMTP_HOST is unset (mail is then written to an outbox)."""
    host = str(config.get("SMTP_HOST") or "").strip()
    if not host:
        return None
    port = config.get("SMTP_PORT")
    if port not in (None, ""):
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise DeliveryError(f"SMTP port {port!r} is not a number.") from None
    else:
        port = None
    return SmtpSettings(
        host=host,
        port=port,
        security=str(config.get("SMTP_SECURITY") or "starttls"),
        user=config.get("SMTP_USER") or None,
        password=os.environ.get("KEYPARTY_SMTP_PASSWORD") or None,
        sender=str(config.get("SMTP_SENDER") or DEFAULT_SENDER),
    )


# -- what goes out -------------------------------------------------------------


def _waiting(event: Event):
    """Accepted email certifications of this event that no owner has decided
    on and that have not gone out yet."""
    return (
        select(Certification)
        .join(UserID, Certification.user_id_id == UserID.id)
        .where(
            Certification.event_id == event.id,
            Certification.status == "accepted",
            Certification.context == "email",
            Certification.owner_decision.is_(None),
            Certification.delivered_at.is_(None),
            Certification.delivery_failed_at.is_(None),
            Certification.armored.is_not(None),
        )
        .order_by(Certification.id)
    )


def _no_address():
    return UserID.email.is_(None) | (UserID.email == "")


def pending(event: Event) -> list[Certification]:
    """What deliver() would send: only user IDs with an address are mailed (C3).
    Their keys, user IDs and signers come in the same query (one per mail else)."""
    query = _waiting(event).where(~_no_address())
    query = query.options(
        joinedload(Certification.key),
        joinedload(Certification.user_id),
        joinedload(Certification.signer),
    )
    return list(db.session.scalars(query))


def _skipped_no_address(event: Event) -> int:
    return len(db.session.scalars(_waiting(event).where(_no_address())).all())


# -- composing -----------------------------------------------------------------


class Undeliverable(DeliveryError):
    """This one mail can never go out as it is (no address, no encryption key, a
    server without SMTPUTF8 for a non-ASCII address): it is marked failed and not
    tried again; its owner can still accept the certification on their page."""


def _plain_address(address: str | None) -> bool:
    """Whether `address` is one address mail can be sent to (keyparty.addresses)."""
    return mailbox(address or "") is not None


def _recipient(certification: Certification) -> Mailbox:
    """The certified user ID's own address (keyparty.addresses), checked."""
    address = (certification.user_id.email if certification.user_id else None) or ""
    found = mailbox(address)
    if found is None:
        raise Undeliverable(f"{one_line(address)!r} is not an address mail can be sent to")
    return found


def checked_address(address: str) -> str:
    """`address` in the form mail goes out to (domain in IDNA A-labels) if it
    is an address mail can be sent to (keyparty.addresses), else Undeliverable."""
    found = mailbox(address or "")
    if found is None:
        raise Undeliverable(f"{one_line(address)!r} is not an address mail can be sent to")
    return found.wire


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/confirm/{token}"


def mail_languages(certification: Certification) -> tuple[str, ...]:
    """The key owner's language when the event knows it (their phone's), else both."""
    known = certification.key.attendee.language if certification.key.attendee else None
    return (known,) if known in LANGUAGES else tuple(LANGUAGES)


def _paragraph(text: str) -> str:
    # English wraps at spaces; Japanese has none to wrap at and is left to the mail reader.
    return textwrap.fill(text, 72) if current_language() == "en" else text


def _letter_in(event: Event, certification: Certification, address: str) -> str:
    """The letter in the current language (i18n.in_language), without the link."""
    signer = certification.signer
    signer_name = one_line(signer.name) if signer else gettext("An attendee")
    issuer = (
        group_fingerprint(certification.issuer_fingerprint)
        if certification.issuer_fingerprint
        else ""
    )
    event_name = one_line(event.name)
    intro = (
        gettext(
            'This message comes from keyparty, the key-signing tool of the event "{event}" '
            "on {date}, on behalf of {signer} (key {issuer}).",
            event=event_name,
            date=event.date.isoformat(),
            signer=signer_name,
            issuer=issuer,
        )
        if event.date
        else gettext(
            'This message comes from keyparty, the key-signing tool of the event "{event}", '
            "on behalf of {signer} (key {issuer}).",
            event=event_name,
            signer=signer_name,
            issuer=issuer,
        )
    )
    what = gettext(
        'in the "email" context: the certification states that the key holder controls '
        "the address {address}.",
        address=address,
    )
    if certification.expires:
        what += " " + gettext(
            "It expires on {date}.", date=certification.expires.date().isoformat()
        )
    parts = [
        gettext("Hello,"),
        _paragraph(intro),
        _paragraph(
            gettext(
                "{signer} met you at {event} and certified this user ID of your key {key}:",
                signer=signer_name,
                event=event_name,
                key=group_fingerprint(certification.key.fingerprint),
            )
        ),
        "    " + one_line(certification.user_id_text or "", 500),
        _paragraph(what),
        _paragraph(
            gettext(
                "The attached file holds your key with only this user ID and this one "
                "certification: {file}",
                file=certification.key.fingerprint + "-certified.asc",
            )
        ),
        _paragraph(
            gettext(
                "This message was encrypted to your key and sent only to {address}. That you "
                "can read it shows that you control both.",
                address=address,
            )
        ),
        _paragraph(
            gettext(
                "To accept the certification, open the link at the end of this message (it "
                "works once). Opening it confirms that you received this message at this "
                "address, and lets keyparty publish the certification in the event's signed "
                "keyrings."
            )
        ),
        _paragraph(
            gettext(
                "If you do not want this certification, ignore this message: nothing is "
                "published, and {signer} is not told.",
                signer=signer_name,
            )
        ),
    ]
    return "\n\n".join(parts)


def _letter(
    event: Event,
    certification: Certification,
    address: str,
    link: str,
    languages: tuple[str, ...] = ("en",),
) -> str:
    """The letter in each of `languages`, then the confirmation link once."""
    sections = []
    for language in languages:
        with in_language(language):
            sections.append(_letter_in(event, certification, address))
    return (
        "\n\n".join(sections)
        + f"\n\n    {link}\n\n{SIGNATURE_SEPARATOR}\nkeyparty, {one_line(event.name)}\n"
    )


def _addressed(sender: str, address: str | Address, subject: str) -> EmailMessage:
    """A new mail with From, To, Subject, Date and a Message-ID (pius #152:
    servers reject mail without one) in the sender's domain."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = address
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    sender_domain = (_envelope_address(sender) or DEFAULT_SENDER).rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=sender_domain)
    return message


def compose(
    event: Event,
    certification: Certification,
    token: str,
    base_url: str,
    sender: str,
    home: GnuPGHome | None = None,
) -> Message:
    """One PGP/MIME (RFC 3156) mail for one certification, to the address of
    its user ID only, encrypted to the certified key (in `home`, by default
    the event's GnuPG home)."""
    recipient = _recipient(certification)
    address = recipient.addr_spec
    fingerprint = certification.key.fingerprint

    # Built with email's compat32 classes: the same RFC 3156 structure as
    # EmailMessage would make, without re-parsing every header through the
    # header registry (half of a mail's time in Python; bench/deliver.py).
    inner = MIMEMultipart("mixed")
    inner["MIME-Version"] = "1.0"
    languages = mail_languages(certification)
    inner.attach(
        MIMEText(
            _letter(event, certification, address, confirm_url(base_url, token), languages),
            "plain",
            _UTF8,
        )
    )
    attachment = MIMEApplication(
        certification.armored.encode("ascii"), "pgp-keys", _encoder=encode_7or8bit
    )
    attachment.add_header(
        "Content-Disposition", "attachment", filename=f"{fingerprint}-certified.asc"
    )
    inner.attach(attachment)
    home = home or event_home(event)
    with home.locked():
        try:
            ciphertext = home.encrypt(render(inner, "\r\n"), fingerprint)
        except NoEncryptionKey as problem:
            raise Undeliverable(str(problem)) from None
    subjects = []
    for language in mail_languages(certification):
        with in_language(language):
            subjects.append(
                gettext("Your key was certified at {event}", event=one_line(event.name, 120))
            )
    # The domain in IDNA A-labels; a non-ASCII local part stays as it is and
    # needs SMTPUTF8 (checked when sending).
    return pgp_mime(ciphertext, sender, [recipient.wire], " / ".join(subjects))


def pgp_mime(ciphertext: bytes, sender: str, to: list[str], subject: str) -> Message:
    """The outer PGP/MIME mail (RFC 3156, section 4) around an armored OpenPGP
    message, with Date and Message-ID (pius #152)."""
    control = MIMEApplication(b"Version: 1\n", "pgp-encrypted", _encoder=encode_7or8bit)
    control["Content-Description"] = "PGP/MIME version identification"
    encrypted = MIMEApplication(
        ciphertext, "octet-stream", _encoder=encode_7or8bit, name="encrypted.asc"
    )
    encrypted.add_header("Content-Disposition", "inline", filename="encrypted.asc")
    encrypted["Content-Description"] = "OpenPGP encrypted message"

    sender_domain = (_envelope_address(sender) or DEFAULT_SENDER).rpartition("@")[2]
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer["From"] = _address_header(sender)
    outer["To"] = ", ".join(to)
    outer["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
    outer["Date"] = format_datetime(datetime.now(UTC))
    outer["Message-ID"] = make_msgid(domain=sender_domain)
    outer.attach(control)
    outer.attach(encrypted)
    return outer


# Outbox mails whose tokens are committed together (see deliver()).
OUTBOX_BATCH = 50

# Letters are quoted-printable UTF-8: readable as text, 7-bit safe.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


def _address_header(value: str) -> str:
    """A From/To value with a non-ASCII display name encoded (RFC 2047)."""
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8") if address else value


def render(message: Message, linesep: str = "\n") -> bytes:
    """The bytes of a mail from compose(), lines ending in `linesep`."""
    out = io.BytesIO()
    BytesGenerator(out, policy=policy.compat32.clone(linesep=linesep)).flatten(message)
    return out.getvalue()


def write_mail(path: Path, message: Message) -> Path:
    """One mail as an .eml file in the outbox, for `sendmail -t < FILE`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: a crash never leaves half a mail to send.
    partial = path.with_name(f".{path.name}.partial")
    international = not str(message["To"]).isascii()
    partial.write_bytes(
        message.as_bytes(policy=policy.SMTPUTF8) if international else render(message)
    )
    os.replace(partial, path)
    return path


# -- sending -------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What deliver() did. `sent` holds the certifications mailed over SMTP,
    `written` the .eml files left in the outbox (written, not delivered: keyparty
    cannot know whether the host sends them), `failed` (address, why) for each mail
    that can never go out (marked failed, not tried again), `deferred` (address,
    why) for each mail the server did not take now (tried again next time)."""

    sent: list[Certification] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)
    skipped_no_address: int = 0
    outbox: Path | None = None

    @property
    def refused(self) -> list[tuple[str, str]]:
        return self.failed + self.deferred

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing was put off."""
        return not (self.failed or self.deferred)

    @property
    def lines(self) -> list[str]:
        """One sentence a line; each may hold an address, so escape it for where it goes."""
        lines = []
        if self.sent:
            lines.append(f"Sent {len(self.sent)} encrypted certification mail(s).")
        if self.written:
            lines.append(
                f"No SMTP server is configured (KEYPARTY_SMTP_HOST): wrote {len(self.written)} "
                f"encrypted mail(s) as .eml files into {self.outbox}. They are written, not "
                "delivered: send each from a mail program, e.g. `sendmail -t < FILE`."
            )
        for address, reason in self.failed:
            lines.append(
                f"Failed, not sent to {address}: {reason}. It will not be tried again; the "
                "owner can still accept the certification on their page."
            )
        for address, reason in self.deferred:
            lines.append(f"Not sent to {address} now: {reason}. It will be tried again.")
        if self.skipped_no_address:
            lines.append(
                f"{self.skipped_no_address} email certification(s) on user IDs without an "
                "address are never mailed (C3)."
            )
        return lines or ["Nothing to deliver."]

    @property
    def summary(self) -> str:
        return "\n".join(self.lines)


def describe(report: DeliveryReport) -> str:
    """What deliver() did, in plain words for the host."""
    return report.summary


def _fail(certification: Certification, report: DeliveryReport, why: str) -> None:
    """Mark one mail as never deliverable, with why, once."""
    certification.delivery_failed_at = utcnow()
    certification.delivery_error = why
    certification.delivery_token_sha256 = None
    db.session.commit()
    report.failed.append((_address_of(certification), why))


def _address_of(certification: Certification) -> str:
    return one_line((certification.user_id.email if certification.user_id else None) or "?")


def deliver(
    event: Event,
    base_url: str,
    settings: SmtpSettings | None,
    outbox: Path,
    sender: str | None = None,
) -> DeliveryReport:
    """Deliver every pending email certification: over one SMTP connection,
    or as .eml files into `outbox` when there is no server (settings None).

    The mails come from settings.sender; written to the outbox, from `sender`
    or else app.config SMTP_SENDER (the host sends them as themselves).
    """
    report = DeliveryReport(skipped_no_address=_skipped_no_address(event))
    if settings is not None:
        sender = settings.sender
    else:
        sender = sender or current_app.config.get("SMTP_SENDER") or DEFAULT_SENDER
        if not _envelope_address(sender):
            raise DeliveryError(f"Sender {sender!r} is not an email address.")
    home = event_home(event)

    def composed():
        # One mail at a time: each is written or sent before the next is
        # composed, so a party's mails never sit in memory together.
        for certification in pending(event):
            token = secrets.token_urlsafe(24)
            try:
                message = compose(event, certification, token, base_url, sender, home)
            except Undeliverable as problem:
                _fail(certification, report, str(problem))
                continue
            except GnuPGError as problem:
                report.deferred.append((_address_of(certification), one_line(str(problem))))
                continue
            yield certification, token, message

    if settings is None:
        for n, (certification, token, message) in enumerate(composed(), 1):
            report.outbox = outbox
            path = write_mail(outbox / f"{event.id}-{certification.id}.eml", message)
            certification.delivery_token_sha256 = hash_token(token)
            certification.delivered_at = utcnow()
            # Committed in batches: a file is only handed over when the run
            # ends, and after a crash the next run writes the mails whose
            # tokens were not stored again, under the same names.
            if n % OUTBOX_BATCH == 0:
                db.session.commit()
            report.written.append(path)
        db.session.commit()
        return report

    mails = composed()
    first = next(mails, None)
    if first is None:
        return report
    with _connect(settings) as smtp:
        envelope_from = _envelope_address(settings.sender)
        smtputf8 = smtp.has_extn("smtputf8")
        for certification, token, message in itertools.chain([first], mails):
            address = str(message["To"])
            # smtplib adds SMTPUTF8 itself to a mail with a non-ASCII address.
            if not address.isascii() and not smtputf8:
                _fail(
                    certification,
                    report,
                    "the address has a non-ASCII local part, which needs a mail server "
                    "that offers SMTPUTF8, and this one does not",
                )
                continue
            # The hash is stored before the mail leaves, so the link works at once.
            certification.delivery_token_sha256 = hash_token(token)
            db.session.commit()
            try:
                smtp.send_message(message, from_addr=envelope_from, to_addrs=[address])
            except smtplib.SMTPServerDisconnected:
                certification.delivery_token_sha256 = None
                report.deferred.append((address, "the mail server closed the connection"))
                # The ones not composed yet are not sent either (ordered by id).
                for left in pending(event):
                    if left.id > certification.id:
                        report.deferred.append(
                            (_address_of(left), "the mail server closed the connection")
                        )
                db.session.commit()
                break
            except (smtplib.SMTPException, OSError) as problem:
                certification.delivery_token_sha256 = None
                db.session.commit()
                # The server's answer may change (a full mailbox, a host who fixes
                # the server): tried again on the next run.
                report.deferred.append((address, _smtp_reason(problem, address)))
                continue
            certification.delivered_at = utcnow()
            db.session.commit()
            report.sent.append(certification)
    return report


def _smtp_reason(problem: Exception, address: str) -> str:
    if isinstance(problem, smtplib.SMTPRecipientsRefused):
        code, text = problem.recipients.get(address, next(iter(problem.recipients.values())))
        return f"{code} {_decode(text)}"
    if isinstance(problem, smtplib.SMTPResponseException):
        return f"{problem.smtp_code} {_decode(problem.smtp_error)}"
    return one_line(str(problem)) or type(problem).__name__


def _decode(text: bytes | str) -> str:
    return one_line(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    """One connection to the server, TLS set up and logged in, or a DeliveryError
    that says what went wrong and what to check."""
    where = f"{settings.host}:{settings.port} ({settings.security})"
    context = ssl.create_default_context()
    smtp: smtplib.SMTP | None = None
    try:
        if settings.security == "tls":
            smtp = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=SMTP_TIMEOUT, context=context
            )
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT)
            if settings.security == "starttls":
                smtp.starttls(context=context)
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        return smtp
    except smtplib.SMTPNotSupportedError:
        problem = "the server does not offer STARTTLS; nothing was sent unencrypted"
        if settings.port == 465:
            problem += " (port 465 wants SMTP_SECURITY=tls)"
    except smtplib.SMTPAuthenticationError as error:
        problem = f"login as {settings.user} refused: {_decode(error.smtp_error)}"
    except ssl.SSLCertVerificationError as error:
        problem = (
            f"the server's certificate could not be verified ({error.verify_message}); "
            "use the name on its certificate as SMTP_HOST"
        )
    except ssl.SSLError as error:
        problem = f"TLS failed ({error.reason or error}); check SMTP_SECURITY and SMTP_PORT"
    except TimeoutError:
        problem = "no answer in time; check SMTP_PORT and SMTP_SECURITY"
    except (smtplib.SMTPException, OSError) as error:
        problem = one_line(str(error)) or type(error).__name__
    if smtp is not None:
        smtp.close()
    raise DeliveryError(f"Cannot send mail through {where}: {problem}. Nothing was sent.")


# -- the party list, to every attendee ------------------------------------------


def _list_recipient(attendee: Attendee) -> str | None:
    """Where the list goes: the address the attendee registered with, else the
    first address among their user IDs; None if neither is a plain address."""
    candidates = [attendee.email] + [uid.email for key in attendee.keys for uid in key.user_ids]
    return next((address for address in candidates if _plain_address(address)), None)


def _list_letter(event: Event, attendee: Attendee) -> str:
    name = one_line(attendee.name)
    event_name = one_line(event.name)
    when = f" ({event.date.isoformat()})" if event.date else ""
    filename = f"partylist-{event.id}.txt"
    numbers = ", ".join(f"{key.list_number:03d}" for key in attendee.keys if key.list_number)
    sha256 = event.partylist_sha256 or ""
    sha512 = event.partylist_sha512 or ""
    return f"""\
Hello {name},

The party list of "{event_name}"{when} is frozen. It is attached to this
mail as {filename}. Check your copy before the party:

    sha256sum {filename}

must print

    {sha256}

and `sha512sum {filename}` must print

    {sha512[:64]}
    {sha512[64:]}

At the start of the party the host reads the same digests aloud:

    SHA256 {" ".join(group_digest(sha256))}

If they differ, your copy is not the list everyone else has: do not use it.
Your own entry is number {numbers or "-"}: check that it is correct. Bring
the list (printed, or the file), and tick the boxes of each person you check.

------------------------------------------------------------------------

{name} 様

「{event_name}」{when} のパーティーリストが確定しました。このメールに
{filename} として添付しています。パーティーの前に、お手元のコピーを確認して
ください。

    sha256sum {filename}

が次を表示するはずです。

    {sha256}

パーティーの始めに、主催者が同じダイジェストを読み上げます。一致しない場合、
そのコピーは他の参加者と同じリストではありません。使わないでください。
あなたのエントリーは {numbers or "-"} 番です。正しいことを確認してください。

{SIGNATURE_SEPARATOR}
keyparty, for {event_name}
"""


def party_list_mail(event: Event, attendee: Attendee, address: str, sender: str) -> EmailMessage:
    """The frozen list for one attendee: the digests in the body (English and
    Japanese), the exact frozen bytes attached (base64, so no mail system
    re-encodes what is hashed)."""
    if event.partylist is None:
        raise DeliveryError(f"The party list of {event.id} is not frozen yet: `keyparty freeze`.")
    message = _addressed(
        sender, address, f"Party list of {one_line(event.name, 120)}: check it before the party"
    )
    message.set_content(_list_letter(event, attendee))
    message.add_attachment(
        event.partylist.encode("utf-8"),
        maintype="text",
        subtype="plain",
        cte="base64",
        filename=f"partylist-{event.id}.txt",
        params={"charset": "utf-8"},
    )
    return message


@dataclass
class ListMailReport(DeliveryReport):
    """What mail_party_list() did: `sent` holds the attendees mailed over SMTP,
    `written` the .eml files, `deferred` (address, reason) for each mail that did
    not go out (tried again next time; `refused` lists them too),
    `skipped_no_address` the attendees with no address to send to."""

    @property
    def summary(self) -> str:
        lines = []
        if self.sent:
            lines.append(f"Mailed the party list to {len(self.sent)} attendee(s).")
        if self.written:
            lines.append(
                f"No SMTP server is configured (KEYPARTY_SMTP_HOST): wrote {len(self.written)} "
                f"party list mail(s) as .eml files into {self.outbox}. Send each with "
                "`sendmail -t < FILE`."
            )
        for address, reason in self.refused:
            lines.append(f"Not sent to {address}: {reason}. `keyparty mail-list` tries it again.")
        if self.skipped_no_address:
            lines.append(
                f"{self.skipped_no_address} attendee(s) have no email address: they download "
                "the list on their phone page."
            )
        return "\n".join(lines) or "Every attendee was mailed the party list already."


def mail_party_list(
    event: Event,
    settings: SmtpSettings | None,
    outbox: Path,
    sender: str | None = None,
    again: bool = False,
) -> ListMailReport:
    """Mail the frozen list to each attendee not mailed yet (every one with
    `again`): over one SMTP connection, or as .eml files into `outbox` when
    there is no server. Attendees without an address are counted in
    `skipped_no_address`; a refused recipient does not stop the others.
    """
    if event.partylist is None:
        raise DeliveryError(f"The party list of {event.id} is not frozen yet: `keyparty freeze`.")
    sender = settings.sender if settings else (sender or current_app.config.get("SMTP_SENDER"))
    sender = sender or DEFAULT_SENDER
    if not _envelope_address(sender):
        raise DeliveryError(f"Sender {sender!r} is not an email address.")
    report = ListMailReport()
    ready: list[tuple[Attendee, EmailMessage]] = []
    for attendee in event.attendees:
        if attendee.list_mailed_at and not again:
            continue
        address = _list_recipient(attendee)
        if address is None:
            report.skipped_no_address += 1
            continue
        ready.append((attendee, party_list_mail(event, attendee, address, sender)))
    if not ready:
        return report
    if settings is None:
        report.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)
        for attendee, message in ready:
            path = outbox / f"{event.id}-partylist-{attendee.id}.eml"
            path.write_bytes(message.as_bytes(policy=policy.default))
            attendee.list_mailed_at = utcnow()
            report.written.append(path)
        db.session.commit()
        return report
    with _connect(settings) as smtp:
        envelope_from = _envelope_address(settings.sender)
        for attendee, message in ready:
            address = message["To"]
            try:
                smtp.send_message(message, from_addr=envelope_from, to_addrs=[address])
            except smtplib.SMTPServerDisconnected:
                report.deferred.append((address, "the mail server closed the connection"))
                break
            except (smtplib.SMTPException, OSError) as problem:
                report.deferred.append((address, _smtp_reason(problem, address)))
                continue
            attendee.list_mailed_at = utcnow()
            db.session.commit()
            report.sent.append(attendee)
    return report


# -- the owner's answer (O1) -----------------------------------------------------


def confirm(token: str) -> Certification | None:
    """The owner followed the link: accept the certification, once, and publish it.

    None for an unknown, already used or malformed token.
    """
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    certification = db.session.scalar(
        select(Certification).where(
            Certification.delivery_token_sha256 == digest,
            Certification.delivered_at.is_not(None),
            Certification.status == "accepted",
            Certification.owner_decision.is_(None),
        )
    )
    if certification is None:
        return None
    # One-time even when the link is opened twice at once: only one update wins.
    done = db.session.execute(
        update(Certification)
        .where(
            Certification.id == certification.id,
            Certification.delivery_token_sha256 == digest,
            Certification.owner_decision.is_(None),
        )
        .values(owner_decision="accepted", decided_at=utcnow(), delivery_token_sha256=None)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        db.session.rollback()
        return None
    generation = homes.bump(certification.key.event, Event.published_generation)
    db.session.commit()
    db.session.refresh(certification)
    publishing.follow_decision(certification, None, generation)
    return certification


# -- join links, encrypted to their keys (O2) ---------------------------------------


@dataclass
class JoinMailReport:
    """What send_join_links() did: fingerprints mailed over SMTP, .eml files
    and armored messages written, keys with no address (their armored file is
    all there is), and (fingerprint, reason) for each that did not go out."""

    sent: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    armored: list[Path] = field(default_factory=list)
    no_address: list[str] = field(default_factory=list)
    # Keys nothing can be encrypted to: their holders prove possession by
    # signing (registration or re-join page), or the host hands the link over.
    sign_only: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def join_letter(event: Event, key: Key, link: str, base_url: str) -> str:
    """The text of a join mail: the link, and why only the key's holder reads it."""
    event_name = one_line(event.name)
    when = f" on {event.date.isoformat()}" if event.date else ""
    rejoin = f"{base_url.rstrip('/')}/e/{event.id}/rejoin"
    return f"""\
Hello,

This message comes from keyparty, the key-signing tool of the event
"{event_name}"{when}. The host registered your key

    {group_fingerprint(key.fingerprint)}

and sends you your personal join link, encrypted to this key: only the
holder of its secret key can read it.

Open it on the phone you will use at the event and press "Join on this
phone" (it works once):

    {link}

Opening it shows that you hold the key (O2). Keep it to yourself: whoever
opens it acts for this key at the event. Lost it, or a new phone? Open
{rejoin} and prove again that you hold the key.

イベント「{event_name}」の参加用リンクです。この鍵で暗号化されているため、
秘密鍵を持つ本人だけが読めます。イベントで使うスマートフォンで開いてください。

{SIGNATURE_SEPARATOR}
keyparty, for {event_name}
"""


def send_join_links(
    event: Event,
    links: list[tuple[Key, str]],
    base_url: str,
    settings: SmtpSettings | None,
    outbox: Path,
    sender: str | None = None,
) -> JoinMailReport:
    """Send each (key, join token)'s link encrypted to that key (O2): one mail
    per key to its email user IDs, over SMTP when configured, else as an
    .eml file in `outbox`; and always one armored message file per key
    (join-FINGERPRINT.asc) for keys without an address or a host who hands
    files out. Raises DeliveryError when SMTP cannot be reached."""
    report = JoinMailReport()
    sender = (settings.sender if settings else None) or sender
    sender = sender or current_app.config.get("SMTP_SENDER") or DEFAULT_SENDER
    home = event_home(event)
    ready: list[tuple[Key, list[str], Message]] = []
    for key, token in links:
        letter = join_letter(event, key, join_url(base_url, token), base_url)
        addresses = []
        for uid in key.user_ids:
            try:
                address = checked_address(uid.email or "")
            except DeliveryError:
                continue
            if address not in addresses:
                addresses.append(address)
        inner = MIMEText(letter, "plain", _UTF8)
        inner["MIME-Version"] = "1.0"
        try:
            with home.locked():
                armored = home.encrypt(letter.encode("utf-8"), key.fingerprint)
                mail = home.encrypt(render(inner, "\r\n"), key.fingerprint)
        except NoEncryptionKey:
            report.sign_only.append(key.fingerprint)
            continue
        except GnuPGError as problem:
            report.refused.append((key.fingerprint, str(problem)))
            continue
        outbox.mkdir(parents=True, exist_ok=True)
        path = outbox / f"join-{key.fingerprint}.asc"
        path.write_bytes(armored)
        report.armored.append(path)
        if not addresses:
            report.no_address.append(key.fingerprint)
            continue
        subject = f"Your join link for {one_line(event.name, 120)}"
        ready.append((key, addresses, pgp_mime(mail, sender, addresses, subject)))
    if settings is None:
        for key, _addresses, message in ready:
            report.written.append(
                write_mail(outbox / f"{event.id}-join-{key.fingerprint}.eml", message)
            )
        return report
    if ready:
        with _connect(settings) as smtp:
            envelope_from = _envelope_address(settings.sender)
            for key, addresses, message in ready:
                try:
                    smtp.send_message(message, from_addr=envelope_from, to_addrs=addresses)
                except (smtplib.SMTPException, OSError) as problem:
                    report.refused.append((key.fingerprint, _smtp_reason(problem, addresses[0])))
                    continue
                report.sent.append(key.fingerprint)
    return report
