"""What intake accepts, as plain rules (C1, C2, D1, D3, T1, P6, weak hashes)."""

from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from keyparty.rules import CertificationFacts
from keyparty.rules import check_certification
from keyparty.rules import check_contexts_change
from keyparty.rules import moment_text
from keyparty.rules import signing_window

STARTED = datetime(2027, 2, 10, 9, 30, tzinfo=UTC)
START, END = signing_window(STARTED, 30)

GOOD = CertificationFacts(
    event_id="fosdem-2027",
    event_state="signing",
    valid=True,
    issuer_registered=True,
    issuer_is_uploader=True,
    target_on_list=True,
    user_id_on_list=True,
    sig_type=0x13,
    hash_algorithm=8,  # SHA-256
    exportable=True,
    trust=None,
    regexps=(),
    contexts=("identity",),
    event_contexts=("identity", "email", "pseudonym"),
    event_notation="fosdem-2027",
    verified_level=3,
    withdrawn=False,
    created=STARTED + timedelta(days=1),
    expires=STARTED + timedelta(days=366),
    window_start=START,
    window_end=END,
    expiry_cap_days=730,
)


def refused(**changes):
    refusal = check_certification(replace(GOOD, **changes))
    assert refusal is not None, changes
    return refusal


def test_a_good_certification_passes():
    assert check_certification(GOOD) is None


def test_the_window_runs_from_the_start_of_signing_for_its_length():
    assert (STARTED, datetime(2027, 3, 12, 9, 30, tzinfo=UTC)) == (START, END)
    assert moment_text(END) == "2027-03-12 09:30 UTC"
    with pytest.raises(ValueError):
        signing_window(STARTED.replace(tzinfo=None), 30)


@pytest.mark.parametrize("seconds", [-1, -3600, -86400 * 3])
def test_made_before_signing_started_is_d3(seconds):
    refusal = refused(created=STARTED + timedelta(seconds=seconds))
    assert refusal.rule == "D3"
    assert "in the calm of the signing phase" in refusal.message
    assert "2027-02-10 09:30 UTC" in refusal.message


def test_the_window_edges_are_inside():
    for created in (START, END):
        facts = replace(GOOD, created=created, expires=created + timedelta(days=365))
        assert check_certification(facts) is None


def test_made_after_the_window_is_d3_with_the_same_end():
    refusal = refused(created=END + timedelta(seconds=1), expires=END + timedelta(days=300))
    assert refusal.rule == "D3"
    assert moment_text(END) in refusal.message


@pytest.mark.parametrize(
    "contexts, words",
    [
        ((), "no context notation"),
        (("identity", "email"), "2 context notations (identity, email)"),
        (("identity", "identity"), "2 context notations"),
        (("fingerprint",), "'fingerprint' is not a context at this event"),
    ],
)
def test_exactly_one_context_from_the_list_is_c1(contexts, words):
    refusal = refused(contexts=contexts)
    assert refusal.rule == "C1"
    assert words in refusal.message


def test_c1_comes_before_d2_and_t2():
    refusal = refused(contexts=(), event_notation=None, verified_level=None)
    assert refusal.rule == "C1"


@pytest.mark.parametrize(
    "sig_type, verified, accepted",
    [
        (0x10, 3, True),
        (0x10, 2, True),
        (0x12, 3, True),
        (0x13, 3, True),
        (0x12, 2, True),
        (0x11, 3, False),
        (0x11, 2, False),
        (0x13, 2, False),
    ],
)
def test_any_level_from_generic_up_to_the_basis_never_persona(sig_type, verified, accepted):
    refusal = check_certification(replace(GOOD, sig_type=sig_type, verified_level=verified))
    assert (refusal is None) == accepted, refusal
    if refusal:
        assert refusal.rule == "C2"
        assert ("persona" in refusal.message) == (sig_type == 0x11)


def test_a_signature_that_is_no_certification_is_input():
    assert refused(sig_type=0x30).rule == "input"


@pytest.mark.parametrize(
    "lifetime, accepted",
    [
        (timedelta(days=730), True),
        # sq's "2y": 2 x 365.2425 days.
        (timedelta(days=730, hours=11, minutes=38, seconds=24), True),
        (timedelta(days=731), True),
        (timedelta(days=731, seconds=1), False),
        (timedelta(days=1095), False),
    ],
)
def test_the_cap_allows_one_extra_day(lifetime, accepted):
    refusal = check_certification(replace(GOOD, expires=GOOD.created + lifetime))
    assert (refusal is None) == accepted
    if refusal:
        assert (refusal.rule, "cap of 730 days" in refusal.message) == ("D1", True)


def test_no_expiry_is_d1():
    assert refused(expires=None).rule == "D1"


@pytest.mark.parametrize(
    "trust, regexps, accepted",
    [
        ((0, 60), (), True),
        ((0, 120), (), True),
        ((1, 60), (), False),
        ((2, 120), (), False),
        ((0, 60), (b"<[^>]+[@.]example\\.org>$\x00",), False),
        (None, (b"example",), False),
    ],
)
def test_only_depth_0_without_a_regular_expression_passes_t1(trust, regexps, accepted):
    refusal = check_certification(replace(GOOD, trust=trust, regexps=regexps))
    assert (refusal is None) == accepted
    if refusal:
        assert refusal.rule == "T1" and "trust signature" in refusal.message


@pytest.mark.parametrize("algorithm, name", [(1, "MD5"), (2, "SHA-1")])
def test_weak_hashes_are_named_not_called_tampering(algorithm, name):
    # gpg calls such a signature bad; the weak hash is the real cause.
    refusal = refused(hash_algorithm=algorithm, valid=False)
    assert refusal.rule == "hash"
    assert name in refusal.message and "changed after it was made" not in refusal.message


@pytest.mark.parametrize("algorithm", [3, 8, 9, 10, 11])
def test_other_hashes_pass(algorithm):
    assert check_certification(replace(GOOD, hash_algorithm=algorithm)) is None


def test_a_withdrawn_verification_is_p6_not_t2():
    refusal = refused(verified_level=None, withdrawn=True)
    assert refusal.rule == "P6" and "withdrew" in refusal.message
    assert refused(verified_level=None, withdrawn=False).rule == "T2"


@pytest.mark.parametrize("state", ["draft", "registration"])
def test_contexts_change_freely_before_the_freeze(state):
    assert check_contexts_change(state, ["identity"], ["identity", "email"]) is None


@pytest.mark.parametrize("state", ["frozen", "verifying", "cooling-off", "signing", "closed"])
def test_contexts_are_fixed_at_the_freeze(state):
    refusal = check_contexts_change(state, ["identity", "email"], ["identity"])
    assert refusal.rule == "C1"
    assert "fixed since the party list was frozen" in refusal.message
    assert check_contexts_change(state, ["identity", "email"], ["identity", "email"]) is None
