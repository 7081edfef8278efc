"""Intake: check uploaded certifications before anything is kept.

Every certification is read in Python (subpackets gpg would drop or hide),
verified by gpg in a scratch home holding only the keys involved, as
registered, and judged by rules.check_certification. Only the accepted
ones, rebuilt as minimal keys (the primary key, the one user ID, its
self-signatures, the certification), are merged into the event keyring.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import selectinload

from keyparty import openpgp
from keyparty import rules
from keyparty.events import event_home
from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import Verification
from keyparty.rules import Refusal
from keyparty.verification import refuse

CERTIFICATION_TYPES = (0x10, 0x11, 0x12, 0x13)


@dataclass
class Outcome:
    """What happened to one uploaded certification."""

    source: str
    status: str  # "accepted", "refused" or "duplicate"
    target: str | None = None
    user_id: str | None = None
    issuer: str | None = None
    context: str | None = None
    rule: str | None = None
    refusal: Refusal | None = None
    certification: Certification | None = None

    @property
    def message(self) -> str:
        return self.refusal.message if self.refusal else self.status


@dataclass
class _Candidate:
    source: str
    block: openpgp.KeyBlock
    user_id: bytes
    signature: openpgp.Signature
    digest: str

    @property
    def minimal(self) -> bytes:
        return openpgp.minimal_key(self.block, self.user_id, [self.signature])


def signing_window(event: Event) -> tuple[datetime, datetime]:
    """D3: from the day of the event to `signing_window_days` after it."""
    day = event.date or (event.frozen_at or event.created_at).date()
    start = datetime.combine(day, time.min, UTC)
    return start, start + timedelta(days=event.signing_window_days + 1)


def notation_names(event: Event) -> tuple[str, str]:
    return f"context@{event.notation_domain}", f"event@{event.notation_domain}"


def take_in(
    event: Event,
    uploads: list[tuple[str, bytes]],
    uploader: Attendee | None = None,
) -> list[Outcome]:
    """Check every certification in `uploads`; keep what the rules accept.

    `uploader` is the signer who sent them (online upload); from files
    (`keyparty intake`) the issuing key names the signer.
    """
    outcomes: list[Outcome] = []
    candidates = _read_uploads(event, uploads, outcomes)
    if not candidates:
        return outcomes
    keys = _keys_involved(event, candidates)
    verified = _unwithdrawn_verifications(event, keys.values())
    home = event_home(event)
    # gpg's check below takes a while: hold no transaction (SQLite snapshot,
    # PostgreSQL locks) through it. What was read stays usable.
    db.session.commit()
    checked = _check_signatures(home, candidates, keys)
    outcomes_now = [_judge(event, c, keys, uploader, checked, verified) for c in candidates]
    outcomes += outcomes_now
    accepted = [c for c, o in zip(candidates, outcomes_now, strict=True) if o.status == "accepted"]
    # Write now (a replay that came meanwhile shows here as a conflict and
    # the request runs again), then merge into the home and commit.
    db.session.flush()
    with home.staged() as stage:
        if accepted:
            stage.import_keys(openpgp.group_by_key([c.minimal for c in accepted]), options=None)
        # Database first, home second (keyparty check repairs a crash between).
        db.session.commit()
        stage.commit()
    return outcomes


def _keys_involved(event: Event, candidates: list[_Candidate]) -> dict[str, Key]:
    """The event's keys that the uploads name (targets and issuers), by
    fingerprint, with their user IDs and attendees: not the whole event."""
    wanted = {c.block.fingerprint for c in candidates} | {
        c.signature.issuer_fingerprint for c in candidates
    }
    wanted.discard(None)
    found = db.session.scalars(
        select(Key)
        .where(Key.event_id == event.id, Key.fingerprint.in_(wanted))
        .options(selectinload(Key.user_ids), joinedload(Key.attendee))
    ).unique()
    return {key.fingerprint: key for key in found}


def _signature_id(key: str | None, user_id: str, issuer: str | None, created) -> tuple:
    return (key, user_id, issuer, created)


def _check_signatures(home, candidates: list[_Candidate], keys: dict[str, Key]) -> dict[str, str]:
    """gpg's verdict ("!" good, "-" bad, …) on each candidate, by its digest.

    Checked in a scratch home holding only the keys involved, as registered
    (self-signatures only), so no certification already accepted can stand in
    for an uploaded one. gpg's listing names a signature by key, user ID,
    issuer and creation second; where two candidates share those (a tampered
    copy beside the real one), each is checked again on its own.
    """

    def involved(batch: list[_Candidate]) -> list[bytes]:
        wanted = {c.block.fingerprint for c in batch} | {
            c.signature.issuer_fingerprint for c in batch
        }
        return [openpgp.dearmor(keys[f].armored.encode()) for f in wanted if f in keys]

    def check(batch: list[_Candidate]) -> dict[tuple, list[str]]:
        with home.scratch() as scratch:
            scratch.import_keys(
                openpgp.group_by_key(involved(batch) + [c.minimal for c in batch]), options=None
            )
            found: dict[tuple, list[str]] = {}
            for r in scratch.certifications({c.block.fingerprint for c in batch} & set(keys)):
                sid = _signature_id(r.key_fingerprint, r.user_id, r.issuer_fingerprint, r.created)
                found.setdefault(sid, []).append(r.validity)
            return found

    def sid_of(c: _Candidate) -> tuple:
        created = datetime.fromtimestamp(c.signature.created or 0, UTC)
        return _signature_id(
            c.block.fingerprint, _text(c.user_id), c.signature.issuer_fingerprint, created
        )

    # gpg keeps only one of two signatures it takes for the same one, and
    # lists them by key, user ID, issuer and second: those that share all four
    # are checked one at a time.
    shared = Counter(sid_of(c) for c in candidates)
    together = [c for c in candidates if shared[sid_of(c)] == 1]
    listing = check(together) if together else {}
    verdicts = {}
    for candidate in candidates:
        found = listing.get(sid_of(candidate), [])
        if shared[sid_of(candidate)] > 1:
            found = check([candidate]).get(sid_of(candidate), [])
        verdicts[candidate.digest] = found[0] if len(found) == 1 else "?"
    return verdicts


def _read_uploads(
    event: Event, uploads: list[tuple[str, bytes]], outcomes: list[Outcome]
) -> list[_Candidate]:
    seen: set[str] = set()
    candidates = []
    for source, data in uploads:
        try:
            blocks = openpgp.read_keys(data)
        except openpgp.KeyMaterialRefused as problem:
            refusal = Refusal("input", str(problem))
            outcomes.append(Outcome(source, "refused", rule="input", refusal=refusal))
            continue
        found = 0
        for block in blocks:
            for entry in openpgp.user_id_signatures(block):
                for signature in entry.signatures:
                    if _is_self_signature(block, signature):
                        continue
                    found += 1
                    digest = hashlib.sha256(signature.raw).hexdigest()
                    if digest in seen or _stored(event, digest):
                        outcomes.append(
                            Outcome(
                                source,
                                "duplicate",
                                target=block.fingerprint,
                                user_id=_text(entry.user_id),
                                issuer=signature.issuer_fingerprint,
                            )
                        )
                        continue
                    seen.add(digest)
                    candidates.append(_Candidate(source, block, entry.user_id, signature, digest))
        if not found:
            refusal = Refusal(
                "input", "This file holds no certification by anyone but the key owner."
            )
            outcomes.append(Outcome(source, "refused", rule="input", refusal=refusal))
    return candidates


def _stored(event: Event, digest: str) -> bool:
    """This signature packet was uploaded before (accepted or refused)."""
    return (
        db.session.scalar(
            select(Certification.id).where(
                Certification.event_id == event.id, Certification.signature_sha256 == digest
            )
        )
        is not None
    )


def _is_self_signature(block: openpgp.KeyBlock, signature: openpgp.Signature) -> bool:
    if signature.issuer_fingerprint:
        return signature.issuer_fingerprint == block.fingerprint
    return bool(block.fingerprint) and signature.issuer_key_id == block.fingerprint[-16:]


def _text(user_id: bytes) -> str:
    return user_id.decode("utf-8", "replace")


def _judge(
    event: Event,
    candidate: _Candidate,
    keys: dict[str, Key],
    uploader: Attendee | None,
    checked: dict,
    verified: dict[tuple[int, int, str], Verification],
) -> Outcome:
    signature = candidate.signature
    target = keys.get(candidate.block.fingerprint or "")
    uid_text = _text(candidate.user_id)
    user_id = next((u for u in target.user_ids if u.text == uid_text), None) if target else None
    issuer = keys.get(signature.issuer_fingerprint or "")
    signer = issuer.attendee if issuer else None
    context_name, event_name = notation_names(event)
    context = _notation(signature, context_name)
    created = datetime.fromtimestamp(signature.created or 0, UTC)
    expires = (
        created + timedelta(seconds=signature.expires_after) if signature.expires_after else None
    )
    verification = (
        verified.get((signer.id, user_id.id, context)) if signer and user_id and context else None
    )
    window_start, window_end = signing_window(event)
    validity = checked.get(candidate.digest)
    facts = rules.CertificationFacts(
        event_id=event.id,
        event_state=event.state,
        valid={"!": True, "-": False}.get(validity),
        issuer_registered=issuer is not None,
        issuer_is_uploader=uploader is None or (signer is not None and signer.id == uploader.id),
        target_on_list=target is not None and target.list_number is not None,
        user_id_on_list=user_id is not None,
        sig_type=signature.sig_type,
        exportable=signature.exportable,
        trust=signature.trust,
        regexps=signature.regexps,
        context=context,
        event_notation=_notation(signature, event_name),
        verified_level=verification.level if verification else None,
        created=created,
        expires=expires,
        window_start=window_start,
        window_end=window_end,
        expiry_cap_days=event.cert_expiry_cap_days,
    )
    refusal = rules.check_certification(facts)
    if signature.sig_type not in CERTIFICATION_TYPES and refusal is None:
        refusal = Refusal("input", "Only certifications of user IDs are taken in here.")
    certification = Certification(
        event_id=event.id,
        signer_id=signer.id if signer else None,
        key_id=target.id if target else None,
        user_id_id=user_id.id if user_id else None,
        verification_id=verification.id if verification else None,
        issuer_fingerprint=signature.issuer_fingerprint,
        target_fingerprint=candidate.block.fingerprint,
        user_id_text=uid_text,
        context=context,
        level=signature.level,
        created=created.replace(tzinfo=None),
        expires=expires.replace(tzinfo=None) if expires else None,
        signature_sha256=candidate.digest,
        status="refused" if refusal else "accepted",
        rule=refusal.rule if refusal else None,
        reason=refusal.message if refusal else None,
        refusal_text=refusal.text if refusal else None,
        refusal_params=refusal.params if refusal else None,
        armored=None if refusal else openpgp.armor(candidate.minimal),
    )
    db.session.add(certification)
    if refusal:
        refuse(event, refusal, commit=False)
    return Outcome(
        candidate.source,
        "refused" if refusal else "accepted",
        target=candidate.block.fingerprint,
        user_id=uid_text,
        issuer=signature.issuer_fingerprint,
        context=context,
        rule=refusal.rule if refusal else None,
        refusal=refusal,
        certification=certification,
    )


def _notation(signature: openpgp.Signature, name: str) -> str | None:
    value = signature.notation(name)
    return value.decode("utf-8", "replace") if value is not None else None


def _unwithdrawn_verifications(
    event: Event, keys: Iterable[Key]
) -> dict[tuple[int, int, str], Verification]:
    """The verifications a certification among these keys could rest on (T2),
    by (signer, user ID, context): those by the keys' owners of the keys'
    user IDs."""
    keys = list(keys)
    signers = {key.attendee_id for key in keys}
    user_ids = {uid.id for key in keys for uid in key.user_ids}
    if not signers or not user_ids:
        return {}
    found = db.session.scalars(
        select(Verification).where(
            Verification.event_id == event.id,
            Verification.withdrawn_at.is_(None),
            Verification.signer_id.in_(signers),
            Verification.user_id_id.in_(user_ids),
        )
    )
    return {(v.signer_id, v.user_id_id, v.context): v for v in found}
