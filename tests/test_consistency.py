"""The database is the record; both GnuPG homes are rebuilt to match it.

`keyparty check` says what differs, `keyparty rebuild-home` repairs it, and
every change writes the database first and the home second.
"""

from __future__ import annotations

import os
import time

import pytest

from keyparty import consistency
from keyparty import events
from keyparty import exports
from keyparty import openpgp
from keyparty import registration
from keyparty.extensions import db
from keyparty.gpg import StagedHome
from keyparty.models import Certification
from tests.conftest import FIXTURES
from tests.conftest import attendee_named
from tests.conftest import fingerprint_of
from tests.conftest import key_bytes


def third_party_signatures(data: bytes) -> int:
    """Certifications by anyone but the key owner in an exported keyring."""
    count = 0
    for block in openpgp.read_keys(data) if data else []:
        for entry in openpgp.user_id_signatures(block):
            count += sum(s.issuer_fingerprint != block.fingerprint for s in entry.signatures)
    return count


def bobs_certifications(event) -> list[Certification]:
    bob = attendee_named(event, "Bob")
    return [
        c
        for c in db.session.query(Certification).filter_by(event_id=event.id, status="accepted")
        if c.key and c.key.attendee_id == bob.id
    ]


def test_a_crash_after_accepting_is_found_by_check_and_repaired(certified_event, runner):
    event = certified_event
    assert third_party_signatures(exports.keyring(event, armor=False)) == 0
    # Bob accepts three certifications and the server dies before the
    # published home changes: the database says accepted, the home does not.
    for c in bobs_certifications(event):
        c.owner_decision = "accepted"
    db.session.commit()

    checked = runner.invoke(args=["check", event.id])
    assert checked.exit_code == 1, checked.output
    assert checked.output.count("certification missing from the published home") == 3
    assert "rebuild-home" in checked.output

    rebuilt = runner.invoke(args=["rebuild-home", event.id])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "4 accepted certifications, 3 published" in rebuilt.output
    checked = runner.invoke(args=["check", event.id])
    assert checked.exit_code == 0, checked.output
    assert "both GnuPG homes match the database" in checked.output
    assert third_party_signatures(exports.keyring(event, armor=False)) == 3


def test_rebuild_keeps_accepted_certifications_in_the_working_home(certified_event, runner):
    event = certified_event
    working = events.event_home(event)
    assert consistency.actual(working).certifications.total() == 4
    (working.path / "pubring.kbx").unlink()
    checked = runner.invoke(args=["check"])
    assert checked.exit_code == 1
    assert "key missing from the working home" in checked.output
    assert runner.invoke(args=["rebuild-home"]).exit_code == 0
    assert consistency.actual(working).certifications.total() == 4
    assert consistency.check(event) == []


def test_check_names_what_the_database_does_not_hold(registered_event, runner):
    # A key that reached the home by a path that skipped the database.
    events.event_home(registered_event).import_keys(key_bytes("dalia"))
    checked = runner.invoke(args=["check", registered_event.id])
    assert checked.exit_code == 1
    assert f"key not in the database but in the working home: {fingerprint_of('dalia')}" in (
        checked.output
    )


def test_rebuild_home_clears_what_crashes_left(registered_event, runner, app):
    base = events.event_home(registered_event).path.parent
    old = time.time() - 3600
    for name in (".stage-abc123", ".scratch-def456"):
        (base / name).mkdir()
        os.utime(base / name, (old, old))
    (base / ".stage-young").mkdir()  # a running server's: left alone
    rebuilt = runner.invoke(args=["rebuild-home", registered_event.id])
    assert "Removed 2 folders left by an interrupted change" in rebuilt.output
    assert sorted(p.name for p in base.glob(".s*")) == [".stage-young"]


@pytest.mark.parametrize("bad", ["expired.asc", "revoked.asc", "future.asc", "two-keys.asc"])
def test_a_refused_key_leaves_nothing_in_the_home(registered_event, bad):
    home = events.event_home(registered_event)
    before = (home.path / "pubring.kbx").read_bytes()
    data = (FIXTURES / "bad" / bad).read_bytes()
    for _ in range(3):
        result = registration.register_keys(
            registered_event, [("paste", data)], home, one_key=True, name="X"
        )
        assert result.rejected and not result.accepted
    assert (home.path / "pubring.kbx").read_bytes() == before
    assert consistency.check(registered_event) == []
    assert not list(home.path.parent.glob(".stage-*"))


def test_a_failure_between_database_and_home_leaves_the_database_the_record(
    registered_event, monkeypatch
):
    home = events.event_home(registered_event)

    def power_cut(self):
        raise OSError("the laptop lost power")

    monkeypatch.setattr(StagedHome, "commit", power_cut)
    with pytest.raises(OSError):
        registration.register_keys(registered_event, [("dalia.asc", key_bytes("dalia"))], home)
    monkeypatch.undo()
    dalia = fingerprint_of("dalia")
    assert dalia in {k.fingerprint for k in registered_event.keys}, "the database kept it"
    assert dalia not in {r.fingerprint for r in home.list_keys()}
    found = [str(d) for d in consistency.check(registered_event)]
    assert f"key missing from the working home: {dalia}" in found
    consistency.rebuild(registered_event)
    assert consistency.check(registered_event) == []
    assert dalia in {r.fingerprint for r in home.list_keys()}


def test_serve_repairs_the_homes_at_start_and_says_so(certified_event, instance):
    from tests.test_serve import fetch
    from tests.test_serve import serve
    from tests.test_serve import stop

    event = certified_event
    exports.keyring(event)
    for c in bobs_certifications(event):
        c.owner_decision = "accepted"
    db.session.commit()
    db.session.remove()
    process, port = serve(instance)
    try:
        fetch(f"http://127.0.0.1:{port}/")
    finally:
        output = stop(process)
    assert f"{event.id}: the GnuPG homes differ from the database in 3 place(s)" in output
    assert f"{event.id}: rebuilt; the homes now match the database." in output
    assert consistency.check(db.session.get(type(event), event.id)) == []
