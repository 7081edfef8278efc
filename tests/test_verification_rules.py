"""In-person verification: contexts (C1, C2), own checks only (T2, T4), no peer pressure (P3-P6)."""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from keyparty import rules
from keyparty.rules import BASES
from keyparty.rules import CONTEXT_LABELS
from keyparty.rules import DEFAULT_CONTEXTS
from keyparty.rules import STATES
from keyparty.rules import Pace
from keyparty.rules import VerificationAttempt
from keyparty.rules import certification_level
from keyparty.rules import check_entry_confirmation
from keyparty.rules import check_pace_settings
from keyparty.rules import check_verification
from keyparty.rules import check_withdrawal
from keyparty.rules import pace_wait

BASE = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
SIGNER = 7
OWNER = 8


def fpr(n: int) -> str:
    return f"{n:040X}"


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def attempt(**changes) -> VerificationAttempt:
    """A verification that every rule accepts, changed by `changes`."""
    good = VerificationAttempt(
        event_state="verifying",
        signer_id=SIGNER,
        acting_id=SIGNER,
        owner_id=OWNER,
        owner_confirmed=True,
        key_fingerprint=fpr(100),
        user_id_on_key=True,
        context="identity",
        event_contexts=DEFAULT_CONTEXTS,
        basis="photo-id",
        earlier=(),
        now=at(600),
    )
    return dataclasses.replace(good, **changes)


# --- C1 / C2: contexts and bases --------------------------------------------


def test_default_contexts_and_their_labels():
    assert DEFAULT_CONTEXTS == ("identity", "email", "pseudonym")
    assert set(CONTEXT_LABELS) == set(DEFAULT_CONTEXTS)
    assert "photo ID" in CONTEXT_LABELS["identity"]
    assert "address" in CONTEXT_LABELS["email"]
    assert "community" in CONTEXT_LABELS["pseudonym"]


def test_bases_are_offered_in_order_with_first_person_labels():
    assert list(BASES) == [
        "photo-id",
        "known-personally",
        "vouched",
        "everyone-signs",
        "seemed-nice",
    ]
    for basis_id, basis in BASES.items():
        assert basis.id == basis_id
        assert basis.label.startswith(("I ", "Someone", "Everyone", "They"))
        assert (basis.level is None) == (basis.rule is not None) == (basis.refusal is not None)


@pytest.mark.parametrize(("basis", "level"), [("photo-id", 3), ("known-personally", 2)])
def test_certification_level_follows_the_basis(basis, level):
    assert certification_level(basis) == level
    assert check_verification(attempt(basis=basis)) is None


@pytest.mark.parametrize("basis", ["vouched", "everyone-signs", "seemed-nice", "generic", ""])
def test_no_certification_level_for_refused_or_unknown_bases(basis):
    with pytest.raises(ValueError):
        certification_level(basis)


def test_never_level_zero_or_one():
    levels = {b.level for b in BASES.values() if b.level is not None}
    assert levels == {2, 3}


@pytest.mark.parametrize(
    ("basis", "rule", "words"),
    [
        ("vouched", "T2", ("yourself", "transitive trust")),
        ("everyone-signs", "P3", ("other people", "peer pressure")),
        ("seemed-nice", "P3", ("nice", "not an identity check")),
    ],
)
def test_each_refused_basis_says_why(basis, rule, words):
    refusal = check_verification(attempt(basis=basis))
    assert refusal.rule == rule
    assert refusal.message == BASES[basis].refusal
    for word in words:
        assert word in refusal.message


def test_an_unknown_basis_lists_the_accepted_ones():
    refusal = check_verification(attempt(basis="generic"))
    assert refusal.rule == "P3"
    assert "official photo ID" in refusal.message
    assert "known them personally" in refusal.message
    assert "vouched" not in refusal.message


def test_a_context_the_event_does_not_offer_names_the_events_contexts():
    refusal = check_verification(attempt(context="notary", event_contexts=("identity", "email")))
    assert refusal.rule == "C1"
    assert "notary" in refusal.message
    assert "identity, email" in refusal.message
    assert "pseudonym" not in refusal.message


@pytest.mark.parametrize("context", DEFAULT_CONTEXTS)
def test_each_default_context_is_accepted(context):
    assert check_verification(attempt(context=context)) is None


def test_the_event_may_set_its_own_contexts():
    assert check_verification(attempt(context="debian", event_contexts=("debian",))) is None


def test_refusal_text_is_translatable_before_it_is_filled_in():
    refusal = check_verification(attempt(context="notary"))
    assert "{context}" in refusal.text
    assert refusal.params["context"] == "notary"


# --- lifecycle and P6 ---------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_verifications_are_added_only_while_verifying(state):
    refusal = check_verification(attempt(event_state=state))
    if state == "verifying":
        assert refusal is None
        return
    assert state in refusal.message
    if STATES.index(state) < STATES.index("verifying"):
        assert refusal.rule == "lifecycle"
        assert "host starts" in refusal.message
    else:
        assert refusal.rule == "P6"
        assert "over" in refusal.message
        assert ("withdraw" in refusal.message) == (state == "cooling-off")


@pytest.mark.parametrize("state", STATES)
def test_withdrawal_until_signing_starts(state):
    refusal = check_withdrawal(state, SIGNER, SIGNER)
    if state in ("verifying", "cooling-off"):
        assert refusal is None
    elif STATES.index(state) < STATES.index("verifying"):
        assert refusal.rule == "lifecycle"
        assert "nothing to withdraw" in refusal.message
    else:
        assert refusal.rule == "P6"
        assert "no longer" in refusal.message
        assert "certifications are being made" in refusal.message


@pytest.mark.parametrize("acting", [OWNER, None])
def test_nobody_withdraws_someone_elses_verification(acting):
    for state in ("verifying", "cooling-off"):
        refusal = check_withdrawal(state, SIGNER, acting)
        assert refusal.rule == "T2"
        assert "withdrawn only from the signer's own session" in refusal.message


def test_withdrawal_reports_the_state_before_the_session():
    assert check_withdrawal("signing", SIGNER, OWNER).rule == "P6"


@pytest.mark.parametrize("state", STATES)
def test_entry_confirmation_while_the_frozen_list_is_in_use(state):
    refusal = check_entry_confirmation(state)
    if state in ("frozen", "verifying"):
        assert refusal is None
        return
    assert refusal.rule == "T4"
    assert state in refusal.message
    if STATES.index(state) < STATES.index("frozen"):
        assert "no frozen list yet" in refusal.message
    else:
        assert "too late" in refusal.message


@pytest.mark.parametrize("check", [check_entry_confirmation, lambda s: check_withdrawal(s, 1, 1)])
def test_an_unknown_state_is_a_programming_error(check):
    with pytest.raises(ValueError):
        check("party")
    with pytest.raises(ValueError):
        check_verification(attempt(event_state="party"))


# --- T2, T4 and the list ------------------------------------------------------


def test_nobody_records_a_verification_for_someone_else():
    refusal = check_verification(attempt(acting_id=OWNER + 1))
    assert refusal.rule == "T2"
    assert "own session" in refusal.message
    assert "someone else" in refusal.message


def test_no_session_means_join_first():
    refusal = check_verification(attempt(acting_id=None))
    assert refusal.rule == "T2"
    assert "own link" in refusal.message


def test_you_do_not_verify_your_own_key():
    refusal = check_verification(attempt(owner_id=SIGNER))
    assert refusal.rule == "T2"
    assert "your own key" in refusal.message


def test_a_user_id_not_on_the_frozen_list_entry():
    refusal = check_verification(attempt(user_id_on_key=False))
    assert refusal.rule == "list"
    assert "frozen party list" in refusal.message


def test_the_owner_must_have_confirmed_their_entry():
    refusal = check_verification(attempt(owner_confirmed=False))
    assert refusal.rule == "T4"
    assert "not yet confirmed" in refusal.message
    assert "phone" in refusal.message


# --- order of the checks ------------------------------------------------------

RUSHED = ((fpr(1), at(599)),)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"event_state": "frozen"}, "lifecycle"),
        ({"event_state": "cooling-off"}, "P6"),
        ({"acting_id": None}, "T2"),
        ({"owner_id": SIGNER, "acting_id": SIGNER}, "T2"),
        ({"user_id_on_key": False}, "list"),
        ({"owner_confirmed": False}, "T4"),
        ({"context": "notary"}, "C1"),
        ({"basis": "seemed-nice"}, "P3"),
        ({}, "P4"),
    ],
)
def test_the_first_refusal_wins(changes, rule):
    """Each row breaks its own rule and every later one; the earliest is reported."""
    later = {
        "user_id_on_key": False,
        "owner_confirmed": False,
        "context": "notary",
        "basis": "seemed-nice",
    }
    order = ["user_id_on_key", "owner_confirmed", "context", "basis"]
    start = next((i for i, name in enumerate(order) if name in changes), len(order))
    broken = {name: later[name] for name in order[start:]}
    refusal = check_verification(attempt(**{"earlier": RUSHED, **broken, **changes}))
    assert refusal.rule == rule


def test_a_rushed_attempt_in_the_wrong_state_reports_the_state():
    refusal = check_verification(attempt(event_state="frozen", earlier=RUSHED))
    assert refusal.rule == "lifecycle"
    assert "frozen" in refusal.message


def test_a_rushed_attempt_from_another_session_reports_the_session():
    assert check_verification(attempt(acting_id=OWNER + 1, earlier=RUSHED)).rule == "T2"


# --- P4 pace ------------------------------------------------------------------


@pytest.mark.parametrize(("apart", "wait"), [(19, 1), (20, 0), (21, 0), (0, 20), (19.5, 1)])
def test_two_verifications_less_than_20_s_apart(apart, wait):
    earlier = ((fpr(1), at(0)),)
    assert pace_wait(earlier, fpr(2), at(apart)) == wait


def test_a_rushed_verification_shows_the_wait():
    refusal = check_verification(attempt(earlier=((fpr(1), at(0)),), now=at(19)))
    assert refusal.rule == "P4"
    assert refusal.params == {"wait": 1}
    assert "faster than an ID can be checked" in refusal.message
    assert "wait 1 s" in refusal.message


def test_twenty_seconds_apart_is_accepted():
    assert check_verification(attempt(earlier=((fpr(1), at(0)),), now=at(20))) is None


def ten_keys_twenty_seconds_apart() -> tuple[tuple[str, datetime], ...]:
    return tuple((fpr(i), at(20 * i)) for i in range(10))  # 0 s ... 180 s


def test_the_tenth_in_five_minutes_is_accepted():
    nine = ten_keys_twenty_seconds_apart()[:9]  # 0 s ... 160 s
    assert pace_wait(nine, fpr(99), at(180)) == 0


def test_the_eleventh_in_five_minutes_waits_until_the_oldest_leaves_the_window():
    ten = ten_keys_twenty_seconds_apart()
    # The oldest (0 s) leaves the 300 s window at 300 s.
    assert pace_wait(ten, fpr(99), at(200)) == 100
    assert pace_wait(ten, fpr(99), at(299)) == 1
    refusal = check_verification(attempt(earlier=ten, now=at(200)))
    assert refusal.rule == "P4"
    assert "wait 100 s" in refusal.message


def test_at_exactly_300_s_the_oldest_has_left_the_window():
    assert pace_wait(ten_keys_twenty_seconds_apart(), fpr(99), at(300)) == 0


def test_the_larger_of_the_two_waits_is_shown():
    ten = tuple((fpr(i), at(i)) for i in range(10))  # 0 s ... 9 s (already too fast)
    # Gap: the latest is 1 s old, 19 s to go. Window: the oldest leaves at 300 s.
    assert pace_wait(ten, fpr(99), at(10)) == 290
    assert pace_wait(ten[-1:], fpr(99), at(10)) == 19


def test_when_more_than_the_maximum_are_in_the_window_enough_must_leave():
    twelve = tuple((fpr(i), at(20 * i)) for i in range(12))  # 0 s ... 220 s
    # Three must leave for fewer than ten to remain: the third, at 40 s, leaves at 340 s.
    assert pace_wait(twelve, fpr(99), at(250)) == 90


def test_pace_counts_people_not_user_ids():
    earlier = ((fpr(1), at(0)),)
    # A second user ID of a key already verified, one second later: not rushed.
    assert pace_wait(earlier, fpr(1), at(1)) == 0
    assert check_verification(attempt(key_fingerprint=fpr(1), earlier=earlier, now=at(1))) is None
    # Fingerprints are compared without regard to case or spacing.
    assert pace_wait(earlier, fpr(1).lower(), at(1)) == 0


def test_further_user_ids_do_not_fill_the_window_or_reset_the_gap():
    nine_keys = tuple((fpr(i), at(20 * i)) for i in range(9))  # 0 s ... 160 s
    more_uids = tuple((fpr(8), at(161 + i)) for i in range(5))  # key 8 again, later
    # Key 8 counts once, at its first verification (160 s): 20 s later is fine.
    assert pace_wait(nine_keys + more_uids, fpr(99), at(180)) == 0


def test_a_wait_is_rounded_up_to_whole_seconds():
    earlier = ((fpr(1), at(0)),)
    assert pace_wait(earlier, fpr(2), at(1.2)) == 19
    assert pace_wait(earlier, fpr(2), at(19.999)) == 1


def test_the_event_sets_its_own_pace():
    pace = Pace(min_gap_seconds=60, window_seconds=600, max_in_window=3)
    earlier = ((fpr(1), at(0)), (fpr(2), at(60)), (fpr(3), at(120)))
    assert pace_wait(earlier[:2], fpr(9), at(90), pace) == 30
    assert pace_wait(earlier[:2], fpr(9), at(120), pace) == 0
    assert pace_wait(earlier, fpr(9), at(150), pace) == 450
    assert pace_wait(earlier, fpr(9), at(180), pace) == 420
    assert pace_wait(earlier, fpr(9), at(600), pace) == 0
    refusal = check_verification(attempt(earlier=earlier, now=at(180), pace=pace))
    assert refusal.params == {"wait": 420}


def test_no_earlier_verifications_means_no_wait():
    assert pace_wait((), fpr(1), BASE) == 0


def test_pace_wants_aware_datetimes():
    with pytest.raises(ValueError):
        pace_wait((), fpr(1), datetime(2026, 12, 5, 10, 0))  # naive on purpose


def test_the_default_pace_is_the_documented_one():
    assert Pace() == Pace(min_gap_seconds=20, window_seconds=300, max_in_window=10)
    assert check_pace_settings(Pace()) is None


@pytest.mark.parametrize(
    ("pace", "words"),
    [
        (Pace(min_gap_seconds=0), ("shortest gap", "0")),
        (Pace(window_seconds=-5), ("pace window", "-5")),
        (Pace(max_in_window=0), ("most verifications", "0")),
        (Pace(min_gap_seconds=1.5), ("whole number", "1.5")),
        (Pace(min_gap_seconds=60, window_seconds=30), ("30 s", "60 s")),
    ],
)
def test_pace_settings_must_make_sense(pace, words):
    refusal = check_pace_settings(pace)
    assert refusal.rule == "P4"
    for word in words:
        assert word in refusal.message


def test_the_rules_module_stays_plain():
    with open(rules.__file__, encoding="utf-8") as handle:
        text = handle.read()
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "keyparty.translatable":
            # keyparty.translatable is the N_ marker alone: no imports, nothing runs.
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"flask", "sqlalchemy", "subprocess", "gnupg", "keyparty", "time"}
    assert ".now(" not in text
    assert "utcnow" not in text
