"""The one definition of "the email address of a user ID".

A user ID is free text. Its address, as GnuPG's `mbox` means it, is the
RFC 5322 `addr-spec` between the one pair of angle brackets
(`Name (comment) <local@domain>`), or the whole user ID when it is a bare
addr-spec. Anything else in the brackets (a URI, a path, two `@`, a domain
of `..`) is no address: it is not offered for the `email` context, not
mailed, not put into a Web Key Directory, not counted in the report.

RFC 6531 lets the local part and the domain hold non-ASCII characters. The
domain goes out as IDNA A-labels (RFC 5891, with UTS #46 mapping); a
non-ASCII local part can only travel over SMTPUTF8. Context choice,
registration, delivery, WKD and the report all ask this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

__all__ = ["Mailbox", "email_of", "mailbox", "mailbox_of"]

# RFC 5322 3.2.3 atext, plus any non-ASCII character (RFC 6531 3.3 UTF8-non-ascii).
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010FFFF]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# One pair of angle brackets, nothing bracket-like outside it.
_BRACKETED = re.compile(r"[^<>]*<([^<>]*)>[^<>]*", re.DOTALL)
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_LOCAL_OCTETS = 64  # RFC 5321 4.5.3.1.1
_MAX_DOMAIN_OCTETS = 253  # RFC 1035, without the final dot


@dataclass(frozen=True)
class Mailbox:
    """One address, checked.

    `local` and `domain` are as written in the user ID. `ascii_domain` is the
    domain in IDNA A-labels, lower case: the only form that goes on the wire
    or into a file path. `needs_smtputf8` is true when the local part is not
    ASCII (RFC 6531): such a mail needs a server that offers SMTPUTF8.
    """

    local: str
    domain: str
    ascii_domain: str

    @property
    def addr_spec(self) -> str:
        """The address as written: local@domain."""
        return f"{self.local}@{self.domain}"

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local.isascii()

    @property
    def wire(self) -> str:
        """The address for SMTP and the To: header: the domain IDNA-encoded."""
        return f"{self.local}@{self.ascii_domain}"


def mailbox(address: str) -> Mailbox | None:
    """`address` checked as an RFC 5322 / RFC 6531 addr-spec (dot-atom local part,
    domain of at least two valid labels); None if it is not one.

    Quoted local parts and domain literals (`[192.0.2.1]`) are not taken: no
    real key-signing address uses them, and they cannot be placed in a WKD.
    """
    if address.count("@") != 1:
        return None
    local, domain = address.split("@")
    if not _DOT_ATOM.fullmatch(local) or len(local.encode("utf-8")) > _MAX_LOCAL_OCTETS:
        return None
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        return None
    return Mailbox(local, domain, ascii_domain)


def _ascii_domain(domain: str) -> str | None:
    """The domain in A-labels (lower case), or None if it is not a host name."""
    if not domain or domain != domain.strip() or domain.endswith("."):
        return None
    try:
        encoded = idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    labels = encoded.split(".")
    if len(labels) < 2 or len(encoded) > _MAX_DOMAIN_OCTETS:
        return None
    if not all(_LDH_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # an IP address, not a domain
    return encoded


def mailbox_of(user_id: str) -> Mailbox | None:
    """The mailbox of a user ID (see the module docstring), or None."""
    bracketed = _BRACKETED.fullmatch(user_id)
    if bracketed:
        return mailbox(bracketed.group(1))
    if "<" in user_id or ">" in user_id:
        return None
    return mailbox(user_id.strip())


def email_of(user_id: str) -> str | None:
    """The address of a user ID, as written (local@domain), or None."""
    found = mailbox_of(user_id)
    return found.addr_spec if found else None
