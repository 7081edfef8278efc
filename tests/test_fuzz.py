"""The packet reader takes any bytes from strangers: it answers (keys, or a refusal
that names the problem) in linear time and little memory, never with another
exception, and gives the same answer armored or binary (issue 11, item 10).

`make test` runs a bounded number of mutated keys (about a minute with the worst
cases); `make fuzz` sets KEYPARTY_FUZZ_EXAMPLES for a long run. Time is measured
as this process's CPU time, so a loaded machine does not make it fail.
"""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keyparty import openpgp
from tests.conftest import FIXTURES

UPLOAD_LIMIT = 2 * 1024 * 1024
SECONDS = 0.5
MEGABYTES = 100
# A failing example of a megabyte is shown in full otherwise.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
EXAMPLES = int(os.environ.get("KEYPARTY_FUZZ_EXAMPLES", "150"))

SEEDS = [
    openpgp.dearmor((FIXTURES / path).read_bytes())
    for path in (
        "attendees/alice.asc",
        "attendees/bob.asc",
        "attendees/rsa.asc",
        "strange/exact-uids.asc",
        "strange/debian-shaped.asc",
        "bad/flooded.asc",
    )
]


def judge(data: bytes) -> tuple[str, object]:
    """Everything a registration or an intake asks of the reader, for one input:
    ("keys", [(fingerprint, user IDs, minimal keys)]) or ("refused", problem)."""
    try:
        blocks = openpgp.read_keys(data, openpgp.CERTIFICATION_LABELS)
    except openpgp.KeyMaterialRefused as refused:
        assert str(refused) and refused.problem
        return "refused", refused.problem
    found = []
    for block in blocks:
        try:
            entries = openpgp.user_id_signatures(block)
        except openpgp.KeyMaterialRefused as refused:
            found.append((block.fingerprint, "refused", refused.problem))
            continue
        minimal = []
        for entry in entries:
            for signature in entry.signatures:
                try:
                    minimal.append(openpgp.minimal_key(block, entry.user_id, [signature]))
                except ValueError:
                    minimal.append(None)  # not a certification, or not a v4 key
        found.append((block.fingerprint, block.user_ids, minimal))
    return "keys", found


def bounded(data: bytes) -> tuple[str, object]:
    """judge(data), checked to take under SECONDS of CPU and MEGABYTES of memory."""
    began = time.process_time()
    answer = judge(data)
    spent = time.process_time() - began
    assert spent < SECONDS, f"{spent:.2f} s of CPU for {len(data)} bytes"
    tracemalloc.start()
    try:
        judge(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEGABYTES * 1e6, f"{peak / 1e6:.0f} MB for {len(data)} bytes"
    return answer


def same_armored(data: bytes, answer: tuple[str, object]) -> None:
    """The same bytes armored get the same answer (binary input only)."""
    if not data or not data[0] & 0x80 or answer[1] in ("keybox", "utf-16"):
        return
    assert judge(openpgp.armor(data).encode()) == answer


@st.composite
def mutated_keys(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        elif kind == "repeat":
            piece = bytes(data[at : at + draw(st.integers(1, 64))])
            data[at:at] = piece * draw(st.integers(1, 2000))
        else:
            data[at:at] = draw(st.sampled_from(SEEDS))
    return bytes(data[:UPLOAD_LIMIT])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 150,  # `make test` runs the same cases every time
)
@given(mutated_keys())
def test_mutated_keys_get_an_answer_fast_and_the_same_armored(data):
    same_armored(data, bounded(data))


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None, derandomize=EXAMPLES <= 150)
@given(st.binary(max_size=4096))
def test_random_bytes_get_an_answer(data):
    bounded(data)


def _worst_cases() -> dict[str, bytes]:
    key = SEEDS[0]
    fill = UPLOAD_LIMIT - len(key)
    return {
        "BEGIN lines without newlines": b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
        * (UPLOAD_LIMIT // 36),
        "BEGIN lines": b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n" * (UPLOAD_LIMIT // 37),
        "empty armor blocks": (
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"
        )
        * (UPLOAD_LIMIT // 75),
        "a key and a million empty user IDs": key + b"\xcd\x00" * (fill // 2),
        "a key and marker packets": key + b"\xca\x03PGP" * (fill // 5),
        "a key and empty signatures": key + b"\xc2\x00" * (fill // 2),
        "a key and one-byte user IDs": key + b"\xcd\x01a" * (fill // 3),
        "many copies of a key": key * (UPLOAD_LIMIT // len(key)),
        "armored copies of a key": openpgp.armor(key * (UPLOAD_LIMIT // len(key) // 2)).encode(),
        "a thousand certifications": openpgp.dearmor(
            (FIXTURES / "bad" / "flooded.asc").read_bytes()
        ),
    }


@pytest.mark.parametrize("name", list(_worst_cases()))
def test_the_worst_inputs_under_the_upload_limit_are_judged_in_bounds(name):
    data = _worst_cases()[name]
    assert len(data) <= UPLOAD_LIMIT + 4096
    bounded(data)


def test_a_binary_key_that_is_valid_utf8_is_still_read_as_binary():
    # A v4 RSA key packet and a user ID whose bytes all happen to be valid UTF-8:
    # each packet header is a two-byte UTF-8 sequence (0xC6 0x8E, 0xCD 0x80) and the
    # bodies are ASCII (a 1031-bit modulus of 0x41 bytes, exponent 65537).
    body = b"\x04\x11\x22\x33\x44\x01" + b"\x04\x07" + b"\x41" * 129 + b"\x00\x11\x01\x00\x01"
    key = b"\xc6" + bytes([len(body)]) + body + b"\xcd\x80" + b"A" * 128
    key.decode("utf-8")  # the premise
    [block] = openpgp.read_keys(key)
    assert block.user_ids == (b"A" * 128,) and block.components[0].bits == 1031
    assert openpgp.read_keys(openpgp.armor(key).encode())[0].data == block.data
