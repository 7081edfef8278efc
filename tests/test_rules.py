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


def test_a_policy_url_must_be_public():
    from keyparty.rules import check_policy_url

    assert check_policy_url(None) is None
    assert check_policy_url("https://keys.example.org/e/x/policy") is None
    for url in (
        "http://192.168.1.20:8000/e/x/policy",
        "http://127.0.0.1:8000/p",
        "http://[::1]/p",
        "http://169.254.1.1/p",
        "http://laptop/p",
        "http://laptop.local/p",
        "http://localhost:8000/p",
        "ftp://keys.example.org/p",
        "keys.example.org/p",
    ):
        refusal = check_policy_url(url)
        assert refusal is not None and refusal.rule == "C1", url
        assert "for ever" in refusal.message


def test_certification_settings_are_checked_and_fixed_at_the_freeze():
    from keyparty.rules import CertificationSettings
    from keyparty.rules import check_certification_settings

    good = CertificationSettings(365, 730, 30, "keyparty.org", None)
    assert check_certification_settings("registration", good) is None
    assert check_certification_settings("frozen", good).rule == "frozen"
    bad = {
        "D1": [
            CertificationSettings(800, 730, 30, "keyparty.org", None),
            CertificationSettings(0, 730, 30, "keyparty.org", None),
            CertificationSettings(365, 4000, 30, "keyparty.org", None),
        ],
        "D3": [CertificationSettings(365, 730, 0, "keyparty.org", None)],
        "C1": [
            CertificationSettings(365, 730, 30, "Not A Domain", None),
            CertificationSettings(365, 730, 30, "keyparty.org", "http://10.1.2.3/"),
        ],
    }
    for rule, settings in bad.items():
        for s in settings:
            assert check_certification_settings("draft", s).rule == rule, s
