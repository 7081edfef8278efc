"""The Zimmermann–Sassaman party list: the frozen text file, its digests, safe text.

Pure functions over plain data (no Flask, no database, no subprocess). The list
is hashed as a file, so its text must be byte-for-byte reproducible: UTF-8, LF
line ends, a final newline, no trailing whitespace on any line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime

__all__ = [
    "ListEntry",
    "digests",
    "group_digest",
    "group_fingerprint",
    "normalize_fingerprint",
    "render_party_list",
    "safe_text",
]

BOX_LINE = "[ ] Fingerprint OK        [ ] ID OK"
# gpg 2.2 pads "uid" to where it prints the validity; gpgsigs reads `uid +(.*)`.
UID_PREFIX = "uid" + " " * 22

_FINGERPRINT = re.compile(r"[0-9A-F]{40}")

# Characters a stranger's user ID must not smuggle into a page, a terminal or
# this file: C0 controls (newline, ESC, ...), DEL, C1 controls, the Unicode line
# and paragraph separators, bidi embedding/override/isolate controls (they can
# reorder what a reader sees), and lone surrogates (undecodable bytes kept by
# "surrogateescape"; they cannot be encoded as UTF-8). The backslash is escaped
# too, so that a user ID that literally contains "\x0a" cannot pass for one that
# contains a newline.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@dataclass(frozen=True)
class ListEntry:
    number: int
    fingerprint: str  # 40 uppercase hex
    algorithm: str  # e.g. "ed25519", "rsa3072"
    created: date
    expires: date | None
    user_ids: tuple[str, ...]
    # The primary key's usage as gpg prints it in brackets ("SC", "C"); "" to leave out.
    usage: str = ""


def normalize_fingerprint(fpr: str) -> str:
    """40 uppercase hex digits from a fingerprint written with spaces or in lowercase."""
    compact = "".join(fpr.split()).upper()
    if not _FINGERPRINT.fullmatch(compact):
        shown = safe_text(fpr[:100])
        raise ValueError(f"not a v4 OpenPGP fingerprint (40 hex digits): '{shown}'")
    return compact


def group_fingerprint(fpr: str) -> str:
    """Ten groups of four, two spaces after the fifth, as gpg prints it."""
    compact = normalize_fingerprint(fpr)
    groups = [compact[i : i + 4] for i in range(0, 40, 4)]
    return " ".join(groups[:5]) + "  " + " ".join(groups[5:])


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """Text from a stranger, with every control character made visible as an escape.

    Newlines, ESC, DEL, C1 controls, U+2028/U+2029 and bidi controls become
    ``\\xNN`` or ``\\uNNNN``; a backslash becomes ``\\\\``. Every other character
    (Japanese, accented, Arabic and Hebrew letters, ...) is kept as it is.
    """
    return _UNSAFE.sub(_escape, text)


def _line_value(text: str) -> str:
    """safe_text, plus trailing whitespace escaped: editors and mailers strip it,
    which would change the file's digest."""
    text = safe_text(text)
    kept = text.rstrip()
    tail = "".join(
        f"\\x{ord(c):02x}" if ord(c) <= 0xFF else f"\\u{ord(c):04x}" for c in text[len(kept) :]
    )
    return kept + tail


def _day(value: date) -> str:
    return date(value.year, value.month, value.day).isoformat()


def _utc_minutes(moment: datetime) -> str:
    """ISO 8601 to the minute, in UTC. A naive datetime is taken to be UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _instructions() -> list[str]:
    return [
        "How to check this file",
        "----------------------",
        "At the start of the party the host reads aloud the SHA256 and SHA512",
        "digests of this file. Before that, run",
        "",
        "    sha256sum FILE",
        "    sha512sum FILE",
        "",
        "where FILE is your copy of this file, exactly as downloaded. Both",
        "commands must print the digests the host reads aloud; if either one",
        "differs, your copy is not the list everyone else has: do not use it.",
        "Write the digests into the Checksum lines below on your printout.",
        "",
        "Bring a printed copy of this file, or the file itself. Check that your",
        "own entry is correct. Then, as you check each person, tick their boxes:",
        "Fingerprint OK when the fingerprint they show matches the one printed",
        "here, ID OK when you have checked who they are. Certify only user IDs",
        "you checked yourself, and only after the party.",
        "",
        "The entries below are laid out as gpgparticipants (signing-party) lays",
        "them out, so caff and gpgsigs read this file: in a copy, put an x in",
        "the boxes you ticked and in each Checksum box, then `caff < COPY`.",
    ]


# gpgparticipants' blanks for a digest: groups of four underscores, eight to a
# line, the box at column 77. caff reads "ALGO Checksum:" lines and their
# continuation lines up to the box, and wants the box ticked ([x]).
_CHECKSUM_INDENT = " " * len("SHA256 Checksum: ")
_CHECKSUM_BLANKS = "____ ____   ____ ____   ____ ____   ____ ____"
_CHECKSUM_BOX_COLUMN = 76


def _checksum_lines(algorithm: str, hex_length: int) -> list[str]:
    """Blanks for one digest: a row per 32 hex digits, a blank line between rows."""
    rows = [_CHECKSUM_INDENT + _CHECKSUM_BLANKS for _ in range(hex_length // 32)]
    rows[0] = f"{algorithm} Checksum: {_CHECKSUM_BLANKS}"
    rows[-1] = rows[-1].ljust(_CHECKSUM_BOX_COLUMN) + "[ ]"
    lines = []
    for row in rows:
        lines.extend([row, ""])
    return lines[:-1]


SEPARATOR = "_" * 79


def _gpg_pub_line(entry: ListEntry) -> str:
    """`pub` as `gpg --list-keys` prints it (GnuPG 2.2): algorithm, created, usage, expiry."""
    parts = [f"pub   {_line_value(entry.algorithm)}", _day(entry.created)]
    if entry.usage:
        parts.append(f"[{_line_value(entry.usage)}]")
    if entry.expires:
        parts.append(f"[expires: {_day(entry.expires)}]")
    return " ".join(parts)


def _entry_lines(entry: ListEntry) -> list[str]:
    lines = [
        f"{entry.number:03d}  {BOX_LINE}",
        _gpg_pub_line(entry),
        f"      {group_fingerprint(entry.fingerprint)}",
    ]
    if entry.user_ids:
        lines.extend(f"{UID_PREFIX}{_line_value(uid)}" for uid in entry.user_ids)
    else:
        lines.append("      (no user ID)")
    return lines


def render_party_list(
    event_name: str,
    event_id: str,
    event_date: date | None,
    frozen_at: datetime,
    entries: Sequence[ListEntry],
) -> str:
    """The party list as text: the same inputs always give the same string.

    Entries are listed by number (each number at most once, all positive);
    user IDs keep the order given. The layout of the checksum blanks and the
    entries is gpgparticipants' (Debian signing-party 2.11): numbers `001`,
    gpg's own `pub`, fingerprint and `uid` lines, a line of underscores after
    each entry; caff and gpgsigs parse exactly these shapes.
    """
    ordered = sorted(entries, key=lambda entry: entry.number)
    numbers = [entry.number for entry in ordered]
    if len(set(numbers)) != len(numbers):
        raise ValueError("two entries of the party list have the same number")
    if numbers and numbers[0] < 1:
        raise ValueError("party list numbers start at 1")

    title = "Key-signing party list"
    lines = [
        title,
        "=" * len(title),
        "",
        f"Event:     {_line_value(event_name)}",
        f"Event id:  {_line_value(event_id)}",
        f"Date:      {_day(event_date) if event_date else 'date not set'}",
        f"Frozen at: {_utc_minutes(frozen_at)} (UTC)",
        f"Keys:      {len(ordered)}",
        "",
        *_instructions(),
        "",
        "",
        *_checksum_lines("SHA256", 64),
        "",
        *_checksum_lines("SHA512", 128),
        "",
        "",
        "Keys",
        "----",
        "",
    ]
    if not ordered:
        lines.append("(no keys)")
    for entry in ordered:
        lines.extend(_entry_lines(entry))
        lines.extend(["", SEPARATOR, ""])
    # Values are escaped above; this only tidies lines whose value was empty.
    return "".join(line.rstrip() + "\n" for line in lines).rstrip("\n") + "\n"


def digests(text: str) -> dict[str, str]:
    """SHA256 and SHA512 of the UTF-8 bytes, in lowercase hex as sha256sum prints them."""
    data = text.encode("utf-8")
    return {
        "SHA256": hashlib.sha256(data).hexdigest(),
        "SHA512": hashlib.sha512(data).hexdigest(),
    }


def group_digest(hexdigest: str, group: int = 4) -> list[str]:
    """A digest cut into chunks of `group` characters, for reading aloud."""
    if group < 1:
        raise ValueError("group must be at least 1")
    return [hexdigest[i : i + group] for i in range(0, len(hexdigest), group)]
