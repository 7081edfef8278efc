"""keyparty's rules as plain functions over plain data.

No Flask, no database, no subprocess: the web pages, the command line and
the tests all ask these functions, so a rule holds the same everywhere.
Rule ids (C1, D1, T1, P1, O1 ...) are those of DESIGN.md.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import urlsplit

from keyparty.translatable import N_

# The event lifecycle, in order; each step is the host's action.
STATES = (
    N_("draft"),
    N_("registration"),
    N_("frozen"),
    N_("verifying"),
    N_("cooling-off"),
    N_("signing"),
    N_("closed"),
)

STEPS = {
    "open": ("draft", "registration", N_("Open registration")),
    "freeze": ("registration", "frozen", N_("Freeze the party list")),
    "start-verifying": ("frozen", "verifying", N_("Start verifying")),
    "cool-off": ("verifying", "cooling-off", N_("Start cooling-off")),
    "start-signing": ("cooling-off", "signing", N_("Start signing")),
    "close": ("signing", "closed", N_("Close the event")),
}


@dataclass(frozen=True)
class Refusal:
    """A normal outcome: something a rule does not allow, said in plain words.

    `text` is a sentence with {placeholders} filled from `params`, so the web
    layer can translate the sentence before filling it in.
    """

    rule: str
    text: str
    params: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        return self.text.format(**self.params) if self.params else self.text

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


def next_step(state: str) -> str | None:
    """The one step the host can take from this state, if any."""
    return next((name for name, (before, _, _) in STEPS.items() if before == state), None)


def check_step(state: str, step: str) -> Refusal | None:
    """May the host take `step` now? If not, say what to do first."""
    if step not in STEPS:
        return Refusal(
            "lifecycle",
            "There is no step called {step}; steps: {steps}.",
            {"step": repr(step), "steps": ", ".join(STEPS)},
        )
    before, after, _ = STEPS[step]
    if state == before:
        return None
    if STATES.index(state) >= STATES.index(after):
        return Refusal(
            "lifecycle", "The event is already {state}; that step is done.", {"state": state}
        )
    first = next_step(state)
    return Refusal(
        "lifecycle",
        "The event is {state}; it must be {before} for this step. "
        "First: {first} (`keyparty step EVENT {step}`).",
        {"state": state, "before": before, "first": STEPS[first][2], "step": first},
    )


def check_key_change(state: str, is_update: bool) -> Refusal | None:
    """Keys come in during registration (or while the host prepares a draft)."""
    if state in ("draft", "registration"):
        return None
    if is_update:
        return Refusal(
            "frozen",
            "The party list is frozen: keys on it can no longer change, because everyone "
            "checks the list against the digests read aloud. Bring this key to the next event.",
        )
    return Refusal(
        "frozen",
        "Registration is closed (the event is {state}); the party list is frozen. "
        "Ask the host about the next event.",
        {"state": state},
    )


def check_freeze(key_count: int) -> Refusal | None:
    if key_count < 2:
        return Refusal(
            "lifecycle",
            "The list has {count} key(s); a key-signing party needs at least two. "
            "Register keys first (web form or `keyparty import EVENT FILE`).",
            {"count": key_count},
        )
    return None


# ---------------------------------------------------------------------------
# In-person verification: context (C1, C2), transitive trust (T2, T4),
# peer pressure (P3, P4, P6).
#
# Every time-dependent function takes `now` (an aware UTC datetime) instead
# of reading a clock, so tests and the web layer decide what "now" is.
# ---------------------------------------------------------------------------

# C1: the contexts an event offers unless the host sets its own list.
DEFAULT_CONTEXTS: tuple[str, ...] = (N_("identity"), N_("email"), N_("pseudonym"))

CONTEXT_LABELS: dict[str, str] = {
    "identity": N_("The name belongs to the person I met, checked against an official photo ID."),
    "email": N_("The key holder controls this email address."),
    "pseudonym": N_("They are known under this name in a named community."),
}


@dataclass(frozen=True)
class Basis:
    """How the signer knows the person (P3), and what it gives (C2).

    Accepted bases have a certification `level` and no `rule`; refused bases
    have no level, the id of the rule that refuses them and a sentence that
    says why.
    """

    id: str
    label: str
    level: int | None
    rule: str | None
    refusal: str | None


BASES: dict[str, Basis] = {
    b.id: b
    for b in (
        Basis("photo-id", N_("I checked an official photo ID"), 3, None, None),
        Basis("known-personally", N_("I have known them personally for years"), 2, None, None),
        Basis(
            "vouched",
            N_("Someone I trust vouched for them"),
            None,
            "T2",
            N_(
                "A certification must rest on what you checked yourself, not on someone "
                "else's word: signing because someone you trust vouched for them is "
                "transitive trust. Check their photo ID yourself, or skip this key."
            ),
        ),
        Basis(
            "everyone-signs",
            N_("Everyone else is signing them"),
            None,
            "P3",
            N_(
                "What other people do is not evidence about this person: signing because "
                "everyone else is signing is peer pressure. Sign only if you checked their "
                "ID yourself or have known them for years; it is fine to skip this key."
            ),
        ),
        Basis(
            "seemed-nice",
            N_("They seemed nice"),
            None,
            "P3",
            N_(
                "Being nice is not an identity check: a certification says you checked who "
                "this person is. Check an official photo ID, or skip this key."
            ),
        ),
    )
}


def certification_level(basis: str) -> int:
    """C2: the OpenPGP certification level (3 = 0x13, 2 = 0x12) for an accepted basis.

    keyparty never certifies at level 0 (generic) or 1, so refused and unknown
    bases raise ValueError rather than fall back to one.
    """
    found = BASES.get(basis)
    if found is None:
        raise ValueError(f"unknown basis {basis!r}; bases: {', '.join(BASES)}")
    if found.level is None:
        raise ValueError(f"basis {basis!r} is refused ({found.rule}) and gives no level")
    return found.level


@dataclass(frozen=True)
class Pace:
    """P4, set per event: how fast a signer may verify people."""

    min_gap_seconds: int = 20
    window_seconds: int = 300
    max_in_window: int = 10


@dataclass(frozen=True)
class VerificationAttempt:
    """Everything check_verification needs to judge one verification."""

    event_state: str
    signer_id: int
    acting_id: int | None
    owner_id: int
    owner_confirmed: bool
    key_fingerprint: str
    user_id_on_key: bool
    context: str
    event_contexts: tuple[str, ...]
    basis: str
    earlier: tuple[tuple[str, datetime], ...]
    now: datetime
    pace: Pace = Pace()
    user_id_has_email: bool = True
    key_can_encrypt: bool = True


def _state_index(state: str) -> int:
    if state not in STATES:
        raise ValueError(f"unknown event state {state!r}; states: {', '.join(STATES)}")
    return STATES.index(state)


# T2 sentences, whole so that each can be translated: (no session, someone else's session).
_OWN_SESSION_TEXTS = {
    "record": (
        N_(
            "Join the event with your own link first: a verification is recorded only "
            "from the signer's own session."
        ),
        N_(
            "A verification is recorded only from the signer's own session: nobody can "
            "record one for someone else. Ask them to scan the code on their own phone."
        ),
    ),
    "withdraw": (
        N_(
            "Join the event with your own link first: a verification is withdrawn only "
            "from the signer's own session."
        ),
        N_(
            "A verification is withdrawn only from the signer's own session: nobody can "
            "withdraw someone else's verification."
        ),
    ),
}


def _check_own_session(signer_id: int, acting_id: int | None, action: str) -> Refusal | None:
    """T2: only the signer, from their own session, records or withdraws their verifications."""
    no_session, other_session = _OWN_SESSION_TEXTS[action]
    if acting_id is None:
        return Refusal("T2", no_session)
    if acting_id != signer_id:
        return Refusal("T2", other_session)
    return None


def check_verification(attempt: VerificationAttempt) -> Refusal | None:
    """May this signer record this verification now? The first refusal wins."""
    a = attempt
    position = _state_index(a.event_state)
    verifying = STATES.index("verifying")
    if position < verifying:
        return Refusal(
            "lifecycle",
            "The event is {state}. Verifying starts when the host starts it at the event.",
            {"state": a.event_state},
        )
    if a.event_state == "cooling-off":
        return Refusal(
            "P6",
            "Verifying is over (the event is {state}): no verification can be added now. "
            "You can still withdraw one of yours until signing starts.",
            {"state": a.event_state},
        )
    if position > verifying:
        return Refusal(
            "P6",
            "Verifying is over (the event is {state}): no verification can be added "
            "after the verifying phase.",
            {"state": a.event_state},
        )

    refusal = _check_own_session(a.signer_id, a.acting_id, "record")
    if refusal is not None:
        return refusal
    if a.signer_id == a.owner_id:
        return Refusal("T2", "This is your own key. You verify other people's keys, not your own.")

    if not a.user_id_on_key:
        return Refusal(
            "list",
            "This user ID is not on this key's entry in the frozen party list, so it "
            "cannot be verified here.",
        )
    if not a.owner_confirmed:
        return Refusal(
            "T4",
            "The owner of this key has not yet confirmed their own entry on the frozen "
            "list. Ask them to confirm it on their phone first, then scan again.",
        )

    if a.context not in a.event_contexts:
        return Refusal(
            "C1",
            "'{context}' is not a context at this event. A certification says what "
            "you checked; this event's contexts are: {contexts}.",
            {"context": a.context, "contexts": ", ".join(a.event_contexts)},
        )

    if a.context == "email" and not a.user_id_has_email:
        return Refusal(
            "C3",
            "This user ID has no email address, so there is no address to check in the "
            "'email' context. Choose another context for it.",
        )
    if a.context == "email" and not a.key_can_encrypt:
        return Refusal(
            "C3",
            "This key cannot receive encrypted mail (it has no usable encryption subkey), so "
            "an 'email' certification could never reach its owner. Choose another context.",
        )

    basis = BASES.get(a.basis)
    if basis is None:
        accepted = [b.label for b in BASES.values() if b.rule is None]
        return Refusal(
            "P3",
            "Say how you know this person; keyparty accepts: {choices}.",
            {"choices": "; ".join(accepted)},
        )
    if basis.rule is not None:
        return Refusal(basis.rule, basis.refusal or "")

    wait = pace_wait(a.earlier, a.key_fingerprint, a.now, a.pace)
    if wait:
        return Refusal(
            "P4",
            "You are going faster than an ID can be checked. Take your time: wait "
            "{wait} s before the next person.",
            {"wait": wait},
        )
    return None


def _same_key(fingerprint: str) -> str:
    return "".join(fingerprint.split()).upper()


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is a naive datetime; pass aware UTC datetimes")
    return moment


def _seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from now until `moment`, rounded up, at least 1."""
    remaining = (moment - now) // timedelta(microseconds=1)
    return max(1, math.ceil(remaining / 1_000_000))


def pace_wait(
    earlier: Sequence[tuple[str, datetime]],
    fingerprint: str,
    now: datetime,
    pace: Pace = Pace(),
) -> int:
    """P4: seconds the signer must wait before verifying `fingerprint` now; 0 if fine.

    Pace counts people (keys), not user IDs: one ID check covers every user ID
    of a key, so a further user ID of a key already verified is never rushed.
    A time recorded after `now` (clock skew) counts as recorded at `now`.
    """
    _aware(now)
    first_seen: dict[str, datetime] = {}
    for fpr, recorded in earlier:
        key = _same_key(fpr)
        recorded = min(_aware(recorded), now)
        if key not in first_seen or recorded < first_seen[key]:
            first_seen[key] = recorded
    if _same_key(fingerprint) in first_seen:
        return 0
    times = sorted(first_seen.values())
    wait = 0

    gap = timedelta(seconds=pace.min_gap_seconds)
    if times and now - times[-1] < gap:
        wait = _seconds_until(times[-1] + gap, now)

    window = timedelta(seconds=pace.window_seconds)
    recent = [t for t in times if now - t < window]
    if len(recent) >= pace.max_in_window:
        # The new one may come once fewer than max_in_window remain in the window.
        leaving = recent[len(recent) - pace.max_in_window]
        wait = max(wait, _seconds_until(leaving + window, now))
    return wait


def check_withdrawal(event_state: str, signer_id: int, acting_id: int | None) -> Refusal | None:
    """P6: a verification can be withdrawn until signing starts, by its signer only (T2)."""
    position = _state_index(event_state)
    if position < STATES.index("verifying"):
        return Refusal(
            "lifecycle",
            "There is nothing to withdraw yet: the event is {state} and verifying has not started.",
            {"state": event_state},
        )
    if position >= STATES.index("signing"):
        return Refusal(
            "P6",
            "Verifications can no longer be withdrawn (the event is {state}): "
            "certifications are being made from them now. If you signed by mistake, tell "
            "the key owner; they can decline your certification.",
            {"state": event_state},
        )
    return _check_own_session(signer_id, acting_id, "withdraw")


def check_entry_confirmation(event_state: str) -> Refusal | None:
    """T4: attendees confirm their own entry and the digest while the frozen list is in use."""
    position = _state_index(event_state)
    if position < STATES.index("frozen"):
        return Refusal(
            "T4",
            "There is no frozen list yet (the event is {state}): you can confirm your "
            "entry once the host freezes the party list and reads out its digests.",
            {"state": event_state},
        )
    if position > STATES.index("verifying"):
        return Refusal(
            "T4",
            "It is too late to confirm your entry: verifying is over (the event is {state}).",
            {"state": event_state},
        )
    return None


def check_contexts_change(
    state: str, current: Sequence[str], wanted: Sequence[str]
) -> Refusal | None:
    """C1: the event's contexts are fixed when the party list is frozen."""
    if list(current) == list(wanted) or state in ("draft", "registration"):
        return None
    return Refusal(
        "C1",
        "The contexts are fixed since the party list was frozen (the event is {state}): "
        "attendees verify in them and certifications must name one of them, so changing "
        "the list now would make their verifications count for something else. They stay: "
        "{contexts}.",
        {"state": state, "contexts": ", ".join(current)},
    )


_PACE_SETTING_TEXTS = {
    "min_gap_seconds": N_(
        "The shortest gap between two verifications must be a whole number of "
        "seconds above zero (it is {value})."
    ),
    "window_seconds": N_(
        "The pace window must be a whole number of seconds above zero (it is {value})."
    ),
    "max_in_window": N_(
        "The most verifications in the pace window must be a whole number above "
        "zero (it is {value})."
    ),
}


def check_pace_settings(pace: Pace) -> Refusal | None:
    """P4, for the host: every pace value positive, and the window at least the gap."""
    for setting, text in _PACE_SETTING_TEXTS.items():
        value = getattr(pace, setting)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            return Refusal("P4", text, {"value": value, "setting": setting})
    if pace.window_seconds < pace.min_gap_seconds:
        return Refusal(
            "P4",
            "The pace window ({window} s) must be at least as long as the shortest gap "
            "between two verifications ({gap} s).",
            {
                "window": pace.window_seconds,
                "gap": pace.min_gap_seconds,
                "setting": "window_seconds",
            },
        )
    return None


# --- Certifications: what intake accepts (C1, C2, D1, D2, D3, T1, T2, P6) ---

# Hash algorithms (RFC 4880 9.4) whose collisions can be made: a certification
# hashed with one of them could be transplanted onto another key or user ID.
WEAK_HASHES: dict[int, str] = {1: "MD5", 2: "SHA-1"}

# D1: tools count a year differently (gpg 365 days, sq 365.2425 days, so
# sq's "2y" is 730 days and 11 hours): the cap allows one day more.
EXPIRY_GRACE = timedelta(days=1)

CERTIFICATION_TYPES = (0x10, 0x11, 0x12, 0x13)


def signing_window(started: datetime, days: int) -> tuple[datetime, datetime]:
    """D3: the signing window, from the moment the host started signing for `days` days.

    Returns (start, end), aware UTC datetimes, both inclusive. `keyparty sign`
    (through the bundle) and intake state this same end, by `moment_text`.
    """
    start = _aware(started)
    return start, start + timedelta(days=days)


def moment_text(moment: datetime) -> str:
    """A moment as every message states it: '2027-01-04 10:00 UTC'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class CertificationFacts:
    """Everything check_certification needs about one uploaded certification.

    `contexts` holds every value of the context notation the signature
    carries, in order (C1 wants exactly one, from `event_contexts`). Times are
    aware UTC datetimes; `window_start` is when the host started signing.
    """

    event_id: str
    event_state: str
    valid: bool | None  # gpg's verdict: good (True), bad (False), issuer unknown (None)
    issuer_registered: bool  # issued by a key registered at this event
    issuer_is_uploader: bool  # issued by the uploader's own key
    target_on_list: bool
    user_id_on_list: bool
    sig_type: int
    hash_algorithm: int  # RFC 4880 9.4 id
    exportable: bool
    trust: tuple[int, int] | None  # (depth, amount) of a trust-signature subpacket
    regexps: tuple[bytes, ...]
    contexts: tuple[str, ...]  # every context notation's value
    event_contexts: tuple[str, ...]  # the event's list, fixed at the freeze
    event_notation: str | None  # the event notation's value
    verified_level: int | None  # level of the signer's unwithdrawn verification of it, if any
    withdrawn: bool  # the signer verified it in that context and withdrew it
    created: datetime
    expires: datetime | None
    window_start: datetime
    window_end: datetime
    expiry_cap_days: int


def check_certification(c: CertificationFacts) -> Refusal | None:
    """May intake keep this certification? The first refusal wins."""
    if c.event_state != "signing":
        return Refusal(
            "lifecycle",
            "Certifications are accepted while the event is signing; it is {state}.",
            {"state": c.event_state},
        )
    if c.sig_type not in CERTIFICATION_TYPES:
        return Refusal("input", "Only certifications of user IDs are taken in here.")
    # Depth 0 without a regular expression is an ordinary certification with
    # an amount (RFC 4880 5.2.3.13; sq certify --amount): it delegates nothing.
    if (c.trust is not None and c.trust[0] >= 1) or c.regexps:
        return Refusal(
            "T1",
            "This is a trust signature: it would tell others to trust whoever this key "
            "vouches for. keyparty never makes or accepts those; certify with "
            "`keyparty sign` instead.",
        )
    if not c.exportable:
        return Refusal(
            "export",
            "This certification is local (not exportable), so it could never be published. "
            "Certify with `keyparty sign`, which makes exportable ones.",
        )
    if not c.issuer_registered:
        return Refusal(
            "T2",
            "This certification is not issued by a key registered at this event.",
        )
    if c.hash_algorithm in WEAK_HASHES:
        return Refusal(
            "hash",
            "This certification is hashed with {hash}, which is broken: a signature over it "
            "can be forged. Certify again with SHA-256 or stronger (`keyparty sign` does; "
            "gpg: --cert-digest-algo SHA256).",
            {"hash": WEAK_HASHES[c.hash_algorithm]},
        )
    if c.valid is not True:
        return Refusal(
            "integrity",
            "This certification's signature does not verify: it was changed after it "
            "was made, or it was not made by the key it names.",
        )
    if not c.issuer_is_uploader:
        return Refusal(
            "T2",
            "This certification was made by another attendee's key: each signer uploads "
            "only the certifications they made themselves.",
        )
    if not (c.target_on_list and c.user_id_on_list):
        return Refusal("list", "This key or user ID is not on the event's frozen party list.")
    refusal = _check_context(c.contexts, c.event_contexts)
    if refusal:
        return refusal
    if c.event_notation != c.event_id:
        return Refusal(
            "D2",
            "This certification does not name this event ({event}): a certification from "
            "an earlier event never counts for a new one. Make it with `keyparty sign`.",
            {"event": c.event_id},
        )
    (context,) = c.contexts
    if c.verified_level is None and c.withdrawn:
        return Refusal(
            "P6",
            "You withdrew your verification of this user ID in the '{context}' context, so "
            "it cannot be certified.",
            {"context": context},
        )
    if c.verified_level is None:
        return Refusal(
            "T2",
            "You did not verify this user ID in the '{context}' context at this event: a "
            "certification rests only on your own verification.",
            {"context": context},
        )
    refusal = _check_level(c.sig_type - 0x10, c.verified_level)
    if refusal:
        return refusal
    if c.expires is None:
        return Refusal(
            "D1",
            "This certification never expires. Every certification made through keyparty "
            "expires; make it with `keyparty sign`.",
        )
    if c.expires - c.created > timedelta(days=c.expiry_cap_days) + EXPIRY_GRACE:
        return Refusal(
            "D1",
            "This certification runs until {expires}, longer than this event's cap of {cap} days.",
            {"expires": c.expires.strftime("%Y-%m-%d"), "cap": c.expiry_cap_days},
        )
    if c.created < c.window_start:
        return Refusal(
            "D3",
            "This certification was made on {created}, before the host started signing "
            "({start}). Certifications are made after the event, in the calm of the "
            "signing phase: certify again now.",
            {"created": moment_text(c.created), "start": moment_text(c.window_start)},
        )
    if c.created > c.window_end:
        return Refusal(
            "D3",
            "This certification was made on {created}, after the signing window closed "
            "({end}): a verification goes stale.",
            {"created": moment_text(c.created), "end": moment_text(c.window_end)},
        )
    return None


def _check_context(contexts: tuple[str, ...], event_contexts: tuple[str, ...]) -> Refusal | None:
    """C1: exactly one context notation, from the event's list."""
    if not contexts:
        return Refusal(
            "C1",
            "This certification carries no context notation, so it does not say what was "
            "checked. Make it with `keyparty sign`.",
        )
    if len(contexts) > 1:
        return Refusal(
            "C1",
            "This certification carries {count} context notations ({found}); a certification "
            "says one thing that was checked. Make one certification per context with "
            "`keyparty sign`.",
            {"count": len(contexts), "found": ", ".join(contexts)},
        )
    if contexts[0] not in event_contexts:
        return Refusal(
            "C1",
            "'{context}' is not a context at this event; its contexts, fixed when the party "
            "list was frozen, are: {contexts}.",
            {"context": contexts[0], "contexts": ", ".join(event_contexts)},
        )
    return None


def _check_level(level: int, verified_level: int) -> Refusal | None:
    """C2: generic (0) up to the basis's level; never persona (1)."""
    if level == 1:
        return Refusal(
            "C2",
            "This is a persona certification (level 1, 0x11: no verification made), but you "
            "verified this person. Certify at level {want} (`keyparty sign` does) or generic.",
            {"want": verified_level},
        )
    if level > verified_level:
        return Refusal(
            "C2",
            "This certification has level {got}, more than your verification gives (level {want}).",
            {"got": level, "want": verified_level},
        )
    return None


# --- Owner consent (O1, C3) ------------------------------------------------------


def check_owner_decision(event_state: str, context: str | None, decision: str) -> Refusal | None:
    """May the key owner accept or decline this certification on their page?"""
    if event_state == "closed":
        return Refusal(
            "O1",
            "The event is closed: its exports are final, so nothing can be accepted or "
            "declined any more.",
        )
    if event_state != "signing":
        return Refusal(
            "O1",
            "Certifications reach their key owners once signing has started (the event is "
            "{state}).",
            {"state": event_state},
        )
    if decision == "accepted" and context == "email":
        return Refusal(
            "C3",
            "An email certification is accepted only through the link in the encrypted mail "
            "sent to that address: receiving it proves the address is yours.",
        )
    return None


# ---------------------------------------------------------------------------
# Certification settings of an event (D1, D3, C1), set by the host until the freeze.
# ---------------------------------------------------------------------------

# D1: the longest cap an event may set (five years), whatever the host types.
MAX_EXPIRY_CAP_DAYS = 1826
# D3: the longest signing window an event may set.
MAX_SIGNING_WINDOW_DAYS = 365
_DOMAIN = re.compile(r"(?=.{4,100}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


@dataclass(frozen=True)
class CertificationSettings:
    """What every certification of an event carries: expiry (D1), when (D3), where (C1)."""

    expiry_days: int
    cap_days: int
    window_days: int
    notation_domain: str
    policy_url: str | None


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_policy_url(url: str | None) -> Refusal | None:
    """C1: the policy URL written into every certification, for ever.

    None (no policy URL) is fine. Otherwise an http(s) address anyone can
    reach later: not a loopback, private, link-local or otherwise local
    address, which only means something on the network the signer was on.
    """
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Refusal(
            "C1",
            "The policy URL {url} is not an http or https address. It is written into every "
            "certification for ever: give the public address of the event's policy page, or "
            "leave it empty for none.",
            {"url": url},
        )
    host = parts.hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        local = host == "localhost" or "." not in host
        local = local or host.endswith((".localhost", ".local", ".lan", ".internal", ".home"))
    else:
        local = not address.is_global
    if local:
        return Refusal(
            "C1",
            "The policy URL {url} is a local or private address ({host}) that only works on "
            "one network. It is written into every certification for ever, so it must be an "
            "address anyone can open later: set KEYPARTY_PUBLIC_URL to the event's public "
            "address, or leave it empty for none.",
            {"url": url, "host": host},
        )
    return None


# --- Only the key's holder speaks for the key (O2) ---------------------------------

# A challenge lives this long and takes this many wrong answers.
CHALLENGE_MINUTES = 30
CHALLENGE_MAX_FAILURES = 5
# One-time codes are typed from a decrypted message: no look-alikes (0/O, 1/I/L).
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


def format_code(code: str) -> str:
    """ABCDEFGH -> ABCD-EFGH, as printed in the challenge."""
    return f"{code[:4]}-{code[4:]}"


def normalize_code(typed: str) -> str:
    """What a person typed, as the code: case, spaces and dashes do not matter."""
    return "".join(c for c in (typed or "").upper() if c.isalnum())


def challenge_text(event_name: str, event_id: str, fingerprint: str, nonce: str) -> str:
    """The short text a key holder signs to prove possession (ASCII only:
    the event's name is a value from strangers, kept to one safe line)."""
    safe_name = "".join(c if 32 <= ord(c) < 127 else "?" for c in event_name)[:80]
    return (
        "keyparty proof of possession\n"
        f"Event: {safe_name} ({event_id})\n"
        f"Key: {fingerprint}\n"
        f"Nonce: {nonce}\n"
    )


def check_challenge(
    expires_at: datetime, used_at: datetime | None, failed_attempts: int, now: datetime
) -> Refusal | None:
    """O2: may this challenge still be answered? Single use, short-lived."""
    if used_at is not None:
        return Refusal(
            "O2",
            "This challenge was already answered: each one works once. Start again to get "
            "a new one.",
        )
    # Stored times are naive UTC (the database keeps no zone).
    if _utc(now) >= _utc(expires_at):
        return Refusal(
            "O2",
            "This challenge has expired (each one lasts {minutes} minutes). Start again to "
            "get a new one.",
            {"minutes": CHALLENGE_MINUTES},
        )
    if failed_attempts >= CHALLENGE_MAX_FAILURES:
        return Refusal(
            "O2",
            "Too many wrong answers to this challenge. Start again to get a new one.",
        )
    return None


def check_certification_settings(state: str, s: CertificationSettings) -> Refusal | None:
    """D1, D3, C1 settings of an event: sensible values, and only before the freeze."""
    if state not in ("draft", "registration"):
        return Refusal(
            "frozen",
            "The party list is frozen (the event is {state}): the certification settings "
            "are fixed with it, because every signer's certifications must say the same.",
            {"state": state},
        )
    if not _whole(s.cap_days) or not 1 <= s.cap_days <= MAX_EXPIRY_CAP_DAYS:
        return Refusal(
            "D1",
            "The expiry cap must be a whole number of days from 1 to {most} (it is {value}).",
            {"most": MAX_EXPIRY_CAP_DAYS, "value": s.cap_days},
        )
    if not _whole(s.expiry_days) or not 1 <= s.expiry_days <= s.cap_days:
        return Refusal(
            "D1",
            "Every certification expires: the expiry must be a whole number of days from 1 "
            "to the cap, {cap} (it is {value}).",
            {"cap": s.cap_days, "value": s.expiry_days},
        )
    if not _whole(s.window_days) or not 1 <= s.window_days <= MAX_SIGNING_WINDOW_DAYS:
        return Refusal(
            "D3",
            "The signing window must be a whole number of days from 1 to {most} (it is {value}).",
            {"most": MAX_SIGNING_WINDOW_DAYS, "value": s.window_days},
        )
    if not _DOMAIN.fullmatch(s.notation_domain or ""):
        return Refusal(
            "C1",
            "The notation domain must be a domain name in lower case, such as keyparty.org "
            "(notations are written as context@DOMAIN); {value} is not one.",
            {"value": s.notation_domain},
        )
    return check_policy_url(s.policy_url)


def missing_answer() -> Refusal:
    """O2: the proof form came back with neither a code nor a signature."""
    return Refusal("O2", "Type the code from the decrypted message, or paste the signed text.")


def check_code(expected_matches: bool, failed_attempts: int) -> Refusal | None:
    """O2: the code typed from the decrypted message; `failed_attempts` before this one."""
    if expected_matches:
        return None
    left = max(0, CHALLENGE_MAX_FAILURES - failed_attempts - 1)
    return Refusal(
        "O2",
        "That is not the code of this challenge. Type the code printed in the decrypted "
        "message ({left} tries left).",
        {"left": left},
    )


def check_signed_proof(
    fingerprint: str,
    status: str,
    signers: Sequence[str],
    unknown_issuers: Sequence[str],
    count: int,
    signed_text: str | None,
    expected_text: str,
) -> Refusal | None:
    """O2: a signature pasted back proves possession only if it is one good
    signature by this key (checked in a home holding that key alone) over
    exactly this challenge's text."""
    if status == "none" or count == 0:
        return Refusal(
            "O2",
            "No OpenPGP signature was found. Paste everything `gpg --clearsign` printed, "
            "from -----BEGIN PGP SIGNED MESSAGE----- to -----END PGP SIGNATURE-----, or "
            "the detached signature (`gpg --armor --detach-sign`).",
        )
    if status == "bad":
        return Refusal(
            "O2",
            "The signature does not match the text: the text was changed after it was "
            "signed. Sign the text exactly as shown and paste the result unchanged.",
        )
    if count > 1:
        return Refusal(
            "O2",
            "This holds {count} signatures; sign the text with your key alone.",
            {"count": count},
        )
    if status == "no-key" or any(_same_key(s) != _same_key(fingerprint) for s in signers):
        other = ", ".join(unknown_issuers or signers) or "?"
        return Refusal(
            "O2",
            "This was signed by another key ({other}), not by {fingerprint}. Sign with the "
            "key of this entry: `gpg --local-user {fingerprint} --clearsign`.",
            {"other": other, "fingerprint": fingerprint},
        )
    if signed_text is not None and _lines(signed_text) != _lines(expected_text):
        return Refusal(
            "O2",
            "The signed text is not this challenge's text (an older challenge, or another "
            "event's?). Sign the text shown on this page, with its nonce.",
        )
    return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _lines(text: str) -> list[str]:
    """Text compared line by line: line endings and trailing blanks may differ
    between a page, a file and a clearsigned message (RFC 4880 7.1)."""
    return [line.rstrip() for line in text.strip().splitlines()]
