"""The record of an event: events, attendees, their keys and user IDs.

The database is the record; an event's GnuPG home is a working copy rebuilt
from the armored keys stored here.
"""

from __future__ import annotations

from datetime import UTC
from datetime import date
from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import Column
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy import true
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from keyparty.extensions import db
from keyparty.rules import Refusal

# Releases before the Alembic migrations read the version here and refuse any
# but their own (1); keyparty.migrations keeps it at 2 so they still refuse a
# database that a later keyparty upgraded.
schema_marker = Table("keyparty_schema", db.metadata, Column("version", Integer, nullable=False))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Event(db.Model):
    __tablename__ = "event"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    date: Mapped[date | None]
    state: Mapped[str] = mapped_column(String(20), default="registration")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    frozen_at: Mapped[datetime | None]
    # D3: when the host took the `start-signing` step; the signing window
    # starts here. Events that reached signing before this column existed
    # have None: see intake.signing_window for their fallback.
    signing_started_at: Mapped[datetime | None]
    # The exact party list file, as frozen; its digests are of these bytes.
    # Loaded only when read (deferred): a thousand entries are a few hundred
    # KB, and every phone request loads its event.
    partylist: Mapped[str | None] = mapped_column(Text, deferred=True)
    partylist_sha256: Mapped[str | None] = mapped_column(String(64))
    partylist_sha512: Mapped[str | None] = mapped_column(String(128))
    # C1: the contexts a certification at this event can carry, comma-separated.
    contexts: Mapped[str] = mapped_column(String(200), default="identity,email,pseudonym")
    # P4: how fast one signer may verify people.
    pace_min_gap_seconds: Mapped[int] = mapped_column(default=20)
    pace_window_seconds: Mapped[int] = mapped_column(default=300)
    pace_max_in_window: Mapped[int] = mapped_column(default=10)
    # D1: certifications expire; the default and the longest allowed.
    cert_expiry_days: Mapped[int] = mapped_column(default=365)
    cert_expiry_cap_days: Mapped[int] = mapped_column(default=730)
    # D3: certifications are made within this many days after the event.
    signing_window_days: Mapped[int] = mapped_column(default=30)
    # C1: notations are written as context@DOMAIN and event@DOMAIN.
    notation_domain: Mapped[str] = mapped_column(String(100), default="keyparty.org")
    policy_url: Mapped[str | None] = mapped_column(String(500))
    # The host chose to offer the frozen list on the public event page (as FOSDEM does).
    publish_list: Mapped[bool] = mapped_column(default=False)
    # Bumped with every change to the event's keys, and to what owners
    # accepted: each machine's GnuPG homes (working copies) carry the
    # generation they were built at and are rebuilt when it differs.
    keys_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    published_generation: Mapped[int] = mapped_column(default=0, server_default="0")

    attendees: Mapped[list[Attendee]] = relationship(
        back_populates="event", cascade="all, delete-orphan", order_by="Attendee.id"
    )
    keys: Mapped[list[Key]] = relationship(
        back_populates="event", cascade="all, delete-orphan", order_by="Key.id"
    )


class Attendee(db.Model):
    __tablename__ = "attendee"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    # Only a hash of the join token is kept: a database leak joins nobody.
    join_token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    joined_at: Mapped[datetime | None]
    # O2: a phone's session names this random secret (hashed here); a new one
    # (join, re-join, proof, relink) ends every session opened before.
    session_secret_sha256: Mapped[str | None] = mapped_column(String(64))
    # O2: when the key's holder proved possession (a challenge answered, or a
    # join link redeemed that reached them encrypted or from the host's hand).
    proven_at: Mapped[datetime | None]
    # `keyparty sign` authenticates with this (hashed; shown once on the phone).
    signing_token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    # T4: the attendee confirmed their own entry and the list digest.
    entry_confirmed_at: Mapped[datetime | None]
    # The language of their phone pages ("en", "ja"), for mails to them; None: unknown.
    language: Mapped[str | None] = mapped_column(String(5))
    # When the frozen list was mailed to this attendee (`keyparty mail-list`).
    list_mailed_at: Mapped[datetime | None]

    event: Mapped[Event] = relationship(back_populates="attendees")
    keys: Mapped[list[Key]] = relationship(back_populates="attendee", order_by="Key.id")


class Key(db.Model):
    __tablename__ = "key"
    __table_args__ = (UniqueConstraint("event_id", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    attendee_id: Mapped[int] = mapped_column(
        ForeignKey("attendee.id", ondelete="CASCADE"), index=True
    )
    fingerprint: Mapped[str] = mapped_column(String(40))
    algorithm: Mapped[str] = mapped_column(String(40))
    created: Mapped[datetime]
    expires: Mapped[datetime | None]
    armored: Mapped[str] = mapped_column(Text)
    # A live subkey (or the primary) can encrypt: mail can reach the owner (C3).
    can_encrypt: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Place on the frozen party list, 1-based; None until the freeze.
    list_number: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    event: Mapped[Event] = relationship(back_populates="keys")
    attendee: Mapped[Attendee] = relationship(back_populates="keys")
    user_ids: Mapped[list[UserID]] = relationship(
        back_populates="key", cascade="all, delete-orphan", order_by="UserID.position"
    )


class UserID(db.Model):
    __tablename__ = "user_id"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("key.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(320))
    # GnuPG's hash of the user ID packet: names it exactly, whatever it holds.
    uid_hash: Mapped[str] = mapped_column(String(40))

    key: Mapped[Key] = relationship(back_populates="user_ids")


class Challenge(db.Model):
    """O2: a proof-of-possession challenge for one key, single use, short-lived.

    Only hashes of its secrets are kept: the one-time code (typed on the page)
    and the link token (in the encrypted message). `text` is the short text
    to sign, which holds a nonce and is no secret.
    """

    __tablename__ = "challenge"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Names the challenge in its page's address; knowing it answers nothing.
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("key.id", ondelete="CASCADE"), index=True)
    # "register": proven on the registration page, a join link is given;
    # "rejoin": proven on the phone itself, which gets the session.
    purpose: Mapped[str] = mapped_column(String(20))
    code_sha256: Mapped[str | None] = mapped_column(String(64))
    link_token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The armored message encrypted to the key; None when it has no usable
    # encryption subkey (then only the signing challenge is offered).
    message: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # The name and email the registrant gave: the entry's once proven.
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    failed_attempts: Mapped[int] = mapped_column(default=0)

    key: Mapped[Key] = relationship()


class Verification(db.Model):
    """One signer's decision about one user ID in one context (P2).

    Private to its signer (P5): no page lists who verified a key.
    """

    __tablename__ = "verification"
    # P4 reads a signer's last few verifications; intake looks one up by user ID.
    __table_args__ = (Index("ix_verification_signer_recorded", "signer_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    signer_id: Mapped[int] = mapped_column(
        ForeignKey("attendee.id", ondelete="CASCADE"), index=True
    )
    user_id_id: Mapped[int] = mapped_column(
        ForeignKey("user_id.id", ondelete="CASCADE"), index=True
    )
    context: Mapped[str] = mapped_column(String(40))
    basis: Mapped[str] = mapped_column(String(40))
    level: Mapped[int]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None]

    signer: Mapped[Attendee] = relationship()
    user_id: Mapped[UserID] = relationship()


class RefusalRecord(db.Model):
    """A refusal under a rule, kept for the event report: which rule, when.

    Deliberately not who (P5).
    """

    __tablename__ = "refusal"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _unique_when_accepted(name: str, *columns: str) -> Index:
    """Unique among an event's accepted certifications only (a partial index)."""
    accepted = text("status = 'accepted'")
    return Index(
        name, "event_id", *columns, unique=True, sqlite_where=accepted, postgresql_where=accepted
    )


class Certification(db.Model):
    """One judgement of an uploaded certification: what intake decided.

    Accepted ones hold the minimal key (primary key, the user ID, its
    self-signatures and this certification) that was merged into the event
    keyring; refused ones keep the rule id and the reason. A refusal binds no
    one else: the same signature uploaded again is judged again (a new row),
    so only accepted rows are unique, per signature packet and per signer,
    user ID and context.
    """

    __tablename__ = "certification"
    __table_args__ = (
        _unique_when_accepted("uq_certification_accepted_signature", "signature_sha256"),
        _unique_when_accepted(
            "uq_certification_accepted_context", "issuer_fingerprint", "user_id_id", "context"
        ),
        # The report (keyparty.report): counts by state, what expires soon and
        # the signer -> key pairs are read from this index alone, never from
        # the rows with their armored keys (50 000 of them at a big event).
        Index(
            "ix_certification_report",
            "event_id",
            "status",
            "owner_decision",
            "expires",
            "issuer_fingerprint",
            "target_fingerprint",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    # Who is told the outcome on their phone page: the uploader for online
    # uploads (an upload by someone else changes nothing for the issuer), the
    # issuing key's attendee for files given to `keyparty intake`. For
    # accepted certifications both are the same person.
    signer_id: Mapped[int | None] = mapped_column(
        ForeignKey("attendee.id", ondelete="CASCADE"), index=True
    )
    key_id: Mapped[int | None] = mapped_column(ForeignKey("key.id", ondelete="CASCADE"), index=True)
    user_id_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_id.id", ondelete="CASCADE"), index=True
    )
    verification_id: Mapped[int | None] = mapped_column(ForeignKey("verification.id"), index=True)
    issuer_fingerprint: Mapped[str | None] = mapped_column(String(40))
    target_fingerprint: Mapped[str | None] = mapped_column(String(40))
    user_id_text: Mapped[str | None] = mapped_column(Text)
    context: Mapped[str | None] = mapped_column(String(40))
    level: Mapped[int | None]
    created: Mapped[datetime | None]
    expires: Mapped[datetime | None]
    # Identifies the signature packet: a replay of an accepted one changes nothing.
    signature_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    rule: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    # The refusal's sentence and values, so a phone can show it translated.
    refusal_text: Mapped[str | None] = mapped_column(Text)
    refusal_params: Mapped[dict | None] = mapped_column(JSON)
    armored: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # O1: None until the key owner decides "accepted" or "declined".
    owner_decision: Mapped[str | None] = mapped_column(String(20))
    decided_at: Mapped[datetime | None]
    # C3: an email certification goes out encrypted, with a one-time link
    # (only its hash is kept); following it proves the address and accepts.
    delivery_token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    delivered_at: Mapped[datetime | None]
    # A mail that can never go out (no encryption key, no SMTPUTF8 for the
    # address, a 5xx answer): marked once with why, never retried.
    delivery_failed_at: Mapped[datetime | None]
    delivery_error: Mapped[str | None] = mapped_column(Text)

    signer: Mapped[Attendee | None] = relationship()
    key: Mapped[Key | None] = relationship()

    @property
    def refusal(self) -> Refusal | None:
        if self.status != "refused":
            return None
        return Refusal(
            self.rule or "", self.refusal_text or self.reason or "", self.refusal_params or {}
        )

    user_id: Mapped[UserID | None] = relationship()


class SigningPairing(db.Model):
    """A computer asking to sign as an attendee (RFC 8628 device authorization).

    `keyparty sign URL` without a token asks for a pairing and shows its
    short code; the attendee's phone page shows the same code with allow and
    deny; on allow the computer's next poll receives a fresh signing token.
    Kept in the database so that it holds across server processes.
    """

    __tablename__ = "signing_pairing"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    attendee_id: Mapped[int] = mapped_column(
        ForeignKey("attendee.id", ondelete="CASCADE"), index=True
    )
    # The code shown on both screens, 8 characters without the dash.
    user_code: Mapped[str] = mapped_column(String(8))
    # The computer's secret for polling (RFC 8628 device_code), hashed.
    device_code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # pending → allowed → claimed, or pending → denied.
    status: Mapped[str] = mapped_column(String(10), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    interval_seconds: Mapped[int] = mapped_column(default=5)
    last_polled_at: Mapped[datetime | None]


class RateLimit(db.Model):
    """A fixed-window request counter per key (client address or attendee),
    shared by every server process (keyparty.ratelimit)."""

    __tablename__ = "rate_limit"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Seconds since the epoch when the current window opened.
    window_start: Mapped[float]
    hits: Mapped[int]


class ReportDrawing(db.Model):
    """The report's picture of an event's published certifications and the
    figures of that graph (keyparty.report), drawn when they change and kept
    here, where every server process and machine finds it.

    `digest` names the Graphviz engine and DOT source it was drawn from: the
    page shows it as current only while the published graph gives the same
    digest. `published_generation` is the event's when the graph was read, so
    an older drawing finishing late never replaces a newer one.
    """

    __tablename__ = "report_drawing"

    event_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("event.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(64))
    published_generation: Mapped[int]
    figures: Mapped[dict] = mapped_column(JSON)
    # Loaded only when read: a thousand keys' picture is megabytes.
    svg: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    drawn_at: Mapped[datetime] = mapped_column(default=utcnow)
