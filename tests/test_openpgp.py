"""Tests for keyparty.openpgp: armor, packet reading, refusals.

Packets are built by hand here (their contents need not be cryptographically valid for
this module); one test checks against keys made by a real gpg in a throwaway home.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import random
import shutil
import subprocess
import tempfile

import pytest

from keyparty import openpgp
from keyparty.openpgp import KeyBlock
from keyparty.openpgp import KeyMaterialRefused
from keyparty.openpgp import armor
from keyparty.openpgp import dearmor
from keyparty.openpgp import is_armored
from keyparty.openpgp import read_keys

CREATED = (1_700_000_000).to_bytes(4, "big")
ED25519_OID = bytes.fromhex("2B06010401DA470F01")
CV25519_OID = bytes.fromhex("2B060104019755010501")
NISTP384_OID = bytes.fromhex("2B81040022")
EXPORT_FIX = "gpg --armor --export"


# --- packet builders ----------------------------------------------------------------


def new_packet(tag: int, body: bytes) -> bytes:
    """New-format packet, with the shortest length form."""
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        n -= 192
        length = bytes([(n >> 8) + 192, n & 0xFF])
    else:
        length = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


def old_packet(tag: int, body: bytes, width: int | None = None) -> bytes:
    """Old-format packet with a 1-, 2- or 4-octet length (shortest unless `width`)."""
    if width is None:
        width = 1 if len(body) < 0x100 else 2 if len(body) < 0x10000 else 4
    length_type = {1: 0, 2: 1, 4: 2}[width]
    return bytes([0x80 | (tag << 2) | length_type]) + len(body).to_bytes(width, "big") + body


def mpi(value: int) -> bytes:
    bits = value.bit_length()
    return bits.to_bytes(2, "big") + value.to_bytes((bits + 7) // 8, "big")


def rsa_body(bits: int = 2048, version: int = 4, seed: int = 1) -> bytes:
    n = (1 << (bits - 1)) | random.Random(seed).getrandbits(bits - 1) | 1
    material = mpi(n) + mpi(65537)
    if version == 3:
        return bytes([3]) + CREATED + b"\x00\x00" + bytes([1]) + material
    return bytes([version]) + CREATED + bytes([1]) + material


def ecc_body(algorithm: int, oid: bytes, point_bits: int = 263) -> bytes:
    point = (0x40 << (point_bits - 7)) | 0x1234  # native point format marker + filler
    extra = b"\x03\x01\x08\x07" if algorithm == 18 else b""  # ECDH KDF parameters
    return b"\x04" + CREATED + bytes([algorithm, len(oid)]) + oid + mpi(point) + extra


def ed25519_body() -> bytes:
    return ecc_body(22, ED25519_OID)


def signature(seed: int = 0) -> bytes:
    """A signature packet; only its framing matters here."""
    return new_packet(2, b"\x04\x13\x01\x08" + random.Random(seed).randbytes(80))


def user_id(text: str | bytes) -> bytes:
    return new_packet(13, text.encode() if isinstance(text, str) else text)


def fingerprint_of(body: bytes) -> str:
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()


def simple_key(name: str = "Alice <alice@example.org>", seed: int = 1) -> bytes:
    """RSA-2048 primary, user ID, self-signature, cv25519 subkey, binding signature."""
    return (
        old_packet(6, rsa_body(2048, seed=seed))
        + user_id(name)
        + signature(seed)
        + new_packet(14, ecc_body(18, CV25519_OID))
        + signature(seed + 1)
    )


def refused(data: bytes) -> KeyMaterialRefused:
    with pytest.raises(KeyMaterialRefused) as info:
        read_keys(data)
    return info.value


# --- CRC-24 -------------------------------------------------------------------------


def reference_crc24(data: bytes) -> int:
    """RFC 4880 6.1, bit by bit."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def test_crc24_known_values():
    assert openpgp._crc24(b"") == 0xB704CE
    assert openpgp._crc24(b"123456789") == 0x21CF02  # CRC-24/OPENPGP check value


def test_crc24_matches_reference_on_many_lengths():
    rng = random.Random(24)
    for length in [*range(0, 80), 255, 256, 1000, 4097, 20_001]:
        data = rng.randbytes(length)
        assert openpgp._crc24(data) == reference_crc24(data), length


# --- armor / dearmor ----------------------------------------------------------------


def test_armor_round_trip_and_format():
    data = simple_key()
    text = armor(data)
    lines = text.splitlines()
    assert lines[0] == "-----BEGIN PGP PUBLIC KEY BLOCK-----"
    assert lines[1] == ""
    assert lines[-1] == "-----END PGP PUBLIC KEY BLOCK-----"
    assert text.endswith("\n")
    assert lines[-2].startswith("=") and len(lines[-2]) == 5
    assert all(len(line) <= 64 for line in lines[2:-2])
    assert all(len(line) == 64 for line in lines[2:-3])
    assert dearmor(text.encode()) == data
    assert is_armored(text.encode())
    assert not is_armored(data)


def test_armor_round_trip_many_sizes():
    rng = random.Random(5)
    for length in range(1, 200):
        data = b"\x99" + rng.randbytes(length)
        assert dearmor(armor(data).encode()) == data


def test_armor_other_block_and_bad_label():
    assert armor(b"\x88\x00", "SIGNATURE").startswith("-----BEGIN PGP SIGNATURE-----\n")
    with pytest.raises(ValueError):
        armor(b"\x99\x00", "PUBLIC KEY BLOCK-----\nEvil: yes")
    with pytest.raises(ValueError):
        armor(b"")


def test_dearmor_tolerates_text_crlf_headers_and_whitespace():
    data = simple_key()
    body = armor(data).splitlines()
    pasted = (
        ["Hello, here is my key:", "", "  " + body[0], "Version: GnuPG v2", "Comment: hi", ""]
        + [line + "  " for line in body[2:-1]]
        + [body[-1] + " ", "", "Thanks!"]
    )
    assert dearmor("\r\n".join(pasted).encode()) == data
    # Without the blank line after the headers, and without any checksum line.
    no_blank = [body[0], "Comment: x", *body[2:-2], body[-1]]
    assert dearmor("\n".join(no_blank).encode()) == data
    # With a UTF-8 byte order mark and non-ASCII leading text.
    assert dearmor("\ufeff鍵です\n".encode() + armor(data).encode()) == data


def test_binary_input_is_returned_as_is():
    data = simple_key()
    assert dearmor(data) == data


def test_crc_mismatch_is_corrupt_armor():
    data = simple_key()
    lines = armor(data).splitlines()
    good_crc = lines[-2]
    bad_crc = "=" + base64.b64encode((openpgp._crc24(data) ^ 1).to_bytes(3, "big")).decode()
    assert bad_crc != good_crc
    lines[-2] = bad_crc
    problem = refused("\n".join(lines).encode())
    assert problem.problem == "corrupt-armor"
    assert "BEGIN" in str(problem) and "END" in str(problem)
    # A changed character in the body is caught by the checksum too.
    lines = armor(data).splitlines()
    line = lines[5]
    lines[5] = line[:10] + ("A" if line[10] != "A" else "B") + line[11:]
    assert refused("\n".join(lines).encode()).problem == "corrupt-armor"


def test_armor_cut_in_the_middle_is_corrupt_armor():
    text = armor(simple_key())
    problem = refused(text[: len(text) // 2].encode())
    assert problem.problem == "corrupt-armor"
    assert "cut off" in str(problem) and "BEGIN" in str(problem) and EXPORT_FIX in str(problem)


def test_missing_end_line_is_corrupt_armor():
    lines = armor(simple_key()).splitlines()
    assert refused("\n".join(lines[:-1]).encode()).problem == "corrupt-armor"
    # A second block starting before the first ended.
    two = "\n".join(lines[:-1]) + "\n" + armor(simple_key(seed=3))
    assert refused(two.encode()).problem == "corrupt-armor"


def test_lines_dropped_from_the_middle_are_corrupt_armor():
    lines = armor(simple_key()).splitlines()
    del lines[4]
    assert refused("\n".join(lines).encode()).problem == "corrupt-armor"


def test_bad_base64_is_corrupt_armor():
    lines = armor(simple_key()).splitlines()
    lines[3] = lines[3][:20] + "*" + lines[3][21:]
    assert refused("\n".join(lines).encode()).problem == "corrupt-armor"


def test_missing_begin_line_or_bare_base64_is_corrupt_armor():
    lines = armor(simple_key()).splitlines()
    assert refused("\n".join(lines[1:]).encode()).problem == "corrupt-armor"
    bare = refused("\n".join(lines[2:-2]).encode())
    assert bare.problem == "corrupt-armor" and "BEGIN" in str(bare)


def test_empty_armor_block_is_corrupt_armor():
    text = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"
    assert refused(text).problem == "corrupt-armor"


def test_two_concatenated_armored_keys():
    first, second = simple_key("A <a@example.org>", 1), simple_key("B <b@example.org>", 2)
    text = armor(first) + "\nand my other key:\n\n" + armor(second)
    blocks = read_keys(text.encode())
    assert [b.data for b in blocks] == [first, second]
    assert [b.user_ids for b in blocks] == [(b"A <a@example.org>",), (b"B <b@example.org>",)]


# --- reading keys ---------------------------------------------------------------------


def test_rsa_key_with_subkey():
    data = simple_key()
    [block] = read_keys(data)
    assert isinstance(block, KeyBlock)
    assert block.version == 4
    assert block.fingerprint == fingerprint_of(rsa_body(2048, seed=1))
    assert len(block.fingerprint) == 40
    primary, subkey = block.components
    assert (primary.algorithm, primary.bits, primary.curve, primary.is_primary) == (
        1,
        2048,
        None,
        True,
    )
    assert (subkey.algorithm, subkey.bits, subkey.curve, subkey.is_primary) == (
        18,
        255,
        "cv25519",
        False,
    )
    assert block.user_ids == (b"Alice <alice@example.org>",)
    assert block.data == data


def test_armored_and_binary_give_the_same_blocks():
    data = simple_key()
    assert read_keys(armor(data).encode()) == read_keys(data)


def test_ed25519_and_other_curves():
    key = (
        new_packet(6, ed25519_body())
        + user_id("Ed <ed@example.org>")
        + signature()
        + new_packet(14, ecc_body(19, NISTP384_OID, 771))
        + new_packet(14, ecc_body(18, bytes.fromhex("2B2403030208010107")))
        + new_packet(14, ecc_body(22, bytes.fromhex("2B0601040199")))  # unknown OID
        + new_packet(14, b"\x04" + CREATED + bytes([25]) + bytes(32))  # X25519 (RFC 9580)
        + new_packet(14, b"\x04" + CREATED + bytes([28]) + bytes(57))  # Ed448 (RFC 9580)
    )
    [block] = read_keys(key)
    facts = [(c.algorithm, c.bits, c.curve, c.is_primary) for c in block.components]
    assert facts == [
        (22, 255, "ed25519", True),
        (19, 384, "nistp384", False),
        (18, 256, "brainpoolP256r1", False),
        (22, 0, None, False),
        (25, 255, "cv25519", False),
        (28, 448, "ed448", False),
    ]
    assert block.fingerprint == fingerprint_of(ed25519_body())


def test_dsa_elgamal_and_weak_rsa_are_reported_not_refused():
    dsa = b"\x04" + CREATED + bytes([17]) + mpi((1 << 1023) | 5) + mpi(3) + mpi(2) + mpi(7)
    elgamal = b"\x04" + CREATED + bytes([16]) + mpi((1 << 2047) | 9) + mpi(2) + mpi(11)
    key = old_packet(6, dsa) + user_id("Old") + old_packet(14, elgamal)
    key += old_packet(6, rsa_body(1024, seed=9)) + user_id("Weak")
    first, second = read_keys(key)
    assert [(c.algorithm, c.bits) for c in first.components] == [(17, 1024), (16, 2048)]
    assert [(c.algorithm, c.bits) for c in second.components] == [(1, 1024)]


def test_rsa_bits_are_the_real_size_not_the_claimed_one():
    # An MPI that claims 2048 bits but whose leading bytes are zero.
    n = (1 << 1023) | 1
    material = (2048).to_bytes(2, "big") + n.to_bytes(256, "big") + mpi(65537)
    [block] = read_keys(old_packet(6, b"\x04" + CREATED + b"\x01" + material))
    assert block.components[0].bits == 1024


def test_v3_key():
    body = rsa_body(1024, version=3)
    [block] = read_keys(old_packet(6, body) + user_id("PGP 2 <old@example.org>"))
    assert block.version == 3
    assert block.fingerprint is None
    assert block.components[0].algorithm == 1
    assert block.components[0].bits == 1024


def test_v5_v6_and_unknown_versions_are_reported():
    material = bytes(32)
    v6 = b"\x06" + CREATED + bytes([27]) + len(material).to_bytes(4, "big") + material
    v5_rsa_material = mpi((1 << 3071) | 1) + mpi(65537)
    v5 = b"\x05" + CREATED + b"\x01" + len(v5_rsa_material).to_bytes(4, "big") + v5_rsa_material
    key = new_packet(6, v6) + new_packet(6, v5) + new_packet(6, b"\x09stuff") + new_packet(6, b"")
    v6_block, v5_block, v9_block, empty_block = read_keys(key)
    assert (v6_block.version, v6_block.fingerprint) == (6, None)
    assert v6_block.components[0] == openpgp.KeyComponent(27, 255, "ed25519", True)
    assert (v5_block.version, v5_block.components[0].bits) == (5, 3072)
    assert v9_block.version == 9
    assert v9_block.components[0] == openpgp.KeyComponent(0, 0, None, True)
    assert empty_block.version == 0


def test_malformed_key_material_is_reported_as_unknown():
    short_rsa = b"\x04" + CREATED + b"\x01" + (4096).to_bytes(2, "big") + bytes(10)
    bad_oid = b"\x04" + CREATED + bytes([22, 0xFF]) + bytes(5)
    only_version = b"\x04\x00"
    for body in (short_rsa, bad_oid, only_version):
        [block] = read_keys(new_packet(6, body))
        assert block.components[0].bits == 0
        assert block.components[0].curve is None


def test_v4_key_too_large_for_a_fingerprint_is_refused():
    body = b"\x04" + CREATED + bytes([99]) + bytes(0x10000)
    problem = refused(new_packet(6, body))
    assert problem.problem == "not-openpgp"
    assert EXPORT_FIX in str(problem)


def test_all_header_and_length_forms():
    body = rsa_body(4096, seed=7)  # 524 bytes: two-octet new-format length
    assert 192 <= len(body) < 8384
    big_uid = "x" * 9000  # five-octet new-format length
    forms = [
        new_packet(6, body),
        old_packet(6, body, width=2),
        old_packet(6, body, width=4),
        b"\xc6\xff" + len(body).to_bytes(4, "big") + body,  # five-octet for a short body
    ]
    for header in forms:
        data = (
            header
            + user_id(big_uid)
            + old_packet(13, b"short", width=1)
            + old_packet(2, bytes(300), width=4)
        )
        [block] = read_keys(data)
        assert block.fingerprint == fingerprint_of(body)
        assert block.components[0].bits == 4096
        assert block.user_ids == (big_uid.encode(), b"short")
        assert block.data == data


def test_binary_keyring_of_two_keys():
    first, second = simple_key("A", 1), simple_key("B", 2)
    marker = old_packet(10, b"PGP")
    trust = old_packet(12, b"\x00\x00")
    blocks = read_keys(marker + first + trust + second)
    # The marker before the first key is allowed but belongs to no key; the trust
    # packet after the first key belongs to it.
    assert [b.data for b in blocks] == [first + trust, second]
    assert blocks[0].fingerprint != blocks[1].fingerprint


def test_japanese_user_id_bytes_are_preserved():
    name = "山田太郎 <taro@example.jp>".encode()
    invalid = b"bad \xff\xfe utf-8 \x1b[31m\n[GNUPG:] x"
    key = old_packet(6, ed25519_body()) + user_id(name) + user_id(invalid) + signature()
    for data in (key, armor(key).encode()):
        [block] = read_keys(data)
        assert block.user_ids == (name, invalid)


def test_user_attribute_and_unknown_packets_are_kept_in_the_block():
    key = (
        old_packet(6, ed25519_body())
        + user_id("A")
        + new_packet(17, b"\x10\x01" + bytes(40))  # user attribute
        + new_packet(60, b"experimental")
    )
    [block] = read_keys(key)
    assert block.data == key
    assert block.user_ids == (b"A",)


# --- refusals -------------------------------------------------------------------------


def test_secret_key_armor_header():
    text = (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQVYBGV...\n-----END PGP PRIVATE KEY BLOCK-----\n"
    )
    for data in (text.encode(), (armor(simple_key()) + text).encode()):
        problem = refused(data)
        assert problem.problem == "secret-key"
        message = str(problem)
        assert "SECRET" in message
        assert "not stored or logged" in message
        assert EXPORT_FIX in message
        assert "compromised" in message
    assert refused(b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n").problem == "secret-key"
    with pytest.raises(KeyMaterialRefused) as info:
        dearmor(text.encode())
    assert info.value.problem == "secret-key"


def test_secret_key_packets_in_binary():
    secret_body = rsa_body() + b"\x00" + bytes(40)
    for data in (
        old_packet(5, secret_body) + user_id("A"),
        simple_key() + new_packet(7, secret_body),
        simple_key() + old_packet(7, secret_body)[:20],  # even cut off
    ):
        problem = refused(data)
        assert problem.problem == "secret-key"
        assert EXPORT_FIX in str(problem)
        assert refused(armor(data).encode()).problem == "secret-key"


def test_compressed_packet():
    inner = simple_key()
    compressed = old_packet(8, b"\x01" + inner)
    indeterminate = bytes([0x80 | (8 << 2) | 3]) + b"\x01" + inner
    partial = b"\xc8\xe9" + b"\x01" + bytes(511)  # partial length, cut off
    for data in (compressed, simple_key() + compressed, indeterminate, partial):
        problem = refused(data)
        assert problem.problem == "compressed"
        assert EXPORT_FIX in str(problem)
        assert "--compress-algo none" in str(problem)
        assert refused(armor(data).encode()).problem == "compressed"


def test_truncated_packets():
    data = simple_key()
    for cut in (1, 3, 10, len(data) - 1):
        problem = refused(data[:cut])
        assert problem.problem == "truncated", cut
        assert "cut off" in str(problem) and EXPORT_FIX in str(problem)
    # A length that runs past the end, inside valid armor.
    bad = b"\xc6\xff\x00\x01\x00\x00" + rsa_body()
    assert refused(armor(bad).encode()).problem == "truncated"


def test_partial_lengths_are_refused_for_key_packets():
    body = rsa_body()
    partial = b"\xc6\xe1" + body[:2] + b"\x10" + body[2:18]  # 2-byte partial chunk
    problem = refused(partial)
    assert problem.problem == "not-openpgp"
    assert EXPORT_FIX in str(problem)
    indeterminate = bytes([0x80 | (6 << 2) | 3]) + body
    assert refused(indeterminate).problem == "not-openpgp"


def test_no_public_key():
    problem = refused(signature())
    assert problem.problem == "no-key"
    assert "signature" in str(problem) and EXPORT_FIX in str(problem)
    assert refused(old_packet(10, b"PGP")).problem == "no-key"
    assert refused(user_id("A") + simple_key()).problem == "no-key"
    assert refused(new_packet(14, ed25519_body())).problem == "no-key"
    # An encrypted message with partial lengths is read through, then refused.
    message = new_packet(1, bytes(20)) + b"\xd2\xe9" + bytes(512) + b"\x05" + bytes(5)
    problem = refused(message)
    assert problem.problem == "no-key" and "encrypted message" in str(problem)


def test_no_key_still_reports_secret_and_compressed_further_on():
    assert refused(signature() + old_packet(5, rsa_body())).problem == "secret-key"
    assert refused(signature() + old_packet(8, b"\x01xx")).problem == "compressed"


def test_garbage_is_not_openpgp():
    for data in (
        b"hello, this is my key, trust me",
        "私の鍵はこれです".encode(),
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3 me@host",
        bytes(100),
        b"\x00\x01\x02",
    ):
        problem = refused(data)
        assert problem.problem == "not-openpgp", data
        assert str(problem).startswith("This is not an OpenPGP key")
        assert EXPORT_FIX in str(problem)


def test_tag_zero_and_trailing_garbage_are_not_openpgp():
    assert refused(b"\x80\x02ab").problem == "not-openpgp"
    assert refused(b"\xc0\x02ab").problem == "not-openpgp"
    assert refused(simple_key() + b"\n").problem == "not-openpgp"


def test_empty_input():
    for data in (b"", b"   \n\t\r\n", b"\xef\xbb\xbf"):
        problem = refused(data)
        assert problem.problem == "empty"
        assert EXPORT_FIX in str(problem)


def test_refusal_is_a_value_error_and_pickles():
    problem = refused(b"")
    assert isinstance(problem, ValueError)
    copy = pickle.loads(pickle.dumps(problem))
    assert (copy.problem, str(copy)) == (problem.problem, str(problem))


def test_messages_never_quote_the_input():
    evil = b"<script>alert(1)</script>\x1b[31m"
    for data in (evil, old_packet(6, ed25519_body()) + evil):
        assert b"script" not in str(refused(data)).encode()


# --- robustness and speed -------------------------------------------------------------


def test_fuzzed_input_only_ever_raises_key_material_refused():
    rng = random.Random(20240601)
    binary = simple_key() + old_packet(6, ed25519_body()) + user_id("日本語") + signature(3)
    armored = armor(binary).encode()
    for round_number in range(3000):
        source = binary if round_number % 2 else armored
        data = bytearray(source)
        for _ in range(rng.randint(1, 4)):
            how = rng.randrange(5)
            at = rng.randrange(len(data) or 1)
            if how == 0 and data:
                data[at] = rng.randrange(256)
            elif how == 1:
                del data[at:]
            elif how == 2:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
            elif how == 3 and data:
                del data[at : at + rng.randint(1, 16)]
            elif data:
                data[at] ^= 1 << rng.randrange(8)
        try:
            blocks = read_keys(bytes(data))
        except KeyMaterialRefused as problem:
            assert problem.problem in {
                "empty",
                "not-openpgp",
                "corrupt-armor",
                "truncated",
                "secret-key",
                "compressed",
                "no-key",
            }
        else:
            assert blocks and all(isinstance(b, KeyBlock) for b in blocks)
            if source is binary:
                assert b"".join(b.data for b in blocks) in bytes(data)


def test_random_bytes_only_ever_raise_key_material_refused():
    rng = random.Random(7)
    for _ in range(2000):
        data = bytes([rng.choice([0x99, 0xC6, 0x98, 0xB4, 0xCD])]) + rng.randbytes(
            rng.randint(0, 60)
        )
        try:
            blocks = read_keys(data)
        except KeyMaterialRefused:
            continue
        assert all(isinstance(b, KeyBlock) for b in blocks)


def test_large_keyring_is_split_exactly():
    # Many keys with many signatures, as in a real keyring export.
    keys = []
    for n in range(300):
        keys.append(
            old_packet(6, rsa_body(2048, seed=n))
            + user_id(f"Person {n} <p{n}@example.org>")
            + b"".join(signature(n * 1000 + i) for i in range(20))
        )
    keyring = b"".join(keys)
    blocks = read_keys(keyring)
    assert [b.data for b in blocks] == keys
    assert len({b.fingerprint for b in blocks}) == 300
    assert read_keys(armor(keyring).encode()) == blocks


# --- against a real gpg ---------------------------------------------------------------


@pytest.fixture(scope="module")
def gpg_home():
    # A short path under /tmp: gpg-agent's socket path must stay short.
    home = tempfile.mkdtemp(prefix="kp-", dir="/tmp")
    os.chmod(home, 0o700)
    try:
        yield home
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", home, "--kill", "all"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def gpg(home: str, *args: str) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", home, "--batch", "--no-tty", *args],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_matches_real_gpg_keys(gpg_home):
    for algorithm, uid in (
        ("ed25519", "Test <t@example.org>"),
        ("rsa2048", "Test <r@example.org>"),
    ):
        gpg(
            gpg_home,
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-gen-key",
            uid,
            algorithm,
        )
    listing = gpg(gpg_home, "--with-colons", "--list-keys").decode()
    expected = []  # (fingerprint, algorithm, bits) per primary key, in keyring order
    pub = None
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            pub = (int(fields[3]), int(fields[2]))
        elif fields[0] == "fpr" and pub is not None:
            expected.append((fields[9], *pub))
            pub = None
    assert len(expected) == 2

    binary = gpg(gpg_home, "--export")
    armored = gpg(gpg_home, "--armor", "--export")
    assert is_armored(armored) and not is_armored(binary)
    assert dearmor(armored) == binary
    for data in (binary, armored):
        blocks = read_keys(data)
        got = [(b.fingerprint, b.components[0].algorithm, b.components[0].bits) for b in blocks]
        assert got == expected
        assert all(b.version == 4 for b in blocks)
        assert b"".join(b.data for b in blocks) == binary
    uids = sorted(uid for b in read_keys(binary) for uid in b.user_ids)
    assert uids == [b"Test <r@example.org>", b"Test <t@example.org>"]
    ed_block = next(b for b in read_keys(binary) if b.components[0].algorithm == 22)
    assert ed_block.components[0].curve == "ed25519"
    # Our armor is read back by gpg itself.
    fpr = ed_block.fingerprint
    out = subprocess.run(
        ["gpg", "--homedir", gpg_home, "--batch", "--with-colons", "--show-keys"],
        input=armor(ed_block.data).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert f"fpr:::::::::{fpr}:" in out
