#!/usr/bin/env python3
"""Regenerate the OpenPGP key fixtures of keyparty.

Run from anywhere:  python gnupg-home-fixtures/make_fixtures.py

Writes, next to this script: attendees/*.asc (good keys, public and secret),
bad/* (keys and pastes that keyparty must refuse or handle with care),
signups.csv and fixtures.json (the manifest). The layout is always the same;
the keys themselves are new random keys on every run.

Every gpg call runs with --homedir set to a fresh short temporary directory
under /tmp (GNUPGHOME and HOME point there too), so ~/.gnupg is never read
or written. Each temporary home has its agent killed and is deleted at the
end. Needs Python 3.11 and GnuPG 2.2 (written against 2.2.40).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
GPG = os.environ.get("KEYPARTY_FIXTURES_GPG", "/usr/bin/gpg")
GPGCONF = str(Path(GPG).with_name("gpgconf"))
MIB = 1024 * 1024
HUGE_MIN_BYTES = int(1.1 * MIB)  # binary size huge.asc must exceed
FLOOD_SIGNERS = 20  # genuine third-party certifications on flooded.asc
FLOOD_PACKETS = 2000  # total packets in flooded.asc after duplication
EVENT_AFTER_2030 = "2030-06-01"  # an event date after expires-2030's expiry

# --------------------------------------------------------------------------
# GnuPG in throw-away homes


class GpgError(RuntimeError):
    pass


class GpgHome:
    """A temporary GnuPG home with a short path; never the user's own."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="kpf", dir="/tmp")
        os.chmod(self.path, 0o700)
        self.env = dict(os.environ)
        self.env.update(GNUPGHOME=self.path, HOME=self.path, LC_ALL="C.UTF-8", LANGUAGE="C")

    def run(
        self,
        *args: str,
        passphrase: str = "",
        stdin: bytes | None = None,
        faked_time: str | None = None,
        check: bool = True,
        timeout: float = 300,
        trust_always: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [GPG, "--homedir", self.path, "--batch", "--no-tty", "--yes"]
        cmd += ["--pinentry-mode", "loopback", "--passphrase", passphrase, "--utf8-strings"]
        if trust_always:
            cmd += ["--trust-model", "always", "--no-auto-check-trustdb"]
        cmd += ["--status-fd", "2", "--with-colons"]
        if faked_time:
            cmd += ["--faked-system-time", faked_time]
        cmd += list(args)
        proc = subprocess.run(
            [c.encode("utf-8") for c in cmd],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            env=self.env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise GpgError(
                f"gpg {' '.join(args)!r} exited {proc.returncode}:\n"
                + proc.stderr.decode("utf-8", "replace")
            )
        return proc

    def close(self) -> None:
        subprocess.run(
            [GPGCONF, "--homedir", self.path, "--kill", "gpg-agent"],
            env=self.env,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def gpg_home():
    home = GpgHome()
    try:
        yield home
    finally:
        home.close()


def status_lines(proc: subprocess.CompletedProcess[bytes], keyword: str) -> list[list[str]]:
    out = []
    for line in proc.stderr.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] " + keyword + " ") or line == "[GNUPG:] " + keyword:
            out.append(line.split()[2:])
    return out


def gen_key(
    home: GpgHome,
    uid: str,
    algo: str = "ed25519",
    usage: str = "sign,cert",
    expire: str = "never",
    passphrase: str = "",
    faked_time: str | None = None,
) -> str:
    proc = home.run(
        "--quick-gen-key",
        uid,
        algo,
        usage,
        expire,
        passphrase=passphrase,
        faked_time=faked_time,
    )
    created = status_lines(proc, "KEY_CREATED")
    if not created:
        raise GpgError(f"no KEY_CREATED for {uid!r}: {proc.stderr!r}")
    return created[0][1]


def add_subkey(
    home: GpgHome,
    fpr: str,
    algo: str = "cv25519",
    usage: str = "encr",
    expire: str = "never",
    passphrase: str = "",
    faked_time: str | None = None,
) -> None:
    home.run(
        "--quick-add-key",
        fpr,
        algo,
        usage,
        expire,
        passphrase=passphrase,
        faked_time=faked_time,
    )


def add_uid(home: GpgHome, fpr: str, uid: str, passphrase: str = "") -> None:
    home.run("--quick-add-uid", fpr, uid, passphrase=passphrase)


def export(
    home: GpgHome,
    *fprs: str,
    armor: bool = True,
    secret: bool = False,
    passphrase: str = "",
    faked_time: str | None = None,
) -> bytes:
    args = ["--armor"] if armor else []
    args.append("--export-secret-keys" if secret else "--export")
    proc = home.run(*args, *fprs, passphrase=passphrase, faked_time=faked_time)
    if not proc.stdout:
        raise GpgError(f"empty export of {fprs}")
    return proc.stdout


# --------------------------------------------------------------------------
# OpenPGP packets (RFC 4880) and ASCII armor, just what the fixtures need

TAG_SIGNATURE = 2
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_COMPRESSED = 8
TAG_USER_ID = 13
TAG_PUBLIC_SUBKEY = 14

KEY_TAGS = (TAG_PUBLIC_KEY, TAG_SECRET_KEY)
SUBKEY_TAGS = (TAG_PUBLIC_SUBKEY, TAG_SECRET_SUBKEY)

ALGO_NAMES = {
    1: "rsa",
    2: "rsa-encrypt-only",
    3: "rsa-sign-only",
    16: "elgamal-encrypt",
    17: "dsa",
    18: "ecdh",
    19: "ecdsa",
    20: "elgamal-sign-encrypt",
    22: "eddsa",
}
CURVES = {
    bytes.fromhex("2b06010401da470f01"): ("ed25519", 255),
    bytes.fromhex("2b060104019755010501"): ("cv25519", 255),
    bytes.fromhex("2a8648ce3d030107"): ("nistp256", 256),
    bytes.fromhex("2b81040022"): ("nistp384", 384),
    bytes.fromhex("2b81040023"): ("nistp521", 521),
}


@dataclass
class Packet:
    tag: int
    body: bytes
    raw: bytes  # header + body exactly as found


def parse_packets(data: bytes) -> list[Packet]:
    packets = []
    pos = 0
    while pos < len(data):
        start = pos
        ctb = data[pos]
        pos += 1
        if not ctb & 0x80:
            raise ValueError(f"not an OpenPGP packet at offset {start}")
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            first = data[pos]
            if first < 192:
                length, pos = first, pos + 1
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif first == 255:
                length, pos = struct.unpack(">I", data[pos + 1 : pos + 5])[0], pos + 5
            else:
                raise ValueError("partial body lengths are not expected in keys")
        else:  # old format
            tag = (ctb >> 2) & 0x0F
            kind = ctb & 3
            if kind == 3:
                length = len(data) - pos
            else:
                size = 1 << kind
                length = int.from_bytes(data[pos : pos + size], "big")
                pos += size
        body = data[pos : pos + length]
        if len(body) != length:
            raise ValueError(f"truncated packet at offset {start}")
        pos += length
        packets.append(Packet(tag, body, data[start:pos]))
    return packets


def new_packet(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + struct.pack(">I", n)
    return bytes([0xC0 | tag]) + length + body


def old_packet(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 256:
        return bytes([0x80 | tag << 2]) + bytes([n]) + body
    if n < 65536:
        return bytes([0x80 | tag << 2 | 1]) + struct.pack(">H", n) + body
    return bytes([0x80 | tag << 2 | 2]) + struct.pack(">I", n) + body


def mpi(value: int) -> bytes:
    bits = value.bit_length()
    return struct.pack(">H", bits) + value.to_bytes((bits + 7) // 8, "big")


def read_mpi(data: bytes, pos: int) -> tuple[int, int]:
    bits = struct.unpack(">H", data[pos : pos + 2])[0]
    size = (bits + 7) // 8
    return int.from_bytes(data[pos + 2 : pos + 2 + size], "big"), pos + 2 + size


def random_bits(bits: int, odd: bool = False) -> int:
    value = secrets.randbits(bits) | (1 << (bits - 1))
    return value | 1 if odd else value


def public_part(key_body: bytes) -> bytes:
    """The public key material of a v4 key packet body (drops secret parts)."""
    algo = key_body[5]
    pos = 6
    if algo in (1, 2, 3):
        count = 2
    elif algo == 17:
        count = 4
    elif algo in (16, 20):
        count = 3
    elif algo in (18, 19, 22):
        pos += 1 + key_body[pos]  # curve OID
        count = 1
    else:
        raise ValueError(f"unknown algorithm {algo}")
    for _ in range(count):
        _, pos = read_mpi(key_body, pos)
    if algo == 18:
        pos += 1 + key_body[pos]  # KDF parameters
    return key_body[:pos]


def v4_fingerprint(key_body: bytes) -> str:
    pub = public_part(key_body)
    return hashlib.sha1(b"\x99" + struct.pack(">H", len(pub)) + pub).hexdigest().upper()


def key_material(key_body: bytes) -> dict:
    """Version, creation time, algorithm and size of a key packet body."""
    version = key_body[0]
    created = struct.unpack(">I", key_body[1:5])[0]
    if version == 3:
        algo, pos = key_body[7], 8
    else:
        algo, pos = key_body[5], 6
    info = {
        "version": version,
        "created": iso(created),
        "algorithm": ALGO_NAMES.get(algo, f"unknown-{algo}"),
        "algorithm_id": algo,
    }
    if algo in (18, 19, 22):
        oid = key_body[pos + 1 : pos + 1 + key_body[pos]]
        curve, bits = CURVES.get(oid, (oid.hex(), None))
        info.update(algorithm=curve, bits=bits)
    else:
        bits = struct.unpack(">H", key_body[pos : pos + 2])[0]
        info["bits"] = bits
    if version == 4:
        info["fingerprint"] = v4_fingerprint(key_body)
    elif version == 3:
        n, pos = read_mpi(key_body, 8)
        e, _ = read_mpi(key_body, pos)
        nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
        eb = e.to_bytes((e.bit_length() + 7) // 8, "big")
        info["v3_fingerprint"] = hashlib.md5(nb + eb).hexdigest().upper()
        info["keyid"] = f"{n & (2**64 - 1):016X}"
    return info


@dataclass
class Sig:
    version: int
    sig_type: int
    algo: int
    hash_algo: int
    created: int | None
    issuer_fpr: str | None
    issuer_keyid: str | None
    key_flags: int | None
    key_expires_after: int | None


def parse_subpackets(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
        else:
            length, pos = struct.unpack(">I", data[pos + 1 : pos + 5])[0], pos + 5
        out.append((data[pos] & 0x7F, data[pos + 1 : pos + length]))
        pos += length
    return out


def parse_sig(body: bytes) -> Sig:
    if body[0] == 3:
        created = struct.unpack(">I", body[3:7])[0]
        return Sig(
            3, body[2], body[15], body[16], created, None, body[7:15].hex().upper(), None, None
        )
    if body[0] != 4:
        return Sig(body[0], -1, -1, -1, None, None, None, None, None)
    hlen = struct.unpack(">H", body[4:6])[0]
    hashed = parse_subpackets(body[6 : 6 + hlen])
    ulen = struct.unpack(">H", body[6 + hlen : 8 + hlen])[0]
    unhashed = parse_subpackets(body[8 + hlen : 8 + hlen + ulen])
    sig = Sig(4, body[1], body[2], body[3], None, None, None, None, None)
    for kind, value in hashed + unhashed:
        if kind == 2 and sig.created is None:
            sig.created = struct.unpack(">I", value)[0]
        elif kind == 33 and sig.issuer_fpr is None:
            sig.issuer_fpr = value[1:].hex().upper()
        elif kind == 16 and sig.issuer_keyid is None:
            sig.issuer_keyid = value.hex().upper()
    for kind, value in hashed:
        if kind == 27:
            sig.key_flags = value[0] if value else 0
        elif kind == 9:
            sig.key_expires_after = struct.unpack(">I", value)[0]
    return sig


def sig_is_by(sig: Sig, fpr: str) -> bool:
    if sig.issuer_fpr:
        return sig.issuer_fpr == fpr
    return sig.issuer_keyid is not None and fpr.endswith(sig.issuer_keyid)


def usage_letters(flags: int | None) -> str:
    if flags is None:
        return ""
    letters = ""
    for bit, letter in ((0x02, "s"), (0x01, "c"), (0x0C, "e"), (0x20, "a")):
        if flags & bit:
            letters += letter
    return letters


def iso(timestamp: int) -> str:
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KeyBlock:
    """One transferable key as found in a packet list."""

    primary: dict
    user_ids: list[str] = field(default_factory=list)
    unsigned_user_ids: list[str] = field(default_factory=list)
    subkeys: list[dict] = field(default_factory=list)
    revoked: bool = False
    third_party_sigs: int = 0  # signature packets on user IDs not by the key
    distinct_third_party_sigs: int = 0
    third_party_issuers: list[str] = field(default_factory=list)


def describe_keys(packets: list[Packet]) -> list[KeyBlock]:
    blocks: list[KeyBlock] = []
    current: KeyBlock | None = None
    fpr = ""
    uid: str | None = None
    uid_self_signed = False
    subkey: dict | None = None
    seen: set[bytes] = set()

    def finish_uid() -> None:
        if current is not None and uid is not None:
            (current.user_ids if uid_self_signed else current.unsigned_user_ids).append(uid)

    for pkt in packets:
        if pkt.tag in KEY_TAGS:
            finish_uid()
            info = key_material(pkt.body)
            info["secret"] = pkt.tag == TAG_SECRET_KEY
            current = KeyBlock(primary=info)
            blocks.append(current)
            fpr = info.get("fingerprint") or info.get("keyid", "")
            uid, uid_self_signed, subkey = None, False, None
        elif current is None:
            continue
        elif pkt.tag == TAG_USER_ID:
            finish_uid()
            uid, uid_self_signed = pkt.body.decode("utf-8", "replace"), False
        elif pkt.tag in SUBKEY_TAGS:
            finish_uid()
            uid = None
            subkey = key_material(pkt.body)
            current.subkeys.append(subkey)
        elif pkt.tag == TAG_SIGNATURE:
            sig = parse_sig(pkt.body)
            own = sig_is_by(sig, fpr)
            if sig.sig_type == 0x20 and own:
                current.revoked = True
            elif subkey is not None and sig.sig_type == 0x18 and own:
                subkey["usage"] = usage_letters(sig.key_flags)
                if sig.key_expires_after:
                    created = int(dt.datetime.fromisoformat(subkey["created"]).timestamp())
                    subkey["expires"] = iso(created + sig.key_expires_after)
            elif uid is not None and 0x10 <= sig.sig_type <= 0x13:
                if own:
                    uid_self_signed = True
                    current.primary.setdefault("usage", usage_letters(sig.key_flags))
                    if sig.key_expires_after:
                        created = int(
                            dt.datetime.fromisoformat(current.primary["created"]).timestamp()
                        )
                        current.primary["expires"] = iso(created + sig.key_expires_after)
                else:
                    current.third_party_sigs += 1
                    if pkt.body not in seen:
                        seen.add(pkt.body)
                        current.distinct_third_party_sigs += 1
                        issuer = sig.issuer_fpr or sig.issuer_keyid or "?"
                        current.third_party_issuers.append(issuer)
    finish_uid()
    return blocks


def crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor(data: bytes, kind: str = "PGP PUBLIC KEY BLOCK") -> bytes:
    b64 = base64.b64encode(data).decode("ascii")
    lines = [f"-----BEGIN {kind}-----", ""]
    lines += [b64[i : i + 64] for i in range(0, len(b64), 64)]
    lines.append("=" + base64.b64encode(crc24(data).to_bytes(3, "big")).decode("ascii"))
    lines.append(f"-----END {kind}-----")
    return ("\n".join(lines) + "\n").encode("ascii")


def dearmor(text: bytes) -> tuple[bytes, int | None]:
    """Body and stated CRC of the first armored block (no CRC check here)."""
    lines = text.decode("ascii").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN "))
    body_start = lines.index("", start) + 1
    b64 = []
    crc = None
    for line in lines[body_start:]:
        if line.startswith("-----END "):
            break
        if line.startswith("=") and len(line) == 5:
            crc = int.from_bytes(base64.b64decode(line[1:]), "big")
            break
        b64.append(line)
    return base64.b64decode("".join(b64)), crc


def dearmor_all(text: bytes) -> bytes:
    """Concatenated bodies of every armored block in text."""
    out = b""
    chunks = text.split(b"-----BEGIN ")
    for chunk in chunks[1:]:
        out += dearmor(b"-----BEGIN " + chunk)[0]
    return out


# --------------------------------------------------------------------------
# Hand-made keys that gpg cannot produce


def elgamal_sign_key(uid: str) -> bytes:
    """v4 primary with public-key algorithm 20 and a bogus self-certification."""
    created = int(dt.datetime(2012, 3, 4, 5, 6, 7, tzinfo=dt.UTC).timestamp())
    p = random_bits(2048, odd=True)
    y = secrets.randbelow(p - 3) + 2
    key_body = bytes([4]) + struct.pack(">I", created) + bytes([20]) + mpi(p) + mpi(2) + mpi(y)
    fpr = bytes.fromhex(v4_fingerprint(key_body))
    uid_bytes = uid.encode("utf-8")

    def subpacket(kind: int, value: bytes) -> bytes:
        return bytes([len(value) + 1, kind]) + value

    hashed = subpacket(2, struct.pack(">I", created + 60)) + subpacket(33, b"\x04" + fpr)
    unhashed = subpacket(16, fpr[-8:])
    sig_head = bytes([4, 0x13, 20, 8]) + struct.pack(">H", len(hashed)) + hashed
    digest = hashlib.sha256(
        b"\x99"
        + struct.pack(">H", len(key_body))
        + key_body
        + b"\xb4"
        + struct.pack(">I", len(uid_bytes))
        + uid_bytes
        + sig_head
        + b"\x04\xff"
        + struct.pack(">I", len(sig_head))
    ).digest()
    sig_body = sig_head + struct.pack(">H", len(unhashed)) + unhashed + digest[:2]
    sig_body += mpi(secrets.randbelow(p - 2) + 1) + mpi(secrets.randbelow(p - 2) + 1)
    return (
        new_packet(TAG_PUBLIC_KEY, key_body)
        + new_packet(TAG_USER_ID, uid_bytes)
        + new_packet(TAG_SIGNATURE, sig_body)
    )


def v3_rsa_key(uid: str) -> bytes:
    """PGP 2 style: v3 RSA key, user ID and a bogus v3 certification (MD5)."""
    created = int(dt.datetime(1997, 5, 6, 7, 8, 9, tzinfo=dt.UTC).timestamp())
    n = random_bits(2048, odd=True)
    key_body = bytes([3]) + struct.pack(">I", created) + struct.pack(">H", 0) + bytes([1]) + mpi(n)
    key_body += mpi(65537)
    keyid = (n & (2**64 - 1)).to_bytes(8, "big")
    uid_bytes = uid.encode("utf-8")
    sig_created = struct.pack(">I", created + 60)
    digest = hashlib.md5(
        b"\x99"
        + struct.pack(">H", len(key_body))
        + key_body
        + uid_bytes
        + bytes([0x13])
        + sig_created
    ).digest()
    sig_body = bytes([3, 5, 0x13]) + sig_created + keyid + bytes([1, 1]) + digest[:2]
    sig_body += mpi(secrets.randbelow(n - 2) + 1)
    return (
        old_packet(TAG_PUBLIC_KEY, key_body)
        + old_packet(TAG_USER_ID, uid_bytes)
        + old_packet(TAG_SIGNATURE, sig_body)
    )


def fake_ssh_line() -> bytes:
    blob = b""
    for part in (b"ssh-ed25519", secrets.token_bytes(32)):
        blob += struct.pack(">I", len(part)) + part
    return b"ssh-ed25519 " + base64.b64encode(blob) + b" frieda@laptop.example.net\n"


# --------------------------------------------------------------------------
# The fixtures

ATTENDEES = [
    # name, user IDs, primary algo, subkey algo, passphrase
    ("alice", ["Alice Example <alice@example.org>"], "ed25519", "cv25519", ""),
    (
        "bob",
        ["Bob Example <bob@example.org>", "Bob Example <bob@example.net>"],
        "ed25519",
        "cv25519",
        "",
    ),
    (
        "carol",
        [
            "Carol Example <carol@example.org>",
            "Carol Example (work) <carol@work.example.net>",
            "Carol Example",
        ],
        "ed25519",
        "cv25519",
        "",
    ),
    (
        "hanako",
        ["山田花子 <hanako@example.jp>", "Hanako Yamada <hanako@example.jp>"],
        "ed25519",
        "cv25519",
        "",
    ),
    ("zoe", ["Zoë Ångström-Núñez <zoe@example.org>"], "ed25519", "cv25519", ""),
    ("dalia", ["دالية مثال <dalia@example.org>"], "ed25519", "cv25519", ""),
    ("rsa", ["Rupert RSA <rupert@example.org>"], "rsa3072", "rsa3072", ""),
    ("victor", ["Victor Passphrase <victor@example.org>"], "ed25519", "cv25519", "correct horse"),
    ("signer1", ["Signer 1 <signer1@example.org>"], "ed25519", "cv25519", ""),
    ("signer2", ["Signer 2 <signer2@example.org>"], "ed25519", "cv25519", ""),
    ("signer3", ["Signer 3 <signer3@example.org>"], "ed25519", "cv25519", ""),
]


class Fixtures:
    def __init__(self, home: GpgHome) -> None:
        self.home = home
        self.manifest: dict[str, dict] = {}
        self.attendee_fprs: dict[str, str] = {}

    # -- writing ----------------------------------------------------------

    def write(self, rel: str, data: bytes) -> None:
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def record(
        self, name: str, rel: str, data: bytes, describe: bytes | None = None, **extra
    ) -> dict:
        """Write a file and describe the keys in it (or in describe) for the manifest."""
        self.write(rel, data)
        entry: dict = {"path": rel}
        try:
            binary = describe
            if binary is None:
                binary = dearmor_all(data) if data.lstrip().startswith(b"-----BEGIN ") else data
            blocks = describe_keys(parse_packets(binary))
        except (ValueError, IndexError, StopIteration, struct.error):
            blocks = []
        fprs = [b.primary.get("fingerprint") for b in blocks]
        entry["fingerprint"] = fprs[0] if len(fprs) == 1 else None
        if len(fprs) > 1:
            entry["fingerprints"] = fprs
        entry["user_ids"] = [u for b in blocks for u in b.user_ids]
        entry["secret"] = None
        entry["passphrase"] = ""
        if len(blocks) == 1:
            blk = blocks[0]
            prim = blk.primary
            entry["algorithm"] = prim["algorithm"]
            entry["bits"] = prim["bits"]
            entry["key_version"] = prim["version"]
            for extra_id in ("keyid", "v3_fingerprint"):
                if extra_id in prim:
                    entry[extra_id] = prim[extra_id]
            entry["created"] = prim["created"]
            entry["expires"] = prim.get("expires")
            entry["usage"] = prim.get("usage", "")
            entry["revoked"] = blk.revoked
            entry["subkeys"] = [
                {
                    "fingerprint": s.get("fingerprint"),
                    "algorithm": s["algorithm"],
                    "bits": s["bits"],
                    "usage": s.get("usage", ""),
                    "expires": s.get("expires"),
                }
                for s in blk.subkeys
            ]
            if blk.unsigned_user_ids:
                entry["unsigned_user_ids"] = blk.unsigned_user_ids
            if blk.third_party_sigs:
                entry["third_party_signatures"] = blk.distinct_third_party_sigs
                entry["third_party_signature_packets"] = blk.third_party_sigs
        entry["size_bytes"] = len(data)
        entry.update(extra)
        self.manifest[name] = entry
        return entry

    # -- good attendees ---------------------------------------------------

    def attendees(self) -> None:
        for name, uids, algo, sub_algo, passphrase in ATTENDEES:
            fpr = gen_key(self.home, uids[0], algo, "sign,cert", "never", passphrase)
            for extra in uids[1:]:
                add_uid(self.home, fpr, extra, passphrase)
            if len(uids) > 1:
                self.home.run("--quick-set-primary-uid", fpr, uids[0], passphrase=passphrase)
            add_subkey(self.home, fpr, sub_algo, "encr", "never", passphrase)
            self.attendee_fprs[name] = fpr
            public = export(self.home, fpr)
            secret = export(self.home, fpr, secret=True, passphrase=passphrase)
            rel = f"attendees/{name}.asc"
            srel = f"attendees/{name}.secret.asc"
            self.write(srel, secret)
            entry = self.record(name, rel, public, secret=srel, passphrase=passphrase)
            assert entry["fingerprint"] == fpr, (entry["fingerprint"], fpr)
            assert sorted(entry["user_ids"]) == sorted(uids), entry["user_ids"]
            entry["primary_user_id"] = uids[0]

    def signups(self) -> None:
        fprs = self.attendee_fprs
        spaced = fprs["bob"]
        groups = [spaced[i : i + 4] for i in range(0, 40, 4)]
        spaced = " ".join(groups[:5]) + "  " + " ".join(groups[5:])  # as gpg prints it
        known = {e.get("fingerprint") for e in self.manifest.values()}
        missing = secrets.token_hex(20).upper()
        while missing in known:
            missing = secrets.token_hex(20).upper()
        rows = [
            ("Alice Example", "alice@example.org", fprs["alice"]),
            ("Bob Example", "bob@example.org", spaced),
            ("Carol Example", "carol@example.org", fprs["carol"]),
            ("山田花子", "hanako@example.jp", fprs["hanako"]),
            ("Missing Person", "missing@example.org", missing),
        ]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", "email", "fingerprint"])
        writer.writerows(rows)
        self.write("signups.csv", buf.getvalue().encode("utf-8"))
        self.signups_info = {
            "path": "signups.csv",
            "rows": len(rows),
            "spaced_fingerprint_row": "Bob Example",
            "missing_row": {"name": "Missing Person", "fingerprint": missing},
        }

    # -- bad keys ---------------------------------------------------------

    def simple(
        self, uid: str, algo: str = "ed25519", sub: str | None = "cv25519", **kw
    ) -> tuple[str, bytes]:
        """Make a key (primary + optional encryption subkey); return fpr, binary export."""
        expire = kw.get("expire", "never")
        faked = kw.get("faked_time")
        fpr = gen_key(self.home, uid, algo, "sign,cert", expire, faked_time=faked)
        if sub:
            add_subkey(self.home, fpr, sub, "encr", expire, faked_time=faked)
        return fpr, export(self.home, fpr, armor=False, faked_time=faked)

    def bad(self, stem: str, data: bytes, problem: str, detail: str, **extra) -> dict:
        rel = extra.pop("rel", f"bad/{stem}.asc")
        return self.record(stem, rel, data, problem=problem, detail=detail, **extra)

    def bad_keys(self) -> None:
        home = self.home

        # revoked: import the revocation certificate gpg wrote at generation
        fpr, _ = self.simple("Revoked Key <revoked@example.org>")
        rev = (Path(home.path) / "openpgp-revocs.d" / f"{fpr}.rev").read_text("ascii")
        rev = rev.replace(":-----BEGIN", "-----BEGIN")
        home.run("--import", stdin=rev.encode("ascii"))
        entry = self.bad(
            "revoked",
            export(home, fpr),
            "revoked",
            "primary key revoked (key revocation signature, reason 0) imported",
        )
        assert entry["revoked"]

        # expired: made on 2020-01-01 with a one-year expiry
        fpr, _ = self.simple(
            "Expired Key <expired@example.org>", expire="1y", faked_time="20200101T000000"
        )
        self.bad(
            "expired",
            export(home, fpr),
            "expired",
            "created 2020-01-01 with a one-year expiry: expired on 2020-12-31",
        )

        # expires 2030-01-01 (gpg sets noon UTC)
        fpr, _ = self.simple("Expiring Key <expiring@example.org>", expire="2030-01-01")
        self.bad(
            "expires-2030",
            export(home, fpr),
            "expires-before-event",
            "valid now, but primary and subkey expire on 2030-01-01; use an event date after that",
            event_date_after_expiry=EVENT_AFTER_2030,
        )

        # weak algorithms
        fpr, _ = self.simple("Weak RSA <weak-rsa@example.org>", "rsa1024", "rsa1024")
        self.bad(
            "rsa1024",
            export(home, fpr),
            "weak-algorithm",
            "RSA 1024 primary key (and RSA 1024 encryption subkey)",
        )
        fpr, _ = self.simple("Weak DSA <weak-dsa@example.org>", "dsa1024", "elg2048")
        self.bad(
            "dsa1024",
            export(home, fpr),
            "weak-algorithm",
            "DSA 1024 primary key (with an Elgamal 2048 encryption subkey, the old gpg 1.4 shape)",
        )
        fpr, _ = self.simple("Weak Subkey <weak-subkey@example.org>", "ed25519", "rsa1024")
        self.bad(
            "rsa2048-weak-subkey",
            export(home, fpr),
            "weak-algorithm",
            "good ed25519 primary; its only encryption subkey is RSA 1024 "
            "(file name kept as specified)",
        )

        # algorithm 20 and version 3: made by hand
        data = elgamal_sign_key("Elgamal Sign <elgamal@example.org>")
        self.bad(
            "elgamal-sign",
            armor(data),
            "elgamal-sign",
            "hand-made v4 primary with public-key algorithm 20 (Elgamal sign+encrypt, "
            "forbidden); the self-certification is bogus (random MPIs, correct hash prefix)",
        )
        data = v3_rsa_key("Version Three <v3@example.org>")
        self.bad(
            "v3",
            armor(data),
            "v3",
            "hand-made version 3 RSA 2048 key packet (PGP 2 style, old packet headers, "
            "random modulus) with a bogus v3 MD5 certification; no v4 fingerprint",
        )

        # long user ID, 1100 bytes
        head, tail = "Long ", " <long@example.org>"
        long_uid = head + "x" * (1100 - len(head) - len(tail)) + tail
        assert len(long_uid.encode("utf-8")) == 1100
        fpr, _ = self.simple(long_uid)
        entry = self.bad(
            "long-uid",
            export(home, fpr),
            "long-uid",
            "real key whose only user ID is 1100 bytes long (gpg drops user IDs over 2 KiB)",
            user_id_bytes=1100,
        )
        assert entry["user_ids"] == [long_uid]

        self.huge()
        self.flooded()

        # secret key sent by mistake
        fpr, _ = self.simple("Secret Sender <secret@example.org>")
        sec = export(home, fpr, secret=True)
        self.bad(
            "secret",
            sec,
            "secret-key",
            "armored SECRET key (passphrase-less) of a throwaway key",
            secret="bad/secret.asc",
        )
        self.bad(
            "secret-binary",
            export(home, fpr, secret=True, armor=False),
            "secret-key",
            "same secret key as bad/secret.asc, binary",
            secret="bad/secret.gpg",
            rel="bad/secret.gpg",
        )

        # two keys in one paste
        fpr1, _ = self.simple("Paste One <paste1@example.org>")
        fpr2, _ = self.simple("Paste Two <paste2@example.org>")
        self.bad(
            "two-keys",
            export(home, fpr1) + export(home, fpr2),
            "two-keys",
            "two armored public key blocks, one after the other",
        )
        self.bad(
            "two-keys-one-block",
            export(home, fpr1, fpr2),
            "two-keys",
            "two public keys in a single armored block (gpg --armor --export A B)",
        )

        # broken armor
        fpr, _ = self.simple("Truncated Key <truncated@example.org>")
        text = export(home, fpr)
        lines = text.splitlines(keepends=True)
        body_at = lines.index(b"\n") + 1
        cut = body_at + (len(lines) - 2 - body_at) // 2
        self.bad(
            "truncated",
            b"".join(lines[:cut]),
            "truncated",
            f"armor of {fpr} cut after {cut - body_at} of its base64 lines: "
            "no checksum, no END line",
            describe=b"",  # nothing usable in it
            intended_fingerprint=fpr,
            intended_user_ids=["Truncated Key <truncated@example.org>"],
        )
        fpr, _ = self.simple("Corrupted Key <corrupted@example.org>")
        text = export(home, fpr)
        lines = text.splitlines(keepends=True)
        mid = body_at + (len(lines) - 2 - body_at) // 2
        line = lines[mid]
        col = len(line) // 2
        new_char = b"B" if line[col : col + 1] == b"A" else b"A"
        lines[mid] = line[:col] + new_char + line[col + 1 :]
        corrupted = b"".join(lines)
        body, stated_crc = dearmor(corrupted)
        assert stated_crc is not None and crc24(body) != stated_crc
        self.bad(
            "corrupted",
            corrupted,
            "corrupt-armor",
            f"armor of {fpr} with one base64 character changed "
            f"(line {mid + 1}, column {col + 1}): CRC24 mismatch",
            describe=b"",  # nothing usable in it
            intended_fingerprint=fpr,
            intended_user_ids=["Corrupted Key <corrupted@example.org>"],
        )

        self.bad(
            "not-openpgp",
            fake_ssh_line(),
            "not-openpgp",
            "an (invented) SSH public key line, not OpenPGP at all",
            rel="bad/not-openpgp.txt",
        )

        # compressed packets, 3 levels (small; stands for the decompression bomb)
        fpr, binary = self.simple("Compressed Key <compressed@example.org>")
        data = binary
        for _ in range(3):
            deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
            data = new_packet(TAG_COMPRESSED, b"\x01" + deflate.compress(data) + deflate.flush())
        self.bad(
            "compressed",
            armor(data),
            "compressed",
            "a real public key inside 3 nested Compressed Data packets (ZIP); "
            "a public key never needs one",
            describe=binary,
            compression_levels=3,
        )

        # created in the future
        fpr, _ = self.simple("Future Key <future@example.org>", faked_time="20400101T000000")
        self.bad(
            "future",
            export(home, fpr, faked_time="20400101T000000"),
            "future",
            "key (and its self-signatures) created on 2040-01-01",
        )

        # a user ID without self-signature, placed before the subkey
        fpr, binary = self.simple("Nosig Target <nosig@example.org>")
        packets = parse_packets(binary)
        at = next(i for i, p in enumerate(packets) if p.tag in SUBKEY_TAGS)
        extra = new_packet(TAG_USER_ID, b"Unsigned Extra <unsigned@example.org>")
        data = b"".join(p.raw for p in packets[:at]) + extra
        data += b"".join(p.raw for p in packets[at:])
        entry = self.bad(
            "no-selfsig-uid",
            armor(data),
            "uid-without-selfsig",
            "good key plus a second User ID packet with no self-signature "
            "(inserted after the signed user ID, before the subkey)",
        )
        assert entry["unsigned_user_ids"] == ["Unsigned Extra <unsigned@example.org>"]

    def certify(self, target: str, signer: str) -> None:
        self.home.run("--local-user", signer, "--quick-sign-key", target)

    def huge(self) -> None:
        signer = self.attendee_fprs["signer1"]
        fpr, _ = self.simple("Huge Key <huge@example.org>")
        self.certify(fpr, signer)
        packets = parse_packets(export(self.home, fpr, armor=False))
        at = next(
            i
            for i, p in enumerate(packets)
            if p.tag == TAG_SIGNATURE and sig_is_by(parse_sig(p.body), signer)
        )
        cert = packets[at].raw
        size = sum(len(p.raw) for p in packets)
        copies = (HUGE_MIN_BYTES - size) // len(cert) + 1
        data = b"".join(p.raw for p in packets[: at + 1]) + cert * copies
        data += b"".join(p.raw for p in packets[at + 1 :])
        assert len(data) > HUGE_MIN_BYTES
        self.bad(
            "huge",
            armor(data),
            "too-large",
            f"real key, {len(data)} bytes binary: its one genuine certification "
            f"(by signer1) repeated {copies + 1} times",
            binary_bytes=len(data),
            certified_by=signer,
        )

    def flooded(self) -> None:
        fpr, _ = self.simple("Flood Target <flood@example.org>")
        signers = []
        for i in range(1, FLOOD_SIGNERS + 1):
            s = gen_key(self.home, f"Flood Signer {i} <flood-signer{i}@example.net>", "ed25519")
            self.certify(fpr, s)
            signers.append(s)
        packets = parse_packets(export(self.home, fpr, armor=False))
        certs = [
            i
            for i, p in enumerate(packets)
            if p.tag == TAG_SIGNATURE and not sig_is_by(parse_sig(p.body), fpr)
        ]
        assert len(certs) == FLOOD_SIGNERS, len(certs)
        extra = FLOOD_PACKETS - len(packets)
        copies = b"".join(packets[certs[i % len(certs)]].raw for i in range(extra))
        last = certs[-1]
        data = b"".join(p.raw for p in packets[: last + 1]) + copies
        data += b"".join(p.raw for p in packets[last + 1 :])
        assert len(parse_packets(data)) == FLOOD_PACKETS
        assert len(data) < MIB // 2
        # the throwaway signers go away with this home; their keys are not kept
        self.bad(
            "flooded",
            armor(data),
            "flooded",
            f"real key with {FLOOD_SIGNERS} genuine third-party certifications "
            f"(throwaway signers, not kept), duplicated to {FLOOD_PACKETS} packets "
            f"in {len(data)} bytes",
            packets=FLOOD_PACKETS,
            binary_bytes=len(data),
        )


# --------------------------------------------------------------------------
# Checking every output with real gpg in a fresh home


def unescape_colon(value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i : i + 2] == b"\\x" and i + 4 <= len(raw):
            out.append(int(raw[i + 2 : i + 4], 16))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def colon_keys(text: str) -> list[dict]:
    keys: list[dict] = []
    want_fpr = False
    for line in text.splitlines():
        f = line.split(":")
        if f[0] in ("pub", "sec"):
            keys.append({"type": f[0], "validity": f[1], "user_ids": []})
            want_fpr = True
        elif f[0] == "fpr" and want_fpr and keys:
            keys[-1]["fingerprint"] = f[9]
            want_fpr = False
        elif f[0] in ("sub", "ssb"):
            want_fpr = False
        elif f[0] == "uid" and keys:
            keys[-1]["user_ids"].append(unescape_colon(f[9]))
    return keys


IMPORT_RES_FIELDS = [
    "considered",
    "no_user_id",
    "imported",
    "imported_rsa",
    "unchanged",
    "new_user_ids",
    "new_subkeys",
    "new_signatures",
    "new_revocations",
    "secret_read",
    "secret_imported",
    "secret_unchanged",
    "skipped_new_keys",
    "not_imported",
    "skipped_v3",
]


def check_with_gpg(path: Path, passphrase: str = "") -> dict:
    """What gpg makes of one file, each step in a fresh home."""
    result: dict = {}
    shown = str(path.relative_to(ROOT))
    with gpg_home() as home:
        # gpg --trust-model always never creates trustdb.gpg; show-only then dies
        # ("Fatal: can't open trustdb.gpg") on revoked, expired or invalid keys.
        show = home.run("--import-options", "show-only", "--import", str(path), check=False)
        result["show_only_exit_without_trustdb"] = show.returncode
    with gpg_home() as home:
        # creates an empty trustdb.gpg (not under --trust-model always)
        home.run("--import-ownertrust", stdin=b"", trust_always=False)
        assert Path(home.path, "trustdb.gpg").exists()
        show = home.run("--import-options", "show-only", "--import", str(path), check=False)
        result["show_only_exit"] = show.returncode
        shown_keys = colon_keys(show.stdout.decode("utf-8", "replace"))
        result["show_only"] = [
            {"validity": k["validity"], "uids": len(k["user_ids"])} for k in shown_keys
        ]
    with gpg_home() as home:
        imp = home.run("--import", str(path), check=False, timeout=120)
        result["import_exit"] = imp.returncode
        res = status_lines(imp, "IMPORT_RES")
        if res:
            counts = dict(zip(IMPORT_RES_FIELDS, map(int, res[-1]), strict=False))
            result["import_res"] = {k: v for k, v in counts.items() if v}
        else:
            result["import_res"] = None
        listed = colon_keys(home.run("--list-keys", check=False).stdout.decode("utf-8"))
        secret = colon_keys(home.run("--list-secret-keys", check=False).stdout.decode("utf-8"))
        result["keyring"] = [
            {
                "fingerprint": k.get("fingerprint"),
                "validity": k["validity"],
                "uids": len(k["user_ids"]),
            }
            for k in listed
        ]
        result["secret_keys_in_keyring"] = len(secret)
        notes: list[str] = []
        for line in imp.stderr.decode("utf-8", "replace").splitlines():
            if not line.startswith("gpg: ") or line.startswith(("gpg: keybox", "gpg: /tmp")):
                continue
            line = line.replace(str(path), shown).replace(home.path, "HOME")
            if len(line) > 200:
                line = line[:200] + "..."
            if line not in notes:
                notes.append(line)
        result["messages"] = notes
        if secret:
            result["can_sign"] = can_sign(home, path, passphrase)
    return result


def can_sign(home: GpgHome, path: Path, passphrase: str) -> dict:
    """Sign with an imported secret key: with the right (and a wrong) passphrase."""
    out = {}
    if passphrase:  # before the right one: the agent caches passphrases
        wrong = home.run("--detach-sign", passphrase="wrong", stdin=b"x", check=False)
        out["wrong_passphrase_exit"] = wrong.returncode
    right = home.run("--detach-sign", passphrase=passphrase, stdin=b"x", check=False)
    out["exit"] = right.returncode
    return out


# --------------------------------------------------------------------------
# Strange keys (issue 11): strangers' bytes, written by `--only strange` into
# strange/ with their own manifest strange/strange.json. This step never touches
# attendees/, bad/, signups.csv or fixtures.json, which other tests depend on.

STRANGE = ROOT / "strange"


def edit_key(home: GpgHome, fpr: str, commands: list[str], faked_time: str | None = None) -> None:
    """Drive `gpg --edit-key` through --command-fd (one answer a line)."""
    home.run(
        "--command-fd",
        "0",
        "--edit-key",
        fpr,
        stdin=("\n".join(commands) + "\n").encode(),
        faked_time=faked_time,
        timeout=3600,
    )


def add_raw_uid(home: GpgHome, fpr: str, uid: bytes) -> None:
    """A user ID of exactly these bytes (--utf8-strings passes them through unchecked)."""
    cmd = [GPG.encode(), b"--homedir", home.path.encode(), b"--batch", b"--no-tty", b"--yes"]
    cmd += [b"--pinentry-mode", b"loopback", b"--passphrase", b"", b"--utf8-strings"]
    cmd += [b"--quick-add-uid", fpr.encode(), uid]
    subprocess.run(cmd, env=home.env, check=True, capture_output=True, timeout=60)


def drop_packets(data: bytes, tags: set[int]) -> bytes:
    """The binary key without packets of these tags, nor the signatures after them."""
    out, dropping = [], False
    for packet in parse_packets(data):
        if packet.tag in tags:
            dropping = True
            continue
        if packet.tag != TAG_SIGNATURE:
            dropping = False
        if not dropping:
            out.append(packet.raw)
    return b"".join(out)


def add_critical_subpacket(data: bytes) -> bytes:
    """The key with an unknown subpacket (type 99) marked critical put into the hashed
    area of its first user ID self-signature. The signature no longer verifies, but
    what matters is that a reader names the subpacket (RFC 9580 5.2.3.7)."""
    out, done = [], False
    for packet in parse_packets(data):
        raw = packet.raw
        if packet.tag == TAG_SIGNATURE and not done and packet.body[1] in (0x10, 0x13):
            body = packet.body
            hashed_len = int.from_bytes(body[4:6], "big")
            extra = bytes([2, 0x80 | 99, 0x01])
            body = body[:4] + (hashed_len + 3).to_bytes(2, "big") + body[6 : 6 + hashed_len]
            body += extra + packet.body[6 + hashed_len :]
            raw = new_packet(TAG_SIGNATURE, body)
            done = True
        out.append(raw)
    return b"".join(out)


class StrangeFixtures:
    """Keys whose bytes keyparty must take exactly, or refuse with the real cause."""

    def __init__(self, home: GpgHome) -> None:
        self.home = home
        self.manifest: dict[str, dict] = {}

    def write(self, name: str, suffix: str, data: bytes) -> str:
        rel = f"strange/{name}{suffix}"
        (ROOT / rel).write_bytes(data)
        return rel

    def key(self, name: str, fpr: str, expect: str, what: str, secret: bool = True, **extra):
        public = export(self.home, fpr)
        entry = {
            "path": self.write(name, ".asc", public),
            "secret": self.write(name, ".secret.asc", export(self.home, fpr, secret=True))
            if secret
            else None,
            "fingerprint": fpr,
            "expect": expect,
            "what": what,
        }
        entry.update(extra)
        self.manifest[name] = entry
        return entry

    def file(self, name: str, rel_suffix: str, data: bytes, expect: str, what: str, **extra):
        entry = {"path": self.write(name, rel_suffix, data), "expect": expect, "what": what}
        entry.update(extra)
        self.manifest[name] = entry
        return entry

    def with_user_ids(self, uids: list[str]) -> str:
        """A new ed25519 key with a cv25519 encryption subkey and these user IDs."""
        fpr = gen_key(self.home, uids[0])
        add_subkey(self.home, fpr)
        for uid in uids[1:]:
            add_uid(self.home, fpr, uid)
        return fpr

    def make(self) -> None:
        home = self.home
        # Exact user IDs that gpg can address with --quick-sign-key FPR '=UID'.
        uids = [
            "Nina Newline\nSecond Line <nina@example.org>",
            "Colin: \"Quote\" 'Tick' <colin@example.org>",
            "-Dash Leading <dash@example.org>",
            "=Equals Leading <equals@example.org>",
            "Back\\slash \\n <backslash@example.org>",
        ]
        fpr = self.with_user_ids(uids)
        self.key(
            "exact-uids",
            fpr,
            "accepted",
            "user IDs with a newline, colon, quotes, a leading '-' and '=', a backslash",
            user_ids=uids,
        )

        # Terminal escapes and bidirectional overrides in user IDs.
        uids = [
            "Eve \x1b[2J\x1b]0;pwned\x07Escape <eve@example.org>",
            "Bidi \u202eevil\u202c <bidi@example.org>",
        ]
        fpr = self.with_user_ids(uids)
        self.key(
            "escapes",
            fpr,
            "accepted",
            "ESC [2J (clear screen), OSC 0 (window title) and a right-to-left override in user IDs",
            user_ids=uids,
        )

        # A user ID that is not UTF-8 (Windows-1252), next to a good one.
        fpr = gen_key(home, "Jose Latin <jose@example.org>")
        add_subkey(home, fpr)
        add_raw_uid(home, fpr, b"Jos\xe9 Mu\xf1oz <jose@example.org>")
        latin = self.key(
            "latin1-uid",
            fpr,
            "refused:user-id-not-utf8",
            "second user ID is Windows-1252 bytes: 'Jos\\xe9 Mu\\xf1oz'",
        )
        # ... inside a keyring between two good keys: only it is refused.
        good1 = gen_key(home, "Before Latin <before@example.org>")
        add_subkey(home, good1)
        good2 = gen_key(home, "After Latin <after@example.org>")
        add_subkey(home, good2)
        self.file(
            "latin1-keyring",
            ".gpg",
            export(home, good1, latin["fingerprint"], good2, armor=False),
            "2 accepted, 1 refused",
            "binary keyring: a good key, latin1-uid, a good key",
            fingerprints=[good1, latin["fingerprint"], good2],
        )

        # Debian-shaped: RSA-4096 primary made in 2019, two RSA-1024 subkeys that
        # can no longer be used (one revoked, one expired in 2021), and a live
        # RSA-4096 encryption subkey.
        fpr = gen_key(
            home,
            "Debra Debian <debra@example.org>",
            "rsa4096",
            "sign,cert",
            "2032-01-01",
            faked_time="20190101T000000",
        )
        add_subkey(home, fpr, "rsa1024", "encr", "never", faked_time="20190601T000000")
        add_subkey(home, fpr, "rsa1024", "sign", "1y", faked_time="20200101T000000")
        add_subkey(home, fpr, "rsa4096", "encr", "2032-01-01", faked_time="20200601T000000")
        edit_key(home, fpr, ["key 1", "revkey", "y", "0", "", "y", "save"])
        self.key(
            "debian-shaped",
            fpr,
            "accepted",
            "RSA-4096 primary valid to 2032; RSA-1024 "
            "subkeys revoked (1) and expired in 2021 (2); live RSA-4096 encryption subkey",
        )
        fpr = gen_key(home, "Wendy Weak <wendy@example.org>")
        add_subkey(home, fpr, "rsa1024", "encr")
        self.key(
            "live-weak-subkey",
            fpr,
            "refused:weak-algorithm",
            "ed25519 primary with a live RSA-1024 encryption subkey",
        )

        # What is an email address.
        uids = [
            "Ursula URI <https://example.org/ursula>",
            "Ursula Mail <ursula@example.org>",
            "Dot Dot <dot@..>",
            "Path Walk <walk@../../etc>",
            "Two Ats <a@b@example.org>",
            "ursula.bare@example.net",
        ]
        fpr = self.with_user_ids(uids)
        self.key(
            "addresses",
            fpr,
            "accepted",
            "only 'ursula@example.org' and the bare 'ursula.bare@example.net' are addresses",
            user_ids=uids,
            emails=[None, "ursula@example.org", None, None, None, "ursula.bare@example.net"],
        )
        uids = ["Ida IDN <ida@bücher.example>", "Ümit Utf8 <ümit@example.org>"]
        fpr = self.with_user_ids(uids)
        self.key(
            "international",
            fpr,
            "accepted",
            "non-ASCII domain (IDNA: "
            "xn--bcher-kva.example) and non-ASCII local part (needs SMTPUTF8)",
            user_ids=uids,
        )

        # Cannot receive encrypted mail: no encryption subkey.
        fpr = gen_key(home, "Sigrid Signonly <sigrid@example.org>")
        self.key(
            "no-encryption",
            fpr,
            "accepted:no-encryption",
            "ed25519 sign and certify only, no encryption subkey",
        )

        # Messages that must name the real cause.
        fpr = gen_key(home, "Nobody Uid <nobody@example.org>")
        add_subkey(home, fpr)
        data = drop_packets(export(home, fpr, armor=False), {TAG_USER_ID})
        self.file(
            "no-uid",
            ".asc",
            armor(data),
            "refused:no-user-id",
            "primary key and subkey, no user ID packet",
            fingerprint=fpr,
        )
        fpr = gen_key(home, "Critical Subpacket <critical@example.org>")
        add_subkey(home, fpr)
        data = add_critical_subpacket(export(home, fpr, armor=False))
        self.file(
            "critical-subpacket",
            ".asc",
            armor(data),
            "refused:critical-subpacket",
            "user ID self-signature with unknown subpacket 99 marked critical",
            fingerprint=fpr,
        )
        fpr = gen_key(home, "Keybox File <keybox@example.org>")
        self.file(
            "pubring",
            ".kbx",
            (Path(home.path) / "pubring.kbx").read_bytes(),
            "refused:keybox",
            "GnuPG's own keyring file",
        )
        text = export(home, fpr).decode("ascii")
        self.file(
            "utf16",
            ".asc",
            text.encode("utf-16"),
            "refused:utf-16",
            "an armored key saved as UTF-16 (with BOM)",
            fingerprint=fpr,
        )
        self.file(
            "twice",
            ".asc",
            export(home, fpr) + export(home, fpr),
            "accepted",
            "the same armored key twice in one paste",
            fingerprint=fpr,
        )
        message = armor(b"\xa3\x01hello", "PGP MESSAGE")
        self.file(
            "pgp-message",
            ".asc",
            message,
            "refused:wrong-block",
            "an armored PGP MESSAGE block, not a key",
        )

        # A 1 MiB photo ID on a small key.
        fpr = gen_key(home, "Petra Photo <petra@example.org>")
        add_subkey(home, fpr)
        jpeg = Path(home.path) / "photo.jpg"
        jpeg.write_bytes(b"\xff\xd8\xff\xe0" + secrets.token_bytes(MIB))
        edit_key(home, fpr, ["addphoto", str(jpeg), "y", "save"])
        self.key(
            "photo",
            fpr,
            "accepted:photo-dropped",
            "ed25519 key with a 1 MiB photo ID",
            secret=False,
        )

        # 2000 self-signed user IDs, added in one --edit-key session (one gpg run per
        # user ID rewrites the growing key each time: quadratic, hours).
        fpr = gen_key(home, "Many 0000 <many0000@example.org>")
        add_subkey(home, fpr)
        commands = []
        for n in range(1, 2000):
            commands += ["adduid", f"Many {n:04d}", f"many{n:04d}@example.org", ""]
        edit_key(home, fpr, [*commands, "save"])
        self.key(
            "many-uids", fpr, "refused:too-many-user-ids", "2000 self-signed user IDs", secret=False
        )


def make_strange() -> int:
    """Write strange/ and strange/strange.json only."""
    shutil.rmtree(STRANGE, ignore_errors=True)
    STRANGE.mkdir()
    with gpg_home() as home:
        fx = StrangeFixtures(home)
        fx.make()
    manifest = {
        "about": "keyparty test keys with strangers' bytes (issue 11); see README.md. "
        "Made by make_fixtures.py --only strange.",
        "gpg_version": gpg_version(),
        "keys": fx.manifest,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (STRANGE / "strange.json").write_text(text, encoding="utf-8")
    print(f"wrote {STRANGE}", file=sys.stderr)
    return 0


def gpg_version() -> str:
    out = subprocess.run([GPG, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].split()[-1]


def main() -> int:
    version = gpg_version()
    for sub in ("attendees", "bad"):
        shutil.rmtree(ROOT / sub, ignore_errors=True)
    with gpg_home() as home:
        fx = Fixtures(home)
        fx.attendees()
        fx.signups()
        fx.bad_keys()
    print(f"checking {len(fx.manifest)} files with gpg {version} ...", file=sys.stderr)
    for entry in fx.manifest.values():
        passphrase = entry["passphrase"]
        for rel in dict.fromkeys(filter(None, (entry["path"], entry["secret"]))):
            check = check_with_gpg(ROOT / rel, passphrase)
            key = "gpg" if rel == entry["path"] else "gpg_secret"
            entry[key] = check
            res = check["import_res"]
            print(
                f"  {rel:<30} {entry.get('problem', 'good'):<20} exit {check['import_exit']} "
                f"{res} {check.get('can_sign', '')}",
                file=sys.stderr,
            )
    manifest = {
        "about": "keyparty test keys; see README.md. Regenerate with make_fixtures.py.",
        "gpg_version": version,
        "signups": fx.signups_info,
        "keys": fx.manifest,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (ROOT / "fixtures.json").write_text(text, encoding="utf-8")
    print(f"wrote {ROOT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--only", "strange"]:
        sys.exit(make_strange())
    sys.exit(main())
