"""Owner consent (O1) and the published keyring.

A certification that intake accepted is published only after its key owner
accepted it. The published keyring is a second GnuPG home per event that
holds every key on the list and exactly the owner-accepted certifications;
exports read it. Like the event home it can be rebuilt from the database.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from keyparty import homes
from keyparty import openpgp
from keyparty import report
from keyparty import rules
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Key
from keyparty.verification import refuse


def _published_path(event: Event) -> GnuPGHome:
    path = Path(current_app.instance_path) / "gnupg" / f"{event.id}.published"
    return GnuPGHome(path, binary=current_app.config["GPG_BINARY"])


def _generation(event: Event) -> str:
    keys, published = homes.generations(event)
    return f"k{keys}p{published}"


def published_home(event: Event) -> GnuPGHome:
    """The published keyring, rebuilt first when this machine's copy is missing
    or was built at another generation (keyparty.homes)."""
    home = _published_path(event)
    if homes.built_at(home) != _generation(event):
        rebuild_published(event, home)
    return home


def forget_published(event: Event) -> None:
    """Drop the published keyring after the event's keys changed; the next
    use rebuilds it from the database (with every key)."""
    home = _published_path(event)
    with home.locked():
        (home.path / "pubring.kbx").unlink(missing_ok=True)


def owner_accepted(event: Event) -> list[Certification]:
    return db.session.scalars(
        select(Certification).where(
            Certification.event_id == event.id,
            Certification.status == "accepted",
            Certification.owner_decision == "accepted",
        )
    ).all()


def rebuild_published(event: Event, home: GnuPGHome | None = None) -> GnuPGHome:
    """Every key on the list, plus the owner-accepted certifications, nothing else."""
    home = home or _published_path(event)
    with home.staged() as stage:
        _fill(stage, event)
        stage.commit()
    return home


def _fill(stage: GnuPGHome, event: Event) -> None:
    generation = _generation(event)  # first: see events.rebuild_home
    for name in ("pubring.kbx", "trustdb.gpg"):
        (stage.path / name).unlink(missing_ok=True)
    pieces = [openpgp.dearmor(k.armored.encode()) for k in event.keys]
    pieces += (openpgp.dearmor(c.armored.encode()) for c in owner_accepted(event))
    if pieces:
        stage.import_blocks(openpgp.group_by_key(pieces), options=None)
    homes.mark_built(stage, generation)


def _withdraw(stage: GnuPGHome, certification: Certification) -> bool:
    """Take one declined certification off its key in `stage`: the key is
    exported, the signature cut out, the key replaced. Three short gpg calls,
    where rebuilding the whole published keyring of a 1000-key event with
    50 000 certifications takes minutes. False, and `stage` unchanged but
    perhaps for the key, when the home does not hold it as expected: then
    the caller rebuilds.
    """
    minimal = openpgp.read_keys(openpgp.dearmor(certification.armored.encode()))[0]
    held = openpgp.read_keys(stage.export([minimal.fingerprint or ""]))
    if len(held) != 1:
        return False
    key, dropped = openpgp.without_certifications(held[0], minimal)
    if not dropped or not stage.delete_keys([minimal.fingerprint or ""]):
        return False
    return minimal.fingerprint in stage.import_keys(key, options=None).imported


def certifications_received(owner: Attendee) -> list[Certification]:
    """What intake accepted on this attendee's keys: theirs to accept or decline."""
    return db.session.scalars(
        select(Certification)
        .join(Key, Certification.key_id == Key.id)
        .where(Key.attendee_id == owner.id, Certification.status == "accepted")
        .order_by(Certification.received_at)
    ).all()


def decide(certification: Certification, decision: str, now: datetime | None = None):
    """The owner accepts (publish) or declines (the signer is never told).

    The certification's row is locked (PostgreSQL) before its decision is
    read, so two decisions sent at once to two server processes are made one
    after the other, and the published keyring follows the last.
    """
    event = certification.key.event
    refusal = rules.check_owner_decision(event.state, certification.context, decision)
    if refusal:
        return refuse(event, refusal)
    db.session.refresh(certification, with_for_update=True)
    was = certification.owner_decision
    certification.owner_decision = decision
    certification.decided_at = (now or datetime.now(UTC)).replace(tzinfo=None)
    generation = homes.bump(event, Event.published_generation)
    db.session.commit()
    follow_decision(certification, was, generation)
    return None


def follow_decision(certification: Certification, was: str | None, generation: int) -> None:
    """Bring this machine's published keyring along after a committed decision
    numbered `generation` (homes.bump): one step on from what it holds, apply
    just this decision; otherwise leave it for published_home() to rebuild.
    The report's picture is drawn again soon, in the background."""
    event = certification.key.event
    report.draw_after_change(event.id)
    keys_generation, _ = homes.generations(event)
    home = _published_path(event)
    with home.staged() as stage:
        if homes.built_at(stage) != f"k{keys_generation}p{generation - 1}":
            return
        decision = certification.owner_decision
        if decision == "accepted" and was != "accepted":
            stage.import_keys(openpgp.dearmor(certification.armored.encode()), options=None)
            homes.mark_built(stage, f"k{keys_generation}p{generation}")
        elif decision != "accepted" and was == "accepted":
            if _withdraw(stage, certification):
                homes.mark_built(stage, f"k{keys_generation}p{generation}")
            else:
                _fill(stage, event)
        else:
            homes.mark_built(stage, f"k{keys_generation}p{generation}")
        stage.commit()
