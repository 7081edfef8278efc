"""Exports of the published keyring: only owner-accepted certifications (O1),
never ownertrust, never export-minimal (it would strip the certifications).

One `gpg --export` of the published home; the per-key, per-user-ID and Web
Key Directory files are cut from it in Python.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from keyparty import openpgp
from keyparty.addresses import Mailbox
from keyparty.addresses import mailbox_of
from keyparty.models import Attendee
from keyparty.models import Event
from keyparty.publishing import published_home

ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def keyring(event: Event, armor: bool = True) -> bytes:
    return published_home(event).export([k.fingerprint for k in event.keys], armor=armor)


def _blocks(event: Event) -> list[openpgp.KeyBlock]:
    data = keyring(event, armor=False)
    return openpgp.read_keys(data) if data else []


def write_keyring(event: Event, path: Path, binary: bool = False) -> Path:
    # The published home holds exactly the event's keys: export it whole.
    published_home(event).export_to(path, armor=not binary)
    return path


def write_per_key(event: Event, folder: Path) -> list[Path]:
    """One armored file per attendee key, named by fingerprint."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for block in _blocks(event):
        path = folder / f"{block.fingerprint}.asc"
        path.write_text(openpgp.armor(block.data), encoding="utf-8")
        written.append(path)
    return written


def write_per_user_id(event: Event, folder: Path) -> list[Path]:
    """One file per user ID: the key with only that user ID and the published
    certifications on it (what caff and pius send to each address)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for block in _blocks(event):
        for n, entry in enumerate(openpgp.user_id_signatures(block), 1):
            data = openpgp.keep_user_ids(block, lambda uid, mine=entry.user_id: uid == mine)
            path = folder / f"{block.fingerprint}-uid{n}.asc"
            path.write_text(openpgp.armor(data), encoding="utf-8")
            written.append(path)
    return written


def zbase32(data: bytes) -> str:
    bits = "".join(f"{byte:08b}" for byte in data)
    return "".join(ZBASE32[int(bits[i : i + 5].ljust(5, "0"), 2)] for i in range(0, len(bits), 5))


def wkd_hash(local_part: str) -> str:
    """The Web Key Directory name of a mailbox's local part (z-base-32 of SHA-1)."""
    return zbase32(hashlib.sha1(local_part.lower().encode("utf-8")).digest())


def _mailbox(user_id: bytes) -> Mailbox | None:
    try:
        return mailbox_of(user_id.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def write_wkd(
    event: Event, folder: Path, refused: list[tuple[str, str]] | None = None
) -> list[Path]:
    """A Web Key Directory for the event's email user IDs, in both layouts:
    direct:   DOMAIN/.well-known/openpgpkey/hu/HASH  (served at https://DOMAIN)
    advanced: openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH
    Each file is the binary key with only the user IDs of that address.

    DOMAIN is the IDNA (A-label) form of the address's domain, checked to be a
    host name (keyparty.addresses), and every path is checked to stay inside
    `folder`. Nothing is ever written outside it: an address that cannot be placed
    is left out and added to `refused` as (address, why).
    """
    written: list[Path] = []
    refused = refused if refused is not None else []
    root = folder.resolve()
    by_address: dict[tuple[str, str], list[bytes]] = {}
    for block in _blocks(event):
        for entry in openpgp.user_id_signatures(block):
            found = _mailbox(entry.user_id)
            if found is None:
                continue
            mine = (found.local.lower(), found.ascii_domain)
            data = openpgp.keep_user_ids(
                block,
                lambda uid, mine=mine: (
                    (m := _mailbox(uid)) is not None and (m.local.lower(), m.ascii_domain) == mine
                ),
            )
            by_address.setdefault(mine, [])
            if data not in by_address[mine]:
                by_address[mine].append(data)
    for (local, domain), keys in sorted(by_address.items()):
        for base in (
            root / domain / ".well-known" / "openpgpkey",
            root / f"openpgpkey.{domain}" / ".well-known" / "openpgpkey" / domain,
        ):
            path = base / "hu" / wkd_hash(local)
            if not path.resolve().is_relative_to(root):
                refused.append((f"{local}@{domain}", "its domain is not a host name"))
                break
            (base / "hu").mkdir(parents=True, exist_ok=True)
            policy = base / "policy"
            if not policy.exists():
                policy.write_text("# keyparty: keys certified at a key-signing party\n")
                written.append(policy)
            path.write_bytes(b"".join(keys))
            written.append(path)
    return written


def own_key(attendee: Attendee) -> str:
    """An attendee's own key with the certifications they accepted, armored."""
    home = published_home(attendee.event)
    return home.export([k.fingerprint for k in attendee.keys], armor=True).decode()
