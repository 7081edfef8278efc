"""Verifications at the event: the signer's own decisions, one user ID at a time.

The rules decide (keyparty.rules); this module gathers the facts they need
from the database, stores the outcome, and records every refusal with its
rule id for the event report.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from keyparty import rules
from keyparty import storage
from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import RefusalRecord
from keyparty.models import UserID
from keyparty.models import Verification
from keyparty.rules import Refusal


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def event_contexts(event: Event) -> tuple[str, ...]:
    return tuple(c.strip() for c in event.contexts.split(",") if c.strip())


def contexts_offered(event: Event, user_id: UserID) -> tuple[str, ...]:
    """The event's contexts that can apply to this user ID: `email` only for a user ID
    with an address on a key that can receive encrypted mail (C3)."""
    can_mail = user_id.email is not None and user_id.key.can_encrypt
    return tuple(c for c in event_contexts(event) if c != "email" or can_mail)


def event_pace(event: Event) -> rules.Pace:
    return rules.Pace(
        event.pace_min_gap_seconds, event.pace_window_seconds, event.pace_max_in_window
    )


def refuse(event: Event, refusal: Refusal, commit: bool = True) -> Refusal:
    """Store a refusal for the event-wide report, and hand it back."""
    db.session.add(RefusalRecord(event_id=event.id, rule=refusal.rule))
    if commit:
        db.session.commit()
    return refusal


def confirm_entry(attendee: Attendee, now: datetime) -> Refusal | None:
    """T4: the attendee says their entry and the list digest are right."""
    storage.begin_writing()
    refusal = rules.check_entry_confirmation(attendee.event.state)
    if refusal:
        return refuse(attendee.event, refusal)
    if attendee.entry_confirmed_at is None:
        attendee.entry_confirmed_at = _naive(now)
        db.session.commit()
    return None


def active_verifications(signer: Attendee, key: Key | None = None) -> list[Verification]:
    """The signer's own unwithdrawn verifications (of one key, if given), with
    their user IDs and keys loaded in the same query."""
    query = (
        select(Verification)
        .options(joinedload(Verification.user_id).joinedload(UserID.key))
        .where(Verification.signer_id == signer.id, Verification.withdrawn_at.is_(None))
        .order_by(Verification.recorded_at)
    )
    if key is not None:
        query = query.join(UserID, Verification.user_id_id == UserID.id).where(
            UserID.key_id == key.id
        )
    return db.session.scalars(query).unique().all()


def active_verifications_of_key(signer: Attendee, key: Key) -> list[Verification]:
    """The signer's own unwithdrawn verifications of one key's user IDs, oldest
    first, without their user IDs and keys loaded (the key page has them)."""
    return db.session.scalars(_OF_KEY, {"signer_id": signer.id, "key_id": key.id}).all()


# The statements of the phone's paths, built once with bound parameters:
# building one cost about as much CPU as running it.
_OF_KEY = (
    select(Verification)
    .join(UserID, Verification.user_id_id == UserID.id)
    .where(
        Verification.signer_id == bindparam("signer_id"),
        Verification.withdrawn_at.is_(None),
        UserID.key_id == bindparam("key_id"),
    )
    .order_by(Verification.recorded_at)
)
_LOCK_SIGNER = select(Attendee.id).where(Attendee.id == bindparam("signer_id")).with_for_update()
_SAME = select(Verification).where(
    Verification.signer_id == bindparam("signer_id"),
    Verification.user_id_id == bindparam("user_id_id"),
    Verification.context == bindparam("context"),
    Verification.withdrawn_at.is_(None),
)
_FIRST = func.min(Verification.recorded_at)
_LATELY = (
    select(Key.fingerprint, _FIRST)
    .join(UserID, Verification.user_id_id == UserID.id)
    .join(Key, UserID.key_id == Key.id)
    .where(Verification.signer_id == bindparam("signer_id"), Verification.withdrawn_at.is_(None))
    .group_by(Key.fingerprint)
    .having(or_(bindparam("since") <= _FIRST, Key.fingerprint == bindparam("fingerprint")))
)


def record(
    signer: Attendee,
    acting: Attendee | None,
    user_id: UserID,
    context: str,
    basis: str,
    now: datetime,
) -> tuple[Verification | None, Refusal | None]:
    """Record one verification of one user ID in one context, if the rules allow it.

    Reads a bounded number of rows whatever the signer did before: this user
    ID's verification in this context, and for P4 the people (keys) the
    signer verified first within the pace window. The signer's row is locked
    first (PostgreSQL), so two requests of one signer on two server
    processes are judged one after the other.
    """
    key: Key = user_id.key
    event = signer.event
    storage.begin_writing()
    db.session.execute(_LOCK_SIGNER, {"signer_id": signer.id})
    same = db.session.scalar(
        _SAME, {"signer_id": signer.id, "user_id_id": user_id.id, "context": context}
    )
    if same is not None and same.basis == basis:
        return same, None  # a second tap changes nothing
    pace = event_pace(event)
    attempt = rules.VerificationAttempt(
        event_state=event.state,
        signer_id=signer.id,
        acting_id=acting.id if acting else None,
        owner_id=key.attendee_id,
        owner_confirmed=key.attendee.entry_confirmed_at is not None,
        key_fingerprint=key.fingerprint,
        user_id_on_key=key.event_id == event.id and key.list_number is not None,
        context=context,
        event_contexts=event_contexts(event),
        basis=basis,
        earlier=_people_verified_lately(signer, key, now, pace),
        now=now,
        pace=pace,
        user_id_has_email=user_id.email is not None,
        key_can_encrypt=key.can_encrypt,
    )
    refusal = rules.check_verification(attempt)
    if refusal:
        return None, refuse(event, refusal)
    if same is not None:
        same.withdrawn_at = _naive(now)  # the new basis replaces the old one
    verification = Verification(
        event_id=event.id,
        signer_id=signer.id,
        user_id_id=user_id.id,
        context=context,
        basis=basis,
        level=rules.certification_level(basis),
        recorded_at=_naive(now),
    )
    db.session.add(verification)
    db.session.commit()
    return verification, None


def _people_verified_lately(
    signer: Attendee, key: Key, now: datetime, pace: rules.Pace
) -> tuple[tuple[str, datetime], ...]:
    """What rules.pace_wait needs: (fingerprint, first verified) for each key the
    signer first verified within the pace window or gap, and for `key` itself
    if they verified it at any time (a further user ID is never rushed)."""
    since = _naive(now) - timedelta(seconds=max(pace.window_seconds, pace.min_gap_seconds))
    rows = db.session.execute(
        _LATELY, {"signer_id": signer.id, "since": since, "fingerprint": key.fingerprint}
    ).all()
    return tuple((fingerprint, _aware(recorded)) for fingerprint, recorded in rows)


def withdraw(verification: Verification, acting: Attendee | None, now: datetime) -> Refusal | None:
    """P6: withdraw until signing starts; only its signer can (T2)."""
    storage.begin_writing()
    event = verification.signer.event
    refusal = rules.check_withdrawal(
        event.state, verification.signer_id, acting.id if acting else None
    )
    if refusal:
        return refuse(event, refusal)
    if verification.withdrawn_at is None:
        verification.withdrawn_at = _naive(now)
        db.session.commit()
    return None


def totals(event: Event) -> dict[str, int | dict[str, int]]:
    """Event-wide totals only (P5): no count per attendee, anywhere."""

    def count(*where) -> int:
        return db.session.scalar(select(func.count()).select_from(Verification).where(*where))

    in_event = Verification.event_id == event.id
    refusals = db.session.execute(
        select(RefusalRecord.rule, func.count())
        .where(RefusalRecord.event_id == event.id)
        .group_by(RefusalRecord.rule)
        .order_by(RefusalRecord.rule)
    ).all()
    return {
        "verifications": count(in_event, Verification.withdrawn_at.is_(None)),
        "withdrawn": count(in_event, Verification.withdrawn_at.is_not(None)),
        "confirmed entries": db.session.scalar(
            select(func.count())
            .select_from(Attendee)
            .where(Attendee.event_id == event.id, Attendee.entry_confirmed_at.is_not(None))
        ),
        "refusals": dict(refusals),
    }
