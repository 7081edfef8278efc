"""Signing without typing a token: a computer pairs with the signer's phone.

The OAuth device authorization pattern (RFC 8628): `keyparty sign URL`
names the keys it can sign with and gets a device code (its secret) and a
short user code; it shows the user code and polls. The signer's phone page
shows "a computer asks to sign as you, code XXXX-XXXX" with allow and deny.
Allow: the computer's next poll gets a fresh signing token (the previous
token stops working). Deny, or no answer before the pairing expires: the
poll says so and the computer stops. Polling faster than the interval gets
`slow_down` and a longer interval (RFC 8628 section 3.5). Everything is in
the database, so any server process can answer any poll.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import SigningPairing
from keyparty.models import utcnow
from keyparty.registration import hash_token
from keyparty.registration import normalize_fingerprint

# RFC 8628 section 6.1: consonants only, so no look-alikes (0/O, 1/I/l) and no words.
ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
CODE_LENGTH = 8
# Signing tokens shown on the phone: the same kind of alphabet with digits, in groups.
TOKEN_ALPHABET = "23456789BCDFGHJKLMNPQRSTVWXZ"
TOKEN_LENGTH = 28  # about 134 bits
DEFAULT_SECONDS = 600
DEFAULT_INTERVAL = 5


class PairingError(Exception):
    """A pairing request or poll that cannot go on; `code` is RFC 8628's error code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Started:
    device_code: str
    user_code: str  # grouped, XXXX-XXXX
    expires_in: int
    interval: int


def group(code: str, size: int = 4) -> str:
    """ABCDEFGH → ABCD-EFGH."""
    return "-".join(code[i : i + size] for i in range(0, len(code), size))


def new_signing_token() -> str:
    """A signing token without look-alike characters, grouped by four for reading."""
    return group("".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH)))


def normalize_token(token: str) -> str:
    """What a signer typed or pasted, as issued: groups and spaces removed, upper case."""
    return "".join(token.split()).replace("-", "").upper()


def token_hashes(token: str) -> set[str]:
    """The stored hashes a presented token can match: as typed (tokens issued before
    grouped tokens) and normalized (grouped tokens, however they were copied)."""
    return {hash_token(token), hash_token(group(normalize_token(token)))}


def issue_signing_token(attendee: Attendee) -> str:
    """A fresh signing token for `attendee`; the previous one stops working."""
    token = new_signing_token()
    attendee.signing_token_sha256 = hash_token(token)
    return token


def _seconds() -> int:
    return int(current_app.config.get("PAIRING_SECONDS", DEFAULT_SECONDS))


def _interval() -> int:
    return int(current_app.config.get("PAIRING_INTERVAL", DEFAULT_INTERVAL))


def start(event: Event, fingerprints: list[str]) -> Started:
    """A computer holding secret keys with these fingerprints asks to sign at `event`.

    Raises PairingError when signing has not started or no key is registered here.
    """
    if event.state != "signing":
        raise PairingError(
            "not_signing", f"The event is {event.state}; signing has not started.", 409
        )
    wanted = [normalize_fingerprint(str(f)) for f in fingerprints[:20]]
    key = db.session.scalar(
        select(Key).where(Key.event_id == event.id, Key.fingerprint.in_(wanted)).limit(1)
    )
    if key is None:
        raise PairingError(
            "unknown_key",
            "None of the secret keys on this computer is registered at this event: run "
            "keyparty sign where the secret key of your registered key is (--homedir DIR).",
            404,
        )
    device_code = secrets.token_urlsafe(32)
    user_code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    now = utcnow()
    db.session.add(
        SigningPairing(
            event_id=event.id,
            attendee_id=key.attendee_id,
            user_code=user_code,
            device_code_sha256=hash_token(device_code),
            created_at=now,
            expires_at=now + timedelta(seconds=_seconds()),
            interval_seconds=_interval(),
        )
    )
    db.session.commit()
    return Started(device_code, group(user_code), _seconds(), _interval())


def poll(event: Event, device_code: str, now: datetime | None = None) -> str:
    """The computer asks whether it was allowed; returns the signing token once allowed.

    Raises PairingError: authorization_pending, slow_down, access_denied,
    expired_token (RFC 8628 section 3.5), or invalid_grant for an unknown code.
    """
    now = now or utcnow()
    pairing = db.session.scalar(
        select(SigningPairing).where(
            SigningPairing.device_code_sha256 == hash_token(device_code or ""),
            SigningPairing.event_id == event.id,
        )
    )
    if pairing is None or pairing.status == "claimed":
        raise PairingError("invalid_grant", "Unknown or used pairing: run keyparty sign again.")
    if pairing.status == "denied":
        raise PairingError("access_denied", "Denied on the phone: nothing will be signed.")
    if now >= pairing.expires_at:
        raise PairingError(
            "expired_token",
            "The code was not allowed in time: run keyparty sign again for a new code.",
        )
    too_soon = pairing.last_polled_at is not None and now - pairing.last_polled_at < timedelta(
        seconds=pairing.interval_seconds
    )
    pairing.last_polled_at = now
    if too_soon:
        pairing.interval_seconds += 5
        db.session.commit()
        raise PairingError("slow_down", f"Poll every {pairing.interval_seconds} s.")
    if pairing.status == "pending":
        db.session.commit()
        raise PairingError("authorization_pending", "Waiting for the phone.")
    # Allowed: the token is made now, so no plain token is ever stored.
    attendee = db.session.get(Attendee, pairing.attendee_id)
    token = issue_signing_token(attendee)
    pairing.status = "claimed"
    db.session.commit()
    return token


def pending_for(attendee: Attendee, now: datetime | None = None) -> list[SigningPairing]:
    """The computers waiting for this attendee's answer, newest first."""
    return list(
        db.session.scalars(
            select(SigningPairing)
            .where(
                SigningPairing.attendee_id == attendee.id,
                SigningPairing.status == "pending",
                SigningPairing.expires_at > (now or utcnow()),
            )
            .order_by(SigningPairing.created_at.desc())
        )
    )


def answer(attendee: Attendee, pairing_id: int, allow: bool) -> SigningPairing | None:
    """The attendee's own answer from their phone; None if it is not theirs or is over."""
    pairing = db.session.get(SigningPairing, pairing_id)
    if (
        pairing is None
        or pairing.attendee_id != attendee.id
        or pairing.status != "pending"
        or pairing.expires_at <= utcnow()
    ):
        return None
    pairing.status = "allowed" if allow else "denied"
    db.session.commit()
    return pairing
