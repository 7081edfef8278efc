"""Each machine's GnuPG homes are working copies of the database (the record).

A home carries the generation of the database it was built from, in a small
file beside its keyring (a staged copy carries it too, and replaces it with
the keyring). The event's counters (Event.keys_generation,
Event.published_generation) go up in the same transaction as every change a
home copies; a process that finds its home at another generation rebuilds it,
so server processes or machines sharing one database give the same answers.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy import update

from keyparty.extensions import db
from keyparty.gpg import STAMP_FILE
from keyparty.gpg import GnuPGHome
from keyparty.models import Event


def built_at(home: GnuPGHome) -> str | None:
    """The generation `home` was built at, e.g. "k12", or None (never, or unknown)."""
    try:
        return (home.path / STAMP_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def mark_built(home: GnuPGHome, generation: str | None) -> None:
    """Record the generation `home` now holds; None marks it out of date."""
    path = home.path / STAMP_FILE
    if generation is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(generation + "\n")


def generations(event: Event) -> tuple[int, int]:
    """(keys, published) generations as committed now, not as loaded earlier."""
    return db.session.execute(
        select(Event.keys_generation, Event.published_generation).where(Event.id == event.id)
    ).one()


def bump(event: Event, column) -> int:
    """Add one to the event's `column` (Event.keys_generation or
    Event.published_generation) in the current transaction; returns the new
    value. On PostgreSQL this also locks the event's row until the commit,
    so changes to one event's homes are numbered one after the other."""
    return db.session.execute(
        update(Event)
        .where(Event.id == event.id)
        .values({column: column + 1})
        .returning(column)
        .execution_options(synchronize_session=False)
    ).scalar_one()
