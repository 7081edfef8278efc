"""Which registered keys keyparty accepts: plain functions over plain data.

Two passes, because some facts are known before gpg sees the bytes (packet
versions, sizes, algorithms) and some only after gpg has checked the
self-signatures (revocation, expiry).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime

MAX_KEY_BYTES = 1024 * 1024
MAX_USER_ID_BYTES = 1024
MIN_RSA_DSA_BITS = 2048

RSA = (1, 2, 3)
ELGAMAL_ENCRYPT = 16
DSA = 17
ELGAMAL_SIGN = 20


@dataclass(frozen=True)
class KeyRefusal:
    """A key that is not accepted, with a sentence for the person who sent it.

    `text` is a sentence with {placeholders} filled from `params` (numbers, and dates
    or algorithm names as strings), so the web pages can translate the sentence
    before filling it in; `message` is the English sentence.
    """

    problem: str
    text: str
    params: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        return self.text.format(**self.params) if self.params else self.text


@dataclass(frozen=True)
class Component:
    algorithm: int
    bits: int
    is_primary: bool


def check_key_block(
    version: int,
    size: int,
    user_id_lengths: list[int],
    components: list[Component],
) -> KeyRefusal | None:
    """What can be judged from the packets alone, before gpg runs."""
    if version == 3:
        return KeyRefusal(
            "v3",
            "This is a version 3 (PGP 2.x) key. Its fingerprints can be forged and GnuPG no "
            "longer uses such keys. Make a new key (for example "
            "`gpg --quick-gen-key 'Your Name <you@example.org>' ed25519`) and register that one.",
        )
    if version != 4:
        return KeyRefusal(
            "unsupported-version",
            "This is a version {version} key, which the GnuPG keyparty runs on cannot use yet. "
            "Register a version 4 key (what `gpg --quick-gen-key` makes in GnuPG 2.2 and 2.4).",
            {"version": version},
        )
    if size > MAX_KEY_BYTES:
        return KeyRefusal(
            "too-large",
            "This key is {kib} KiB; keyparty takes keys up to 1 MiB. Export it "
            "without other people's signatures: "
            "`gpg --armor --export-options export-minimal --export FINGERPRINT`.",
            {"kib": size // 1024},
        )
    for length in user_id_lengths:
        if length > MAX_USER_ID_BYTES:
            return KeyRefusal(
                "long-user-id",
                "One user ID on this key is {length} bytes long; keyparty takes user IDs up to "
                "{limit} bytes. Add a shorter user ID "
                "(`gpg --quick-add-uid FINGERPRINT 'Name <email>'`), revoke the long one, "
                "and register the key again.",
                {"length": length, "limit": MAX_USER_ID_BYTES},
            )
    for component in components:
        refusal = check_algorithm(component)
        if refusal:
            return refusal
    return None


def check_algorithm(component: Component) -> KeyRefusal | None:
    # One sentence for the primary key and one for a subkey, so that each translates whole.
    if component.algorithm == ELGAMAL_SIGN and component.is_primary:
        return KeyRefusal(
            "weak-algorithm",
            "The primary key of this key is an Elgamal signing key (algorithm 20), which is "
            "broken and no longer allowed in OpenPGP. Make a new key (for example "
            "`gpg --quick-gen-key 'Your Name <you@example.org>' ed25519`) and register that one.",
        )
    if component.algorithm == ELGAMAL_SIGN:
        return KeyRefusal(
            "weak-algorithm",
            "A subkey of this key is an Elgamal signing key (algorithm 20), which is broken "
            "and no longer allowed in OpenPGP. Make a new key (for example "
            "`gpg --quick-gen-key 'Your Name <you@example.org>' ed25519`) and register that one.",
        )
    names = {**dict.fromkeys(RSA, "RSA"), DSA: "DSA", ELGAMAL_ENCRYPT: "Elgamal"}
    if component.algorithm in names and component.bits < MIN_RSA_DSA_BITS:
        params = {
            "name": names[component.algorithm],
            "bits": component.bits,
            "min_bits": MIN_RSA_DSA_BITS,
        }
        if component.is_primary:
            return KeyRefusal(
                "weak-algorithm",
                "The primary key of this key is {name} with {bits} bits; keyparty takes {name} "
                "keys of {min_bits} bits or more. Make a new key (for example "
                "`gpg --quick-gen-key 'Your Name <you@example.org>' ed25519`) and register "
                "that one.",
                params,
            )
        return KeyRefusal(
            "weak-algorithm",
            "A subkey of this key is {name} with {bits} bits; keyparty takes {name} keys of "
            "{min_bits} bits or more. Make a new key (for example "
            "`gpg --quick-gen-key 'Your Name <you@example.org>' ed25519`) and register that one.",
            params,
        )
    return None


def check_key_validity(
    revoked: bool,
    expires: datetime | None,
    usable_user_ids: int,
    event_date: date | None,
    now: datetime,
) -> KeyRefusal | None:
    """What gpg told us after checking the self-signatures."""
    if revoked:
        return KeyRefusal(
            "revoked",
            "This key has been revoked by its owner, so nobody should certify it. Register "
            "the key you use now.",
        )
    if expires is not None and expires <= now:
        return KeyRefusal(
            "expired",
            "This key expired on {expires}. Extend it "
            "(`gpg --quick-set-expire FINGERPRINT 2y`) and register it again.",
            {"expires": expires.strftime("%Y-%m-%d")},
        )
    if expires is not None and event_date is not None and expires.date() <= event_date:
        return KeyRefusal(
            "expires-before-event",
            "This key expires on {expires}, before the event on {event_date}. "
            "Extend it (`gpg --quick-set-expire FINGERPRINT 2y`) and register it again.",
            {
                "expires": expires.strftime("%Y-%m-%d"),
                "event_date": event_date.strftime("%Y-%m-%d"),
            },
        )
    if usable_user_ids == 0:
        return KeyRefusal(
            "no-user-id",
            "This key has no valid user ID (each needs a self-signature). Add one with "
            "`gpg --quick-add-uid FINGERPRINT 'Name <email>'` and register it again.",
        )
    return None
