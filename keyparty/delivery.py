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

import os
import secrets
import smtplib
import ssl
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.message import MIMEPart
from email.utils import format_datetime
from email.utils import make_msgid
from email.utils import parseaddr
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update

from keyparty import homes
from keyparty import publishing
from keyparty.events import event_home
from keyparty.extensions import db
from keyparty.gpg import GnuPGError
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
            Certification.armored.is_not(None),
        )
        .order_by(Certification.id)
    )


def _no_address():
    return UserID.email.is_(None) | (UserID.email == "")


def pending(event: Event) -> list[Certification]:
    """What deliver() would send: only user IDs with an address are mailed (C3)."""
    return list(db.session.scalars(_waiting(event).where(~_no_address())))


def _skipped_no_address(event: Event) -> int:
    return len(db.session.scalars(_waiting(event).where(_no_address())).all())


# -- composing -----------------------------------------------------------------

# Bidirectional overrides can make a name read as another in the mail.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _plain(text: str | None) -> str:
    """Text from strangers (user IDs, names) made safe to print on one line."""
    out = []
    for char in text or "":
        category = unicodedata.category(char)
        if char in _BIDI_CONTROLS or category in ("Cc", "Cs", "Co", "Cn"):
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def _one_line(text: str, limit: int = 150) -> str:
    text = _plain(" ".join((text or "").split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_address(address: str | None) -> bool:
    """Whether `address` is one plain addr-spec that a To: header can carry as it is."""
    try:
        parsed = Address(addr_spec=address or "")
    except (ValueError, IndexError, HeaderParseError):
        return False
    return parsed.addr_spec == address and not any(c.isspace() for c in address)


def _recipient(certification: Certification) -> str:
    """The certified user ID's own address, checked to be one plain address."""
    return checked_address((certification.user_id.email if certification.user_id else None) or "")


def checked_address(address: str) -> str:
    """`address` if it is one plain address mail can be sent to, else DeliveryError."""
    if not _plain_address(address):
        raise DeliveryError(f"{_one_line(address)!r} is not an address mail can be sent to.")
    return address


def confirm_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/confirm/{token}"


def _letter(event: Event, certification: Certification, address: str, link: str) -> str:
    fingerprint = certification.key.fingerprint
    signer = certification.signer
    signer_name = _one_line(signer.name) if signer else "An attendee"
    issuer = (
        group_fingerprint(certification.issuer_fingerprint)
        if certification.issuer_fingerprint
        else ""
    )
    event_name = _one_line(event.name)
    when = f" on {event.date.isoformat()}" if event.date else ""
    expires = (
        f"It expires on {certification.expires.date().isoformat()}."
        if certification.expires
        else ""
    )
    return f"""\
Hello,

This message comes from keyparty, the key-signing tool of the event
"{event_name}"{when}, on behalf of {signer_name}
(key {issuer}).

{signer_name} met you at {event_name} and certified this user ID of your
key {group_fingerprint(fingerprint)}:

    {_one_line(certification.user_id_text or "", 500)}

in the "email" context: the certification states that the key holder
controls the address {address}. {expires}

The attached file holds your key with only this user ID and this one
certification:

    {fingerprint}-certified.asc

This message was encrypted to your key and sent only to {address}.
That you can read it shows that you control both.

To accept the certification, open this link (it works once):

    {link}

Opening it confirms that you received this message at this address, and
lets keyparty publish the certification in the event's signed keyrings.

If you do not want this certification, ignore this message: nothing is
published, and {signer_name} is not told.

{SIGNATURE_SEPARATOR}
keyparty, for {event_name}
"""


def _addressed(sender: str, address: str, subject: str) -> EmailMessage:
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
    event: Event, certification: Certification, token: str, base_url: str, sender: str
) -> EmailMessage:
    """One PGP/MIME (RFC 3156) mail for one certification, to the address of
    its user ID only, encrypted to the certified key."""
    address = _recipient(certification)
    fingerprint = certification.key.fingerprint

    inner = MIMEPart()
    inner["MIME-Version"] = "1.0"
    inner.set_content(_letter(event, certification, address, confirm_url(base_url, token)))
    inner.add_attachment(
        certification.armored.encode("ascii"),
        maintype="application",
        subtype="pgp-keys",
        cte="7bit",
        filename=f"{fingerprint}-certified.asc",
    )
    home = event_home(event)
    with home.locked():
        ciphertext = home.encrypt(inner.as_bytes(policy=policy.SMTP), fingerprint)
    subject = f"Your key was certified at {_one_line(event.name, 120)}"
    return pgp_mime(ciphertext, sender, [address], subject)


def pgp_mime(ciphertext: bytes, sender: str, to: list[str], subject: str) -> EmailMessage:
    """The outer PGP/MIME mail (RFC 3156, section 4) around an armored
    OpenPGP message, with Date and Message-ID (pius #152)."""
    control = MIMEPart()
    control.set_content(
        b"Version: 1\n", maintype="application", subtype="pgp-encrypted", cte="7bit"
    )
    control["Content-Description"] = "PGP/MIME version identification"
    encrypted = MIMEPart()
    encrypted.set_content(
        ciphertext,
        maintype="application",
        subtype="octet-stream",
        cte="7bit",
        disposition="inline",
        filename="encrypted.asc",
    )
    encrypted.set_param("name", "encrypted.asc")
    encrypted["Content-Description"] = "OpenPGP encrypted message"

    outer = _addressed(sender, ", ".join(to), subject)
    outer["MIME-Version"] = "1.0"
    outer["Content-Type"] = 'multipart/encrypted; protocol="application/pgp-encrypted"'
    outer.set_payload([control, encrypted])
    return outer


def write_mail(path: Path, message: EmailMessage) -> Path:
    """One mail as an .eml file in the outbox, for `sendmail -t < FILE`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: a crash never leaves half a mail to send.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(message.as_bytes(policy=policy.default))
    os.replace(partial, path)
    return path


# -- sending -------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What deliver() did. `sent` holds the certifications mailed over SMTP,
    `written` the .eml files left in the outbox, `refused` (address, reason)
    for each mail that did not go out (it stays pending and is retried)."""

    sent: list[Certification] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped_no_address: int = 0
    outbox: Path | None = None

    @property
    def summary(self) -> str:
        lines = []
        if self.sent:
            lines.append(f"Sent {len(self.sent)} encrypted certification mail(s).")
        if self.written:
            lines.append(
                f"No SMTP server is configured (KEYPARTY_SMTP_HOST): wrote {len(self.written)} "
                f"encrypted mail(s) as .eml files into {self.outbox}. Send them from a mail "
                "program, e.g. `sendmail -t < FILE` for each file; they are marked delivered."
            )
        for address, reason in self.refused:
            lines.append(f"Not sent to {address}: {reason} (it will be tried again).")
        if self.skipped_no_address:
            lines.append(
                f"{self.skipped_no_address} email certification(s) on user IDs without an "
                "address are never mailed (C3)."
            )
        return "\n".join(lines) or "Nothing to deliver."


def describe(report: DeliveryReport) -> str:
    """What deliver() did, in plain words for the host."""
    return report.summary


def _address_of(certification: Certification) -> str:
    return _one_line((certification.user_id.email if certification.user_id else None) or "?")


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
    ready: list[tuple[Certification, str, EmailMessage]] = []
    for certification in pending(event):
        token = secrets.token_urlsafe(24)
        try:
            message = compose(event, certification, token, base_url, sender)
        except (DeliveryError, GnuPGError) as problem:
            report.refused.append((_address_of(certification), str(problem)))
            continue
        ready.append((certification, token, message))
    if not ready:
        return report

    if settings is None:
        report.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)
        for certification, token, message in ready:
            path = write_mail(outbox / f"{event.id}-{certification.id}.eml", message)
            certification.delivery_token_sha256 = hash_token(token)
            certification.delivered_at = utcnow()
            db.session.commit()
            report.written.append(path)
        return report

    with _connect(settings) as smtp:
        envelope_from = _envelope_address(settings.sender)
        for n, (certification, token, message) in enumerate(ready):
            address = message["To"]
            # The hash is stored before the mail leaves, so the link works at once.
            certification.delivery_token_sha256 = hash_token(token)
            db.session.commit()
            try:
                smtp.send_message(message, from_addr=envelope_from, to_addrs=[address])
            except smtplib.SMTPServerDisconnected:
                for left, _, left_message in ready[n:]:
                    left.delivery_token_sha256 = None
                    report.refused.append(
                        (left_message["To"], "the mail server closed the connection")
                    )
                db.session.commit()
                break
            except (smtplib.SMTPException, OSError) as problem:
                certification.delivery_token_sha256 = None
                db.session.commit()
                report.refused.append((address, _smtp_reason(problem, address)))
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
    return _one_line(str(problem)) or type(problem).__name__


def _decode(text: bytes | str) -> str:
    return _one_line(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)


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
        problem = _one_line(str(error)) or type(error).__name__
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
    name = _one_line(attendee.name)
    event_name = _one_line(event.name)
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
        sender, address, f"Party list of {_one_line(event.name, 120)}: check it before the party"
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
    `written` the .eml files, `refused` (address, reason) for each mail that did
    not go out, `skipped_no_address` the attendees with no address to send to."""

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
                report.refused.append((address, "the mail server closed the connection"))
                break
            except (smtplib.SMTPException, OSError) as problem:
                report.refused.append((address, _smtp_reason(problem, address)))
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
    refused: list[tuple[str, str]] = field(default_factory=list)


def join_letter(event: Event, key: Key, link: str, base_url: str) -> str:
    """The text of a join mail: the link, and why only the key's holder reads it."""
    event_name = _one_line(event.name)
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
    ready: list[tuple[Key, list[str], EmailMessage]] = []
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
        inner = MIMEPart()
        inner["MIME-Version"] = "1.0"
        inner.set_content(letter)
        try:
            with home.locked():
                armored = home.encrypt(letter.encode("utf-8"), key.fingerprint)
                mail = home.encrypt(inner.as_bytes(policy=policy.SMTP), key.fingerprint)
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
        subject = f"Your join link for {_one_line(event.name, 120)}"
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
