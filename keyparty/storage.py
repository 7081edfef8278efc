"""Database set-up: the schema (keyparty.migrations), SQLite tuned for a room
of phones, and requests that never fail because another holds the database.

SQLite runs in WAL mode: readers never wait for the writer. A request's
transaction begins deferred (plain BEGIN) and takes SQLite's write lock at
its first write, so the lock is held only from the first INSERT/UPDATE to
the commit, never while a request reads, renders or runs gpg. A writer whose
snapshot another commit overtook gets "database is locked" at once (SQLite
cannot upgrade a stale snapshot); `retrying` then runs the whole view again
on a fresh transaction. Commands outside a request (the host's CLI, run one
at a time) begin with BEGIN IMMEDIATE instead and wait for the lock rather
than retry.

PostgreSQL runs at READ COMMITTED; where two writers race on one decision
(P4 pace, a join link redeemed once, an owner's decision) the code locks the
row (SELECT … FOR UPDATE), and serialization failures, deadlocks and a
unique key inserted by a concurrent request are retried the same way.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import time
from pathlib import Path

from flask import Flask
from flask import has_request_context
from flask import request
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError

from keyparty import migrations
from keyparty import models  # noqa: F401  (registers the tables for create_all)
from keyparty.extensions import db

# SQLSTATEs of a conflict that a second try resolves: serialization failure,
# deadlock, lock not available, and a unique key another request inserted
# first (the second try finds it and answers as for a replay).
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "23505"}
# How long a request keeps trying before it answers 503 (never 500).
RETRY_SECONDS = 20.0
# One wait for SQLite's write lock, in milliseconds; a request retries after it.
SQLITE_BUSY_TIMEOUT_MS = 5000


# Execution option for a connection that only reads, outside a request.
READ_ONLY = "keyparty_read_only"


class DatabaseBusy(RuntimeError):
    """The database stayed busy for RETRY_SECONDS; the request changed nothing."""


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM)
# SQLite's own words for the same (it reports them as its error codes; a WAL
# database on a read-only file system cannot even be opened).
DISK_MESSAGES = (
    "database or disk is full",
    "readonly database",
    "disk i/o error",
    "unable to open database file",
)
DISK_FULL = "The server's disk is full; nothing was stored. Tell the host."


def is_disk_full(error: BaseException) -> bool:
    """True when `error` says the instance cannot be written (disk full,
    quota, read-only file system, file size limit), from Python or SQLite."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
            return True
        if any(m in str(error).lower() for m in DISK_MESSAGES):
            return True
        error = error.__cause__ or error.__context__ or getattr(error, "orig", None)
    return False


def create_private_file(path: Path, data: bytes = b"") -> None:
    """Create `path` readable by this user only from the first moment (mode
    0600 given to open(2), no chmod afterwards); nothing if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)


def init_app(app: Flask) -> None:
    """Tune the connection, then create, adopt or upgrade the schema
    (keyparty.migrations); what was done is kept for `keyparty serve` and
    `keyparty db upgrade` to say (app.extensions["keyparty.schema"])."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite" and engine.url.database:
            # SQLite makes its -wal and -shm files with the database's mode.
            create_private_file(Path(engine.url.database))
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        app.extensions["keyparty.schema"] = migrations.bring_up_to_date(engine)


def _sqlite_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
    # transaction handling would begin only before a write).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # Deleted rows are overwritten, not left in free space (keyparty purge).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:
    # In a request, or a connection opened to read (READ_ONLY): deferred, the
    # write lock comes with the first write (and a stale snapshot is retried),
    # unless the request said it writes now (begin_writing). Elsewhere: the
    # lock up front, waited for.
    deferred = connection.get_execution_options().get(READ_ONLY) or (
        has_request_context() and not request.environ.pop(_WRITE_NEXT, False)
    )
    connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


# Set in a request's WSGI environ by begin_writing: its next SQLite transaction
# begins IMMEDIATE.
_WRITE_NEXT = "keyparty.write_next"


def begin_writing() -> None:
    """Call where a request's reads end and its decision and write begin (a
    verification, a join, a rate-limit count), before it changed anything.

    On SQLite the transaction read so far ends here and the next one begins
    with BEGIN IMMEDIATE: the request then waits for the write lock (busy
    timeout) and decides on what is committed now. Without it, a request
    whose reads another commit overtook fails at its first write at once
    (SQLite cannot lift a stale snapshot to a write) and the whole view runs
    again: under a room of phones joining at once, such retries pile up
    until requests answer 503. On PostgreSQL nothing happens: READ COMMITTED
    and row locks (SELECT … FOR UPDATE) do this there. Outside a request
    every SQLite transaction already begins IMMEDIATE.
    """
    if not has_request_context() or db.session.get_bind().dialect.name != "sqlite":
        return
    db.session.commit()
    request.environ[_WRITE_NEXT] = True


def connection_shortfall(engine, workers: int, threads: int) -> str | None:
    """On PostgreSQL: a sentence when `workers` server processes, each with a
    pool of one connection per thread plus config.POOL_OVERFLOW, may open more
    connections than the server takes (max_connections less the superuser
    reserve); past that, requests fail with "too many clients". None when
    they fit, and always on SQLite (a file, no connection limit)."""
    from keyparty.config import POOL_OVERFLOW

    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        allowed = int(connection.exec_driver_sql("SHOW max_connections").scalar())
        reserved = int(connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar())
    available = allowed - reserved
    wanted = workers * (threads + POOL_OVERFLOW)
    if wanted <= available:
        return None
    return (
        f"PostgreSQL takes {available} connections (max_connections {allowed}, "
        f"{reserved} reserved); {workers} worker(s) x ({threads} threads + {POOL_OVERFLOW}) "
        f"may open {wanted}. Raise max_connections to at least {wanted + reserved} "
        "(plus what other clients use), or run fewer workers or threads."
    )


def writes(view):
    """Mark a GET view that writes. Kept for the views that say so; every
    request now takes the write lock at its first write, whatever its method."""
    return view


def is_transient(error: DBAPIError) -> bool:
    """True for a conflict that a second try of the same request resolves:
    SQLite's "database is locked" (the write lock held too long by another,
    or this transaction's snapshot overtaken by another's commit), a unique
    key another request inserted first (the second try finds it), or one of
    the PostgreSQL SQLSTATEs above."""
    original = getattr(error, "orig", None)
    if getattr(original, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    if isinstance(error, OperationalError):
        return "locked" in str(original)
    return _is_unique(error)


def _is_unique(error: DBAPIError) -> bool:
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) == "23505" or (
        isinstance(error, IntegrityError) and "UNIQUE constraint failed" in str(original)
    )


def retrying(view):
    """Run the view again, on a fresh transaction, after a transient conflict.

    A view's writes are one transaction that commits at its end, so a
    conflict rolls all of them back and running the view again is safe.
    After RETRY_SECONDS it raises DatabaseBusy (answered 503, Retry-After).
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        # Keep the body: a second run must read what the first one read
        # (forms are parsed from it too). MAX_CONTENT_LENGTH bounds it.
        request.get_data(cache=True)
        deadline = time.monotonic() + RETRY_SECONDS
        attempt = 0
        while True:
            try:
                return view(*args, **kwargs)
            except DBAPIError as error:
                db.session.rollback()
                # A unique key twice in a row is no race: a real fault, shown.
                if not is_transient(error) or (_is_unique(error) and attempt >= 2):
                    raise
                if time.monotonic() >= deadline:
                    raise DatabaseBusy(str(error.orig)) from error
            attempt += 1
            # Back off with jitter, so that many requests' retries spread out.
            time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))

    return wrapper


def retry_conflicts(app: Flask) -> None:
    """Wrap every view in `retrying`; answer DatabaseBusy with 503 and Retry-After."""
    from flask import jsonify
    from flask import render_template

    from keyparty.i18n import gettext

    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = retrying(view)

    @app.errorhandler(DatabaseBusy)
    def busy(_error):
        message = gettext("The event is very busy just now. Wait a few seconds and try again.")
        if request.blueprint == "api":
            response = jsonify(error=message)
        else:
            response = app.make_response(
                render_template("message.html", title=gettext("Busy"), message=message)
            )
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
