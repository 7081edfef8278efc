"""Files and secrets: private from the first moment, purged for good, and a
full disk said as a full disk."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from keyparty import delivery
from keyparty import events
from keyparty.extensions import db
from keyparty.models import Certification
from tests.conftest import FIXTURES
from tests.conftest import on_postgres
from tests.conftest import short_tempdir

# The database file, its WAL and its free pages live in the instance only on
# SQLite; on PostgreSQL they are the database server's (pg_dump, VACUUM there).
sqlite_file_only = pytest.mark.skipif(
    on_postgres(), reason="the database is PostgreSQL's, not a file in the instance"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@sqlite_file_only
def test_instance_database_and_key_are_private_from_the_start(tmp_path):
    instance = tmp_path / "fresh" / "instance"
    # umask 0: keyparty must not rely on the user's umask for any of these.
    script = (
        "import os; os.umask(0)\n"
        "from keyparty import create_app, events\n"
        "app = create_app()\n"
        "with app.app_context(): events.create_event('Private Party')\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "KEYPARTY_INSTANCE": str(instance)},
        check=True,
    )
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600
    assert mode(instance / "keyparty.sqlite3") == 0o600
    for extra in ("keyparty.sqlite3-wal", "keyparty.sqlite3-shm"):
        if (instance / extra).exists():
            assert mode(instance / extra) == 0o600, extra


def test_an_open_instance_folder_is_closed(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    instance.chmod(0o755)
    subprocess.run(
        [sys.executable, "-m", "keyparty", "init"],
        env={**os.environ, "KEYPARTY_INSTANCE": str(instance)},
        check=True,
        capture_output=True,
    )
    assert mode(instance) == 0o700


def personal_strings(event) -> set[bytes]:
    found = set()
    for attendee in event.attendees:
        found.add(attendee.name.encode())
        if attendee.email:
            found.add(attendee.email.encode())
    for key in event.keys:
        for uid in key.user_ids:
            found.add(uid.text.encode())
            if uid.email:
                found.add(uid.email.encode())
    return found


@sqlite_file_only
def test_purge_leaves_no_name_email_or_user_id_in_any_file(certified_event, runner, app):
    event = certified_event
    # Mail out the email certifications (to the outbox: addresses and names in it).
    delivery.deliver(event, "http://keyparty.test:8000", None, events.event_files(event) / "outbox")
    assert list((events.event_files(event) / "outbox").glob("*.eml"))
    for c in db.session.query(Certification).filter_by(event_id=event.id):
        c.owner_decision = "accepted"
    db.session.commit()
    secrets = personal_strings(event)
    assert len(secrets) >= 6
    instance = Path(app.instance_path)
    assert any(s in (instance / "keyparty.sqlite3").read_bytes() for s in secrets) or any(
        s in (instance / "keyparty.sqlite3-wal").read_bytes() for s in secrets
    )
    assert events.take_step(event, "close") is None
    result = runner.invoke(args=["purge", event.id, "--yes"])
    assert result.exit_code == 0, result.output
    assert "generated files" in result.output
    # Like `strings` over every file left: every byte of every file is searched.
    leftovers = []
    for path in instance.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leftovers += [(path.name, s) for s in secrets if s in data]
            leftovers += [(path.name, s) for s in secrets if s.decode().encode("utf-16-le") in data]
    assert leftovers == []
    kept = events.event_files(event) / "final"
    assert (kept / "keyring.asc").exists() and (kept / "totals.json").exists()


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare (util-linux)")
@sqlite_file_only
def test_a_full_or_read_only_disk_is_said_plainly(tmp_path):
    mount = short_tempdir("kpfull")
    probe = Path(__file__).with_name("disk_full_probe.py")
    ran = subprocess.run(
        ["unshare", "-rm", sys.executable, str(probe), str(mount)]
        + [str(FIXTURES / "attendees" / "hanako.asc")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    if ran.returncode != 0 and "mount" in ran.stderr and "ermission" in ran.stderr:
        pytest.skip("this machine allows no tmpfs mount in a user namespace")
    assert ran.returncode == 0, ran.stderr[-3000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    for case in ("full", "read_only"):
        status, page = seen[case]
        assert status == 507, (case, page[-800:])
        assert "disk is full; nothing was stored" in page
        assert "GnuPG" not in page and "key" not in page.split("<main")[-1].lower()
    assert seen["keys_after_full"] == 0 and seen["keys_after_read_only"] == 0
    assert seen["home_keys"] == 0
