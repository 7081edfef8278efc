"""Schema migrations (Alembic): bring an instance's database to this keyparty's schema.

Revisions live in keyparty/migrations/versions; 0001 is the schema of the
first release exactly (keyparty_schema version 1, before migrations). A new
column or table lands as a new revision (README, Development: `alembic
revision --autogenerate`), so upgrading keyparty never strands an event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import inspect

if TYPE_CHECKING:
    from alembic.config import Config

BASELINE = "0001"
# The newest revision in versions/. keyparty checks it at every start without
# importing Alembic (a second of start-up on a busy machine); Alembic is
# loaded only to migrate. tests/test_migrations.py fails until a new
# revision's id is written here.
HEAD = "0009"
# What releases before the migrations find in keyparty_schema (see 0002).
MARKER_VERSION = 2
# PostgreSQL advisory lock held while one process migrates: several server
# processes starting together upgrade once, the others wait and find it done.
_LOCK = 0x6B70_6D67  # "kpmg"


class SchemaMismatch(RuntimeError):
    """The database is not one this keyparty can use or upgrade."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for keyparty's revisions, on `connection` if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision in versions/, as Alembic reads it (HEAD should say the same)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(connection: Connection) -> str | None:
    """The revision the database is at (None when Alembic never stamped it)."""
    if "alembic_version" not in inspect(connection).get_table_names():
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def bring_up_to_date(engine: Engine) -> str | None:
    """Create, adopt or upgrade the database so it has this keyparty's schema.

    - empty: create every table and stamp the newest revision;
    - made by the first release (keyparty_schema version 1, no Alembic):
      stamp the baseline, then upgrade;
    - behind: upgrade in place; at the newest revision: nothing.

    Returns one sentence saying what was done, or None when nothing was.
    Raises SchemaMismatch (with what to do) for tables of some other program
    or a database a newer keyparty upgraded.
    """
    newest = HEAD
    # Most starts find the database current: say so without taking a lock, so
    # a server starting beside busy ones neither waits nor makes them wait.
    with engine.connect().execution_options(keyparty_read_only=True) as connection:
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" in tables and current(connection) == newest:
            return None
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from keyparty.extensions import db
    from keyparty.models import schema_marker

    with _migrating(engine) as connection:
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" in tables:
            found = current(connection)
            if found == newest:
                return None
            try:
                ScriptDirectory.from_config(alembic_config()).get_revision(found)
            except CommandError:
                raise SchemaMismatch(
                    f"The database is at schema revision {found}, which this keyparty does not "
                    f"know (it knows up to {newest}): a newer keyparty upgraded it. Use that "
                    "keyparty, or start a new instance folder (KEYPARTY_INSTANCE)."
                ) from None
            command.upgrade(alembic_config(connection), "head")
            return f"Upgraded the database from schema revision {found} to {newest}."
        if "keyparty_schema" in tables:
            version = connection.exec_driver_sql("SELECT version FROM keyparty_schema").scalar()
            if version != 1:
                raise SchemaMismatch(_other_tables(f"version {version}"))
            command.stamp(alembic_config(connection), BASELINE)
            command.upgrade(alembic_config(connection), "head")
            return (
                "Upgraded the database made by keyparty 0.1 (schema version 1) to schema "
                f"revision {newest}."
            )
        if tables & {"event", "attendee", "key"}:
            raise SchemaMismatch(_other_tables("an earlier one"))
        db.metadata.create_all(connection)
        connection.execute(schema_marker.insert().values(version=MARKER_VERSION))
        command.stamp(alembic_config(connection), "head")
        return f"Created the database at schema revision {newest}."


@contextlib.contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for the whole migration, held by one process at a time."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one;
            # with foreign keys on, that drop would cascade into the rows of
            # every table pointing at it. The pragma only works outside a
            # transaction, so it is set on the driver's connection.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            # SQLite: keyparty's "begin" hook makes this BEGIN IMMEDIATE, which
            # already keeps a second process out until this one commits.
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
                yield connection
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _other_tables(found: str) -> str:
    return (
        f"The database was made by {found} of keyparty's tables, which this keyparty cannot "
        "upgrade. Use the keyparty that made it, or start a new instance folder "
        "(KEYPARTY_INSTANCE)."
    )
