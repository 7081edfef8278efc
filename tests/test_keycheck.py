"""Which keys are accepted, judged from plain facts about them."""

from datetime import UTC
from datetime import date
from datetime import datetime

import pytest

from keyparty.keycheck import MAX_KEY_BYTES
from keyparty.keycheck import Component
from keyparty.keycheck import check_key_block
from keyparty.keycheck import check_key_validity

ED25519 = Component(algorithm=22, bits=255, is_primary=True)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def block(version=4, size=1000, uids=(30,), components=(ED25519,)):
    return check_key_block(version, size, list(uids), list(components))


def test_a_normal_key_passes():
    assert block() is None


def test_v3_keys_are_refused_with_how_to_make_a_new_key():
    refusal = block(version=3)
    assert refusal.problem == "v3"
    assert "gpg --quick-gen-key" in refusal.message


def test_v5_keys_are_refused_as_unsupported():
    assert block(version=5).problem == "unsupported-version"


def test_size_boundary_is_one_mebibyte():
    assert block(size=MAX_KEY_BYTES) is None
    refusal = block(size=MAX_KEY_BYTES + 1)
    assert refusal.problem == "too-large"
    assert "export-minimal" in refusal.message


def test_user_id_boundary_is_1024_bytes():
    assert block(uids=(1024,)) is None
    assert block(uids=(10, 1025)).problem == "long-user-id"


@pytest.mark.parametrize(
    ("algorithm", "bits", "refused"),
    [
        (1, 2047, True),
        (1, 2048, False),
        (17, 1024, True),
        (17, 2048, False),
        (16, 1024, True),
        (20, 4096, True),
        (22, 255, False),
        (18, 256, False),
    ],
)
def test_weak_algorithms(algorithm, bits, refused):
    refusal = block(components=(ED25519, Component(algorithm, bits, is_primary=False)))
    assert (refusal is not None) == refused
    if refused:
        assert refusal.problem == "weak-algorithm"
        assert "subkey" in refusal.message


def test_a_weak_primary_key_is_named_as_such():
    refusal = block(components=(Component(1, 1024, is_primary=True),))
    assert "primary key" in refusal.message
    assert "1024 bits" in refusal.message


def validity(revoked=False, expires=None, uids=1, event_date=date(2026, 12, 5)):
    return check_key_validity(revoked, expires, uids, event_date, NOW)


def test_revoked_keys_are_refused():
    assert validity(revoked=True).problem == "revoked"


def test_expired_keys_are_refused_with_how_to_extend():
    refusal = validity(expires=datetime(2026, 11, 1, tzinfo=UTC))
    assert refusal.problem == "expired"
    assert "--quick-set-expire" in refusal.message


def test_a_key_expiring_on_or_before_the_event_is_refused():
    on_the_day = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
    assert validity(expires=on_the_day).problem == "expires-before-event"
    assert validity(expires=datetime(2026, 12, 6, 18, 0, tzinfo=UTC)) is None


def test_expiry_without_an_event_date_only_needs_the_future():
    assert validity(expires=datetime(2026, 11, 27, tzinfo=UTC), event_date=None) is None


def test_a_key_without_usable_user_ids_is_refused():
    assert validity(uids=0).problem == "no-user-id"
