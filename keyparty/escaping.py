"""Text from outside, made safe for where it goes: one helper per destination.

User IDs, names, notations, file names and server replies are strangers'
bytes. A user ID can hold a newline, a terminal escape (`ESC [ 2 J` clears
the screen, `ESC ] 0 ;` retitles the window), bidirectional overrides, or
bytes that are not UTF-8. Each destination gets its own form:

- terminal: `for_terminal` shows every control character visibly (`\\x1b`),
  whether or not the output is a terminal (logs are read in terminals too);
- file paths: `for_filename` keeps a short run of safe characters;
- one line of a mail body or a page title: `one_line`;
- mail headers are encoded by Python's email package (policy SMTP / default);
- HTML pages are escaped by Jinja's autoescape.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["for_filename", "for_terminal", "one_line", "plain"]

# Bidirectional overrides and isolates can make a name read as another.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_LINE_BREAKS = frozenset("\u2028\u2029\x85")


def _visible(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def for_terminal(text: str | bytes | None) -> str:
    """`text` for a terminal or log: control characters (C0, DEL, C1), line and
    paragraph separators, bidirectional controls, unassigned code points and
    bytes that are not UTF-8 become visible escapes such as `\\x1b`; a backslash
    becomes `\\\\`, so the escaped form is never ambiguous. Never raises.
    """
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable() and char not in _BIDI_CONTROLS:
            out.append(char)
        else:
            out.append(_visible(char))
    return "".join(out)


_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def for_filename(text: str, limit: int = 40) -> str:
    """A file-name part made of `text`: ASCII letters, digits, `.`, `_` and `-`
    only, no leading dot (no hidden files, no `..`), at most `limit` characters;
    "x" if nothing is left."""
    cleaned = _UNSAFE_IN_NAME.sub("_", text).lstrip("._")[:limit].rstrip("_")
    return cleaned or "x"


def plain(text: str | None) -> str:
    """Text from strangers made safe to show on one line of a mail or page:
    control, bidirectional, private-use and unassigned characters become U+FFFD."""
    out = []
    for char in text or "":
        category = unicodedata.category(char)
        if char in _BIDI_CONTROLS or category in ("Cc", "Cs", "Co", "Cn"):
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def one_line(text: str | None, limit: int = 150) -> str:
    """`plain` text on one line (any run of white space, newlines included, is
    one space), cut to `limit` characters with an ellipsis."""
    text = plain(" ".join((text or "").split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"
