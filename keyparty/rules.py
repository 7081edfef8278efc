"""keyparty's rules as plain functions over plain data.

No Flask, no database, no subprocess: the web pages, the command line and
the tests all ask these functions, so a rule holds the same everywhere.
Rule ids (C1, D1, T1, P1, O1 ...) are those of DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

# The event lifecycle, in order; each step is the host's action.
STATES = ("draft", "registration", "frozen", "verifying", "cooling-off", "signing", "closed")

STEPS = {
    "open": ("draft", "registration", "Open registration"),
    "freeze": ("registration", "frozen", "Freeze the party list"),
    "start-verifying": ("frozen", "verifying", "Start verifying"),
    "cool-off": ("verifying", "cooling-off", "Start cooling-off"),
    "start-signing": ("cooling-off", "signing", "Start signing"),
    "close": ("signing", "closed", "Close the event"),
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


def step_leading_to(state: str) -> str:
    return next(name for name, (_, after, _) in STEPS.items() if after == state)


def next_step(state: str) -> str | None:
    """The one step the host can take from this state, if any."""
    return next((name for name, (before, _, _) in STEPS.items() if before == state), None)


def check_step(state: str, step: str) -> Refusal | None:
    """May the host take `step` now? If not, say what to do first."""
    if step not in STEPS:
        return Refusal("lifecycle", f"There is no step called {step!r}; steps: {', '.join(STEPS)}.")
    before, after, _ = STEPS[step]
    if state == before:
        return None
    if STATES.index(state) >= STATES.index(after):
        return Refusal("lifecycle", f"The event is already {state}; that step is done.")
    first = next_step(state)
    return Refusal(
        "lifecycle",
        f"The event is {state}; it must be {before} for this step. "
        f"First: {STEPS[first][2].lower()} (`keyparty step EVENT {first}`).",
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
        f"Registration is closed (the event is {state}); the party list is frozen. "
        "Ask the host about the next event.",
    )


def check_freeze(key_count: int) -> Refusal | None:
    if key_count < 2:
        return Refusal(
            "lifecycle",
            f"The list has {key_count} key(s); a key-signing party needs at least two. "
            "Register keys first (web form or `keyparty import EVENT FILE`).",
        )
    return None
