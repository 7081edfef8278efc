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
import time

import pytest

from keyparty import openpgp
from keyparty.openpgp import KeyBlock
from keyparty.openpgp import KeyMaterialRefused
from keyparty.openpgp import Signature
from keyparty.openpgp import UserIDSignatures
from keyparty.openpgp import armor
from keyparty.openpgp import dearmor
from keyparty.openpgp import is_armored
from keyparty.openpgp import minimal_key
from keyparty.openpgp import primary_key_packet
from keyparty.openpgp import read_keys
from keyparty.openpgp import user_id_signatures
from tests.conftest import FIXTURES
from tests.conftest import fingerprint_of as fixture_fingerprint
from tests.conftest import short_tempdir

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


# --- signature builders -------------------------------------------------------------

SIGNER_BODY = ecc_body(22, ED25519_OID, 255)  # another ed25519 key: the certifier
SIGNER_FPR = (
    hashlib.sha1(b"\x99" + len(SIGNER_BODY).to_bytes(2, "big") + SIGNER_BODY).hexdigest().upper()
)


def subpacket(kind: int, value: bytes, critical: bool = False, form: int | None = None) -> bytes:
    """A subpacket with a 1-, 2- or 5-octet length (shortest unless `form`)."""
    n = len(value) + 1  # the length counts the type octet
    if form is None:
        form = 1 if n < 192 else 2 if n < 8384 else 5
    if form == 1:
        assert n < 192
        length = bytes([n])
    elif form == 2:
        assert 192 <= n < 8384
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + n.to_bytes(4, "big")
    return length + bytes([kind | (0x80 if critical else 0)]) + value


def notation_value(name: str, value: bytes, human: bool = True) -> bytes:
    flags = b"\x80\x00\x00\x00" if human else bytes(4)
    encoded = name.encode()
    return flags + len(encoded).to_bytes(2, "big") + len(value).to_bytes(2, "big") + encoded + value


def issuer_fpr(fingerprint: str) -> bytes:
    return subpacket(33, b"\x04" + bytes.fromhex(fingerprint))


def sig_packet(sig_type: int, hashed: bytes, unhashed: bytes = b"", version: int = 4) -> bytes:
    """A v4 (or v6) signature packet with the given subpacket areas and dummy MPIs."""
    width = 2 if version == 4 else 4
    body = bytes([version, sig_type, 22, 8])
    body += len(hashed).to_bytes(width, "big") + hashed
    body += len(unhashed).to_bytes(width, "big") + unhashed
    body += b"\xab\xcd" + mpi((1 << 255) | 7) + mpi((1 << 254) | 9)
    return new_packet(2, body)


def self_sig(fingerprint: str, sig_type: int = 0x13, created: int = 1_700_000_000) -> bytes:
    hashed = issuer_fpr(fingerprint) + subpacket(2, created.to_bytes(4, "big"))
    return sig_packet(sig_type, hashed + subpacket(27, b"\x03"), subpacket(16, fpr_id(fingerprint)))


def fpr_id(fingerprint: str) -> bytes:
    return bytes.fromhex(fingerprint[-16:])


def certification(
    context: str = "identity", level: int = 3, expires: int = 365 * 86400, seed: int = 0
) -> bytes:
    """A third-party certification shaped like keyparty's (gpg --quick-sign-key)."""
    hashed = (
        issuer_fpr(SIGNER_FPR)
        + subpacket(2, (1_700_000_000 + seed).to_bytes(4, "big"))
        + subpacket(3, expires.to_bytes(4, "big"))
        + subpacket(20, notation_value("context@keyparty.org", context.encode()))
        + subpacket(20, notation_value("event@keyparty.org", b"test-party"))
        + subpacket(26, b"https://example.org/policy")
    )
    return sig_packet(0x10 + level, hashed, subpacket(16, fpr_id(SIGNER_FPR)))


def certified_key(n_certifications: int = 2) -> bytes:
    """An ed25519 key with two user IDs, self-signatures, certifications and a subkey."""
    body = ed25519_body()
    fpr = fingerprint_of(body)
    return (
        new_packet(6, body)
        + user_id("Carol <carol@example.org>")
        + self_sig(fpr)
        + b"".join(certification(seed=i) for i in range(n_certifications))
        + user_id("Carol (work) <carol@example.net>")
        + self_sig(fpr)
        + certification("email", level=2)
        + new_packet(14, ecc_body(18, CV25519_OID))
        + self_sig(fpr, 0x18)
    )


def only_signature(packet: bytes) -> Signature:
    """The one signature of `packet`, read as the certification on a tiny key."""
    key = new_packet(6, ed25519_body()) + user_id("A") + packet
    [block] = read_keys(key)
    [uid] = user_id_signatures(block)
    [sig] = uid.signatures
    assert sig.raw == packet
    return sig


def read_signatures_or_refusal(block: KeyBlock) -> None:
    """user_id_signatures either works or refuses with "not-openpgp"."""
    try:
        uids = user_id_signatures(block)
    except KeyMaterialRefused as problem:
        assert problem.problem == "not-openpgp"
        assert str(problem).startswith("This is not an OpenPGP key")
        return
    for uid in uids:
        assert uid.user_id_raw in block.data
        for sig in uid.signatures:
            assert isinstance(sig, Signature) and sig.raw in block.data


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


# --- signatures -----------------------------------------------------------------------


def test_certification_subpackets_are_read():
    sig = only_signature(certification())
    assert sig.version == 4
    assert (sig.sig_type, sig.level) == (0x13, 3)
    assert (sig.pubkey_algorithm, sig.hash_algorithm) == (22, 8)
    assert sig.created == 1_700_000_000
    assert sig.expires_after == 365 * 86400
    assert sig.exportable is True
    assert sig.trust is None
    assert sig.regexps == ()
    assert sig.notations == (
        ("context@keyparty.org", b"identity", True),
        ("event@keyparty.org", b"test-party", True),
    )
    assert sig.notation("context@keyparty.org") == b"identity"
    assert sig.notation("event@keyparty.org") == b"test-party"
    assert sig.notation("other@example.org") is None
    assert sig.policy_url == "https://example.org/policy"
    assert sig.issuer_fingerprint == SIGNER_FPR
    assert sig.issuer_key_id == SIGNER_FPR[-16:]
    assert sig.critical_unknown == ()


def test_levels_and_other_types():
    for sig_type, level in ((0x10, 0), (0x11, 1), (0x12, 2), (0x13, 3)):
        assert only_signature(sig_packet(sig_type, b"")).level == level
    for sig_type in (0x18, 0x1F, 0x20, 0x30, 0x00):
        assert only_signature(sig_packet(sig_type, b"")).level is None


def test_local_trust_and_regexp_subpackets():
    regexp = b"<[^>]+[@.]example\\.org>$\x00"
    hashed = (
        subpacket(4, b"\x00", critical=True)
        + subpacket(5, b"\x01\x78")
        + subpacket(6, regexp, critical=True)
        + subpacket(6, b"second\x00")
    )
    sig = only_signature(sig_packet(0x10, hashed))
    assert sig.exportable is False
    assert sig.trust == (1, 120)
    assert sig.regexps == (regexp, b"second\x00")
    assert sig.critical_unknown == ()
    assert only_signature(sig_packet(0x10, subpacket(4, b"\x01"))).exportable is True
    # Any "not exportable" wins over an "exportable".
    both = subpacket(4, b"\x01") + subpacket(4, b"\x00")
    assert only_signature(sig_packet(0x10, both)).exportable is False


def test_unhashed_subpackets_do_not_count_except_the_issuer():
    unhashed = (
        subpacket(4, b"\x00")
        + subpacket(5, b"\x01\x78")
        + subpacket(6, b"x\x00")
        + subpacket(20, notation_value("context@keyparty.org", b"email"))
        + subpacket(26, b"https://evil.example/")
        + subpacket(3, (10).to_bytes(4, "big"))
        + subpacket(2, (5).to_bytes(4, "big"))
        + subpacket(101, b"x", critical=True)
        + issuer_fpr(SIGNER_FPR)
    )
    sig = only_signature(sig_packet(0x13, b"", unhashed))
    assert (sig.exportable, sig.trust, sig.regexps, sig.notations) == (True, None, (), ())
    assert (sig.policy_url, sig.expires_after, sig.created) == (None, None, None)
    assert sig.critical_unknown == ()
    assert sig.issuer_fingerprint == SIGNER_FPR
    assert sig.issuer_key_id == SIGNER_FPR[-16:]  # derived from the fingerprint


def test_issuer_hashed_wins_and_key_id_alone():
    other = "0123456789ABCDEF0123456789ABCDEF01234567"
    sig = only_signature(sig_packet(0x10, issuer_fpr(SIGNER_FPR), issuer_fpr(other)))
    assert sig.issuer_fingerprint == SIGNER_FPR
    sig = only_signature(sig_packet(0x10, b"", subpacket(16, bytes.fromhex("1122334455667788"))))
    assert (sig.issuer_fingerprint, sig.issuer_key_id) == (None, "1122334455667788")
    sig = only_signature(sig_packet(0x10, b""))
    assert (sig.issuer_fingerprint, sig.issuer_key_id) == (None, None)
    # A v6 issuer fingerprint (32 octets); its key ID is the start.
    v6 = bytes(range(32))
    sig = only_signature(sig_packet(0x10, subpacket(33, b"\x06" + v6)))
    assert sig.issuer_fingerprint == v6.hex().upper()
    assert sig.issuer_key_id == v6[:8].hex().upper()
    # An issuer fingerprint of an unknown key version is skipped, not refused.
    sig = only_signature(sig_packet(0x10, subpacket(33, b"\x09" + bytes(7))))
    assert sig.issuer_fingerprint is None


def test_zero_expiry_means_never():
    sig = only_signature(sig_packet(0x13, subpacket(3, bytes(4))))
    assert sig.expires_after is None


def test_all_subpacket_length_forms_read_the_same():
    long_value = b"v" * 300  # needs a two-octet length
    parts = [
        (2, (1_700_000_000).to_bytes(4, "big")),
        (3, (86400).to_bytes(4, "big")),
        (20, notation_value("context@keyparty.org", b"identity")),
        (20, notation_value("big@keyparty.org", long_value, human=False)),
        (26, b"https://example.org/policy"),
        (33, b"\x04" + bytes.fromhex(SIGNER_FPR)),
    ]
    expected = None
    for form in (None, 5, "mixed"):
        hashed = b""
        for i, (kind, value) in enumerate(parts):
            use = form if form != "mixed" else (5 if i % 2 else None)
            hashed += subpacket(kind, value, form=use)
        sig = only_signature(sig_packet(0x12, hashed))
        got = (sig.created, sig.expires_after, sig.notations, sig.policy_url)
        got += (sig.issuer_fingerprint, sig.level)
        assert got[2][1] == ("big@keyparty.org", long_value, False)
        if expected is None:
            expected = got
        assert got == expected, form
    assert expected[0] == 1_700_000_000 and expected[1] == 86400
    # A five-octet length whose value needs more than two octets: only a v6 signature
    # (four-octet area lengths) has room for a subpacket over 64 KiB.
    huge = b"h" * 70_000 + b"\x00"
    sig = only_signature(sig_packet(0x10, subpacket(6, huge, form=5), version=6))
    assert sig.regexps == (huge,)


def test_unknown_subpackets_are_skipped_and_critical_ones_reported():
    hashed = (
        subpacket(101, b"private, not critical")
        + subpacket(2, (1_700_000_000).to_bytes(4, "big"), critical=True)  # known
        + subpacket(27, b"\x03", critical=True)  # key flags: known, not read
        + subpacket(110, b"x", critical=True)
        + subpacket(36, b"", critical=True)  # reserved number
        + subpacket(110, b"y", critical=True)
        + subpacket(26, b"https://example.org/policy")
    )
    sig = only_signature(sig_packet(0x13, hashed))
    assert sig.critical_unknown == (110, 36)
    assert sig.created == 1_700_000_000
    assert sig.policy_url == "https://example.org/policy"


def test_notation_names_and_policy_with_bad_utf8_are_replaced():
    # Not human-readable; a 5-octet name and a 1-octet value, neither valid UTF-8.
    name_and_value = b"\xffname" + b"\xff"
    notation = bytes(4) + (5).to_bytes(2, "big") + (1).to_bytes(2, "big") + name_and_value
    hashed = subpacket(20, notation) + subpacket(26, b"https://\xff/")
    sig = only_signature(sig_packet(0x10, hashed))
    assert sig.notations == (("\ufffdname", b"\xff", False),)
    assert sig.policy_url == "https://\ufffd/"


def test_v3_and_unknown_signature_versions():
    v3_body = (
        b"\x03\x05\x13"
        + (1_600_000_000).to_bytes(4, "big")
        + bytes.fromhex("1122334455667788")
        + b"\x01\x02\xab\xcd"
        + mpi(12345)
    )
    sig = only_signature(new_packet(2, v3_body))
    assert (sig.version, sig.sig_type, sig.level) == (3, 0x13, 3)
    assert (sig.pubkey_algorithm, sig.hash_algorithm) == (1, 2)
    assert sig.created == 1_600_000_000
    assert sig.issuer_key_id == "1122334455667788"
    assert (sig.issuer_fingerprint, sig.expires_after, sig.exportable) == (None, None, True)
    v5 = only_signature(new_packet(2, b"\x05\x13\x16\x0a" + bytes(20)))
    assert (v5.version, v5.sig_type, v5.pubkey_algorithm, v5.hash_algorithm) == (5, 0x13, 22, 10)
    assert v5.notations == () and v5.issuer_key_id is None
    for body in (b"\x09\x13\x01\x08", b""):
        sig = only_signature(new_packet(2, body))
        assert (sig.sig_type, sig.level, sig.created) == (0, None, None)
    # A v6 signature with four-octet area lengths.
    v6 = only_signature(sig_packet(0x12, issuer_fpr(SIGNER_FPR), version=6))
    assert (v6.version, v6.level, v6.issuer_fingerprint) == (6, 2, SIGNER_FPR)


MALFORMED_SIGNATURES = {
    "cut-off header": new_packet(2, b"\x04\x13"),
    "hashed area past the packet": new_packet(2, b"\x04\x13\x16\x08\x00\x40" + bytes(10)),
    "unhashed length missing": new_packet(2, b"\x04\x13\x16\x08\x00\x00\x00"),
    "unhashed area past the packet": new_packet(2, b"\x04\x13\x16\x08\x00\x00\x00\x09\x00"),
    "no hash prefix": new_packet(2, b"\x04\x13\x16\x08\x00\x00\x00\x00\xab"),
    "subpacket past its area": sig_packet(0x13, b"\x06\x02\x00"),
    "subpacket past its area (unhashed)": sig_packet(0x13, b"", b"\x09\x10\x00"),
    "subpacket past its area (two-octet)": sig_packet(0x13, b"\xc0\x10" + bytes(20)),
    "subpacket past its area (five-octet)": sig_packet(0x13, b"\xff\x00\x00\x01\x00\x14"),
    "cut-off two-octet length": sig_packet(0x13, b"\xc1"),
    "cut-off five-octet length": sig_packet(0x13, b"\xff\x00\x00"),
    "huge five-octet length": sig_packet(0x13, b"\xff\xff\xff\xff\xff\x02"),
    "zero-length subpacket": sig_packet(0x13, b"\x00"),
    "truncated area": sig_packet(0x13, certification()[6:40]),
    "created of 3 octets": sig_packet(0x13, subpacket(2, b"\x01\x02\x03")),
    "expiry of 5 octets": sig_packet(0x13, subpacket(3, bytes(5))),
    "empty exportable": sig_packet(0x13, subpacket(4, b"")),
    "trust of 1 octet": sig_packet(0x13, subpacket(5, b"\x01")),
    "issuer of 7 octets": sig_packet(0x13, b"", subpacket(16, bytes(7))),
    "v4 issuer fingerprint of 19 octets": sig_packet(0x13, subpacket(33, b"\x04" + bytes(19))),
    "empty issuer fingerprint": sig_packet(0x13, subpacket(33, b"")),
    "short notation": sig_packet(0x13, subpacket(20, bytes(7))),
    "notation lengths too long": sig_packet(0x13, subpacket(20, notation_value("a@b", b"xy")[:-1])),
    "notation lengths too short": sig_packet(
        0x13, subpacket(20, notation_value("a@b", b"xy") + b"!")
    ),
    "cut-off v3": new_packet(2, b"\x03\x05\x13" + bytes(10)),
    "v3 with a wrong hashed length": new_packet(2, b"\x03\x06\x13" + bytes(30)),
    "cut-off v6": new_packet(2, b"\x06\x13\x16\x08\x00\x00"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_SIGNATURES))
def test_malformed_signatures_are_refused(case):
    packet = MALFORMED_SIGNATURES[case]
    key = new_packet(6, ed25519_body()) + user_id("A <a@example.org>") + packet
    [block] = read_keys(key)  # the framing is fine: read_keys does not read signatures
    with pytest.raises(KeyMaterialRefused) as info:
        user_id_signatures(block)
    assert info.value.problem == "not-openpgp"
    message = str(info.value)
    at = key.index(packet)
    assert message.startswith(f"This is not an OpenPGP key (the signature at byte {at} ")
    assert EXPORT_FIX in message
    with pytest.raises(KeyMaterialRefused):
        minimal_key(block, b"A <a@example.org>", [])


def test_subpacket_area_fuzz_only_ever_raises_key_material_refused():
    rng = random.Random(4880)
    key = certified_key()
    [block] = read_keys(key)
    packets = list(openpgp._packets(key))
    signatures = [(start, end) for tag, start, _, end in packets if tag == 2]
    outcomes = {"read": 0, "refused": 0}
    for _ in range(3000):
        start, end = rng.choice(signatures)
        data = bytearray(key[start:end])
        header = 2  # a new-format header with a one-octet length
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(header + 4, len(data))
            how = rng.randrange(3)
            if how == 0:
                data[at] = rng.randrange(256)
            elif how == 1:
                data[at] ^= 1 << rng.randrange(8)
            else:
                data[at] = rng.choice([0x00, 0xC0, 0xFF, 0xBF, 0x80 | rng.randrange(128)])
        body = bytes(data[header:])
        packet = new_packet(2, body)
        mutated = key[:start] + packet + key[end:]
        [mutated_block] = read_keys(mutated)
        try:
            user_id_signatures(mutated_block)
        except KeyMaterialRefused as problem:
            assert problem.problem == "not-openpgp"
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert outcomes["read"] > 100 and outcomes["refused"] > 100, outcomes
    assert len(user_id_signatures(block)) == 2


def test_user_id_signatures_follow_the_key_structure():
    body = ed25519_body()
    fpr = fingerprint_of(body)
    direct = self_sig(fpr, 0x1F)
    uid_a, uid_b = user_id("A <a@example.org>"), old_packet(13, b"B <b@example.org>")
    self_a, self_b = self_sig(fpr), self_sig(fpr, created=1_700_000_001)
    cert_a, cert_b = certification(seed=1), certification("email", level=2, seed=2)
    attribute = new_packet(17, b"\x10\x01" + bytes(40))
    key = (
        old_packet(6, body)
        + direct
        + uid_a
        + self_a
        + old_packet(12, b"\x00\x00")  # a trust packet does not end the run
        + cert_a
        + attribute
        + self_sig(fpr, created=5)  # on the photo ID: skipped
        + certification(seed=9)
        + uid_b
        + self_b
        + cert_b
        + new_packet(14, ecc_body(18, CV25519_OID))
        + self_sig(fpr, 0x18)
        + user_id("")  # an empty user ID still counts
    )
    [block] = read_keys(key)
    assert primary_key_packet(block) == old_packet(6, body)
    first, second, empty = user_id_signatures(block)
    assert isinstance(first, UserIDSignatures)
    assert (first.user_id, first.user_id_raw) == (b"A <a@example.org>", uid_a)
    assert [s.raw for s in first.signatures] == [self_a, cert_a]
    assert (second.user_id, second.user_id_raw) == (b"B <b@example.org>", uid_b)
    assert [s.raw for s in second.signatures] == [self_b, cert_b]
    assert [s.issuer_fingerprint for s in second.signatures] == [fpr, SIGNER_FPR]
    assert (empty.user_id, empty.signatures) == (b"", ())
    # Several keys: each block is read on its own.
    blocks = read_keys(key + certified_key())
    assert [len(user_id_signatures(b)) for b in blocks] == [3, 2]


def packets_of(data: bytes) -> list[bytes]:
    return [data[start:end] for _, start, _, end in openpgp._packets(data)]


def test_minimal_key_keeps_only_what_was_asked():
    body = ed25519_body()
    fpr = fingerprint_of(body)
    direct, revocation = self_sig(fpr, 0x1F), self_sig(fpr, 0x20)
    foreign_revocation = sig_packet(0x20, issuer_fpr(SIGNER_FPR))
    wrong_type_early = self_sig(fpr, 0x13, created=3)
    uid = user_id("A <a@example.org>")
    self_old, self_new = self_sig(fpr, created=1), self_sig(fpr, created=2)
    uid_revocation = sig_packet(0x30, subpacket(16, fpr_id(fpr)))  # key ID only
    identity, email = certification(seed=1), certification("email", level=2, seed=2)
    other = certification(seed=3)
    key = (
        new_packet(6, body)
        + revocation
        + foreign_revocation
        + direct
        + wrong_type_early
        + uid
        + self_old
        + identity
        + email
        + other
        + user_id("B <b@example.org>")
        + self_sig(fpr, created=4)
        + certification(seed=4)
        + uid  # the same user ID again, with a newer self-signature and a revocation
        + self_new
        + uid_revocation
        + identity
        + new_packet(14, ecc_body(18, CV25519_OID))
        + self_sig(fpr, 0x18)
    )
    [block] = read_keys(key)
    [first, _, again] = user_id_signatures(block)
    chosen = [s for s in first.signatures if s.raw in (identity, email)]
    chosen.append(again.signatures[-1])  # the same identity certification twice
    result = minimal_key(block, b"A <a@example.org>", chosen)
    assert packets_of(result) == [
        new_packet(6, body),
        revocation,
        direct,
        uid,
        self_old,
        self_new,
        uid_revocation,
        identity,
        email,
    ]
    [minimal] = read_keys(result)
    assert minimal.fingerprint == block.fingerprint
    assert minimal.user_ids == (b"A <a@example.org>",)
    assert len(minimal.components) == 1
    # No certification at all: the key with that user ID and its self-signatures.
    bare = packets_of(minimal_key(block, b"A <a@example.org>", []))
    assert bare == [
        new_packet(6, body),
        revocation,
        direct,
        uid,
        self_old,
        self_new,
        uid_revocation,
    ]


def test_minimal_key_refuses_wrong_requests():
    key = certified_key()
    [block] = read_keys(key)
    [first, _] = user_id_signatures(block)
    with pytest.raises(ValueError, match="not on this key"):
        minimal_key(block, b"Carol", [])
    subkey_binding = only_signature(self_sig(block.fingerprint, 0x18))
    with pytest.raises(ValueError, match="certifications"):
        minimal_key(block, b"Carol <carol@example.org>", [subkey_binding])
    forged = Signature(**{**vars(first.signatures[1]), "raw": user_id("X") + signature()})
    with pytest.raises(ValueError, match="one signature packet"):
        minimal_key(block, b"Carol <carol@example.org>", [forged])
    [v3] = read_keys(old_packet(6, rsa_body(1024, version=3)) + user_id("Old"))
    with pytest.raises(ValueError, match="version 4"):
        minimal_key(v3, b"Old", [])


def test_thousand_certifications_are_read_whole():
    # Speed is measured in bench/, not here: a loaded CI machine is no clock.
    key = certified_key(1000)
    [block] = read_keys(key)
    first, _ = user_id_signatures(block)
    assert len(first.signatures) == 1001
    assert all(s.notation("context@keyparty.org") == b"identity" for s in first.signatures[1:])


# --- robustness and speed -------------------------------------------------------------


def test_fuzzed_input_only_ever_raises_key_material_refused():
    rng = random.Random(20240601)
    binary = simple_key() + old_packet(6, ed25519_body()) + user_id("日本語") + signature(3)
    binary += certified_key()  # well-formed subpacket areas, for user_id_signatures
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
            for block in blocks:
                read_signatures_or_refusal(block)


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


# --- certifications made by a real gpg --------------------------------------------------

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")

CAROL_UIDS = (
    "Carol Example <carol@example.org>",
    "Carol Example (work) <carol@work.example.net>",
    "Carol Example",
)
SIGN_OPTIONS = ("--pinentry-mode", "loopback", "--passphrase", "", "--trust-model", "always")


def new_home() -> str:
    home = str(short_tempdir("kp"))
    os.chmod(home, 0o700)
    return home


def drop_home(home: str) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True, check=False
    )
    shutil.rmtree(home, ignore_errors=True)


def run_gpg(home: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["gpg", "--homedir", home, "--batch", "--no-tty", *args],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=60,
    )


def tsign(home: str, signer: str, key: str, uid_number: int, domain: str = "") -> str:
    """Make a trust signature (full trust, depth 1) on one user ID, answering gpg's
    --edit-key prompts on the command fd; returns the status lines."""
    answers = [
        str(uid_number),  # keyedit.prompt: select that user ID
        "tsign",  # keyedit.prompt
        "2",  # trustsig_prompt.trust_value: 1 = marginal (60), 2 = full (120)
        "1",  # trustsig_prompt.trust_depth
        domain,  # trustsig_prompt.trust_regexp: "" = no restriction
        "y",  # sign_uid.okay
        "save",  # keyedit.prompt
    ]
    done = run_gpg(
        home,
        *SIGN_OPTIONS,
        "--local-user",
        signer,
        "--command-fd",
        "0",
        "--status-fd",
        "1",
        "--edit-key",
        key,
        stdin=("\n".join(answers) + "\n").encode(),
    )
    status = done.stdout.decode()
    prompts = [
        line.split()[2]
        for line in status.splitlines()
        if line.split()[1:2] in (["GET_LINE"], ["GET_BOOL"])
    ]
    assert prompts == [
        "keyedit.prompt",
        "keyedit.prompt",
        "trustsig_prompt.trust_value",
        "trustsig_prompt.trust_depth",
        "trustsig_prompt.trust_regexp",
        "sign_uid.okay",
        "keyedit.prompt",
    ], status
    return status


@pytest.fixture(scope="module")
def carol_certified():
    """Carol's key certified in a throwaway home: by signer1 on user ID 1 (keyparty's
    identity certification), locally on user ID 2, and with a trust signature limited to
    example.org on user ID 3; by signer2 with an unrestricted trust signature on user ID 1.
    """
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    signer, signer2 = fixture_fingerprint("signer1"), fixture_fingerprint("signer2")
    carol = fixture_fingerprint("carol")
    home = new_home()
    try:
        attendees = FIXTURES / "attendees"
        run_gpg(
            home,
            "--import",
            str(attendees / "signer1.secret.asc"),
            str(attendees / "signer2.secret.asc"),
            str(attendees / "carol.asc"),
        )
        run_gpg(
            home,
            *SIGN_OPTIONS,
            "--local-user",
            signer,
            "--cert-notation",
            "context@keyparty.org=identity",
            "--cert-notation",
            "event@keyparty.org=test-party",
            "--cert-policy-url",
            "https://example.org/policy",
            "--default-cert-level",
            "3",
            "--default-cert-expire",
            "1y",
            "--no-ask-cert-level",
            "--no-ask-cert-expire",
            "--quick-sign-key",
            carol,
            "=" + CAROL_UIDS[0],
        )
        run_gpg(
            home,
            *SIGN_OPTIONS,
            "--local-user",
            signer,
            "--quick-lsign-key",
            carol,
            "=" + CAROL_UIDS[1],
        )
        tsign(home, signer, carol, 3, domain="example.org")
        tsign(home, signer2, carol, 1)
        exported = run_gpg(home, "--export-options", "export-local-sigs", "--export", carol).stdout
        plain = run_gpg(home, "--export", carol).stdout
        yield {
            "signer": signer,
            "signer2": signer2,
            "carol": carol,
            "exported": exported,
            "plain": plain,
        }
    finally:
        drop_home(home)


def carol_uids(data: bytes) -> dict[str, UserIDSignatures]:
    [block] = read_keys(data)
    return {u.user_id.decode(): u for u in user_id_signatures(block)}


def by_issuer(uid: UserIDSignatures, fingerprint: str) -> list[Signature]:
    return [s for s in uid.signatures if s.issuer_fingerprint == fingerprint]


@needs_gpg
def test_gpg_certification_is_read(carol_certified):
    uids = carol_uids(carol_certified["exported"])
    assert list(uids) == list(CAROL_UIDS)
    [cert] = by_issuer(uids[CAROL_UIDS[0]], carol_certified["signer"])
    assert cert.version == 4
    assert (cert.sig_type, cert.level) == (0x13, 3)
    assert cert.issuer_fingerprint == carol_certified["signer"]
    assert cert.issuer_key_id == carol_certified["signer"][-16:]
    assert cert.notation("context@keyparty.org") == b"identity"
    assert cert.notation("event@keyparty.org") == b"test-party"
    assert {name for name, _, _ in cert.notations} == {"context@keyparty.org", "event@keyparty.org"}
    assert cert.policy_url == "https://example.org/policy"
    assert cert.expires_after is not None
    assert abs(cert.expires_after - 365 * 86400) <= 86400
    assert cert.created is not None and abs(cert.created - time.time()) < 3600
    assert cert.exportable is True
    assert (cert.trust, cert.regexps, cert.critical_unknown) == (None, (), ())
    # Every user ID carries exactly one self-signature, issued by Carol.
    for uid in uids.values():
        [self_signature] = by_issuer(uid, carol_certified["carol"])
        assert self_signature.issuer_key_id == carol_certified["carol"][-16:]
        assert self_signature.sig_type == 0x13
        assert self_signature.expires_after is None


@needs_gpg
def test_gpg_local_certification_is_not_exportable(carol_certified):
    uids = carol_uids(carol_certified["exported"])
    [local] = by_issuer(uids[CAROL_UIDS[1]], carol_certified["signer"])
    assert local.exportable is False
    assert local.trust is None
    # A plain export drops it without a word (DESIGN.md, "Untrusted keys").
    plain = carol_uids(carol_certified["plain"])
    assert by_issuer(plain[CAROL_UIDS[1]], carol_certified["signer"]) == []


@needs_gpg
def test_gpg_trust_signatures_are_seen(carol_certified):
    uids = carol_uids(carol_certified["exported"])
    [limited] = by_issuer(uids[CAROL_UIDS[2]], carol_certified["signer"])
    assert limited.trust == (1, 120)
    assert limited.regexps == (b"<[^>]+[@.]example\\.org>$\x00",)
    assert limited.level == 0  # no --default-cert-level given: generic
    [unrestricted] = by_issuer(uids[CAROL_UIDS[0]], carol_certified["signer2"])
    assert unrestricted.trust == (1, 120)
    assert unrestricted.regexps == ()
    assert unrestricted.exportable is True


def colon_records(listing: str) -> list[list[str]]:
    return [line.split(":") for line in listing.splitlines()]


@needs_gpg
def test_gpg_imports_the_minimal_key(carol_certified):
    signer, carol = carol_certified["signer"], carol_certified["carol"]
    [block] = read_keys(carol_certified["exported"])
    first = user_id_signatures(block)[0]
    [identity] = by_issuer(first, signer)
    assert len(first.signatures) == 3  # Carol's, signer1's, signer2's trust signature
    minimal = minimal_key(block, CAROL_UIDS[0].encode(), [identity])
    assert minimal.startswith(primary_key_packet(block))

    # A fresh home holding only the signer's public key and the minimal key.
    home = new_home()
    try:
        run_gpg(home, "--import", str(FIXTURES / "attendees" / "signer1.asc"))
        run_gpg(home, "--import", stdin=armor(minimal).encode())
        listing = run_gpg(
            home, "--trust-model", "always", "--with-colons", "--check-sigs", carol
        ).stdout.decode()
    finally:
        drop_home(home)
    records = [r for r in colon_records(listing) if r[0] in ("pub", "uid", "uat", "sub", "sig")]
    kinds = [r[0] for r in records]
    assert kinds == ["pub", "uid", "sig", "sig"], listing
    assert records[1][9] == CAROL_UIDS[0]
    sigs = {r[12]: r for r in records[2:]}
    assert set(sigs) == {carol, signer}
    for fingerprint, record in sigs.items():
        assert record[1] == "!", (fingerprint, listing)
        assert record[10] == "13x"
    assert sigs[signer][6]  # the certification's expiry is kept

    # Merged into a home that has Carol's whole key, it adds exactly that certification.
    home = new_home()
    try:
        run_gpg(home, "--import", str(FIXTURES / "attendees" / "carol.asc"))
        status = run_gpg(
            home, "--status-fd", "1", "--import", stdin=armor(minimal).encode()
        ).stdout.decode()
        listing = run_gpg(
            home, "--trust-model", "always", "--with-colons", "--check-sigs", carol
        ).stdout.decode()
    finally:
        drop_home(home)
    [import_res] = [line for line in status.splitlines() if "IMPORT_RES" in line]
    # count, no_user_id, imported, imported_rsa, unchanged, n_uids, n_subk, n_sigs, ...
    counts = [int(n) for n in import_res.split()[2:]]
    assert (counts[0], counts[5], counts[6], counts[7]) == (1, 0, 0, 1), import_res
    per_uid: dict[str, list[str]] = {}
    current = None
    for record in colon_records(listing):
        if record[0] == "uid":
            current = record[9]
            per_uid[current] = []
        elif record[0] == "sig" and current is not None:
            per_uid[current].append(record[12])
        elif record[0] == "sub":
            current = None
    assert sorted(per_uid[CAROL_UIDS[0]]) == sorted([carol, signer])
    assert per_uid[CAROL_UIDS[1]] == [carol] and per_uid[CAROL_UIDS[2]] == [carol]
