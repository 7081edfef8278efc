"""Intake: check uploaded certifications before anything is kept.

Every certification is read in Python (subpackets gpg would drop or hide),
verified by gpg in a scratch home holding only the keys involved, as
registered, and judged by rules.check_certification. Only the accepted
ones, rebuilt as minimal keys (the primary key, the one user ID, its
self-signatures, the certification), are merged into the event keyring.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
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

ALREADY_ACCEPTED = "already accepted"
# Uploads judged together: one gpg check and one merge per batch (take_in).
BATCH = 2000


@dataclass
class Outcome:
    """What happened to one upload (one certification, P2)."""

    source: str
    status: str  # "accepted", "refused" or "already accepted"
    target: str | None = None
    user_id: str | None = None
    issuer: str | None = None
    context: str | None = None
    rule: str | None = None
    refusal: Refusal | None = None
    certification: Certification | None = None

    @property
    def message(self) -> str:
        if self.refusal:
            return self.refusal.message
        if self.status == ALREADY_ACCEPTED:
            return (
                "Already accepted: this signer's certification of this user ID in this "
                "context was taken in before; nothing changed."
            )
        return self.status


@dataclass
class _Candidate:
    source: str
    block: openpgp.KeyBlock
    user_id: bytes
    signature: openpgp.Signature
    digest: str

    @functools.cached_property
    def minimal(self) -> bytes:
        return openpgp.minimal_key(self.block, self.user_id, [self.signature])

    def outcome(self, status: str) -> Outcome:
        return Outcome(
            self.source,
            status,
            target=self.block.fingerprint,
            user_id=_text(self.user_id),
            issuer=self.signature.issuer_fingerprint,
        )


def signing_window(event: Event) -> tuple[datetime, datetime]:
    """D3: (start, end) of the event's signing window, aware UTC, both inclusive.

    It starts when the host took the `start-signing` step. An event that
    reached signing before keyparty recorded that moment has no
    `signing_started_at`: its window starts, as it did then, at 00:00 UTC of
    the event's day (else of the freeze), so nothing accepted under the old
    window becomes refusable; its certifications were checked by that rule.
    """
    if event.signing_started_at is not None:
        started = event.signing_started_at.replace(tzinfo=UTC)
    else:
        day = event.date or (event.frozen_at or event.created_at).date()
        started = datetime.combine(day, time.min, UTC)
    return rules.signing_window(started, event.signing_window_days)


def notation_names(event: Event) -> tuple[str, str]:
    return f"context@{event.notation_domain}", f"event@{event.notation_domain}"


def take_in(
    event: Event,
    uploads: list[tuple[str, bytes]],
    uploader: Attendee | None = None,
) -> list[Outcome]:
    """Judge each upload, keep what the rules accept; one Outcome per upload.

    Each upload must hold exactly one certification of one user ID (P2).
    `uploader` is the signer who sent them (online upload); from files
    (`keyparty intake`) the issuing key names the signer. A refusal binds no
    one else: a refused certification uploaded again is judged again; one
    accepted before (the same packet, or another by the same signer for the
    same user ID and context) is "already accepted" and changes nothing.

    Uploads are judged and stored BATCH at a time, so that no gpg call grows
    with the size of one `keyparty intake` (50 000 certifications checked in
    one gpg call ran past its timeout); a copy in a later batch of one
    accepted in an earlier batch is "already accepted", as across two runs.
    """
    outcomes: list[Outcome] = []
    for start in range(0, len(uploads), BATCH):
        batch = uploads[start : start + BATCH]
        try:
            outcomes += _take_in(event, batch, uploader)
        except IntegrityError:
            # Another process accepted the same certification between our look
            # at what was accepted and our commit (the partial unique indexes
            # said so): judge again, now seeing it. Nothing of the first try
            # was kept.
            db.session.rollback()
            outcomes += _take_in(event, batch, uploader)
    return outcomes


def _take_in(
    event: Event, uploads: list[tuple[str, bytes]], uploader: Attendee | None
) -> list[Outcome]:
    outcomes: dict[int, Outcome] = {}
    candidates = _read_uploads(event, uploads, outcomes)
    accepted_digests, accepted_contexts = _accepted(event, candidates)
    fresh: list[tuple[int, _Candidate]] = []
    repeats: list[tuple[int, _Candidate, int]] = []  # the same packet twice in one batch
    first_of: dict[str, int] = {}
    # Only its own signer hears "already accepted"; anyone else's copy is judged
    # (and refused, T2) without learning whether it was accepted (P5).
    own = {k.fingerprint for k in uploader.keys} if uploader else None
    for index, candidate in candidates:
        mine = own is None or candidate.signature.issuer_fingerprint in own
        if mine and candidate.digest in accepted_digests:
            outcomes[index] = candidate.outcome(ALREADY_ACCEPTED)
        elif candidate.digest in first_of:
            repeats.append((index, candidate, first_of[candidate.digest]))
        else:
            first_of[candidate.digest] = index
            fresh.append((index, candidate))
    keys = _keys_involved(event, [c for _, c in fresh])
    verified = _verifications(event, keys.values())
    home = event_home(event)
    # gpg's check below takes a while: hold no transaction (SQLite snapshot,
    # PostgreSQL locks) through it. What was read stays usable.
    db.session.commit()
    checked = _check_signatures(home, [c for _, c in fresh], keys) if fresh else {}
    accepted = []
    for index, candidate in fresh:
        outcome = _judge(event, candidate, keys, uploader, checked, verified)
        record = outcome.certification
        slot = (record.issuer_fingerprint, record.user_id_id, record.context)
        if outcome.status == "accepted" and slot in accepted_contexts:
            outcome = candidate.outcome(ALREADY_ACCEPTED)
        else:
            db.session.add(record)
            if outcome.refusal:
                refuse(event, outcome.refusal, commit=False)
            else:
                accepted_contexts.add(slot)
                accepted.append(candidate)
        outcomes[index] = outcome
    for index, candidate, first in repeats:
        earlier = outcomes[first]
        outcomes[index] = (
            candidate.outcome(ALREADY_ACCEPTED)
            if earlier.status == "accepted"
            else replace(earlier, source=candidate.source, certification=None)
        )
    # Write now (an acceptance elsewhere meanwhile shows here as a conflict:
    # take_in judges again), then merge into the home and commit.
    db.session.flush()
    if accepted:
        with home.staged() as stage:
            stage.import_blocks(openpgp.group_by_key([c.minimal for c in accepted]), options=None)
            # Database first, home second (keyparty check repairs a crash between).
            db.session.commit()
            stage.commit()
    else:
        db.session.commit()
    return [outcomes[i] for i in sorted(outcomes)]


def _accepted(
    event: Event, candidates: list[tuple[int, _Candidate]]
) -> tuple[set[str], set[tuple]]:
    """What intake accepted before, among what these uploads could repeat:
    signature digests, and (issuer, user ID, context) slots of their issuers."""
    digests = {c.digest for _, c in candidates}
    issuers = {c.signature.issuer_fingerprint for _, c in candidates} - {None}
    if not digests:
        return set(), set()
    accepted = (Certification.event_id == event.id, Certification.status == "accepted")
    seen = set(
        db.session.scalars(
            select(Certification.signature_sha256).where(
                *accepted, Certification.signature_sha256.in_(digests)
            )
        )
    )
    slots = db.session.execute(
        select(
            Certification.issuer_fingerprint, Certification.user_id_id, Certification.context
        ).where(*accepted, Certification.issuer_fingerprint.in_(issuers))
    ).all()
    return seen, {tuple(slot) for slot in slots}


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
            scratch.import_blocks(
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
            c.block.fingerprint,
            c.user_id.decode("utf-8", "surrogateescape"),  # as gpg's listing is read
            c.signature.issuer_fingerprint,
            created,
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
    event: Event, uploads: list[tuple[str, bytes]], outcomes: dict[int, Outcome]
) -> list[tuple[int, _Candidate]]:
    """The one certification of each upload, by upload index (P2); refusals into `outcomes`."""
    candidates = []
    for index, (source, data) in enumerate(uploads):
        try:
            blocks = openpgp.read_keys(data, openpgp.CERTIFICATION_LABELS)
        except openpgp.KeyMaterialRefused as problem:
            refusal = Refusal("input", str(problem))
            outcomes[index] = Outcome(source, "refused", rule="input", refusal=refusal)
            continue
        found = [
            (block, entry.user_id, signature)
            for block in blocks
            for entry in openpgp.user_id_signatures(block)
            for signature in entry.signatures
            if not _is_self_signature(block, signature)
        ]
        if not found:
            refusal = Refusal(
                "input", "This file holds no certification by anyone but the key owner."
            )
        elif len(found) > 1 or len(blocks) > 1:
            # P2: one decision about one user ID per upload; nothing is half-read.
            refusal = Refusal(
                "P2",
                "This upload holds {certifications} certifications on {keys} key(s); keyparty "
                "takes exactly one certification of one user ID per upload, so nothing in it "
                "was kept. Upload one certification per request (`keyparty sign` writes and "
                "sends one file per certification).",
                {"certifications": len(found), "keys": len(blocks)},
            )
            refuse(event, refusal, commit=False)
        else:
            ((block, user_id, signature),) = found
            digest = hashlib.sha256(signature.raw).hexdigest()
            candidates.append((index, _Candidate(source, block, user_id, signature, digest)))
            continue
        outcomes[index] = Outcome(source, "refused", rule=refusal.rule, refusal=refusal)
    return candidates


def _is_self_signature(block: openpgp.KeyBlock, signature: openpgp.Signature) -> bool:
    if signature.issuer_fingerprint:
        return signature.issuer_fingerprint == block.fingerprint
    return bool(block.fingerprint) and signature.issuer_key_id == block.fingerprint[-16:]


def _text(user_id: bytes) -> str:
    """A user ID for display and the record; never for matching (see _judge)."""
    return user_id.decode("utf-8", "replace")


def _judge(
    event: Event,
    candidate: _Candidate,
    keys: dict[str, Key],
    uploader: Attendee | None,
    checked: dict,
    verified: dict[tuple[int, int, str], Verification],
) -> Outcome:
    """The rules' verdict on one certification, with its record (not yet added)."""
    signature = candidate.signature
    target = keys.get(candidate.block.fingerprint or "")
    uid_text = _text(candidate.user_id)
    # Matched on the exact bytes: a user ID that is not UTF-8 must never pass for a
    # registered one that holds U+FFFD.
    user_id = (
        next((u for u in target.user_ids if u.text.encode() == candidate.user_id), None)
        if target
        else None
    )
    issuer = keys.get(signature.issuer_fingerprint or "")
    signer = issuer.attendee if issuer else None
    context_name, event_name = notation_names(event)
    contexts = tuple(
        value.decode("utf-8", "replace")
        for name, value, _ in signature.notations
        if name == context_name
    )
    context = contexts[0] if contexts else None
    created = datetime.fromtimestamp(signature.created or 0, UTC)
    expires = (
        created + timedelta(seconds=signature.expires_after) if signature.expires_after else None
    )
    verification = (
        verified.get((signer.id, user_id.id, context)) if signer and user_id and context else None
    )
    window_start, window_end = signing_window(event)
    facts = rules.CertificationFacts(
        event_id=event.id,
        event_state=event.state,
        valid={"!": True, "-": False}.get(checked.get(candidate.digest)),
        issuer_registered=issuer is not None,
        issuer_is_uploader=uploader is None or (signer is not None and signer.id == uploader.id),
        target_on_list=target is not None and target.list_number is not None,
        user_id_on_list=user_id is not None,
        sig_type=signature.sig_type,
        hash_algorithm=signature.hash_algorithm,
        exportable=signature.exportable,
        trust=signature.trust,
        regexps=signature.regexps,
        contexts=contexts,
        event_contexts=tuple(event.contexts.split(",")),
        event_notation=_notation(signature, event_name),
        verified_level=verification.level
        if verification and not verification.withdrawn_at
        else None,
        withdrawn=verification is not None and verification.withdrawn_at is not None,
        created=created,
        expires=expires,
        window_start=window_start,
        window_end=window_end,
        expiry_cap_days=event.cert_expiry_cap_days,
    )
    refusal = rules.check_certification(facts)
    # Who is told: the uploader online (an upload by someone else changes
    # nothing for the issuer), the issuing key's attendee for files.
    told = uploader or signer
    certification = Certification(
        event_id=event.id,
        signer_id=told.id if told else None,
        key_id=target.id if target else None,
        user_id_id=user_id.id if user_id else None,
        verification_id=verification.id if verification and not refusal else None,
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
    outcome = candidate.outcome("refused" if refusal else "accepted")
    outcome.context = context
    outcome.rule = refusal.rule if refusal else None
    outcome.refusal = refusal
    outcome.certification = certification
    return outcome


def _notation(signature: openpgp.Signature, name: str) -> str | None:
    value = signature.notation(name)
    return value.decode("utf-8", "replace") if value is not None else None


def _verifications(event: Event, keys: Iterable[Key]) -> dict[tuple[int, int, str], Verification]:
    """What a certification among these keys could rest on (T2), by (signer,
    user ID, context), of the keys' owners and the keys' user IDs: the
    unwithdrawn verification where there is one, else a withdrawn one (P6)."""
    keys = list(keys)
    signers = {key.attendee_id for key in keys}
    user_ids = {uid.id for key in keys for uid in key.user_ids}
    if not signers or not user_ids:
        return {}
    found = db.session.scalars(
        select(Verification).where(
            Verification.event_id == event.id,
            Verification.signer_id.in_(signers),
            Verification.user_id_id.in_(user_ids),
        )
    )
    chosen: dict[tuple[int, int, str], Verification] = {}
    for v in found:
        slot = (v.signer_id, v.user_id_id, v.context)
        if slot not in chosen or chosen[slot].withdrawn_at is not None:
            chosen[slot] = v
    return chosen
