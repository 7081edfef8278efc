"""The GnuPG adapter: the only code in keyparty that runs gpg.

It drives gpg through python-gnupg, always with an explicit home, parses
colon output into typed records, and serialises all work on a home with a
file lock (parallel writers on one home silently lose writes; DESIGN.md).
Callers speak in domain words: import keys, list keys, export keys.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import hashlib
import os
import resource
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from contextlib import suppress
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path

import gnupg

from keyparty.addresses import email_of

# Every call: no trust computation (keyparty computes no validity, and the
# pgp model is 10x slower), UTF-8 user IDs, never the user's ~/.gnupg.
BASE_OPTIONS = [
    "--no-options",
    "--trust-model",
    "always",
    "--no-auto-check-trustdb",
    "--utf8-strings",
    "--display-charset",
    "utf-8",
    "--no-greeting",
    "--no-permission-warning",
]
# Import from strangers: only self-signatures survive, so a flood of
# third-party signatures costs nothing and nothing rests on them (T2).
STRANGER_KEYS = "self-sigs-only,import-clean"
# Into a signer's own keyring: take only self-signatures of what comes in,
# and leave everything already there as it is.
INTO_OWN_KEYRING = "self-sigs-only"
# keyparty.homes: the database generation a home was built from; a staged
# copy carries it and replaces it together with the keyring.
STAMP_FILE = "keyparty.generation"
KEYRING_FILES = ("pubring.kbx", "trustdb.gpg", STAMP_FILE)
MIN_VERSION = (2, 2, 36)
AGENT_UNREACHABLE = "can't connect to the agent"
# The agent's socket lives in the home: a path over ~100 characters breaks it.
AGENT_ADVICE = (
    "cannot reach its agent (gpg-agent); check that it runs (`gpgconf --launch gpg-agent`) "
    "and that the GnuPG home path is short"
)

# What gpg says when pinentry has no terminal to ask on (GPG_TTY unset, no tty).
PINENTRY_CANNOT_ASK = "Inappropriate ioctl for device"
PINENTRY_ADVICE = (
    "gpg could not ask for your passphrase: pinentry has no terminal "
    '("Inappropriate ioctl for device"). Set GPG_TTY (`export GPG_TTY=$(tty)`) and run '
    "keyparty sign again, or give the passphrase with --passphrase-fd N"
)

ALGORITHM_NAMES = {1: "rsa", 2: "rsa", 3: "rsa", 16: "elg", 17: "dsa", 18: "ecdh", 19: "ecdsa"}
ALGORITHM_NAMES |= {20: "elg-sign", 22: "eddsa"}


_GPG_CACHE: dict[tuple, _BoundedGPG] = {}


class GnuPGError(RuntimeError):
    """gpg failed in a way keyparty cannot turn into a refusal."""


class NoEncryptionKey(GnuPGError):
    """The recipient's key has no usable encryption subkey: no mail can reach it."""


@dataclass(frozen=True)
class UserIDRecord:
    """One user ID as gpg lists it.

    `text` is the exact packet bytes decoded as UTF-8, with any byte that is
    not UTF-8 kept as a lone surrogate (surrogateescape), so `raw` gives the
    packet bytes back exactly. `uid_hash` is gpg's RIPEMD-160 of those bytes.
    """

    text: str
    uid_hash: str
    revoked: bool
    expired: bool

    @property
    def raw(self) -> bytes:
        return self.text.encode("utf-8", "surrogateescape")

    @property
    def email(self) -> str | None:
        return email_of(self.text)


@dataclass(frozen=True)
class SubkeyRecord:
    fingerprint: str
    algorithm: int
    bits: int
    curve: str | None
    capabilities: str
    revoked: bool
    expired: bool

    @property
    def alive(self) -> bool:
        return not (self.revoked or self.expired)


@dataclass(frozen=True)
class KeyRecord:
    fingerprint: str
    algorithm: int
    bits: int
    curve: str | None
    created: datetime
    expires: datetime | None
    revoked: bool
    expired: bool
    capabilities: str
    user_ids: tuple[UserIDRecord, ...]
    subkeys: tuple[SubkeyRecord, ...] = ()
    # In a secret-key listing: the primary secret key is not on this machine
    # (gpg's `sec#`: only subkeys, or a stub), so it cannot certify.
    primary_secret_offline: bool = False

    @property
    def can_encrypt(self) -> bool:
        """Mail can be encrypted to this key: gpg's key-wide capability `E`, which it
        sets only when the primary key or a subkey that is neither revoked nor
        expired can encrypt (GnuPG doc/DETAILS, field 12)."""
        return "E" in self.capabilities

    @property
    def algorithm_name(self) -> str:
        """The short name people know: ed25519, rsa3072, nistp256, dsa2048."""
        if self.curve:
            return self.curve
        return f"{ALGORITHM_NAMES.get(self.algorithm, f'algo{self.algorithm}')}{self.bits}"


# At most this many key blocks, or bytes, per `gpg --import` (import_blocks).
IMPORT_BATCH = 100
IMPORT_BATCH_BYTES = 2 * 1024 * 1024


def _import_batches(blocks: Sequence[bytes]) -> Iterator[bytes]:
    """`blocks` joined into runs of at most IMPORT_BATCH blocks and
    IMPORT_BATCH_BYTES (a larger single block is a run of its own)."""
    batch: list[bytes] = []
    size = 0
    for block in blocks:
        if batch and (len(batch) >= IMPORT_BATCH or size + len(block) > IMPORT_BATCH_BYTES):
            yield b"".join(batch)
            batch, size = [], 0
        batch.append(block)
        size += len(block)
    if batch:
        yield b"".join(batch)


@dataclass
class ImportOutcome:
    """What gpg did with an import, judged by status lines, not the exit code."""

    imported: list[str] = field(default_factory=list)
    # fingerprint (or None when gpg could not tell) -> gpg's reason code
    problems: dict[str | None, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SignatureCheck:
    """What `gpg --verify` (or `--decrypt` of a clearsigned text) said.

    status: "good" (every signature verified), "bad" (a signature does not
    match its data: the text was changed), "no-key" (made by a key not in
    this home) or "none" (no signature found). `signers` are the primary
    fingerprints of the good signatures (VALIDSIG field 10), `unknown_issuers`
    the key ids or fingerprints gpg could not check (ERRSIG); `signed_text`
    is the text a clearsigned message holds (None for a detached signature).
    Format: GnuPG doc/DETAILS, "Status codes"; RFC 4880 7 (cleartext).
    """

    status: str
    signers: tuple[str, ...] = ()
    unknown_issuers: tuple[str, ...] = ()
    signed_text: bytes | None = None
    count: int = 0


def judge_signatures(status: list[tuple[str, str]], signed_text: bytes | None) -> SignatureCheck:
    """Turn the status lines of one verification into a SignatureCheck."""
    count = good_count = 0
    signers: list[str] = []
    unknown: list[str] = []
    bad = False
    for keyword, value in status:
        parts = value.split()
        if keyword == "NEWSIG":
            count += 1
        elif keyword == "VALIDSIG" and parts:
            good_count += 1
            signers.append(parts[9] if len(parts) > 9 else parts[0])
        elif keyword == "BADSIG":
            bad = True
        elif keyword == "ERRSIG" and parts:
            # Field 7 is the issuer's fingerprint when the signature names it.
            unknown.append(parts[6] if len(parts) > 6 and len(parts[6]) == 40 else parts[0])
    count = max(count, good_count + len(unknown) + int(bad))
    if bad:
        verdict = "bad"
    elif unknown:
        verdict = "no-key"
    elif good_count and good_count == count:
        verdict = "good"
    else:
        verdict = "none"
    return SignatureCheck(verdict, tuple(signers), tuple(unknown), signed_text, count)


@dataclass
class _Run:
    """Collects one gpg process's output, in the shape python-gnupg fills in."""

    status: list[tuple[str, str]] = field(default_factory=list)
    data: bytes = b""
    stderr: str = ""
    returncode: int | None = None

    def handle_status(self, keyword: str, value: str) -> None:
        self.status.append((keyword, value))


class _BoundedGPG(gnupg.GPG):
    """python-gnupg with a memory bound on each gpg process, and bytes in,
    bytes out: status lines carry strangers' user IDs, which need not be
    UTF-8, and python-gnupg's strict reader thread dies on the first such
    byte (every later status line of the run is lost)."""

    memory_limit = 1024 * 1024 * 1024
    decode_errors = "surrogateescape"

    def _collect_output(self, process, result, writer=None, stdin=None):
        # python-gnupg 0.5.7's own, but its stderr reader decodes strictly.
        stderr = codecs.getreader(self.encoding)(process.stderr, errors="surrogateescape")
        threads = [
            threading.Thread(target=self._read_response, args=(stderr, result), daemon=True),
            threading.Thread(
                target=self._read_data,
                args=(process.stdout, result, self.on_data, self.buffer_size),
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if writer is not None:
            writer.join(0.01)
        process.wait()
        result.returncode = process.returncode
        if stdin is not None:
            with suppress(OSError):
                stdin.close()
        stderr.close()
        process.stdout.close()
        return process.returncode

    def _open_subprocess(self, args, passphrase=False):
        process = super()._open_subprocess(args, passphrase)
        # Set before any input is written: gpg reads untrusted data only
        # after this (DESIGN.md: nested packets made gpg take 2.2 GB).
        limit = (self.memory_limit, self.memory_limit)
        with suppress(ProcessLookupError, PermissionError, OSError):
            resource.prlimit(process.pid, resource.RLIMIT_AS, limit)
        return process


def _utc(epoch: str) -> datetime | None:
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else None


# gpg's colon listings write a few control bytes as C escapes and every other
# one, ':' and '\\' as \xNN (es_write_sanitized in GnuPG's common/stringhelp).
_C_ESCAPES = {ord("n"): 0x0A, ord("r"): 0x0D, ord("f"): 0x0C, ord("v"): 0x0B, ord("b"): 0x08}
_C_ESCAPES[ord("0")] = 0x00
_C_ESCAPES[ord("\\")] = 0x5C


def _unescape(field_text: str) -> str:
    """A colon-listing field back to its exact bytes, decoded as UTF-8 with any
    byte that is not UTF-8 kept as a lone surrogate (lossless: see UserIDRecord)."""
    data = field_text.encode("utf-8", "surrogateescape")
    if b"\\" not in data:
        return data.decode("utf-8", "surrogateescape")
    raw = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x5C and i + 1 < len(data):
            following = data[i + 1]
            if following == ord("x") and i + 4 <= len(data):
                try:
                    raw.append(int(data[i + 2 : i + 4], 16))
                    i += 4
                    continue
                except ValueError:
                    pass
            elif following in _C_ESCAPES:
                raw.append(_C_ESCAPES[following])
                i += 2
                continue
        raw.append(data[i])
        i += 1
    return bytes(raw).decode("utf-8", "surrogateescape")


def uid_hash(user_id: bytes) -> str:
    """gpg's name for a user ID in colon listings: RIPEMD-160 of its packet body."""
    return hashlib.new("ripemd160", user_id).hexdigest().upper()


def parse_key_listing(text: str) -> list[KeyRecord]:
    """Parse `--with-colons --fixed-list-mode --list-keys` output."""
    keys: list[KeyRecord] = []
    current: dict | None = None
    last: str | None = None

    def finish() -> None:
        if current is not None:
            keys.append(
                KeyRecord(
                    **{k: v for k, v in current.items() if k not in ("uids", "subs")},
                    user_ids=tuple(current["uids"]),
                    subkeys=tuple(current["subs"]),
                )
            )

    for line in text.splitlines():
        f = line.split(":")
        kind = f[0]
        if kind == "pub":
            finish()
            current = {
                "fingerprint": "",
                "algorithm": int(f[3] or 0),
                "bits": int(f[2] or 0),
                "curve": f[16] if len(f) > 16 and f[16] else None,
                "created": _utc(f[5]),
                "expires": _utc(f[6]),
                "revoked": f[1] == "r",
                "expired": f[1] == "e",
                "capabilities": f[11],
                "primary_secret_offline": len(f) > 14 and f[14] == "#",
                "uids": [],
                "subs": [],
            }
            last = "pub"
        elif current is None:
            continue
        elif kind == "fpr":
            if last == "pub" and not current["fingerprint"]:
                current["fingerprint"] = f[9]
            elif last == "sub":
                current["subs"][-1] = SubkeyRecord(**{**current["subs"][-1], "fingerprint": f[9]})
        elif kind == "sub":
            current["subs"].append(
                {
                    "fingerprint": "",
                    "algorithm": int(f[3] or 0),
                    "bits": int(f[2] or 0),
                    "curve": f[16] if len(f) > 16 and f[16] else None,
                    "capabilities": f[11],
                    "revoked": f[1] == "r",
                    "expired": f[1] == "e",
                }
            )
            last = "sub"
        elif kind == "uid":
            current["uids"].append(
                UserIDRecord(
                    text=_unescape(f[9]),
                    uid_hash=f[7],
                    revoked=f[1] == "r",
                    expired=f[1] == "e",
                )
            )
            last = "uid"
    finish()
    return keys


def check_version(version: tuple[int, ...] | None) -> None:
    """Refuse a gpg that user IDs from strangers could inject status lines into."""
    if version is None or tuple(version) < MIN_VERSION:
        found = ".".join(map(str, version)) if version else "an unknown version"
        raise GnuPGError(
            f"keyparty needs GnuPG {'.'.join(map(str, MIN_VERSION))} or newer "
            f"(older ones are open to CVE-2022-34903); this is {found}. "
            "Install a current gnupg package."
        )


@dataclass(frozen=True)
class CertificationRecord:
    """One signature on a user ID, as `gpg --check-sigs` judged it (or, from
    `--list-sigs`, as listed: validity "")."""

    key_fingerprint: str
    user_id: str
    # From the issuer fingerprint subpacket, or from the issuer's key when
    # gpg checked it; "" when neither says (an old signature, not checked).
    issuer_fingerprint: str
    created: datetime | None
    validity: str  # "!" good, "-" bad, "?" issuer key missing, "%" other error, "" not checked
    sig_class: str  # e.g. "13x": level 3, exportable; "13l": local
    issuer_key_id: str = ""


@dataclass
class CertifyOutcome:
    """What gpg said about one --quick-sign-key run."""

    returncode: int
    status: list[tuple[str, str]]
    stderr: str

    @property
    def problem(self) -> str | None:
        """A plain sentence for a failure, or None when gpg made the certification.

        Judged by status lines and gpg's own error lines, never by the last line
        of stderr alone: after a failed signing gpg ends with "Key not changed so
        no update needed", which hides the cause.
        """
        keywords = {k for k, _ in self.status}
        if "BAD_PASSPHRASE" in keywords or "Bad passphrase" in self.stderr:
            return "wrong passphrase"
        if AGENT_UNREACHABLE in self.stderr or "no gpg-agent running" in self.stderr:
            return f"gpg {AGENT_ADVICE}"
        if PINENTRY_CANNOT_ASK in self.stderr or "No pinentry" in self.stderr:
            return PINENTRY_ADVICE
        if "NO_SECKEY" in keywords or "INV_SGNR" in keywords or "No secret key" in self.stderr:
            return "no secret key for the signing key in this GnuPG home"
        if "KEYEXPIRED" in keywords or "SIGEXPIRED" in keywords:
            return "the signing key has expired"
        if "KEYREVOKED" in keywords:
            return "the signing key is revoked"
        failed = self.returncode != 0 or "FAILURE" in keywords or "ERROR" in keywords
        if failed:
            return f"gpg failed: {self._first_error()}"
        if "ALREADY_SIGNED" in keywords:
            return "gpg made nothing: this key had already certified that user ID"
        return None

    def _first_error(self) -> str:
        lines = [
            line.removeprefix("gpg: ")
            for line in self.stderr.splitlines()
            if line.startswith("gpg: ") and "Key not changed" not in line
        ]
        failing = [line for line in lines if "failed" in line or "error" in line.lower()]
        return (failing or lines or ["no message"])[0]


def parse_signature_listing(text: str) -> list[CertificationRecord]:
    """Parse `--check-sigs` (or `--list-sigs`) `--with-colons` output into one
    record per signature on a user ID (GnuPG doc/DETAILS, "Field 2", "Field 13")."""
    records: list[CertificationRecord] = []
    key = None
    user_id = None
    expect_key_fpr = False
    for line in text.splitlines():
        f = line.split(":")
        if f[0] == "pub":
            key, user_id, expect_key_fpr = None, None, True
        elif f[0] == "fpr" and expect_key_fpr:
            key, expect_key_fpr = f[9], False
        elif f[0] == "sub":
            user_id = None  # signatures from here on bind subkeys
        elif f[0] == "uid":
            user_id = _unescape(f[9])
        elif f[0] == "sig" and key and user_id is not None:
            records.append(
                CertificationRecord(
                    key_fingerprint=key,
                    user_id=user_id,
                    issuer_fingerprint=f[12] if len(f) > 12 else "",
                    created=_utc(f[5]),
                    validity=f[1],
                    sig_class=f[10],
                    issuer_key_id=f[4],
                )
            )
    return records


def _raise_if_disk_full(stderr: str) -> None:
    """gpg that could not write its keyring says so on stderr and may exit 0 or
    report the key as not imported: that is the disk, not the key."""
    for words, code in (
        ("No space left on device", errno.ENOSPC),
        ("Disk quota exceeded", errno.EDQUOT),
        ("Read-only file system", errno.EROFS),
        ("File too large", errno.EFBIG),
    ):
        if words in stderr:
            raise OSError(code, f"gpg: {words}")


def default_gnupg_home() -> Path:
    """GnuPG's own default, for a signer's `keyparty sign` on their machine."""
    return Path(os.environ.get("GNUPGHOME") or Path.home() / ".gnupg")


class GnuPGHome:
    """One GnuPG home directory, holding public keys only."""

    def __init__(
        self,
        path: str | os.PathLike,
        binary: str = "gpg",
        timeout: float = 120,
        create: bool = True,
        agent: bool = False,
        cached: bool = True,
    ) -> None:
        self.path = Path(path)
        self.binary = binary
        self.timeout = timeout
        # Homes of public keys never need gpg-agent; gpg would start one per
        # home anyway and leave it running. A signer's own home needs it.
        self.options = BASE_OPTIONS + ([] if agent else ["--no-autostart"])
        # Short-lived homes (stages, scratch) must not fill the cache below.
        self.cached = cached
        if create:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise GnuPGError(f"No GnuPG home at {self.path}: give the right one with --homedir.")
        self._gpg: _BoundedGPG | None = None

    @property
    def gpg(self) -> _BoundedGPG:
        if self._gpg is None:
            # python-gnupg runs `gpg --version` per instance: keep one per home.
            cache_key = (self.binary, str(self.path), tuple(self.options))
            self._gpg = _GPG_CACHE.get(cache_key) if self.cached else None
            if self._gpg is None:
                self._gpg = _BoundedGPG(
                    gpgbinary=self.binary,
                    gnupghome=str(self.path),
                    options=self.options,
                    encoding="utf-8",
                )
                self._gpg.buffer_size = 1 << 16
                check_version(self._gpg.version)
                if self.cached:
                    _GPG_CACHE[cache_key] = self._gpg
        return self._gpg

    # -- running ---------------------------------------------------------

    def _run(self, args: list[str], data: bytes = b"", passphrase: str | None = None) -> _Run:
        result = _Run()
        # With a passphrase python-gnupg adds --pinentry-mode loopback
        # --passphrase-fd 0: it goes first on stdin, one line.
        process = self.gpg._open_subprocess(args, passphrase is not None)
        if passphrase is not None:
            data = passphrase.encode("utf-8") + b"\n" + data
        timer = threading.Timer(self.timeout, process.kill)
        timer.daemon = True
        timer.start()

        def feed() -> None:
            try:
                process.stdin.write(data)
            except (BrokenPipeError, ValueError):
                pass  # gpg stopped reading; its status says why
            finally:
                with suppress(OSError):
                    process.stdin.close()

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            self.gpg._collect_output(process, result, writer)
            writer.join()
        finally:
            timer.cancel()
        if process.returncode == -9:
            raise GnuPGError(f"gpg took longer than {self.timeout:.0f} s and was stopped")
        _raise_if_disk_full(result.stderr)
        return result

    @contextmanager
    def locked(self) -> Iterator[GnuPGHome]:
        """Hold this home's lock: one writer at a time, across processes."""
        with open(self.path / "keyparty.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- keys ------------------------------------------------------------

    def import_keys(self, data: bytes, options: str | None = STRANGER_KEYS) -> ImportOutcome:
        """Import key data; judged by status lines (gpg exits 0 while skipping keys).

        `options` are gpg's --import-options; None imports everything as is.
        """
        run = self._run(["--import", *(["--import-options", options] if options else [])], data)
        outcome = ImportOutcome()
        for keyword, value in run.status:
            parts = value.split()
            if keyword == "IMPORT_OK" and len(parts) > 1:
                if parts[1] not in outcome.imported:
                    outcome.imported.append(parts[1])
            elif keyword == "IMPORT_PROBLEM":
                outcome.problems[parts[1] if len(parts) > 1 else None] = parts[0]
            elif keyword == "IMPORT_RES":
                names = "count no_user_id imported imported_rsa unchanged n_uids n_subk n_sigs"
                names += " n_revoc sec_read sec_imported sec_dups skipped_new not_imported"
                outcome.counts = dict(zip(names.split(), map(int, parts), strict=False))
        return outcome

    def import_blocks(
        self, blocks: Sequence[bytes], options: str | None = STRANGER_KEYS
    ) -> ImportOutcome:
        """Import binary key blocks (one key each, e.g. openpgp.group_by_key's),
        IMPORT_BATCH blocks or IMPORT_BATCH_BYTES at most per gpg call; the
        outcomes are merged as if gpg had read them in one call.

        Why: gpg's keybox has no index, so each key merged costs a scan of the
        whole keyring; one call over a 1000-key event with 50 000
        certifications ran past the gpg timeout, while each batch stays short.
        """
        outcome = ImportOutcome()
        for batch in _import_batches(blocks):
            part = self.import_keys(batch, options)
            outcome.imported += [f for f in part.imported if f not in outcome.imported]
            outcome.problems.update(part.problems)
            for name, count in part.counts.items():
                outcome.counts[name] = outcome.counts.get(name, 0) + count
        return outcome

    def delete_keys(self, fingerprints: Iterable[str]) -> bool:
        """Delete these public keys (full fingerprints, so nothing else matches).

        True when gpg did; False when it would not (a secret part is there, or
        a fingerprint is unknown): the caller then starts from a clean copy.
        """
        wanted = list(fingerprints)
        if not wanted:
            return True
        run = self._run(["--yes", "--delete-keys", *wanted])
        return run.returncode == 0

    def list_keys(self, fingerprints: Iterable[str] | None = None) -> list[KeyRecord]:
        """Typed records of the keys in this home (all, or those named)."""
        wanted = list(fingerprints) if fingerprints is not None else []
        if fingerprints is not None and not wanted:
            return []
        run = self._run(["--list-keys", "--with-fingerprint", "--with-fingerprint", *wanted])
        return parse_key_listing(run.data.decode("utf-8", "surrogateescape"))

    def secret_keys(self) -> list[KeyRecord]:
        """The keys this home can sign with (their secret parts stay with gpg-agent)."""
        run = self._run(["--list-secret-keys", "--with-fingerprint"])
        if AGENT_UNREACHABLE in run.stderr:
            raise GnuPGError(f"gpg {AGENT_ADVICE}")
        return parse_key_listing(
            run.data.decode("utf-8", "surrogateescape").replace("sec:", "pub:")
        )

    def certifications(
        self, fingerprints: Iterable[str], checked: bool = True
    ) -> list[CertificationRecord]:
        """Every signature on the user IDs of these keys, checked by gpg; or
        with `checked=False` only listed (`--list-sigs`): what the home holds,
        in about 1/60 of the time (1000 keys with 56 000 signatures: 2 s
        against 135 s).
        """
        wanted = list(fingerprints)
        if not wanted:
            return []
        run = self._run(["--check-sigs" if checked else "--list-sigs", *wanted])
        return parse_signature_listing(run.data.decode("utf-8", "surrogateescape"))

    def certify(
        self,
        signer: str,
        key: str,
        user_ids: list[str],
        level: int,
        expires_days: int,
        notations: dict[str, str],
        policy_url: str | None = None,
        force: bool = False,
        passphrase: str | None = None,
    ) -> CertifyOutcome:
        """Certify exactly these user IDs of `key` with `signer`, in one gpg run.

        Each user ID is matched exactly ("=uid"), never as a substring.
        `force` adds a certification next to the signer's existing one on the
        same user ID (another context); gpg otherwise says ALREADY_SIGNED.
        """
        args = ["--local-user", signer, "--no-ask-cert-level", "--no-ask-cert-expire"]
        args += ["--default-cert-level", str(level), "--default-cert-expire", f"{expires_days}d"]
        for name, value in notations.items():
            args += ["--cert-notation", f"{name}={value}"]
        if policy_url:
            args += ["--cert-policy-url", policy_url]
        if force:
            args.append("--force-sign-key")
        args += ["--quick-sign-key", key, *(f"={uid}" for uid in user_ids)]
        run = self._run(args, passphrase=passphrase)
        return CertifyOutcome(run.returncode or 0, run.status, run.stderr)

    def export_user_id(self, fingerprint: str, user_id: str) -> bytes:
        """The key with only this user ID and the signatures on it."""
        keep = f"keep-uid=uid = {user_id}"
        return self._run(["--export", "--export-filter", keep, fingerprint]).data

    def encrypt(self, data: bytes, recipient: str) -> bytes:
        """Encrypt to one key of this home (armored), for mail only its owner can read."""
        run = self._run(["--armor", "--encrypt", "--recipient", recipient], data)
        if run.returncode != 0 or not run.data:
            keywords = {k for k, _ in run.status}
            if "INV_RECP" in keywords or "unusable public key" in run.stderr:
                raise NoEncryptionKey(
                    f"the key {recipient} has no usable encryption subkey (expired, revoked "
                    "or none), so no encrypted mail can reach it"
                )
            why = CertifyOutcome(run.returncode or 2, run.status, run.stderr)._first_error()
            raise GnuPGError(f"gpg could not encrypt to {recipient}: {why}")
        return run.data

    def verify(self, signed: bytes, data: bytes | None = None) -> SignatureCheck:
        """Check a clearsigned text (`data` None) or a detached signature over `data`.

        Only the keys of this home can make a signature "good": check
        proofs in a scratch home holding only the key that must have signed.
        """
        if data is None:
            # --decrypt of a clearsigned text writes the text that was signed.
            run = self._run(["--decrypt"], signed)
            return judge_signatures(run.status, run.data)
        handle, name = tempfile.mkstemp(prefix="sig-", dir=self.path)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(signed)
            run = self._run(["--verify", name, "-"], data)
        finally:
            Path(name).unlink(missing_ok=True)
        return judge_signatures(run.status, None)

    def export_to(self, path: Path, armor: bool = False) -> None:
        """Write every key of this home with its signatures straight to `path`.

        A keyring of a thousand keys is megabytes: gpg writes the file itself,
        without status lines or a copy through Python (python-gnupg always
        asks for status lines, which cost as much as the export here).
        """
        command = [self.binary, "--homedir", str(self.path), "--batch", "--no-tty"]
        command += [*self.options, "--yes", "--output", str(path)]
        command += [*(["--armor"] if armor else []), "--export"]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        limit = (_BoundedGPG.memory_limit, _BoundedGPG.memory_limit)
        with contextlib.suppress(OSError):
            resource.prlimit(process.pid, resource.RLIMIT_AS, limit)
        try:
            _, errors = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise GnuPGError(f"gpg took longer than {self.timeout:.0f} s and was stopped") from None
        if process.returncode != 0:
            raise GnuPGError(f"gpg could not export: {errors.decode(errors='replace')[-300:]}")

    def export(self, fingerprints: Iterable[str], armor: bool = False) -> bytes:
        """Export keys with every signature they hold here (never export-minimal)."""
        wanted = list(fingerprints)
        if not wanted:
            return b""
        return self._run(["--export", *(["--armor"] if armor else []), *wanted]).data

    # -- staging ---------------------------------------------------------

    @contextmanager
    def scratch(self) -> Iterator[GnuPGHome]:
        """An empty home beside this one, removed afterwards: for checking
        what strangers sent without anything else in the keyring."""
        path = Path(tempfile.mkdtemp(prefix=".scratch-", dir=self.path.parent))
        try:
            home = GnuPGHome(path, self.binary, self.timeout, cached=False)
            home.options = self.options
            yield home
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def staged(self) -> Iterator[StagedHome]:
        """A scratch copy of this home, under this home's lock.

        It replaces this home only when the block calls `stage.commit()`
        (after the database commit: the database is the record); a block
        that returns early, raises or never commits leaves this home as it
        was. Nothing a stranger sent reaches the real home unless it was checked.
        """
        with self.locked():
            stage_dir = Path(tempfile.mkdtemp(prefix=".stage-", dir=self.path.parent))
            try:
                stage = StagedHome(stage_dir, self)
                stage.reset()
                yield stage
            finally:
                shutil.rmtree(stage_dir, ignore_errors=True)


class StagedHome(GnuPGHome):
    def __init__(self, path: Path, origin: GnuPGHome) -> None:
        super().__init__(path, origin.binary, origin.timeout, cached=False)
        self.options = origin.options
        self.origin = origin
        self.committed = False

    def reset(self) -> None:
        """Start again from the origin's keyring."""
        for name in KEYRING_FILES:
            (self.path / name).unlink(missing_ok=True)
            if (self.origin.path / name).exists():
                shutil.copy2(self.origin.path / name, self.path / name)

    def commit(self) -> None:
        """Replace the origin's keyring files with this stage's (each by rename)."""
        for name in KEYRING_FILES:
            if (self.path / name).exists():
                os.replace(self.path / name, self.origin.path / name)
            else:
                (self.origin.path / name).unlink(missing_ok=True)
        self.committed = True
