"""Proof of possession (O2): only the holder of a key's secret key acts for it.

A public key is public, so registering one proves nothing. An entry opens
a session only after its holder answered a challenge: decrypting a message
encrypted to the key (the caff model; its plaintext holds a one-time code
and a join link) or signing a short text with it (checked in a scratch
GnuPG home holding that key alone). A join link that reached its person
encrypted to the key, or from the host's hand, proves it too when redeemed.

Proving possession ends every session, join link and signing token held for
the entry before: the owner wins, whoever registered the key first.
Only hashes of codes, link tokens and session secrets are stored.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import joinedload

from keyparty import openpgp
from keyparty import rules
from keyparty import storage
from keyparty.escaping import one_line
from keyparty.events import event_home
from keyparty.extensions import db
from keyparty.gpg import GnuPGError
from keyparty.models import Attendee
from keyparty.models import Challenge
from keyparty.models import Key
from keyparty.partylist import group_fingerprint
from keyparty.registration import hash_token
from keyparty.rules import Refusal

# A pasted clearsigned text or signature is a few hundred bytes.
MAX_ANSWER_BYTES = 64 * 1024


def _naive(moment: datetime | None = None) -> datetime:
    return (moment or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)


def _after_gpg() -> None:
    """End the read transaction that was open while gpg ran (nothing is
    pending then): the write that follows starts on a fresh snapshot, so
    SQLite never finds it overtaken by a commit made meanwhile, and the
    request is not run again (keyparty.storage)."""
    db.session.commit()


def new_code() -> str:
    """A one-time code of rules.CODE_LENGTH characters without look-alikes."""
    return "".join(secrets.choice(rules.CODE_ALPHABET) for _ in range(rules.CODE_LENGTH))


def join_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/join/{token}"


def challenge_letter(key: Key, code: str | None, link: str, expires_at: datetime) -> str:
    """The plaintext encrypted to the key: a code to type and a join link."""
    event = key.event
    lines = [
        f"keyparty: proof that you hold the key {group_fingerprint(key.fingerprint)}",
        f"Event: {one_line(event.name)} ({event.id})",
        "",
    ]
    if code:
        lines += [
            f"Your one-time code: {rules.format_code(code)}",
            "Type it on the page that showed you this challenge, or open this link on",
            "your phone:",
        ]
    else:
        lines += ["Open this link on your phone to join the event:"]
    lines += [
        "",
        f"    {link}",
        "",
        f"It works once, until {expires_at:%Y-%m-%d %H:%M} UTC. Keep it to yourself:",
        "whoever opens it acts for this key at the event.",
        "",
        "このメッセージを復号できたことが、鍵を持っている証明です。",
        "コードをページに入力するか、リンクをスマートフォンで開いてください。",
        "",
    ]
    return "\n".join(lines)


@dataclass
class Started:
    """A new challenge; `code` and `link_token` are shown nowhere but in the
    encrypted message, and stored only as hashes."""

    challenge: Challenge
    code: str
    link_token: str


def start(
    key: Key,
    purpose: str,
    base_url: str,
    name: str | None = None,
    email: str | None = None,
    now: datetime | None = None,
) -> Started:
    """A challenge for `key`: the encrypted message (when the key can
    encrypt) and the text to sign. purpose: "register" or "rejoin"."""
    now = _naive(now)
    expires_at = now + timedelta(minutes=rules.CHALLENGE_MINUTES)
    code, link_token = new_code(), secrets.token_urlsafe(18)
    nonce = secrets.token_hex(8)
    challenge = Challenge(
        public_id=secrets.token_urlsafe(12),
        event_id=key.event_id,
        key=key,
        purpose=purpose,
        code_sha256=hash_token(code),
        link_token_sha256=hash_token(link_token),
        text=rules.challenge_text(key.event.name, key.event_id, key.fingerprint, nonce),
        name=name,
        email=email,
        created_at=now,
        expires_at=expires_at,
    )
    letter = challenge_letter(key, code, join_url(base_url, link_token), expires_at)
    challenge.message = encrypt_to_key(key, letter.encode("utf-8"))
    _after_gpg()
    db.session.add(challenge)
    db.session.commit()
    return Started(challenge, code, link_token)


def encrypt_to_key(key: Key, data: bytes) -> str | None:
    """`data` encrypted to the key, armored; None when the key cannot
    encrypt (no usable encryption subkey: then only signing proves it).

    The event home is a working copy: if it lacks the key (another server
    process changed the keys meanwhile), it is rebuilt from the database,
    the record, and asked once more.
    """
    from keyparty.events import rebuild_home

    home = event_home(key.event)
    for attempt in range(2):
        try:
            with home.locked():
                return home.encrypt(data, key.fingerprint).decode("ascii")
        except GnuPGError:
            if attempt or home.list_keys([key.fingerprint]):
                return None
            rebuild_home(key.event, home)
    return None


def find(public_id: str) -> Challenge | None:
    return db.session.scalar(select(Challenge).where(Challenge.public_id == public_id))


def _refuse(challenge: Challenge, refusal: Refusal) -> Refusal:
    challenge.failed_attempts += 1
    db.session.commit()
    return refusal


def answer_code(challenge: Challenge, typed: str, now: datetime | None = None) -> Refusal | None:
    """The code typed from the decrypted message. None: proven (see prove())."""
    refusal = rules.check_challenge(
        challenge.expires_at, challenge.used_at, challenge.failed_attempts, _naive(now)
    )
    if refusal:
        return refusal
    typed_hash = hash_token(rules.normalize_code(typed))
    matches = hmac.compare_digest(typed_hash, challenge.code_sha256 or "")
    refusal = rules.check_code(matches, challenge.failed_attempts)
    if refusal:
        return _refuse(challenge, refusal)
    return None


def answer_signature(
    challenge: Challenge, pasted: str, now: datetime | None = None
) -> Refusal | None:
    """A clearsigned challenge text, or a detached signature over it, pasted
    back. Checked by gpg in a scratch home holding this key alone."""
    refusal = rules.check_challenge(
        challenge.expires_at, challenge.used_at, challenge.failed_attempts, _naive(now)
    )
    if refusal:
        return refusal
    data = (pasted or "").replace("\r\n", "\n").encode("utf-8", "replace")[:MAX_ANSWER_BYTES]
    key = challenge.key
    home = event_home(key.event)
    with home.scratch() as scratch:
        scratch.import_keys(openpgp.dearmor(key.armored.encode()), options=None)
        if b"-----BEGIN PGP SIGNED MESSAGE-----" in data:
            check = scratch.verify(data[data.index(b"-----BEGIN PGP SIGNED MESSAGE-----") :])
        else:
            check = _detached(scratch, data, challenge.text)
    _after_gpg()
    signed_text = (
        check.signed_text.decode("utf-8", "replace") if check.signed_text is not None else None
    )
    refusal = rules.check_signed_proof(
        key.fingerprint,
        check.status,
        check.signers,
        check.unknown_issuers,
        check.count,
        signed_text,
        challenge.text,
    )
    if refusal:
        return _refuse(challenge, refusal)
    return None


def _detached(scratch, pasted: bytes, text: str):
    """A detached signature over the challenge text, as a file or as typed:
    with or without its last newline, LF or CRLF line ends."""
    start = pasted.find(b"-----BEGIN PGP SIGNATURE-----")
    signature = pasted[start:] if start >= 0 else pasted
    body = text.rstrip("\n")
    check = None
    for variant in (text, body, text.replace("\n", "\r\n"), body.replace("\n", "\r\n")):
        check = scratch.verify(signature, variant.encode("utf-8"))
        if check.status != "bad":
            return check
    return check


def end_sessions(attendee: Attendee) -> None:
    """End every session, join link and signing token of this attendee, and
    every challenge still open for their keys (O2). The caller commits."""
    attendee.session_secret_sha256 = None
    attendee.join_token_sha256 = None
    attendee.signing_token_sha256 = None
    key_ids = [key.id for key in attendee.keys]
    if key_ids:
        db.session.execute(
            update(Challenge)
            .where(Challenge.key_id.in_(key_ids), Challenge.used_at.is_(None))
            .values(used_at=_naive(), link_token_sha256=None)
            .execution_options(synchronize_session=False)
        )


def new_join_link(attendee: Attendee) -> str:
    """A fresh join token for this attendee; every older session, link and
    signing token ends. Returns the token (only its hash is kept)."""
    end_sessions(attendee)
    token = secrets.token_urlsafe(18)
    attendee.join_token_sha256 = hash_token(token)
    db.session.commit()
    return token


def prove(challenge: Challenge, now: datetime | None = None) -> Attendee:
    """The challenge was answered: the entry is its holder's. Takes the name
    and email the registrant gave, ends everything held before. The caller
    then opens a session or issues a join link, which commits: the challenge
    is spent only with what it opens (a view run again after a database
    conflict finds it unspent)."""
    key = challenge.key
    attendee = key.attendee
    end_sessions(attendee)
    challenge.used_at = _naive(now)
    challenge.link_token_sha256 = None
    attendee.proven_at = attendee.proven_at or _naive(now)
    if challenge.name:
        attendee.name = challenge.name
        attendee.email = challenge.email or None
    return attendee


def open_session(attendee: Attendee) -> str:
    """A new session secret for this phone; every other session of this
    attendee ends. Returns the secret for the session cookie."""
    secret = secrets.token_urlsafe(24)
    attendee.session_secret_sha256 = hash_token(secret)
    attendee.proven_at = attendee.proven_at or _naive()
    db.session.commit()
    return secret


def session_opens(attendee: Attendee | None, event_id: str | None, secret: str | None) -> bool:
    """Does a session naming (event, attendee, secret) speak for this attendee?"""
    if attendee is None or not secret or attendee.event_id != event_id:
        return False
    if attendee.proven_at is None or attendee.session_secret_sha256 is None:
        return False
    return hmac.compare_digest(hash_token(secret), attendee.session_secret_sha256)


@dataclass
class JoinTarget:
    """Whom a join link opens: an attendee's own link, or a challenge's link."""

    attendee: Attendee
    challenge: Challenge | None


# Built once (a phone's join asks twice): see attendee.routes._KEY_WITH_EVENT.
# With its event: the join page names it.
_ATTENDEE_BY_JOIN_TOKEN = (
    select(Attendee)
    .options(joinedload(Attendee.event))
    .where(Attendee.join_token_sha256 == bindparam("digest"))
)
_CHALLENGE_BY_LINK_TOKEN = select(Challenge).where(
    Challenge.link_token_sha256 == bindparam("digest")
)


def find_join(token: str, now: datetime | None = None) -> JoinTarget | None:
    """The attendee a join token opens, spending nothing (GET, HEAD)."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    attendee = db.session.scalar(_ATTENDEE_BY_JOIN_TOKEN, {"digest": digest})
    if attendee is not None:
        return JoinTarget(attendee, None)
    challenge = db.session.scalar(_CHALLENGE_BY_LINK_TOKEN, {"digest": digest})
    if challenge is None or rules.check_challenge(
        challenge.expires_at, challenge.used_at, 0, _naive(now)
    ):
        return None
    return JoinTarget(challenge.key.attendee, challenge)


def _spend(model, row_id: int, column: str, digest: str) -> bool:
    """Clear a one-time token's hash if it is still there. One-time even when
    pressed twice at once: only one update wins."""
    done = db.session.execute(
        update(model)
        .where(model.id == row_id, getattr(model, column) == digest)
        .values({column: None})
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        db.session.rollback()
        return False
    return True


def redeem_join(token: str, now: datetime | None = None) -> Attendee | None:
    """Spend a join link (POST from its own page): the entry is proven, and
    the caller opens the session, which commits: the link is spent only with
    the session it opens, so a view run again after a database conflict
    finds the link unspent (it answered 404 when the spend was committed
    alone). None if it was spent meanwhile."""
    storage.begin_writing()
    target = find_join(token, now)
    if target is None:
        return None
    digest = hash_token(token)
    if target.challenge is None:
        if not _spend(Attendee, target.attendee.id, "join_token_sha256", digest):
            return None
        attendee = target.attendee
        db.session.refresh(attendee)
        attendee.joined_at = _naive(now)
        attendee.proven_at = attendee.proven_at or _naive(now)
        # The link reached its person (encrypted, or from the host's hand):
        # other sessions and the old signing token end.
        attendee.signing_token_sha256 = None
        return attendee
    if not _spend(Challenge, target.challenge.id, "link_token_sha256", digest):
        return None
    db.session.refresh(target.challenge)
    attendee = prove(target.challenge, now)
    attendee.joined_at = _naive(now)
    return attendee


def import_links(result) -> list[tuple[Key, str]]:
    """(key, join token) to send after a host import (registration.join_links),
    plus a fresh link for each already registered key whose entry nobody has
    proven yet: the host's copy reaches the key's holder encrypted, whoever
    pasted the key first (the owner wins, O2)."""
    from keyparty.registration import join_links

    links = join_links(result)
    for accepted in result.accepted:
        attendee = accepted.key.attendee
        if accepted.updated and attendee.proven_at is None:
            links.append((accepted.key, new_join_link(attendee)))
    return links


def unproven(event) -> list[Attendee]:
    """Entries whose holder has not proven possession yet, by name (a status,
    not a count per attendee: P5)."""
    return [a for a in event.attendees if a.proven_at is None]
