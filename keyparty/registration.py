"""Registration: turn key data from strangers into attendees on an event.

Every input passes three gates before anything is stored: the packet reader
(no secret keys, no compressed packets, sane sizes), gpg in a staged copy of
the event's home (self-signatures only), and the key checks. Nothing of a
refused input reaches the database or the event's GnuPG home.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from email.utils import parseaddr

from flask import current_app
from flask import has_app_context
from sqlalchemy import func
from sqlalchemy import select

from keyparty import homes
from keyparty import keycheck
from keyparty import openpgp
from keyparty import publishing
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.gpg import KeyRecord
from keyparty.gpg import StagedHome
from keyparty.gpg import uid_hash
from keyparty.models import Attendee
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import UserID
from keyparty.rules import check_key_change
from keyparty.translatable import N_


@dataclass(frozen=True)
class Signup:
    """A row of the host's sign-up sheet: who said they would bring which key."""

    name: str
    email: str | None
    fingerprint: str


# Warnings about an accepted key, shaped like a refusal (translated the same way).
NO_ENCRYPTION = keycheck.NO_ENCRYPTION
PHOTO_DROPPED = keycheck.PHOTO_DROPPED


@dataclass
class Accepted:
    key: Key
    # Shown once: only its hash is stored. None when an existing key was updated.
    join_token: str | None
    updated: bool
    warnings: list[keycheck.KeyRefusal] = field(default_factory=list)


@dataclass
class Rejected:
    """An input or key that was not registered, and why.

    `text` is a sentence with {placeholders} filled from `params`, so the web page can
    translate it before filling it in; `message` is the English sentence.
    """

    source: str
    fingerprint: str | None
    problem: str
    text: str
    params: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        return self.text.format(**self.params) if self.params else self.text


@dataclass
class RegistrationResult:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class _Candidate:
    source: str
    block: openpgp.KeyBlock
    photo_dropped: bool = False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_fingerprint(text: str) -> str:
    return "".join(text.split()).upper().removeprefix("0X")


def register_keys(
    event: Event,
    inputs: list[tuple[str, bytes]],
    home: GnuPGHome,
    *,
    one_key: bool = False,
    name: str | None = None,
    email: str | None = None,
    signups: dict[str, Signup] | None = None,
    now: datetime | None = None,
    issue_links: bool = True,
) -> RegistrationResult:
    """Register the keys in `inputs` (label, bytes) on `event`.

    `one_key` is the web form: exactly one key per registration, named by
    the person (`name`, `email`). From the command line a keyring may hold
    many keys; names come from `signups` or from each key's first user ID.
    `issue_links`: each new attendee gets a join token (the host sends it
    encrypted to the key, or hands it out). The web form passes False: its
    registrant proves possession first (O2, keyparty.proof).
    """
    now = now or datetime.now(UTC)
    result = RegistrationResult()
    candidates = _read_inputs(inputs, one_key, result)
    wanted = {c.block.fingerprint for c in candidates if c.block.fingerprint}
    existing = {
        key.fingerprint: key
        for key in db.session.scalars(
            select(Key).where(Key.event_id == event.id, Key.fingerprint.in_(wanted))
        )
    }
    candidates = _check_candidates(event, candidates, existing, result)
    if not candidates:
        return result
    # gpg's import and checks take a while: hold no transaction through them.
    db.session.commit()

    with home.staged() as stage:
        records = _import_and_check(stage, candidates, event, now, result)
        if not records:
            return result
        blocks = {b.fingerprint: b for b in openpgp.read_keys(stage.export(list(records)))}
        dropped = {c.block.fingerprint for c in candidates if c.photo_dropped}
        for fingerprint, record in records.items():
            armored = openpgp.armor(blocks[fingerprint].data)
            warnings = [] if record.can_encrypt else [NO_ENCRYPTION]
            warnings += [PHOTO_DROPPED] if fingerprint in dropped else []
            if fingerprint in existing:
                key = existing[fingerprint]
                _update_key(key, record, armored)
                result.accepted.append(Accepted(key, None, True, warnings))
            else:
                signup = (signups or {}).get(fingerprint)
                person, new = _attendee_for(event, record, signup, name, email)
                token = secrets.token_urlsafe(18) if new and issue_links else None
                if token:
                    person.join_token_sha256 = hash_token(token)
                key = Key(event=event, attendee=person, fingerprint=fingerprint, armored=armored)
                _update_key(key, record, armored)
                db.session.add(key)
                result.accepted.append(Accepted(key, token, False, warnings))
        # Numbered with the keys: the home is one step on only if it was
        # current; otherwise the next event_home() rebuilds it.
        generation = homes.bump(event, Event.keys_generation)
        current = homes.built_at(stage) == f"k{generation - 1}"
        homes.mark_built(stage, f"k{generation}" if current else None)
        # The database is the record: commit it before the staged keyring
        # replaces the event home (a failed commit leaves the home as it was;
        # a crash between the two is repaired from the database at start).
        db.session.commit()
        stage.commit()
    # The published keyring holds every key: made again when next used.
    publishing.forget_published(event)
    return result


def join_links(result: RegistrationResult) -> list[tuple[Key, str]]:
    """(key, join token) for every new key of an import: an attendee's other
    keys (sign-up sheet) carry the same link, sent encrypted to each key."""
    tokens = {a.key.attendee_id: a.join_token for a in result.accepted if a.join_token}
    return [
        (a.key, tokens[a.key.attendee_id])
        for a in result.accepted
        if not a.updated and a.key.attendee_id in tokens
    ]


def _read_inputs(
    inputs: list[tuple[str, bytes]], one_key: bool, result: RegistrationResult
) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    for source, data in inputs:
        try:
            blocks = openpgp.read_keys(data)
        except openpgp.KeyMaterialRefused as refused:
            result.rejected.append(
                Rejected(source, None, refused.problem, refused.text, refused.params)
            )
            continue
        blocks = _merge_same_key(blocks)
        if one_key and len(blocks) > 1:
            fingerprints = ", ".join(b.fingerprint or "?" for b in blocks)
            result.rejected.append(
                Rejected(
                    source,
                    None,
                    "several-keys",
                    "This holds {count} keys ({fingerprints}); register one key at a "
                    "time: `gpg --armor --export FINGERPRINT` exports just one.",
                    {"count": len(blocks), "fingerprints": fingerprints},
                )
            )
            continue
        many = len(blocks) > 1
        for n, block in enumerate(blocks, 1):
            label = f"{source} (key {n} of {len(blocks)})" if many else source
            kept = openpgp.without_user_attributes(block)
            candidates.append(_Candidate(label, kept, kept is not block))
    return candidates


def _merge_same_key(blocks: list[openpgp.KeyBlock]) -> list[openpgp.KeyBlock]:
    """One block per fingerprint: the same key pasted twice is one key (gpg merges
    the packets of both copies on import)."""
    merged: dict[str | None, openpgp.KeyBlock] = {}
    alone = []
    for block in blocks:
        if block.fingerprint is None:
            alone.append(block)
            continue
        first = merged.get(block.fingerprint)
        if first is None:
            merged[block.fingerprint] = block
        elif block.data != first.data:
            merged[block.fingerprint] = openpgp.KeyBlock(
                first.version,
                first.fingerprint,
                first.components,
                tuple(dict.fromkeys(first.user_ids + block.user_ids)),
                first.data + block.data,
            )
    return [*merged.values(), *alone]


def _check_candidates(
    event: Event,
    candidates: list[_Candidate],
    existing: dict[str, Key],
    result: RegistrationResult,
) -> list[_Candidate]:
    kept = []
    for candidate in candidates:
        block = candidate.block
        # Subkeys are judged after gpg, which knows which ones are revoked or expired.
        refusal = keycheck.check_key_block(
            block.version,
            len(block.data),
            [len(uid) for uid in block.user_ids],
            [keycheck.Component(c.algorithm, c.bits, True) for c in block.components[:1]],
            max_user_ids=_max_user_ids(),
            critical_unknown=_critical_unknown(block) if block.version == 4 else None,
        )
        if refusal is None:
            change = check_key_change(event.state, block.fingerprint in existing)
            refusal = change and keycheck.KeyRefusal(change.rule, change.text, change.params)
        if refusal:
            result.rejected.append(
                Rejected(
                    candidate.source,
                    block.fingerprint,
                    refusal.problem,
                    refusal.text,
                    refusal.params,
                )
            )
        else:
            kept.append(candidate)
    return kept


def _max_user_ids() -> int:
    if has_app_context():
        return int(current_app.config.get("MAX_USER_IDS", keycheck.MAX_USER_IDS))
    return keycheck.MAX_USER_IDS


def _critical_unknown(block: openpgp.KeyBlock) -> int | None:
    """The first unknown critical subpacket type in a self-signature on a user ID."""
    try:
        entries = openpgp.user_id_signatures(block)
    except openpgp.KeyMaterialRefused:
        return None  # gpg will say the key is damaged
    for entry in entries:
        for signature in entry.signatures:
            claimed = signature.issuer_fingerprint or signature.issuer_key_id or ""
            if signature.critical_unknown and (block.fingerprint or "").endswith(claimed):
                return signature.critical_unknown[0]
    return None


def _exact(record: KeyRecord, block: openpgp.KeyBlock) -> KeyRecord:
    """`record` with each user ID's text made of the exact packet bytes, found by
    gpg's hash of them (never trusting how gpg escaped them for its listing)."""
    packets = {uid_hash(uid): uid for uid in block.user_ids}
    user_ids = tuple(
        replace(u, text=packets[u.uid_hash].decode("utf-8", "surrogateescape"))
        if u.uid_hash in packets
        else u
        for u in record.user_ids
    )
    return replace(record, user_ids=user_ids)


def _import_and_check(
    stage: StagedHome,
    candidates: list[_Candidate],
    event: Event,
    now: datetime,
    result: RegistrationResult,
) -> dict[str, KeyRecord]:
    """Import into the stage; keep only keys gpg took and the checks accept."""
    outcome = stage.import_blocks([c.block.data for c in candidates])
    wanted = {c.block.fingerprint for c in candidates}
    records = {r.fingerprint: r for r in stage.list_keys(wanted & set(outcome.imported))}
    accepted: dict[str, KeyRecord] = {}
    for candidate in candidates:
        fingerprint = candidate.block.fingerprint
        if fingerprint in accepted:
            continue
        record = records.get(fingerprint)
        if record is None:
            reason = outcome.problems.get(fingerprint) or outcome.problems.get(None)
            result.rejected.append(_unusable(candidate, reason))
            continue
        record = _exact(record, candidate.block)
        usable = [u for u in record.user_ids if not (u.revoked or u.expired)]
        refusal = (
            keycheck.check_key_validity(
                record.revoked,
                record.expires,
                len(usable),
                event.date,
                now,
            )
            or keycheck.check_live_subkeys(
                [
                    (keycheck.Component(sub.algorithm, sub.bits, False), sub.alive)
                    for sub in record.subkeys
                ]
            )
            or keycheck.check_user_id_bytes([u.raw for u in usable])
        )
        if refusal:
            result.rejected.append(
                Rejected(
                    candidate.source, fingerprint, refusal.problem, refusal.text, refusal.params
                )
            )
        else:
            accepted[fingerprint] = record
    refused = [f for f in outcome.imported if f not in accepted]
    if refused:
        # Some refused key reached the stage: take it out again, and put back
        # as the event home held it a key that the refused input updated, so
        # a refused update leaves no trace. Only the refused keys are
        # touched: the accepted ones are not imported a second time.
        held = [r.fingerprint for r in stage.origin.list_keys(refused)]
        if stage.delete_keys(refused):
            if held:
                stage.import_keys(stage.origin.export(held), options=None)
        else:
            stage.reset()
            keep = [c.block.data for c in candidates if c.block.fingerprint in accepted]
            stage.import_blocks(keep)
    return accepted


# Why gpg would not import a key (its IMPORT_PROBLEM reason code), said to the sender.
_UNUSABLE = {
    "1": N_("it uses an invalid or unknown critical feature"),
    "2": N_("its self-signatures are not valid"),
    "3": N_("its certificate is damaged"),
}
_UNUSABLE_OTHERWISE = N_("its self-signatures are missing or invalid, or it was made in the future")


def _unusable(candidate: _Candidate, reason: str | None) -> Rejected:
    return Rejected(
        candidate.source,
        candidate.block.fingerprint,
        "unusable",
        "GnuPG cannot use this key: {detail}. Check the key with `gpg --check-sigs FINGERPRINT`"
        " (and your computer's clock), then export it again with `gpg --armor --export FINGERPRINT`.",
        # A detail is a catalog phrase too: the web page translates it (i18n.sentence).
        {"detail": _UNUSABLE.get(reason or "", _UNUSABLE_OTHERWISE)},
    )


def _attendee_for(
    event: Event,
    record: KeyRecord,
    signup: Signup | None,
    name: str | None,
    email: str | None,
) -> tuple[Attendee, bool]:
    """The attendee a new key belongs to, and whether they are new."""
    if signup:
        name, email = signup.name, signup.email
        # One person on the sign-up sheet with several keys is one attendee
        # (who may then certify with each of them).
        same = (
            db.session.scalars(
                select(Attendee)
                .where(Attendee.event_id == event.id, func.lower(Attendee.email) == email.lower())
                .order_by(Attendee.id)
            ).first()
            if email
            else None
        )
        if same:
            return same, False
    if not name:
        first = record.user_ids[0] if record.user_ids else None
        text = first.text if first else record.fingerprint
        uid_name, _ = parseaddr(text)
        name = uid_name or text
        email = email or (first.email if first else None)
    person = Attendee(event=event, name=name.strip(), email=(email or None))
    db.session.add(person)
    return person, True


def _update_key(key: Key, record: KeyRecord, armored: str) -> None:
    key.armored = armored
    key.algorithm = record.algorithm_name
    key.created = record.created.replace(tzinfo=None)
    key.expires = record.expires.replace(tzinfo=None) if record.expires else None
    key.can_encrypt = record.can_encrypt
    key.user_ids = [
        UserID(position=n, text=uid.text, email=uid.email, uid_hash=uid.uid_hash)
        for n, uid in enumerate(u for u in record.user_ids if not (u.revoked or u.expired))
    ]


def read_signups(text: str) -> dict[str, Signup]:
    """Parse a sign-up sheet: CSV with name, email, fingerprint columns."""
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    missing = {"name", "fingerprint"} - set(columns)
    if missing:
        raise ValueError(
            f"The sign-up sheet needs the columns name, email, fingerprint; "
            f"missing: {', '.join(sorted(missing))}."
        )
    signups = {}
    for row in reader:
        # Row 1 is the header; a short row has None for its missing cells, a long
        # one puts its extra cells under the key None.
        number = reader.line_num
        name = (row.get(columns["name"]) or "").strip()
        fingerprint = normalize_fingerprint(row.get(columns["fingerprint"]) or "")
        if None in row or not name or not re.fullmatch(r"[0-9A-F]{40}", fingerprint):
            what = (
                "has more cells than the header"
                if None in row
                else "has no name"
                if not name
                else "has no 40-digit fingerprint"
            )
            raise ValueError(
                f"row {number} of the sign-up sheet {what}; each row needs name, email, "
                "fingerprint (the email may be empty)."
            )
        email = (row.get(columns.get("email", ""), "") or "").strip() or None
        signups[fingerprint] = Signup(name, email, fingerprint)
    return signups


def sort_files(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], dict[str, Signup]]:
    """Split what the host gave into key data and sign-up sheets (*.csv).

    Raises ValueError naming the file when a sheet cannot be read.
    """
    inputs, signups = [], {}
    for name, data in files:
        if name.lower().endswith(".csv"):
            try:
                signups |= read_signups(data.decode("utf-8-sig"))
            except (ValueError, UnicodeDecodeError, csv.Error) as problem:
                raise ValueError(f"{name}: {problem}") from None
        else:
            inputs.append((name, data))
    return inputs, signups
