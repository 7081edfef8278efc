"""Database set-up: tables, and SQLite tuned for a laptop serving a room.

SQLite runs in WAL mode (readers never wait for the writer). A transaction
that may write begins with BEGIN IMMEDIATE: it takes the write lock up front
instead of upgrading a read lock later, which is where SQLite writers
deadlock and fail with "database is locked". Reads (GET requests) use a
plain BEGIN. PostgreSQL needs none of this.
"""

from __future__ import annotations

import functools

from flask import Flask
from flask import has_request_context
from flask import request
from sqlalchemy import event

from keyparty import migrations
from keyparty import models  # noqa: F401  (registers the tables for create_all)
from keyparty.extensions import db

READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")


def init_app(app: Flask) -> None:
    """Tune the connection, then create, adopt or upgrade the schema
    (keyparty.migrations); what was done is kept for `keyparty serve` and
    `keyparty db upgrade` to say (app.extensions["keyparty.schema"])."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        app.extensions["keyparty.schema"] = migrations.bring_up_to_date(engine)


def _sqlite_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
    # transaction handling would always use a deferred BEGIN).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def _sqlite_begin(connection) -> None:
    reading = (
        has_request_context()
        and request.method in READ_ONLY_METHODS
        and not getattr(request, "keyparty_writes", False)
    )
    connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def writes(view):
    """Mark a GET view that writes (a join link redeems its token), so its
    transaction takes the write lock up front like a POST's."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        request.keyparty_writes = True
        return view(*args, **kwargs)

    return wrapper
