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

from keyparty import openpgp
from keyparty import rules
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Key
from keyparty.verification import refuse


def published_home(event: Event) -> GnuPGHome:
    path = Path(current_app.instance_path) / "gnupg" / f"{event.id}.published"
    home = GnuPGHome(path, binary=current_app.config["GPG_BINARY"])
    if not (path / "pubring.kbx").exists():
        rebuild_published(event, home)
    return home


def forget_published(event: Event) -> None:
    """Drop the published keyring after the event's keys changed; the next
    use rebuilds it from the database (with every key)."""
    home = GnuPGHome(
        Path(current_app.instance_path) / "gnupg" / f"{event.id}.published",
        binary=current_app.config["GPG_BINARY"],
    )
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
    home = home or published_home(event)
    with home.staged() as stage:
        for name in ("pubring.kbx", "trustdb.gpg"):
            (stage.path / name).unlink(missing_ok=True)
        pieces = [openpgp.dearmor(k.armored.encode()) for k in event.keys]
        pieces += (openpgp.dearmor(c.armored.encode()) for c in owner_accepted(event))
        if pieces:
            stage.import_keys(openpgp.group_by_key(pieces), options=None)
        stage.commit()
    return home


def certifications_received(owner: Attendee) -> list[Certification]:
    """What intake accepted on this attendee's keys: theirs to accept or decline."""
    return db.session.scalars(
        select(Certification)
        .join(Key, Certification.key_id == Key.id)
        .where(Key.attendee_id == owner.id, Certification.status == "accepted")
        .order_by(Certification.received_at)
    ).all()


def decide(certification: Certification, decision: str, now: datetime | None = None):
    """The owner accepts (publish) or declines (the signer is never told)."""
    event = certification.key.event
    refusal = rules.check_owner_decision(event.state, certification.context, decision)
    if refusal:
        return refuse(event, refusal)
    was = certification.owner_decision
    certification.owner_decision = decision
    certification.decided_at = (now or datetime.now(UTC)).replace(tzinfo=None)
    db.session.commit()
    if decision == "accepted" and was != "accepted":
        publish(certification)
    elif decision == "declined" and was == "accepted":
        rebuild_published(event)
    return None


def publish(certification: Certification) -> None:
    home = published_home(certification.key.event)
    with home.staged() as stage:
        stage.import_keys(openpgp.dearmor(certification.armored.encode()), options=None)
        stage.commit()
