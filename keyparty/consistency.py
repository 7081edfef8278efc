"""The database is the record; an event's two GnuPG homes are derived from it.

- working home (instance/gnupg/EVENT): every key on the event, and every
  certification intake accepted;
- published home (instance/gnupg/EVENT.published): every key, and only the
  certifications their owners accepted (O1); exports read it.

Every change commits the database first and the home second, so after a
crash a home can only lack what the database holds (or hold what a crash
left half-done). `check` says what differs; `rebuild` makes both homes again
from the database; `serve` does both at start.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from keyparty import openpgp
from keyparty.events import rebuild_home
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.publishing import owner_accepted

# (target fingerprint, user ID, issuer fingerprint, creation time in epoch seconds)
CertificationId = tuple[str, str, str, int]


@dataclass
class HomeState:
    """What one home holds, or should hold."""

    keys: set[str] = field(default_factory=set)
    # (fingerprint, user ID text)
    user_ids: set[tuple[str, str]] = field(default_factory=set)
    # A Counter: two certifications can share all four (two contexts made
    # in the same second by one signer on one user ID).
    certifications: Counter[CertificationId] = field(default_factory=Counter)


@dataclass
class Difference:
    """One way a home differs from the database, in words for the host."""

    home: str  # "working" or "published"
    what: str  # "key", "user ID" or "certification"
    missing: bool  # True: the database has it, the home lacks it; False: the reverse
    item: str

    def __str__(self) -> str:
        where = "missing from" if self.missing else "not in the database but in"
        return f"{self.what} {where} the {self.home} home: {self.item}"


def _epoch(moment: datetime | None) -> int:
    if moment is None:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _certification_id(c: Certification) -> CertificationId:
    return (
        c.target_fingerprint or "",
        c.user_id_text or "",
        c.issuer_fingerprint or "",
        _epoch(c.created),
    )


def accepted_certifications(event: Event) -> list[Certification]:
    """Every certification intake accepted at this event (the working home holds them;
    events.rebuild_home reads the same)."""
    return db.session.scalars(
        select(Certification).where(
            Certification.event_id == event.id, Certification.status == "accepted"
        )
    ).all()


def expected(event: Event) -> dict[str, HomeState]:
    """What each home of `event` must hold, from the database."""
    keys = {k.fingerprint for k in event.keys}
    user_ids = {(k.fingerprint, u.text) for k in event.keys for u in k.user_ids}
    return {
        "working": HomeState(
            keys, user_ids, Counter(_certification_id(c) for c in accepted_certifications(event))
        ),
        "published": HomeState(
            set(keys), set(user_ids), Counter(_certification_id(c) for c in owner_accepted(event))
        ),
    }


def actual(home: GnuPGHome) -> HomeState:
    """What `home` holds: keys, usable user IDs and third-party certifications."""
    state = HomeState()
    records = home.list_keys()
    for record in records:
        state.keys.add(record.fingerprint)
        for uid in record.user_ids:
            if not (uid.revoked or uid.expired):
                state.user_ids.add((record.fingerprint, uid.text))
    # Listed, not checked: intake checked each before it was stored, and
    # checking 50 000 again at every start took minutes. A signature without
    # an issuer fingerprint subpacket is named by its key ID: the issuer is a
    # key of the event.
    by_key_id = {openpgp.key_id_of(r.fingerprint): r.fingerprint for r in records}
    for sig in home.certifications(sorted(state.keys), checked=False):
        issuer = sig.issuer_fingerprint or by_key_id.get(sig.issuer_key_id, "")
        if issuer and issuer != sig.key_fingerprint:
            state.certifications[
                (sig.key_fingerprint, sig.user_id, issuer, _epoch(sig.created))
            ] += 1
    return state


def _home_path(event: Event, which: str) -> Path:
    base = Path(current_app.instance_path) / "gnupg"
    return base / (event.id if which == "working" else f"{event.id}.published")


def check(event: Event) -> list[Difference]:
    """Every difference between the event's homes and the database; empty when they agree."""
    differences: list[Difference] = []
    for which, want in expected(event).items():
        path = _home_path(event, which)
        if which == "published" and not (path / "pubring.kbx").exists():
            continue  # not built yet: made from the database when first used
        if not (path / "pubring.kbx").exists():
            have = HomeState()
        else:
            home = GnuPGHome(path, binary=current_app.config["GPG_BINARY"])
            have = actual(home)
        for what, wanted, held in (
            ("key", want.keys, have.keys),
            ("user ID", want.user_ids, have.user_ids),
            ("certification", want.certifications, have.certifications),
        ):
            wanted, held = Counter(wanted), Counter(held)
            for item in sorted(set(wanted) | set(held)):
                gap = wanted[item] - held[item]
                for _ in range(abs(gap)):
                    differences.append(Difference(which, what, gap > 0, _describe(item)))
    return differences


def _describe(item) -> str:
    if isinstance(item, str):
        return item
    if len(item) == 2:
        return f"{item[0]} {item[1]!r}"
    target, uid, issuer, created = item
    when = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"on {target} {uid!r} by {issuer} made {when} UTC"


def rebuild(event: Event) -> dict[str, int]:
    """Rebuild both homes of `event` from the database; returns what they now hold."""
    from keyparty.publishing import rebuild_published

    rebuild_home(event)
    rebuild_published(event, published_home_without_rebuild(event))
    return {
        "keys": len(event.keys),
        "accepted certifications": len(accepted_certifications(event)),
        "published certifications": len(owner_accepted(event)),
    }


def published_home_without_rebuild(event: Event) -> GnuPGHome:
    return GnuPGHome(_home_path(event, "published"), binary=current_app.config["GPG_BINARY"])


def clear_leftovers(older_than_seconds: float = 0) -> int:
    """Remove `.stage-*` and `.scratch-*` folders a crash left behind; returns how many.

    Only folders older than `older_than_seconds` (a running server's are
    young and in use).
    """
    base = Path(current_app.instance_path) / "gnupg"
    removed = 0
    if not base.is_dir():
        return 0
    now = time.time()
    for pattern in (".stage-*", ".scratch-*"):
        for folder in base.glob(pattern):
            try:
                if now - folder.stat().st_mtime < older_than_seconds:
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def all_events() -> list[Event]:
    return db.session.scalars(select(Event).order_by(Event.created_at)).all()
