"""No request fails because another holds the database, and what must hold
across server processes does: rate limits, the P4 pace, a join link used once.

Two apps made with create_app on one instance are two servers as far as the
database is concerned (own engine, own connections); requests run in their
own threads, as waitress runs them.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from keyparty import create_app
from keyparty import events
from keyparty import storage
from keyparty.config import database_url
from keyparty.extensions import db
from keyparty.models import RefusalRecord
from keyparty.models import Verification
from tests.conftest import attendee_named
from tests.conftest import on_postgres
from tests.test_verification import verify


def second_server():
    """Another app on the same database, as a second server process would be."""
    return create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})


def session_of(app, attendee_id, secret=None):
    """A phone of that attendee on `app`. Its session is opened as a join
    opens one (O2: a new per-attendee secret, other sessions end), unless
    `secret` names one already open (one phone seen by two servers)."""
    from keyparty import proof
    from keyparty.models import Attendee

    attendee = db.session.get(Attendee, attendee_id)
    secret = secret or proof.open_session(attendee)
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(event_id=attendee.event_id, attendee_id=attendee_id, secret=secret)
    return client, secret


def at_once(*calls):
    """Run each call in its own thread, released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


class LockHolder:
    """Holds the database against writers for `seconds`, from another connection:
    SQLite's write lock (BEGIN IMMEDIATE), or on PostgreSQL the signer's row."""

    def __init__(self, instance, seconds, attendee_id):
        self.engine = sa.create_engine(database_url(instance))
        self.seconds, self.attendee_id = seconds, attendee_id
        self.held = threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self):
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection.connection.driver_connection.isolation_level = None
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.exec_driver_sql(
                    f"SELECT id FROM attendee WHERE id = {self.attendee_id} FOR UPDATE"
                )
            self.held.set()
            time.sleep(self.seconds)
            connection.rollback()

    def __enter__(self):
        self.thread.start()
        assert self.held.wait(30)
        return self

    def __exit__(self, *_exc):
        self.thread.join()
        self.engine.dispose()


def test_rate_limits_hold_across_server_processes(app):
    first, second = app.test_client(), second_server().test_client()
    answers = [
        (first if n % 2 else second).get(f"/join/not-a-token-{n}").status_code for n in range(10)
    ]
    assert answers == [404] * 10
    refused = first.get("/join/not-a-token-10")
    assert refused.status_code == 429
    assert "Too many requests. Wait" in refused.text
    assert second.get("/join/not-a-token-11").status_code == 429


def test_a_verification_waits_for_a_held_database_and_is_stored_once(
    app, instance, verifying_event, monkeypatch
):
    # Short waits for SQLite's lock, so the request must retry to get through.
    monkeypatch.setattr(storage, "SQLITE_BUSY_TIMEOUT_MS", 300)
    server = second_server()
    alice = attendee_named(verifying_event, "Alice")
    bob_key = attendee_named(verifying_event, "Bob").keys[0]
    alice_id, event_id = alice.id, verifying_event.id
    phone, _ = session_of(server, alice_id)
    db.session.commit()
    with LockHolder(instance, 2.0, alice_id):
        started = time.monotonic()
        response = verify(phone, verifying_event, bob_key)
        waited = time.monotonic() - started
    assert response.status_code == 302, response.text
    assert waited >= 1.5, "it waited for the lock"
    stored = db.session.scalars(
        sa.select(Verification).where(
            Verification.event_id == event_id, Verification.signer_id == alice_id
        )
    ).all()
    assert len(stored) == 1


def test_a_database_busy_for_too_long_answers_503_not_500(
    app, instance, verifying_event, monkeypatch
):
    monkeypatch.setattr(storage, "SQLITE_BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(storage, "RETRY_SECONDS", 1.0)
    if on_postgres():
        pytest.skip("PostgreSQL waits for a row lock as long as it is held")
    server = second_server()
    alice = attendee_named(verifying_event, "Alice")
    bob_key = attendee_named(verifying_event, "Bob").keys[0]
    alice_id = alice.id
    phone, _ = session_of(server, alice_id)
    db.session.commit()
    with LockHolder(instance, 3.0, alice_id):
        response = verify(phone, verifying_event, bob_key)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "very busy just now" in response.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Verification)) == 0


@pytest.mark.parametrize("round_", range(3))
def test_two_verifications_at_once_on_two_servers_keep_the_pace(app, verifying_event, round_):
    """P4: one signer sends two people at the same moment to two server
    processes; one is recorded, the other refused as rushed."""
    other = second_server()
    alice = attendee_named(verifying_event, "Alice")
    bob_key = attendee_named(verifying_event, "Bob").keys[0]
    carol_key = attendee_named(verifying_event, "Carol").keys[0]
    alice_id = alice.id
    db.session.commit()
    first, secret = session_of(app, alice_id)
    second, _ = session_of(other, alice_id, secret)
    answers = at_once(
        lambda: verify(first, verifying_event, bob_key).status_code,
        lambda: verify(second, verifying_event, carol_key).status_code,
    )
    assert sorted(answers) == [302, 409]
    db.session.commit()
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Verification)
            .where(Verification.signer_id == alice_id)
        )
        == 1
    )
    assert db.session.scalars(sa.select(RefusalRecord.rule)).all() == ["P4"]


def test_a_join_link_opened_twice_at_once_on_two_servers_opens_one_session(app, event):
    from tests.conftest import register

    register(event, "alice")
    fingerprint = event.keys[0].fingerprint
    token = events.new_join_link(event, fingerprint)
    db.session.commit()
    other = second_server()
    # Only the button spends a link (O2): both phones press it at once.
    answers = at_once(
        lambda: app.test_client().post(f"/join/{token}").status_code,
        lambda: other.test_client().post(f"/join/{token}").status_code,
    )
    assert sorted(answers) == [302, 404]


def test_a_request_run_again_after_a_conflict_counts_once_against_its_rate_limit(
    app, instance, verifying_event
):
    """The count commits before the view's own write; when that write meets a
    conflict (another connection holds the database) the view runs again, and
    must not count again: a busy phone's join was refused with 429 for it."""
    from keyparty import ratelimit
    from keyparty.models import RateLimit

    alice_id = attendee_named(verifying_event, "Alice").id
    db.session.commit()
    waits = []

    def view():
        waits.append(ratelimit.hit("test:counted-once", 2, 60))
        if len(waits) <= 3:
            # A real conflict: another connection holds what this write needs,
            # and this one does not wait for it.
            with LockHolder(instance, 0.3, alice_id):
                if on_postgres():
                    db.session.execute(sa.text("SET LOCAL lock_timeout = '20ms'"))
                else:
                    db.session.execute(sa.text("PRAGMA busy_timeout = 0"))
                try:
                    db.session.execute(
                        sa.text("UPDATE attendee SET name = name WHERE id = :id"), {"id": alice_id}
                    )
                finally:
                    if not on_postgres():
                        db.session.execute(
                            sa.text(f"PRAGMA busy_timeout = {storage.SQLITE_BUSY_TIMEOUT_MS}")
                        )
        return "done"

    with app.test_request_context("/", method="POST"):
        assert storage.retrying(view)() == "done"
    assert waits == [0, 0, 0, 0], "ran four times, allowed each time"
    db.session.rollback()
    hits = db.session.scalar(sa.select(RateLimit.hits).where(RateLimit.key == "test:counted-once"))
    assert hits == 1


def test_a_write_after_reads_that_another_commit_overtook_goes_through_first_time(
    app, instance, verifying_event
):
    """A request reads, another server commits, the request then decides and
    writes: it must not fail (SQLite cannot lift a stale snapshot to a write;
    failing meant running the whole view again, and under a room of phones
    joining at once such retries piled up to 503)."""
    from keyparty.models import Attendee

    alice_id = attendee_named(verifying_event, "Alice").id
    bob_id = attendee_named(verifying_event, "Bob").id
    db.session.commit()
    other = sa.create_engine(database_url(instance))
    runs = []

    def view():
        runs.append(1)
        # The request's reads: its snapshot.
        db.session.execute(sa.select(Attendee.name).where(Attendee.id == alice_id)).one()
        with other.begin() as connection:  # another server commits meanwhile
            connection.execute(
                sa.text("UPDATE attendee SET language = 'ja' WHERE id = :id"), {"id": bob_id}
            )
        storage.begin_writing()
        db.session.execute(
            sa.text("UPDATE attendee SET language = 'en' WHERE id = :id"), {"id": alice_id}
        )
        db.session.commit()
        return "done"

    try:
        with app.test_request_context("/", method="POST"):
            assert storage.retrying(view)() == "done"
    finally:
        other.dispose()
    assert len(runs) == 1, "the view ran once"


def test_a_join_that_meets_a_conflict_after_spending_its_link_runs_again_and_joins(
    app, event, monkeypatch
):
    """The link is spent only with the session it opens: when opening the
    session meets a database conflict the view runs again and finds the link
    unspent (it answered 404, the link lost, when the spend committed alone)."""
    from keyparty import proof
    from keyparty.models import Attendee
    from keyparty.models import RateLimit
    from tests.conftest import register

    register(event, "alice")
    fingerprint = event.keys[0].fingerprint
    token = events.new_join_link(event, fingerprint)
    db.session.commit()
    opened = proof.open_session
    runs = []

    def conflict_the_first_time(attendee):
        runs.append(1)
        if len(runs) == 1:
            # A real conflict from the database: a unique key inserted twice,
            # as when another request inserts it first.
            for _ in range(2):
                db.session.execute(
                    sa.insert(RateLimit).values(key="test:twice", window_start=0, hits=1)
                )
        return opened(attendee)

    monkeypatch.setattr(proof, "open_session", conflict_the_first_time)
    phone = app.test_client()
    response = phone.post(f"/join/{token}")
    assert response.status_code == 302, response.text
    assert response.headers["Location"].endswith("/me")
    assert len(runs) == 2
    me = phone.get("/me")
    assert me.status_code == 200 and "alice" in me.text.lower()
    db.session.rollback()
    attendee = db.session.scalar(sa.select(Attendee).where(Attendee.event_id == event.id))
    assert attendee.joined_at is not None and attendee.join_token_sha256 is None
