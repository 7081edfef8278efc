"""The event lifecycle: each step only from the state before it."""

import pytest

from keyparty.rules import STATES
from keyparty.rules import STEPS
from keyparty.rules import check_freeze
from keyparty.rules import check_key_change
from keyparty.rules import check_step
from keyparty.rules import next_step


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("state", STATES)
def test_each_step_is_allowed_only_from_the_state_before_it(state, step):
    before, _after, _label = STEPS[step]
    refusal = check_step(state, step)
    if state == before:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.rule == "lifecycle"
        assert state in refusal.message


def test_a_step_taken_too_early_names_what_to_do_first():
    refusal = check_step("registration", "start-verifying")
    assert "freeze" in refusal.message.lower()
    assert "keyparty step EVENT freeze" in refusal.message


def test_a_step_already_done_says_so():
    assert "already" in check_step("verifying", "freeze").message


def test_the_steps_walk_every_state_in_order():
    state, walked = "draft", ["draft"]
    while (step := next_step(state)) is not None:
        state = STEPS[step][1]
        walked.append(state)
    assert tuple(walked) == STATES


def test_unknown_step_lists_the_real_ones():
    assert "freeze" in check_step("registration", "party").message


@pytest.mark.parametrize("state", STATES)
def test_keys_change_only_before_the_freeze(state):
    open_states = ("draft", "registration")
    for is_update in (False, True):
        refusal = check_key_change(state, is_update)
        assert (refusal is None) == (state in open_states)
    if state not in open_states:
        assert "frozen" in check_key_change(state, True).message


def test_freeze_needs_two_keys():
    assert check_freeze(1) is not None
    assert check_freeze(2) is None


@pytest.mark.parametrize("state", STATES)
def test_owners_decide_only_while_signing(state):
    from keyparty.rules import check_owner_decision

    for decision in ("accepted", "declined"):
        refusal = check_owner_decision(state, "identity", decision)
        assert (refusal is None) == (state == "signing")
        if refusal:
            assert refusal.rule == "O1"
    if state == "closed":
        assert "final" in check_owner_decision(state, "identity", "declined").message


def test_an_email_certification_is_accepted_only_through_its_mail():
    from keyparty.rules import check_owner_decision

    assert check_owner_decision("signing", "email", "accepted").rule == "C3"
    assert check_owner_decision("signing", "email", "declined") is None
