"""Fixtures: an app on a fresh instance, its client and CLI runner, and
helpers for "a registered attendee" and "a frozen event".

Every test runs with HOME pointed at an empty folder, so a gpg call that
forgot its home would show up as a ~/.gnupg there (see test_no_user_gnupg).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from pathlib import Path

import pytest
import waitress
from flask import Flask
from waitress import wasyncore

from keyparty import create_app
from keyparty import events
from keyparty import registration
from keyparty import verification
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome

FIXTURES = Path(__file__).resolve().parent.parent / "gnupg-home-fixtures"
MANIFEST = json.loads((FIXTURES / "fixtures.json").read_text(encoding="utf-8"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests (marked `slow`) first: under pytest-xdist they then run
    beside the many short ones instead of alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def short_tempdir(prefix: str = "kp") -> Path:
    """GnuPG homes need short paths (the agent socket breaks past ~100 chars)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def key_bytes(name: str) -> bytes:
    """The public key of a fixture attendee, e.g. key_bytes("alice")."""
    return fixture_bytes(f"attendees/{name}.asc")


def fingerprint_of(name: str) -> str:
    return MANIFEST["keys"][name]["fingerprint"]


@pytest.fixture(autouse=True)
def empty_home(monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GNUPGHOME", raising=False)
    yield home
    assert not (home / ".gnupg").exists(), "a gpg call ran without naming its home"


# Set by tests/pg.sh (`make test` runs the suite once on SQLite, once on this).
POSTGRES_URL = os.environ.get("KEYPARTY_TEST_POSTGRES_URL")


def on_postgres() -> bool:
    """True when this run's instances use PostgreSQL instead of SQLite files."""
    return bool(POSTGRES_URL)


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema in the run's PostgreSQL database; yields a URL
    whose connections see only it (search_path), and drops it afterwards."""
    import sqlalchemy

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL, poolclass=sqlalchemy.pool.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {name}")
    try:
        yield f"{POSTGRES_URL}&options=-csearch_path%3D{name}"
    finally:
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError), admin.begin() as connection:
            # A server a test left behind may still hold a lock: don't wait for it.
            connection.exec_driver_sql("SET lock_timeout = '5s'")
            connection.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()


@pytest.fixture
def instance(monkeypatch):
    path = short_tempdir()
    monkeypatch.setenv("KEYPARTY_INSTANCE", str(path))
    for name in ("KEYPARTY_DATABASE_URL", "KEYPARTY_HOST_PASSWORD", "KEYPARTY_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    with contextlib.ExitStack() as stack:
        if on_postgres():
            monkeypatch.setenv("KEYPARTY_DATABASE_URL", stack.enter_context(postgres_schema()))
        yield path
        # Close pooled connections of apps the test made, before the schema goes.
        gc.collect()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def app(instance):
    app = create_app(
        {
            "TESTING": True,
            # Decisions in tests draw no picture behind their back; a report page
            # waits for its drawing (tests/test_report_graph.py turns both around).
            "REPORT_DRAW_AFTER_CHANGES": False,
            "REPORT_DRAWING_WAIT_SECONDS": 120,
            "WTF_CSRF_ENABLED": False,
            "PUBLIC_URL": "http://keyparty.test:8000",
        }
    )
    with app.app_context():
        yield app
        # A report drawing a test started ends before its database goes.
        from keyparty import report

        for event_id in list(report._drawing):
            report.wait_for_drawing(event_id, timeout=60)
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def event(app):
    """An event open for registration, dated a week after the fixtures' checks need."""
    return events.create_event("Test Party", date(2026, 12, 5))


def register(event, *names: str) -> registration.RegistrationResult:
    """Register fixture attendees' keys as the host's import would."""
    inputs = [(f"{name}.asc", key_bytes(name)) for name in names]
    result = registration.register_keys(event, inputs, events.event_home(event))
    assert not result.rejected, result.rejected
    return result


@pytest.fixture
def registered_event(event):
    register(event, "alice", "bob", "carol")
    return event


@pytest.fixture
def frozen_event(registered_event):
    assert events.take_step(registered_event, "freeze") is None
    return registered_event


def attendee_named(event, first_name: str):
    return next(a for a in event.attendees if a.name.startswith(first_name))


def phone_of(app, attendee, base_url: str = "http://localhost"):
    """A test client whose session is that attendee's own, opened the real way
    (O2): the host hands out a join link (`keyparty relink`) and the phone
    presses the join button. Any other session of that attendee ends."""
    client = app.test_client()
    token = events.new_join_link(attendee.event, attendee.keys[0].fingerprint)
    press_join(client, token, base_url=base_url)
    return client


def csrf_of(page: str) -> str:
    """The CSRF token of a page's form (empty when the app does not ask for one)."""
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    return found.group(1) if found else ""


def challenge_on(page: str) -> str:
    """The armored challenge message shown on a proof page."""
    import html

    found = re.search(r'<pre class="armored">(-----BEGIN PGP MESSAGE-----.*?)</pre>', page, re.S)
    assert found, "no encrypted challenge on the page"
    return html.unescape(found.group(1))


def code_in(letter: str) -> str:
    """The one-time code printed in a decrypted challenge."""
    return re.search(r"one-time code: ([A-Z0-9-]+)", letter).group(1)


def prove_by_code(client, prove_url: str, name: str):
    """The holder of fixture key `name` decrypts the challenge on the proof
    page with their own gpg and types the code: returns the response."""
    page = client.get(prove_url)
    assert page.status_code == 200, page.text
    home = secret_home(name)
    try:
        letter = decrypt_with(home, challenge_on(page.text))
    finally:
        stop_agent(home)
    return client.post(prove_url, data={"csrf_token": csrf_of(page.text), "code": code_in(letter)})


def press_join(client, token: str, switch: bool = False, base_url: str = "http://localhost"):
    """Open a join link and press its button, as a phone does; the response
    must be the redirect to /me."""
    page = client.get(f"/join/{token}", base_url=base_url)
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_of(page.text), **({"switch": "y"} if switch else {})}
    joined = client.post(f"/join/{token}", data=data, base_url=base_url)
    assert joined.status_code == 302 and joined.location.endswith("/me"), joined.text
    return joined


def secret_home(name: str) -> GnuPGHome:
    """A fixture attendee's own machine: their secret key in a fresh short home.
    Stop its agent with stop_agent(home)."""
    home = GnuPGHome(short_tempdir("kps"), agent=True)
    home.import_keys((FIXTURES / "attendees" / f"{name}.secret.asc").read_bytes(), options=None)
    return home


def stop_agent(home: GnuPGHome) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home.path), "--kill", "gpg-agent"], check=False)
    shutil.rmtree(home.path, ignore_errors=True)


def decrypt_with(home: GnuPGHome, armored: str | bytes) -> str:
    """What a key holder reads when they run `gpg --decrypt` on a message."""
    data = armored.encode() if isinstance(armored, str) else armored
    done = subprocess.run(
        ["gpg", "--homedir", str(home.path), "--batch", "--quiet", "--decrypt"],
        input=data,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


def clearsign_with(home: GnuPGHome, text: str) -> str:
    """`gpg --clearsign` of `text` by the home's key, as a key holder runs it."""
    done = subprocess.run(
        ["gpg", "--homedir", str(home.path), "--batch", "--clearsign"],
        input=text.encode(),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


@pytest.fixture
def verifying_event(frozen_event):
    """Frozen, every owner confirmed their entry (T4), verifying started."""
    from keyparty.models import utcnow

    for attendee in frozen_event.attendees:
        attendee.entry_confirmed_at = utcnow()
    db.session.commit()
    assert events.take_step(frozen_event, "start-verifying") is None
    return frozen_event


@dataclass
class LiveServer:
    url: str
    app: Flask


@pytest.fixture
def live_server(instance) -> Iterator[LiveServer]:
    """keyparty on http://127.0.0.1:PORT (a secure context for the camera)."""
    app = create_app({"TESTING": True})
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    url = f"http://127.0.0.1:{server.effective_port}"
    app.config["PUBLIC_URL"] = url
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    yield LiveServer(url=url, app=app)
    # Close every socket from the server's own loop thread, which then ends.
    server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map, ignore_all=True))
    thread.join(timeout=10)
    server.task_dispatcher.shutdown(timeout=5)
    with app.app_context():
        db.engine.dispose()


def at(event, minutes):
    """A moment during the event (the rules take an injected clock)."""
    return datetime.combine(event.date, time(10, 0), UTC) + timedelta(minutes=minutes)


def record(event, signer_name, owner_name, uid_index, context, basis, minutes):
    signer = attendee_named(event, signer_name)
    user_id = attendee_named(event, owner_name).keys[0].user_ids[uid_index]
    made, refusal = verification.record(signer, signer, user_id, context, basis, at(event, minutes))
    assert refusal is None, refusal
    return made


def signing_event_on_server(name: str, attendees=("alice", "bob")):
    """In an app context (a live server's): an event dated today and in signing,
    every entry confirmed, where Alice verified Bob's first user ID in person."""
    from keyparty.models import utcnow

    event = events.create_event(name, date.today())
    for who in attendees:
        registration.register_keys(event, [(who, key_bytes(who))], events.event_home(event))
    assert events.take_step(event, "freeze") is None
    for attendee in event.attendees:
        attendee.entry_confirmed_at = utcnow()
    db.session.commit()
    assert events.take_step(event, "start-verifying") is None
    record(event, "Alice", "Bob", 0, "identity", "photo-id", 0)
    assert events.take_step(event, "cool-off") is None
    assert events.take_step(event, "start-signing") is None
    return event


@pytest.fixture
def signing_event(verifying_event, monkeypatch):
    """Alice verified Bob's two user IDs (two contexts on the first) and
    Carol's first; the event is now signing, on its day."""
    event = verifying_event
    record(event, "Alice", "Bob", 0, "identity", "photo-id", 0)
    record(event, "Alice", "Bob", 0, "email", "photo-id", 1)
    record(event, "Alice", "Bob", 1, "identity", "photo-id", 1)
    record(event, "Alice", "Carol", 0, "identity", "known-personally", 5)
    assert events.take_step(event, "cool-off") is None
    assert events.take_step(event, "start-signing") is None
    # The event was "today": the signing window is open now.
    event.date = date.today()
    db.session.commit()
    return event


@pytest.fixture
def alice_home():
    """Alice's own machine: her secret key, nothing else."""
    home = secret_home("alice")
    yield home
    stop_agent(home)


@pytest.fixture
def certified_event(signing_event, alice_home, tmp_path):
    """Alice certified what she verified (Bob's two user IDs, one of them in two
    contexts, and Carol's first) and intake accepted all four."""
    from keyparty import intake
    from keyparty import signing
    from keyparty.bundle import bundle_for

    bundle = bundle_for(attendee_named(signing_event, "Alice"), "http://keyparty.test:8000")
    signers = signing.choose_signers(alice_home, bundle, [])
    report = signing.certify_all(alice_home, bundle, signers)
    assert len(report.made) == 4, report
    files = signing.write_files(alice_home, bundle, signers, tmp_path / "certs")
    outcomes = intake.take_in(signing_event, [(p.name, p.read_bytes()) for p in files])
    assert [o.status for o in outcomes] == ["accepted"] * 4
    return signing_event


@pytest.fixture
def homes(signing_event, alice_home):
    """Alice's machine, also holding Carol's secret key and a stranger's (signer1)
    that is not registered: the keys a careless or malicious uploader could use."""
    alice_home.import_keys(
        b"".join(k.armored.encode() for k in signing_event.keys), options="self-sigs-only"
    )
    for name in ("carol", "signer1"):
        alice_home.import_keys((FIXTURES / "attendees" / f"{name}.secret.asc").read_bytes(), None)
    return alice_home


@pytest.fixture(params=["api", "intake-command"])
def door(request, app, runner, signing_event, tmp_path):
    """One of the two doors a certification comes in by (tests/intake_doors.py)."""
    from tests.intake_doors import Door

    return Door(request.param, app, runner, signing_event, tmp_path)
