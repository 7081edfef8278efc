"""Read untrusted OpenPGP key material before GnuPG sees it.

keyparty takes keys from strangers. GnuPG will happily unpack nested compressed
packets into gigabytes, import secret keys, and import several keys from one paste
(see DESIGN.md, "Untrusted keys"). So every input is first read here, in pure Python
with nothing beyond the standard library: the armor is checked, the packet stream is
walked, dangerous or wrong input is refused with a sentence the sender can act on, and
a keyring is split into one block per key so each key is judged on its own.

This module reports facts about each key (version, algorithms, sizes, user IDs); it
does not judge them. Whether a v3 key or a 1024-bit RSA key is acceptable is decided
by the caller (keyparty.keycheck).

For uploaded certifications it also reads each signature's subpackets (context
notations, level, expiry, trust and regular-expression subpackets, exportability)
before GnuPG sees them, since GnuPG drops some without a word, and rebuilds a minimal
key that holds one user ID and exactly the certifications the host accepted. It does
not check any signature cryptographically: that is GnuPG's job.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

from keyparty.translatable import N_

__all__ = [
    "KeyBlock",
    "KeyComponent",
    "KeyMaterialRefused",
    "keep_user_ids",
    "key_id_of",
    "group_by_key",
    "Phrase",
    "Signature",
    "UserIDSignatures",
    "armor",
    "dearmor",
    "is_armored",
    "minimal_key",
    "primary_key_packet",
    "read_keys",
    "without_certifications",
    "user_id_signatures",
]

# --- Refusals -------------------------------------------------------------------------

# Every refusal names the fix (`gpg --armor --export FINGERPRINT`; FINGERPRINT is left as a
# placeholder: we do not know it). Each sentence is written out whole, marked with N_, so
# that Babel extracts it for translation.

_SECRET_KEY_MESSAGE = N_(
    "You sent a SECRET key, not a public key. It was not stored or logged. Never send your "
    "secret key to anyone: export your public key with `gpg --armor --export FINGERPRINT` and send that instead. If "
    "you sent this secret key over a network or through a service you do not trust, consider "
    "the key compromised: revoke it and make a new one."
)

_COMPRESSED_MESSAGE = N_(
    "This key data contains a compressed packet. A public key never needs compression, and "
    "compressed data is refused before GnuPG unpacks it, because nested compression can make "
    "GnuPG use gigabytes of memory. Export the key without compression: "
    "`gpg --armor --export FINGERPRINT` (add `--compress-algo none` if your setup compresses exports)."
)


# What each problem says. The sentences are kept whole (not built from pieces) so that
# the web pages can translate them; see KeyMaterialRefused.text.
_REFUSALS = {
    "empty": N_(
        "Nothing was received: the input is empty. Export your public key with `gpg --armor --export FINGERPRINT` "
        "and send the whole output."
    ),
    "not-openpgp": N_(
        "This is not an OpenPGP key. Export your public key with `gpg --armor --export FINGERPRINT` and send "
        "the whole output, from -----BEGIN PGP PUBLIC KEY BLOCK----- to "
        "-----END PGP PUBLIC KEY BLOCK-----."
    ),
    "corrupt-armor": N_(
        "The armored key is damaged or cut off. Copy the whole block again, including the "
        "-----BEGIN PGP PUBLIC KEY BLOCK----- and -----END PGP PUBLIC KEY BLOCK----- lines, "
        "or export it again with `gpg --armor --export FINGERPRINT`."
    ),
    "truncated": N_(
        "The key data is cut off. Copy the whole key again, or export it again with `gpg --armor --export FINGERPRINT`."
    ),
    "secret-key": _SECRET_KEY_MESSAGE,
    "compressed": _COMPRESSED_MESSAGE,
    "no-key": N_(
        "No public key found in this input. Export your public key with `gpg --armor --export FINGERPRINT` and "
        "send the whole output."
    ),
    "keybox": N_(
        "This is GnuPG's keyring file (pubring.kbx), not an exported key. Export your key "
        "with `gpg --armor --export FINGERPRINT` and send that output instead."
    ),
    "utf-16": N_(
        "This file is saved as UTF-16 text, not as the plain ASCII an exported key is. Export "
        "your key again with `gpg --armor --export FINGERPRINT` > key.asc (or save the text "
        "as UTF-8) and send that."
    ),
    "too-many-packets": N_(
        "This key data holds more packets than any real key: more than {limit} in one key, "
        "or packets too small to be key material. Export your key with its own signatures "
        "only: `gpg --armor --export-options export-minimal --export FINGERPRINT`."
    ),
    "wrong-block": N_(
        "This is a PGP {label} block, not a public key. Export your public key with "
        "`gpg --armor --export FINGERPRINT` and send the whole output, from "
        "-----BEGIN PGP PUBLIC KEY BLOCK----- to -----END PGP PUBLIC KEY BLOCK-----."
    ),
}

# The same sentences with a detail phrase, for the problems that name one.
_REFUSALS_WITH_DETAIL = {
    "not-openpgp": N_(
        "This is not an OpenPGP key ({detail}). Export your public key with "
        "`gpg --armor --export FINGERPRINT` and send the whole output, from -----BEGIN PGP PUBLIC KEY BLOCK----- to "
        "-----END PGP PUBLIC KEY BLOCK-----."
    ),
    "corrupt-armor": N_(
        "The armored key is damaged or cut off ({detail}). Copy the whole block "
        "again, including the -----BEGIN PGP PUBLIC KEY BLOCK----- and "
        "-----END PGP PUBLIC KEY BLOCK----- lines, or export it again with `gpg --armor --export FINGERPRINT`."
    ),
    "truncated": N_(
        "The key data is cut off ({detail}). Copy the whole key again, or export it "
        "again with `gpg --armor --export FINGERPRINT`."
    ),
    "no-key": N_(
        "No public key found in this input ({detail}). Export your public key with "
        "`gpg --armor --export FINGERPRINT` and send the whole output."
    ),
}


@dataclass(frozen=True)
class Phrase:
    """A detail inside a refusal sentence: `text` with {placeholders} filled from `params`.

    str(phrase) is the English; the web pages translate `text` before filling it in.
    """

    text: str
    params: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text.format(**self.params) if self.params else self.text


class KeyMaterialRefused(ValueError):
    """Whole input refused.

    `.problem` is a short code: "empty", "not-openpgp", "corrupt-armor", "truncated",
    "secret-key", "compressed", "no-key", "keybox" (GnuPG's pubring.kbx), "utf-16" (a
    text file saved as UTF-16) or "wrong-block" (armor of another kind than expected). str(exc) is a plain sentence naming what is
    wrong and what to do; it never quotes the input, so it is safe to show anywhere.
    `.text` is that sentence with {placeholders} filled from `.params` (a detail is a
    Phrase), so that a web page can translate it before filling it in.
    """

    problem: str
    text: str
    params: dict[str, Phrase]

    def __init__(
        self,
        problem: str,
        message: str,
        text: str | None = None,
        params: dict[str, Phrase] | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.text = message if text is None else text
        self.params = params or {}

    def __reduce__(self) -> tuple[type[KeyMaterialRefused], tuple]:
        # The default would call cls(message) and fail: keep the exception picklable.
        return (type(self), (self.problem, str(self), self.text, self.params))


def _refuse(problem: str, detail: str = "", **values: int) -> KeyMaterialRefused:
    """Build the refusal for `problem`.

    `detail` is a fixed phrase, never input text, with {placeholders} filled from
    `values` (byte offsets).
    """
    if problem not in _REFUSALS:  # pragma: no cover - programming error, not input
        raise AssertionError(problem)
    if problem == "too-many-packets":
        params = {"limit": Phrase(str(MAX_PACKETS_PER_KEY))}
        text = _REFUSALS[problem]
        return KeyMaterialRefused(problem, text.format(**params), text, params)
    if problem == "wrong-block":
        # The label is one of the armor labels of RFC 9580 6.2, matched by _MARKER.
        params = {"label": Phrase(detail)}
        text = _REFUSALS[problem]
        return KeyMaterialRefused(problem, text.format(**params), text, params)
    if detail and problem in _REFUSALS_WITH_DETAIL:
        text = _REFUSALS_WITH_DETAIL[problem]
        params = {"detail": Phrase(detail, values)}
        return KeyMaterialRefused(problem, text.format(**params), text, params)
    return KeyMaterialRefused(problem, _REFUSALS[problem])


# --- Results --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyComponent:
    """The primary key or one subkey.

    `algorithm` is the OpenPGP public-key algorithm id (0 if the packet is too short or
    of an unknown version to tell). `bits` is the bit length of the RSA modulus or the
    DSA/Elgamal prime, or the curve size for ECC; 0 if unknown. `curve` is GnuPG's curve
    name for ECC keys, None otherwise or for an unknown curve.
    """

    algorithm: int
    bits: int
    curve: str | None
    is_primary: bool


@dataclass(frozen=True)
class KeyBlock:
    """One key: its primary key packet and everything up to the next primary key.

    `fingerprint` is the v4 fingerprint (40 uppercase hex digits), always set for
    version 4 and None for other versions. `data` is exactly the bytes given, ready to
    hand to GnuPG or to armor.
    """

    version: int
    fingerprint: str | None
    components: tuple[KeyComponent, ...]
    user_ids: tuple[bytes, ...]
    data: bytes


# --- CRC-24 (RFC 4880 6.1) ------------------------------------------------------------

_CRC24_INIT = 0xB704CE
_CRC24_POLY = 0x1864CFB  # x^24 + ... + 1, degree 24


def _clmul(big: int, small: int) -> int:
    """Carry-less (GF(2)[x]) product; cost grows with the set bits of `small`."""
    product = 0
    while small:
        lowest = small & -small
        product ^= big << (lowest.bit_length() - 1)
        small ^= lowest
    return product


def _mod_poly(value: int) -> int:
    """`value` mod the CRC polynomial, bit by bit; only used on values of a few words."""
    degree = _CRC24_POLY.bit_length() - 1
    while value.bit_length() > degree:
        value ^= _CRC24_POLY << (value.bit_length() - 1 - degree)
    return value


def _x_power_mod(exponent: int) -> int:
    """x**exponent mod the CRC polynomial, by square and multiply."""
    result, square = 1, 2
    while exponent:
        if exponent & 1:
            result = _mod_poly(_clmul(result, square))
        square = _mod_poly(_clmul(square, square))
        exponent >>= 1
    return result


@functools.lru_cache(maxsize=512)
def _fold_point(half: int) -> tuple[int, int]:
    """A split point k <= half, and x^k mod P, for which x^k mod P has few set bits.

    A fold costs one shift and XOR of the high part per set bit of x^k mod P, about
    twelve for a random k. On big inputs it pays to look a little below the midpoint
    for a k with three or four; x^k mod P for consecutive k is one shift away.
    """
    window = min(half >> 10, 4096)
    k = half - window
    remainder = _x_power_mod(k)
    best_k, best = k, remainder
    for _ in range(window):
        k += 1
        remainder <<= 1
        if remainder >> 24:
            remainder ^= _CRC24_POLY
        if remainder.bit_count() < best.bit_count():
            best_k, best = k, remainder
    return best_k, best


def _crc24(data: bytes) -> int:
    """The OpenPGP CRC-24 of `data`.

    A byte-at-a-time table loop in Python takes seconds on a 28 MB keyring, so the CRC
    is computed as what it is, a polynomial remainder: the register after the message
    is INIT * x^(8n) + M(x) * x^24 mod P(x). The big number is folded in halves
    (high * x^k + low == high * (x^k mod P) + low, mod P); each fold is a few shifts
    and XORs of Python ints, which run in C, so the whole is linear in the input.
    """
    value = (_CRC24_INIT << (8 * len(data))) ^ (int.from_bytes(data, "big") << 24)
    while value.bit_length() > 256:
        k, remainder = _fold_point(value.bit_length() // 2)
        value = _clmul(value >> k, remainder) ^ (value & ((1 << k) - 1))
    return _mod_poly(value)


# --- Armor ----------------------------------------------------------------------------

_UTF8_BOM = b"\xef\xbb\xbf"
_CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# BEGIN/END lines, alone on their line (blanks around them allowed: people indent
# pasted blocks). Anchored per line, so finding them is linear in the input, however
# many markers it holds.
_MARKER = re.compile(rb"^[ \t]*-----(BEGIN|END) PGP ([A-Z0-9 ,/]+)-----[ \t]*$", re.MULTILINE)
# Any secret key in a text paste, OpenPGP ("PRIVATE"/PGP 2 "SECRET") or not (SSH, PEM):
# the person must be told at once, whatever else the input holds.
_SECRET_ARMOR = re.compile(
    rb"-----BEGIN PGP (?:PRIVATE|SECRET) KEY BLOCK-----|-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
)
_BLOCK_LABEL = re.compile(r"[A-Z0-9 ,/]+")
_BASE64_ONLY = re.compile(rb"[A-Za-z0-9+/=\s]+")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_binary(data: bytes) -> bool:
    """True for binary packets: a packet tag first, and no armor in it.

    A packet tag has bit 7 set, but so does the first byte of text in most scripts
    ("鍵です" before a pasted block). Text holds no control bytes besides line breaks
    and tabs, while every binary key does (its version octet is 4), so binary packets
    that happen to be valid UTF-8 are still binary: the same key gives the same answer
    armored or binary.
    """
    if not data[0] & 0x80:
        return False
    if not _is_utf8(data):
        return True
    return b"-----BEGIN PGP" not in data and bool(_CONTROL_BYTE.search(data))


def is_armored(data: bytes) -> bool:
    """True if `data` is text holding an armor BEGIN line, as `dearmor` would read it."""
    data = bytes(data).removeprefix(_UTF8_BOM)
    return bool(data.strip()) and not _is_binary(data) and b"-----BEGIN PGP " in data


# A GnuPG keybox file starts with a 32-byte header blob: length(4), type 1, version 1,
# flags(2), then the magic "KBXf" (GnuPG's kbx/keybox-blob.c).
_KEYBOX_MAGIC_AT = slice(8, 12)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# The armor labels a reader takes (RFC 9580 6.2): keys, and certifications uploaded
# on their own as a detached signature block.
KEY_LABELS = frozenset({b"PUBLIC KEY BLOCK"})
CERTIFICATION_LABELS = frozenset({b"PUBLIC KEY BLOCK", b"SIGNATURE"})


def _looks_utf16(data: bytes) -> bool:
    """Text saved as UTF-16 without a byte order mark: every other byte is NUL."""
    if len(data) < 4 or data[0] & 0x80:
        return False  # binary packets start with a tag octet, bit 7 set
    head = data[:64]
    for zeros, text in ((head[1::2], head[0::2]), (head[0::2], head[1::2])):
        if not zeros.strip(b"\0") and 0 not in text:
            return True
    return False


def dearmor(data: bytes, labels: frozenset[bytes] = KEY_LABELS) -> bytes:
    """Binary OpenPGP from armored or binary input; several armored blocks are joined.

    `labels` are the armor block kinds taken (default: PUBLIC KEY BLOCK); a block
    of another kind (a PGP MESSAGE, a SIGNATURE where a key is expected) is
    refused as "wrong-block". The same bytes give the same answer armored or binary.

    Raises KeyMaterialRefused ("empty", "not-openpgp", "corrupt-armor", "secret-key",
    "keybox", "utf-16", "wrong-block").
    """
    data = bytes(data)
    if data[_KEYBOX_MAGIC_AT] == b"KBXf":
        raise _refuse("keybox")
    if data.startswith(_UTF16_BOMS) or _looks_utf16(data):
        raise _refuse("utf-16")
    data = data.removeprefix(_UTF8_BOM)
    if not data.strip():
        raise _refuse("empty")
    if _is_binary(data):
        return data
    return _decode_armor_text(data, labels)


def _decode_armor_text(text: bytes, labels: frozenset[bytes] = KEY_LABELS) -> bytes:
    # Checked first and over the whole text: a secret key must never be passed over
    # because some other block in the same paste is damaged.
    if _SECRET_ARMOR.search(text):
        raise _refuse("secret-key")
    text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    parts: list[bytes] = []
    begin: re.Match[bytes] | None = None
    found = False
    for marker in _marker_lines(text):
        found = True
        kind = marker.group(1)
        if begin is None:
            if kind == b"END":
                raise _refuse("corrupt-armor", "an END line comes before its BEGIN line")
            begin = marker
        elif kind == b"BEGIN":
            raise _refuse("corrupt-armor", "a block has no END line")
        elif marker.group(2) != begin.group(2):
            raise _refuse("corrupt-armor", "a block ends with the END line of another kind")
        elif begin.group(2) not in labels:
            raise _refuse("wrong-block", begin.group(2).decode("ascii"))
        else:
            parts.append(_decode_armor_body(text[begin.end() : marker.start()]))
            begin = None
    if not found:
        raise _no_armor(text)
    if begin is not None:
        raise _refuse("corrupt-armor", "the END line is missing")
    return b"".join(parts)


def _marker_lines(text: bytes) -> Iterator[re.Match[bytes]]:
    """BEGIN/END markers that stand alone on their line, in order, found lazily (a
    damaged input is refused at its first wrong marker, not after finding them all).
    A marker inside a header line is not one."""
    for marker in _MARKER.finditer(text):
        if marker.group(2) != b"SIGNED MESSAGE":
            yield marker


def _no_armor(text: bytes) -> KeyMaterialRefused:
    """The refusal for text without a usable BEGIN ... END pair."""
    if b"-----BEGIN PGP" in text or b"-----END PGP" in text:
        return _refuse("corrupt-armor", "the BEGIN or END line is damaged")
    stripped = text.strip()
    # The inside of a block copied without its BEGIN and END lines is a common mistake.
    if len(stripped) >= 64 and _BASE64_ONLY.fullmatch(stripped):
        return _refuse("corrupt-armor", "the BEGIN and END lines are missing")
    return _refuse("not-openpgp", "no -----BEGIN PGP PUBLIC KEY BLOCK----- line was found")


def _decode_armor_body(body: bytes) -> bytes:
    """Decode what lies between a BEGIN and its END line: headers, base64, checksum."""
    # Armor headers ("Version: ...", "Comment: ...") come first and end at a blank line.
    # Base64 never contains ':', so header lines are told apart even when a mail client
    # dropped the blank line.
    pos = 0
    while pos < len(body):
        newline = body.find(b"\n", pos)
        line_end = len(body) if newline < 0 else newline
        line = body[pos:line_end].strip()
        if line and b":" not in line:
            break
        pos = line_end + 1
    payload = body[pos:].rstrip()

    # The optional checksum is the last line: '=' and four base64 characters.
    checksum: bytes | None = None
    last_start = payload.rfind(b"\n") + 1
    last = payload[last_start:].strip()
    if len(last) == 5 and last.startswith(b"="):
        checksum = last[1:]
        payload = payload[:last_start]

    encoded = payload.translate(None, b" \t\n\r\x0b\x0c")  # drop all whitespace in one pass
    if not encoded:
        raise _refuse("corrupt-armor", "the block holds no data")
    try:
        decoded = base64.b64decode(encoded, validate=True)
        expected = base64.b64decode(checksum, validate=True) if checksum is not None else None
    except (binascii.Error, ValueError):
        raise _refuse("corrupt-armor", "it is not valid base64") from None
    # RFC 9580 lets readers ignore the checksum; we check it because a mismatch here
    # almost always means a paste lost or changed characters, and the sender can fix it.
    if expected is not None and int.from_bytes(expected, "big") != _crc24(decoded):
        raise _refuse("corrupt-armor", "its checksum does not match")
    return decoded


def armor(data: bytes, block: str = "PUBLIC KEY BLOCK") -> str:
    """ASCII armor for `data`: 64-character lines, CRC-24 line, final newline."""
    if not data:
        raise ValueError("nothing to armor")
    if not _BLOCK_LABEL.fullmatch(block):
        # The label goes into the BEGIN/END lines verbatim: keep it to what armor allows.
        raise ValueError(f"not an armor label: {block!r}")
    encoded = base64.b64encode(data).decode("ascii")
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    checksum = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode("ascii")
    body = "\n".join(lines)
    return f"-----BEGIN PGP {block}-----\n\n{body}\n={checksum}\n-----END PGP {block}-----\n"


# --- Packets (RFC 9580 section 4) -----------------------------------------------------

_TAG_SIGNATURE = 2
_TAG_SECRET_KEY = 5
_TAG_PUBLIC_KEY = 6
_TAG_SECRET_SUBKEY = 7
_TAG_COMPRESSED = 8
_TAG_MARKER = 10
_TAG_USER_ID = 13
_TAG_PUBLIC_SUBKEY = 14
_TAG_USER_ATTRIBUTE = 17

# Only data packets may use partial (new format) or indeterminate (old format)
# lengths; in a key such a length means the input is not a key stream at all.
_DATA_TAGS = frozenset({8, 9, 11, 18, 20})

# For the "no-key" message: what a stream that starts with this packet probably is.
_NOT_A_KEY = {
    1: N_("it looks like an encrypted message"),
    2: N_("it looks like a signature or revocation certificate"),
    3: N_("it looks like an encrypted message"),
    4: N_("it looks like a signed message"),
    9: N_("it looks like an encrypted message"),
    11: N_("it looks like a message"),
    13: N_("it starts with a user ID instead of a public key"),
    14: N_("it starts with a subkey instead of a primary key"),
    18: N_("it looks like an encrypted message"),
    20: N_("it looks like an encrypted message"),
}
_NOT_A_KEY_OTHERWISE = N_("it does not start with a public key")


def _packets(buf: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Yield (tag, packet start, body start, body end) for each packet in `buf`.

    Secret-key, compressed and reserved packets are refused as soon as their tag is
    read, before their length is trusted: a cut-off secret key is still a secret key.
    For data packets with partial lengths the body is not contiguous; they are skipped
    whole and reported with an empty body at their end.
    """
    size = len(buf)
    pos = 0
    while pos < size:
        start = pos
        octet = buf[pos]
        if not octet & 0x80:
            raise _refuse("not-openpgp", "byte {pos} does not start a packet", pos=pos)
        new_format = octet & 0x40
        tag = octet & 0x3F if new_format else (octet >> 2) & 0x0F
        if tag in (_TAG_SECRET_KEY, _TAG_SECRET_SUBKEY):
            raise _refuse("secret-key")
        if tag == _TAG_COMPRESSED:
            raise _refuse("compressed")
        if tag == 0:
            raise _refuse("not-openpgp", "byte {pos} starts a packet of reserved type 0", pos=pos)
        pos += 1
        if new_format:
            length, pos, partial = _new_length(buf, pos, start)
            if partial:
                if tag not in _DATA_TAGS:
                    raise _refuse(
                        "not-openpgp", "the packet at byte {start} has a bad length", start=start
                    )
                while partial:
                    pos += length
                    if pos > size:
                        raise _cut_off(start)
                    length, pos, partial = _new_length(buf, pos, start)
                start_of_body = pos + length  # not contiguous: report an empty body
            else:
                start_of_body = pos
        else:
            length_type = octet & 0x03
            if length_type == 3:
                # Indeterminate length: "until the end of the input", data packets only.
                if tag not in _DATA_TAGS:
                    raise _refuse(
                        "not-openpgp", "the packet at byte {start} has a bad length", start=start
                    )
                length = size - pos
            else:
                width = 1 << length_type  # 1, 2 or 4 octets
                if pos + width > size:
                    raise _cut_off(start)
                length = int.from_bytes(buf[pos : pos + width], "big")
                pos += width
            start_of_body = pos
        end = pos + length
        if end > size:
            raise _cut_off(start)
        yield tag, start, start_of_body, end
        pos = end


def _new_length(buf: bytes, pos: int, start: int) -> tuple[int, int, bool]:
    """Read a new-format length at `pos`: (length, position after it, is partial)."""
    size = len(buf)
    if pos >= size:
        raise _cut_off(start)
    first = buf[pos]
    if first < 192:
        return first, pos + 1, False
    if first < 224:
        if pos + 2 > size:
            raise _cut_off(start)
        return ((first - 192) << 8) + buf[pos + 1] + 192, pos + 2, False
    if first == 255:
        if pos + 5 > size:
            raise _cut_off(start)
        return int.from_bytes(buf[pos + 1 : pos + 5], "big"), pos + 5, False
    return 1 << (first & 0x1F), pos + 1, True


def _cut_off(start: int) -> KeyMaterialRefused:
    return _refuse(
        "truncated", "the packet at byte {start} runs past the end of the data", start=start
    )


# --- Key packets ----------------------------------------------------------------------

# Curve OIDs (RFC 9580 9.2 and GnuPG's table), as the bytes after the OID length octet,
# mapped to GnuPG's curve name and the size GnuPG reports for it.
_CURVES: dict[bytes, tuple[str, int]] = {
    bytes.fromhex("2B060104019755010501"): ("cv25519", 255),  # 1.3.6.1.4.1.3029.1.5.1
    bytes.fromhex("2B06010401DA470F01"): ("ed25519", 255),  # 1.3.6.1.4.1.11591.15.1
    bytes.fromhex("2B656E"): ("cv25519", 255),  # 1.3.101.110 (X25519, RFC 8410)
    bytes.fromhex("2B6570"): ("ed25519", 255),  # 1.3.101.112 (Ed25519, RFC 8410)
    bytes.fromhex("2B656F"): ("cv448", 448),  # 1.3.101.111 (X448)
    bytes.fromhex("2B6571"): ("ed448", 448),  # 1.3.101.113 (Ed448)
    bytes.fromhex("2A8648CE3D030107"): ("nistp256", 256),  # 1.2.840.10045.3.1.7
    bytes.fromhex("2B81040022"): ("nistp384", 384),  # 1.3.132.0.34
    bytes.fromhex("2B81040023"): ("nistp521", 521),  # 1.3.132.0.35
    bytes.fromhex("2B8104000A"): ("secp256k1", 256),  # 1.3.132.0.10
    bytes.fromhex("2B2403030208010107"): ("brainpoolP256r1", 256),  # 1.3.36.3.3.2.8.1.1.7
    bytes.fromhex("2B240303020801010B"): ("brainpoolP384r1", 384),  # 1.3.36.3.3.2.8.1.1.11
    bytes.fromhex("2B240303020801010D"): ("brainpoolP512r1", 512),  # 1.3.36.3.3.2.8.1.1.13
}

_MPI_FIRST = frozenset({1, 2, 3, 16, 17, 20})  # RSA n, Elgamal p, DSA p
_OID_FIRST = frozenset({18, 19, 22})  # ECDH, ECDSA, EdDSA (legacy)
# RFC 9580 algorithms whose curve is the algorithm itself.
_FIXED_CURVE = {25: ("cv25519", 255), 26: ("cv448", 448), 27: ("ed25519", 255), 28: ("ed448", 448)}


def _key_facts(buf: bytes, start: int, end: int, is_primary: bool) -> tuple[int, KeyComponent]:
    """(version, component) from a key packet body buf[start:end]; never raises.

    A malformed body is reported as far as it can be read (algorithm or bits 0); the
    caller refuses such keys, and GnuPG would reject them anyway.
    """
    if start >= end:
        return 0, KeyComponent(0, 0, None, is_primary)
    version = buf[start]
    if version in (2, 3):
        # version, created(4), validity days(2), algorithm, material
        algorithm_at, material = start + 7, start + 8
    elif version == 4:
        # version, created(4), algorithm, material
        algorithm_at, material = start + 5, start + 6
    elif version in (5, 6):
        # version, created(4), algorithm, material length(4), material
        algorithm_at, material = start + 5, start + 10
    else:
        return version, KeyComponent(0, 0, None, is_primary)
    if algorithm_at >= end:
        return version, KeyComponent(0, 0, None, is_primary)
    algorithm = buf[algorithm_at]
    bits, curve = _material_size(buf, material, end, algorithm)
    return version, KeyComponent(algorithm, bits, curve, is_primary)


def _material_size(buf: bytes, pos: int, end: int, algorithm: int) -> tuple[int, str | None]:
    """(bits, curve) from the key material at buf[pos:end]; (0, None) if unreadable."""
    if algorithm in _MPI_FIRST:
        if pos + 2 > end:
            return 0, None
        claimed = int.from_bytes(buf[pos : pos + 2], "big")
        value_end = pos + 2 + (claimed + 7) // 8
        if value_end > end:
            return 0, None
        # The real size of the value, not the size the MPI header claims.
        return int.from_bytes(buf[pos + 2 : value_end], "big").bit_length(), None
    if algorithm in _OID_FIRST:
        if pos >= end:
            return 0, None
        oid_length = buf[pos]
        if oid_length in (0, 0xFF) or pos + 1 + oid_length > end:
            return 0, None
        curve, bits = _CURVES.get(buf[pos + 1 : pos + 1 + oid_length], (None, 0))
        return bits, curve
    if algorithm in _FIXED_CURVE:
        curve, bits = _FIXED_CURVE[algorithm]
        return bits, curve
    return 0, None


def _v4_fingerprint(body: bytes) -> str:
    """SHA-1 over 0x99, the two-octet body length and the body (RFC 4880 12.2)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"\x99" + len(body).to_bytes(2, "big"))
    digest.update(body)
    return digest.hexdigest().upper()


@dataclass
class _KeyInProgress:
    """What read_keys has gathered about the key it is reading."""

    start: int
    version: int
    fingerprint: str | None
    components: list[KeyComponent]
    user_ids: list[bytes]

    def block(self, buf: bytes, end: int) -> KeyBlock:
        return KeyBlock(
            self.version,
            self.fingerprint,
            tuple(self.components),
            tuple(self.user_ids),
            buf[self.start : end],
        )


# Bounds that keep reading linear and small for any input (issue 11, item 10): a real
# key has far fewer packets, and real packets average far more than 16 bytes (a
# signature is 60 bytes or more), so a stream of tiny packets is refused early.
MAX_PACKETS_PER_KEY = 20_000
_MIN_AVERAGE_PACKET = 16


def read_keys(data: bytes, labels: frozenset[bytes] = KEY_LABELS) -> list[KeyBlock]:
    """Split armored or binary key data into one KeyBlock per primary key.

    `labels`: the armor block kinds taken (see dearmor). Reading is linear in the
    input and stops early on what no key holds: more than MAX_PACKETS_PER_KEY packets
    in one key, or more packets than one per 16 bytes of input.

    Raises KeyMaterialRefused for the whole input: "empty", "not-openpgp",
    "corrupt-armor", "truncated", "secret-key", "compressed", "no-key", "keybox",
    "utf-16", "wrong-block" or "too-many-packets".
    """
    buf = dearmor(data, labels)
    budget = len(buf) // _MIN_AVERAGE_PACKET + 1000
    in_key = 0
    blocks: list[KeyBlock] = []
    current: _KeyInProgress | None = None
    not_a_key: str | None = None
    # The whole stream is walked even after a "no-key" finding, so that a secret key or
    # compressed packet further on is still reported: those messages matter more.
    for count, (tag, start, body_start, body_end) in enumerate(_packets(buf)):
        in_key += 1
        if count > budget or in_key > MAX_PACKETS_PER_KEY:
            raise _refuse("too-many-packets")
        if tag == _TAG_PUBLIC_KEY:
            in_key = 1
            if current is not None:
                blocks.append(current.block(buf, start))
            version, primary = _key_facts(buf, body_start, body_end, True)
            fingerprint = None
            if version == 4:
                if body_end - body_start > 0xFFFF:
                    # The v4 fingerprint hashes a two-octet length: no real key is this
                    # big, and a key without a fingerprint cannot be handled at all.
                    raise _refuse(
                        "not-openpgp", "the key at byte {start} is impossibly large", start=start
                    )
                fingerprint = _v4_fingerprint(buf[body_start:body_end])
            current = _KeyInProgress(start, version, fingerprint, [primary], [])
        elif current is None:
            if tag != _TAG_MARKER and not_a_key is None:
                not_a_key = _NOT_A_KEY.get(tag, _NOT_A_KEY_OTHERWISE)
        elif tag == _TAG_PUBLIC_SUBKEY:
            current.components.append(_key_facts(buf, body_start, body_end, False)[1])
        elif tag == _TAG_USER_ID:
            current.user_ids.append(buf[body_start:body_end])
    if not_a_key is not None:
        raise _refuse("no-key", not_a_key)
    if current is None:
        raise _refuse("no-key")
    blocks.append(current.block(buf, len(buf)))
    return blocks


# --- Signatures (RFC 4880 5.2, RFC 9580 5.2) ------------------------------------------

# Subpacket types (RFC 9580 5.2.3.7 onwards).
_SUB_CREATED = 2
_SUB_EXPIRES = 3
_SUB_EXPORTABLE = 4
_SUB_TRUST = 5
_SUB_REGEXP = 6
_SUB_ISSUER = 16
_SUB_NOTATION = 20
_SUB_POLICY_URL = 26
_SUB_ISSUER_FPR = 33

# Subpacket types defined by RFC 4880, RFC 9580 or LibrePGP. A critical subpacket of any
# other type makes the signature invalid (RFC 9580 5.2.3.7); it is reported in
# Signature.critical_unknown. Reserved numbers (8, 10, 13-15, 17-19, 36) and the
# private range (100-110) are not known.
_KNOWN_SUBPACKETS = frozenset({2, 3, 4, 5, 6, 7, 9, 11, 12, 16, *range(20, 36), 37, 38, 39})

# Subpackets whose value has a fixed size; any other size is a malformed signature.
_FIXED_SIZE = {_SUB_CREATED: 4, _SUB_EXPIRES: 4, _SUB_EXPORTABLE: 1, _SUB_TRUST: 2, _SUB_ISSUER: 8}
# Issuer fingerprint: key version -> fingerprint size.
_FINGERPRINT_SIZE = {4: 20, 5: 32, 6: 32}

_CERTIFICATIONS = frozenset({0x10, 0x11, 0x12, 0x13})
_CERTIFICATION_REVOCATION = 0x30
_DIRECT_KEY = 0x1F
_KEY_REVOCATION = 0x20


@dataclass(frozen=True)
class Signature:
    """One signature packet, as far as this module reads it.

    Nothing here is verified: `issuer_*` say who the signature *claims* to be from.
    Subpackets that describe the signature (created, expiry, exportable, trust,
    regular expressions, notations, policy URL) are read from the hashed area only; the
    issuer is read from the hashed area, else from the unhashed one.

    Fully read for versions 4 and 6. Version 3 (and 2) signatures carry no subpackets:
    their type, algorithms, creation time and issuer key ID come from the header. For
    other versions only `version`, and for version 5 `sig_type` and the two algorithms,
    are read; unread integers are 0 and optional fields None.

    `expires_after` is None when the signature never expires (no subpacket, or 0).
    `regexps` are the raw subpacket values, usually with the terminating NUL octet that
    the RFC prescribes (GnuPG writes `<[^>]+[@.]example\\.org>$` followed by NUL).
    `notations` are (name, value, human-readable flag), hashed ones only, in order.
    `critical_unknown` lists, in order and once each, the types of hashed subpackets
    that are marked critical and not defined by RFC 4880, RFC 9580 or LibrePGP; per
    RFC 9580 such a signature is invalid.
    """

    raw: bytes
    version: int
    sig_type: int
    pubkey_algorithm: int
    hash_algorithm: int
    created: int | None
    expires_after: int | None
    exportable: bool
    trust: tuple[int, int] | None
    regexps: tuple[bytes, ...]
    notations: tuple[tuple[str, bytes, bool], ...]
    policy_url: str | None
    issuer_fingerprint: str | None
    issuer_key_id: str | None
    critical_unknown: tuple[int, ...]

    @property
    def level(self) -> int | None:
        """Certification level 0-3 for types 0x10-0x13, None for any other type."""
        return self.sig_type - 0x10 if self.sig_type in _CERTIFICATIONS else None

    def notation(self, name: str) -> bytes | None:
        """The value of the first hashed notation called `name`, or None."""
        for notation_name, value, _ in self.notations:
            if notation_name == name:
                return value
        return None


@dataclass(frozen=True)
class UserIDSignatures:
    """A User ID and every signature packet that follows it in the key, in order,
    up to the next user ID, user attribute or subkey: self-signatures, third-party
    certifications and revocations alike."""

    user_id: bytes
    user_id_raw: bytes
    signatures: tuple[Signature, ...]


def _malformed(start: int, what: str) -> KeyMaterialRefused:
    """`what` is the whole detail phrase, written out so that it translates whole."""
    return _refuse("not-openpgp", what, start=start)


@dataclass
class _Subpackets:
    """What the subpacket areas of one signature say (see Signature)."""

    created: int | None = None
    expires_after: int | None = None
    exportable: bool = True
    trust: tuple[int, int] | None = None
    policy_url: str | None = None
    issuer_fingerprint: str | None = None
    issuer_key_id: str | None = None
    unhashed_fingerprint: str | None = None
    unhashed_key_id: str | None = None
    regexps: list[bytes] = field(default_factory=list)
    notations: list[tuple[str, bytes, bool]] = field(default_factory=list)
    critical_unknown: list[int] = field(default_factory=list)


def _read_subpackets(
    buf: bytes, pos: int, end: int, hashed: bool, found: _Subpackets, start: int
) -> None:
    """Read the subpacket area buf[pos:end] into `found` (RFC 4880 5.2.3.1).

    Raises KeyMaterialRefused("not-openpgp") for a malformed area, or a malformed
    subpacket of a type read here; other types are skipped.
    """
    while pos < end:
        first = buf[pos]
        if first < 192:
            length = first
            pos += 1
        elif first < 255:
            if pos + 2 > end:
                raise _malformed(
                    start, "the signature at byte {start} has a cut-off subpacket length"
                )
            length = ((first - 192) << 8) + buf[pos + 1] + 192
            pos += 2
        else:
            if pos + 5 > end:
                raise _malformed(
                    start, "the signature at byte {start} has a cut-off subpacket length"
                )
            length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
            pos += 5
        if length == 0:
            raise _malformed(start, "the signature at byte {start} has an empty subpacket")
        stop = pos + length
        if stop > end:
            raise _malformed(
                start, "the signature at byte {start} has a subpacket that runs past its area"
            )
        octet = buf[pos]
        kind = octet & 0x7F
        value_at = pos + 1
        size = length - 1
        pos = stop
        if kind in _FIXED_SIZE and size != _FIXED_SIZE[kind]:
            raise _malformed(
                start, "the signature at byte {start} has a subpacket of the wrong size"
            )
        if kind == _SUB_ISSUER:
            key_id = buf[value_at:stop].hex().upper()
            if hashed:
                found.issuer_key_id = found.issuer_key_id or key_id
            else:
                found.unhashed_key_id = found.unhashed_key_id or key_id
            continue
        if kind == _SUB_ISSUER_FPR:
            if size < 1:
                raise _malformed(
                    start, "the signature at byte {start} has a subpacket of the wrong size"
                )
            expected = _FINGERPRINT_SIZE.get(buf[value_at])
            if expected is None:
                continue  # a key version we do not know: not an error
            if size != 1 + expected:
                raise _malformed(
                    start, "the signature at byte {start} has a subpacket of the wrong size"
                )
            fingerprint = buf[value_at + 1 : stop].hex().upper()
            if hashed:
                found.issuer_fingerprint = found.issuer_fingerprint or fingerprint
            else:
                found.unhashed_fingerprint = found.unhashed_fingerprint or fingerprint
            continue
        if not hashed:
            continue  # nothing else outside the signed data is trusted or needed
        if kind == _SUB_CREATED and found.created is None:
            found.created = int.from_bytes(buf[value_at:stop], "big")
        elif kind == _SUB_EXPIRES and found.expires_after is None:
            found.expires_after = int.from_bytes(buf[value_at:stop], "big") or None
        elif kind == _SUB_EXPORTABLE:
            # Any "not exportable" wins: a local signature must never be passed on.
            found.exportable = found.exportable and buf[value_at] != 0
        elif kind == _SUB_TRUST and found.trust is None:
            found.trust = (buf[value_at], buf[value_at + 1])
        elif kind == _SUB_REGEXP:
            found.regexps.append(buf[value_at:stop])
        elif kind == _SUB_NOTATION:
            # flags(4), name length(2), value length(2), name, value
            if size < 8:
                raise _malformed(
                    start, "the signature at byte {start} has a notation of the wrong size"
                )
            name_length = int.from_bytes(buf[value_at + 4 : value_at + 6], "big")
            value_length = int.from_bytes(buf[value_at + 6 : value_at + 8], "big")
            if 8 + name_length + value_length != size:
                raise _malformed(
                    start, "the signature at byte {start} has a notation of the wrong size"
                )
            name_at = value_at + 8
            name = buf[name_at : name_at + name_length].decode("utf-8", errors="replace")
            value = buf[name_at + name_length : stop]
            found.notations.append((name, value, bool(buf[value_at] & 0x80)))
        elif kind == _SUB_POLICY_URL and found.policy_url is None:
            found.policy_url = buf[value_at:stop].decode("utf-8", errors="replace")
        if octet & 0x80 and kind not in _KNOWN_SUBPACKETS and kind not in found.critical_unknown:
            found.critical_unknown.append(kind)


def _signature(buf: bytes, start: int, body_start: int, end: int) -> Signature:
    """Read the signature packet buf[start:end] whose body starts at `body_start`.

    Raises KeyMaterialRefused("not-openpgp") if a version 3, 4 or 6 signature is
    malformed (header cut off, subpacket area malformed or running past the packet).
    """
    raw = buf[start:end]
    size = end - body_start
    version = buf[body_start] if size else 0
    if version in (2, 3):
        # version, hashed length (5), type, created(4), key id(8), algorithms(2), left16(2)
        if size < 19 or buf[body_start + 1] != 5:
            raise _malformed(start, "the signature at byte {start} has a malformed header")
        p = body_start
        return Signature(
            raw=raw,
            version=version,
            sig_type=buf[p + 2],
            pubkey_algorithm=buf[p + 15],
            hash_algorithm=buf[p + 16],
            created=int.from_bytes(buf[p + 3 : p + 7], "big"),
            expires_after=None,
            exportable=True,
            trust=None,
            regexps=(),
            notations=(),
            policy_url=None,
            issuer_fingerprint=None,
            issuer_key_id=buf[p + 7 : p + 15].hex().upper(),
            critical_unknown=(),
        )
    if version not in (4, 5, 6) or size < 4:
        if version in (4, 5, 6):
            raise _malformed(start, "the signature at byte {start} has a malformed header")
        return Signature(
            raw, version, 0, 0, 0, None, None, True, None, (), (), None, None, None, ()
        )
    sig_type, pubkey_algorithm, hash_algorithm = buf[body_start + 1 : body_start + 4]
    found = _Subpackets()
    if version in (4, 6):
        # Area lengths take two octets in v4, four in v6; a two-octet hash prefix follows.
        width = 2 if version == 4 else 4
        pos = body_start + 4
        for hashed in (True, False):
            if pos + width > end:
                raise _malformed(start, "the signature at byte {start} has a malformed header")
            area_end = pos + width + int.from_bytes(buf[pos : pos + width], "big")
            if area_end > end:
                raise _malformed(
                    start,
                    "the signature at byte {start} has a subpacket area that runs past the packet",
                )
            _read_subpackets(buf, pos + width, area_end, hashed, found, start)
            pos = area_end
        if pos + 2 > end:
            raise _malformed(start, "the signature at byte {start} is cut off after its subpackets")
    fingerprint = found.issuer_fingerprint or found.unhashed_fingerprint
    key_id = found.issuer_key_id or found.unhashed_key_id
    if key_id is None and fingerprint is not None:
        key_id = key_id_of(fingerprint)
    return Signature(
        raw=raw,
        version=version,
        sig_type=sig_type,
        pubkey_algorithm=pubkey_algorithm,
        hash_algorithm=hash_algorithm,
        created=found.created,
        expires_after=found.expires_after,
        exportable=found.exportable,
        trust=found.trust,
        regexps=tuple(found.regexps),
        notations=tuple(found.notations),
        policy_url=found.policy_url,
        issuer_fingerprint=fingerprint,
        issuer_key_id=key_id,
        critical_unknown=tuple(found.critical_unknown),
    )


@functools.lru_cache(maxsize=8)
def _walk(
    block: KeyBlock,
) -> tuple[bytes, tuple[Signature, ...], tuple[UserIDSignatures, ...]]:
    """(primary key packet, signatures before the first user ID, user IDs) of `block`.

    Kept for the last few blocks read (intake takes a key's certifications one
    after another): a minimal key is built once per certification, and re-reading
    a key with a thousand certifications for each would be quadratic (the block's
    bytes hash once; CPython caches a bytes hash).
    """
    buf = block.data
    packets = _packets(buf)
    first = next(packets, None)
    if first is None or first[0] != _TAG_PUBLIC_KEY:
        raise _refuse("no-key", "the block does not start with a public key")
    primary = buf[first[1] : first[3]]
    direct: list[Signature] = []
    user_ids: list[UserIDSignatures] = []
    # Where the signatures read now go: the direct list, the current user ID's list, or
    # nowhere (after a user attribute or a subkey).
    target: list[Signature] | None = direct
    current: tuple[bytes, bytes] | None = None  # (body, whole packet) of that user ID
    for tag, start, body_start, end in packets:
        if tag == _TAG_SIGNATURE:
            if target is not None:
                target.append(_signature(buf, start, body_start, end))
        elif tag in (_TAG_USER_ID, _TAG_USER_ATTRIBUTE, _TAG_PUBLIC_SUBKEY, _TAG_PUBLIC_KEY):
            if current is not None and target is not None:
                user_ids.append(UserIDSignatures(current[0], current[1], tuple(target)))
            current, target = None, None
            if tag == _TAG_USER_ID:
                current, target = (buf[body_start:end], buf[start:end]), []
    if current is not None and target is not None:
        user_ids.append(UserIDSignatures(current[0], current[1], tuple(target)))
    return primary, tuple(direct), tuple(user_ids)


def user_id_signatures(block: KeyBlock) -> list[UserIDSignatures]:
    """Each User ID of `block`, in order, with the signature packets that follow it.

    User attribute packets (photo IDs) and their signatures are skipped, as are subkeys
    and their binding signatures. Raises KeyMaterialRefused("not-openpgp") if a
    signature on the key is malformed (see Signature).
    """
    return list(_walk(block)[2])


def primary_key_packet(block: KeyBlock) -> bytes:
    """The primary Public-Key packet of `block`, header and body, as in the input."""
    buf = block.data
    first = next(_packets(buf), None)
    if first is None or first[0] != _TAG_PUBLIC_KEY:
        raise _refuse("no-key", "the block does not start with a public key")
    return buf[first[1] : first[3]]


def key_id_of(fingerprint: str) -> str:
    """The 16-hex-digit key ID of a fingerprint: a v4 key ID is the end of its
    40-digit fingerprint, a v5 or v6 key ID the start of its 64 digits (RFC 9580 5.5.4)."""
    return fingerprint[-16:] if len(fingerprint) == 40 else fingerprint[:16]


def _is_self(signature: Signature, fingerprint: str) -> bool:
    """True if `signature` claims to be made by the v4 key `fingerprint`."""
    if signature.issuer_fingerprint is not None:
        return signature.issuer_fingerprint == fingerprint
    return signature.issuer_key_id == fingerprint[-16:]


def minimal_key(block: KeyBlock, user_id: bytes, signatures: Sequence[Signature]) -> bytes:
    """A binary key holding one user ID of `block` and exactly the given certifications.

    In order: the primary key packet; the key's own direct-key signatures and key
    revocations (types 0x1F and 0x20 before the first user ID); the first User ID packet
    equal to `user_id`; the key's own signatures on that user ID (from every packet of
    it, so that a self-revocation of the user ID is kept); then each of `signatures`,
    exact bytes, once. Nothing else: no other user ID, user attribute, subkey or
    third-party signature.

    Raises ValueError if the key is not a version 4 key, if `user_id` is not on it, or
    if one of `signatures` is not a single certification (0x10-0x13) or certification
    revocation (0x30) signature packet.
    """
    fingerprint = block.fingerprint
    if block.version != 4 or fingerprint is None:
        raise ValueError("a minimal key can only be made of a version 4 key")
    for signature in signatures:
        packets = list(_packets(signature.raw))
        if len(packets) != 1 or packets[0][0] != _TAG_SIGNATURE:
            raise ValueError("each signature must be exactly one signature packet")
        if not (
            signature.sig_type in _CERTIFICATIONS or signature.sig_type == _CERTIFICATION_REVOCATION
        ):
            raise ValueError("only certifications and their revocations can be added")
    parts = list(_own_parts(block, user_id))
    seen = set(parts)
    for signature in signatures:
        if signature.raw not in seen:
            seen.add(signature.raw)
            parts.append(signature.raw)
    return b"".join(parts)


@functools.lru_cache(maxsize=8)
def _own_parts(block: KeyBlock, user_id: bytes) -> tuple[bytes, ...]:
    """The packets a minimal key of `block` for `user_id` starts with: the primary key,
    its own direct-key signatures and revocations, the user ID, the key's own
    signatures on it. Kept, so that a thousand certifications on one user ID cost a
    thousand appends, not a thousand walks over the whole key."""
    fingerprint = block.fingerprint or ""
    primary, direct, user_ids = _walk(block)
    matching = [uid for uid in user_ids if uid.user_id == user_id]
    if not matching:
        raise ValueError("that user ID is not on this key")
    parts = [primary]
    parts += (
        s.raw
        for s in direct
        if s.sig_type in (_DIRECT_KEY, _KEY_REVOCATION) and _is_self(s, fingerprint)
    )
    parts.append(matching[0].user_id_raw)
    seen = set(parts)
    for signature in (s for uid in matching for s in uid.signatures):
        if len(parts) >= _MAX_OWN_PARTS:
            break  # nothing here is verified: a flood of "self" claims is cut short
        if _is_self(signature, fingerprint) and signature.raw not in seen:
            seen.add(signature.raw)
            parts.append(signature.raw)
    return tuple(parts)


# A real key has a handful of self-signatures on a user ID (one per expiry change);
# the minimal key keeps at most this many packets of the key's own.
_MAX_OWN_PARTS = 64


def keep_user_ids(block: KeyBlock, keep: Callable[[bytes], bool]) -> bytes:
    """The key with only the user IDs for which `keep(user_id)` is true, and
    their signatures; the primary key, its own signatures and the subkeys stay
    (a Web Key Directory serves a key for encryption, so subkeys matter).
    User attributes (photo IDs) go."""
    buf = block.data
    parts = []
    keeping = True
    for tag, start, body_start, end in _packets(buf):
        if tag == _TAG_USER_ID:
            keeping = keep(buf[body_start:end])
        elif tag == _TAG_USER_ATTRIBUTE:
            keeping = False
        elif tag in (_TAG_PUBLIC_SUBKEY, _TAG_PUBLIC_KEY):
            keeping = True
        if keeping:
            parts.append(buf[start:end])
    return b"".join(parts)


def without_certifications(block: KeyBlock, certifications: KeyBlock) -> tuple[bytes, int]:
    """`block` without the third-party signatures that `certifications` (a key
    block of the same key, e.g. a minimal key) carries on its user IDs.

    Signatures are matched by packet body: gpg may write a packet's header in
    another format than it read. Returns (the key, binary; how many signature
    packets were taken out).
    """
    fingerprint = certifications.fingerprint or ""
    wanted = {
        _body(s.raw)
        for uid in user_id_signatures(certifications)
        for s in uid.signatures
        if not _is_self(s, fingerprint)
    }
    buf = block.data
    parts = []
    dropped = 0
    for tag, start, body_start, end in _packets(buf):
        if tag == _TAG_SIGNATURE and buf[body_start:end] in wanted:
            dropped += 1
        else:
            parts.append(buf[start:end])
    return b"".join(parts), dropped


def _body(packet: bytes) -> bytes:
    """The body of one whole packet (its header left off)."""
    _tag, _start, body_start, end = next(_packets(packet))
    return packet[body_start:end]


def without_user_attributes(block: KeyBlock) -> KeyBlock:
    """`block` without its user attributes (photo IDs) and their signatures.

    keyparty never shows, certifies or exports a photo ID, so it is not kept: a key
    of 1 MiB that is mostly a photo is judged by what is used.
    """
    if _TAG_USER_ATTRIBUTE not in (tag for tag, *_ in _packets(block.data)):
        return block
    data = keep_user_ids(block, lambda _uid: True)
    return KeyBlock(block.version, block.fingerprint, block.components, block.user_ids, data)


def group_by_key(keys: Sequence[bytes]) -> list[bytes]:
    """Binary keys (e.g. many minimal keys) regrouped into one block per primary
    key: the primary key packet once, followed by everything the pieces carried
    for it, in the order the primary keys first came (GnuPGHome.import_blocks
    takes the list).

    gpg merges a key block into an existing key far faster once than the same
    certifications arriving as thousands of separate blocks of one key.
    """
    grouped: dict[bytes, list[bytes]] = {}
    for data in keys:
        for block in read_keys(data):
            primary = primary_key_packet(block)
            grouped.setdefault(primary, []).append(block.data[len(primary) :])
    return [primary + b"".join(rest) for primary, rest in grouped.items()]
