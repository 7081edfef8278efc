"""The host's command line, end to end: create, import, freeze, print."""

import hashlib
import os
import subprocess
import sys

import pytest
import sqlalchemy

from keyparty.config import database_url
from keyparty.extensions import db
from keyparty.models import Event
from tests.conftest import FIXTURES
from tests.conftest import fingerprint_of


def keyparty(instance, *args):
    """Run the installed command as a host would, in its own process."""
    env = {**os.environ, "KEYPARTY_INSTANCE": str(instance)}
    return subprocess.run(
        [sys.executable, "-m", "keyparty", *args], env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_the_whole_host_flow_from_the_command_line(instance, tmp_path):
    created = keyparty(instance, "event", "create", "Rust & Crypto 東京", "--date", "2026-12-05")
    assert created.returncode == 0, created.stderr
    event_id = created.stdout.strip().splitlines()[-1]
    assert event_id == "rust-crypto"

    keys = [str(FIXTURES / "attendees" / f"{name}.asc") for name in ("alice", "bob", "hanako")]
    imported = keyparty(instance, "import", event_id, *keys, str(FIXTURES / "signups.csv"))
    assert imported.returncode == 0, imported.stderr
    # O2: join links leave encrypted to their keys, never printed in clear.
    assert "/join/" not in imported.stdout
    assert len(list((instance / "events" / event_id / "outbox").glob("*.eml"))) == 3
    assert "山田花子" in imported.stdout
    assert "Missing Person" in imported.stderr

    unconfirmed = keyparty(instance, "freeze", event_id)
    assert unconfirmed.returncode != 0, "freezing with unproven entries asks first"
    assert "山田花子" in unconfirmed.stdout
    frozen = keyparty(instance, "freeze", event_id, "--yes")
    assert frozen.returncode == 0, frozen.stderr
    printed = dict(
        line.split(": ", 1) for line in frozen.stdout.splitlines() if line.startswith("SHA")
    )
    listing = tmp_path / "list.txt"
    written = keyparty(instance, "partylist", event_id, "-o", str(listing))
    assert written.returncode == 0, written.stderr
    sha256sum = subprocess.run(["sha256sum", str(listing)], capture_output=True, text=True)
    assert sha256sum.stdout.split()[0] == printed["SHA256"]
    assert hashlib.sha512(listing.read_bytes()).hexdigest() == printed["SHA512"]
    text = listing.read_text(encoding="utf-8")
    assert "Rust & Crypto 東京" in text and "山田花子 <hanako@example.jp>" in text
    assert text.count("[ ] Fingerprint OK        [ ] ID OK") == 3

    badges = tmp_path / "badges.html"
    assert keyparty(instance, "badges", event_id, "-o", str(badges)).returncode == 0
    page = badges.read_text(encoding="utf-8")
    assert page.count("<svg") == 6
    assert f"OPENPGP4FPR:{fingerprint_of('alice')}" not in page, "payload is in the code, not text"

    status = keyparty(instance, "status", event_id)
    assert "state: frozen" in status.stdout and "keys: 3" in status.stdout


def test_import_reports_each_refusal_and_exits_non_zero(runner, event):
    result = runner.invoke(
        args=[
            "import",
            event.id,
            str(FIXTURES / "attendees" / "carol.asc"),
            str(FIXTURES / "bad" / "revoked.asc"),
        ]
    )
    assert result.exit_code == 1
    assert "accepted " + fingerprint_of("carol") in result.output
    assert "revoked.asc" in result.output and "revoked by its owner" in result.output
    assert "1 accepted, 1 refused" in result.output


def test_steps_out_of_order_are_refused(runner, event):
    result = runner.invoke(args=["step", event.id, "start-verifying"])
    assert result.exit_code != 0
    assert "First: Freeze the party list" in result.output
    db.session.refresh(event)
    assert event.state == "registration"


def test_freezing_an_empty_list_is_refused(runner, event):
    result = runner.invoke(args=["freeze", event.id])
    assert result.exit_code != 0
    assert "at least two" in result.output


def test_an_unknown_event_is_named(runner):
    result = runner.invoke(args=["status", "nope"])
    assert result.exit_code != 0
    assert "No event 'nope'" in result.output


def test_partylist_before_the_freeze_says_to_freeze(runner, registered_event, tmp_path):
    result = runner.invoke(args=["partylist", registered_event.id, "-o", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "keyparty freeze" in result.output


def test_event_ids_are_unique_slugs(runner):
    first = runner.invoke(args=["event", "create", "Party"]).output.splitlines()[-1]
    second = runner.invoke(args=["event", "create", "Party"]).output.splitlines()[-1]
    assert (first, second) == ("party", "party-2")
    assert db.session.get(Event, "party-2").state == "registration"


def test_the_host_sets_contexts_and_pace(runner, event):
    result = runner.invoke(
        args=["event", "set", event.id, "--contexts", "identity,email", "--pace-gap", "30"]
    )
    assert result.exit_code == 0, result.output
    db.session.refresh(event)
    assert (event.contexts, event.pace_min_gap_seconds) == ("identity,email", 30)
    bad = runner.invoke(args=["event", "set", event.id, "--pace-window", "10"])
    assert bad.exit_code != 0 and "P4" in bad.output
    db.session.refresh(event)
    assert event.pace_window_seconds == 300, "a refused setting changes nothing"


def test_relink_ends_the_old_link_and_session(app, runner, registered_event):
    from tests.conftest import attendee_named
    from tests.conftest import phone_of
    from tests.conftest import press_join

    alice = attendee_named(registered_event, "Alice")
    old_phone = phone_of(app, alice)
    assert old_phone.get("/me").status_code == 200
    result = runner.invoke(args=["relink", registered_event.id, alice.keys[0].fingerprint])
    assert result.exit_code == 0, result.output
    token = result.output.strip().rsplit("/", 1)[1]
    assert old_phone.get("/me").status_code == 401
    new_phone = app.test_client()
    press_join(new_phone, token)
    assert new_phone.get("/me").status_code == 200


def test_an_instance_from_other_tables_is_refused_plainly(instance):
    engine = sqlalchemy.create_engine(database_url(instance))
    with engine.begin() as old:
        old.exec_driver_sql("CREATE TABLE event (id TEXT PRIMARY KEY)")
    engine.dispose()
    result = keyparty(instance, "event", "list")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "start a new instance folder" in result.stderr
