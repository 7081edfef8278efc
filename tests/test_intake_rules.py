"""Every rule holds at intake, with the right rule id and sentence, through
both doors (the upload API and `keyparty intake`); certifications made with
real gpg, timing cases with --faked-system-time."""

from __future__ import annotations

import re
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest

from keyparty import events
from keyparty import intake
from keyparty import openpgp
from keyparty import signing
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.models import Certification
from keyparty.models import RefusalRecord
from keyparty.rules import moment_text
from keyparty.verification import active_verifications
from tests.conftest import attendee_named
from tests.conftest import phone_of
from tests.intake_doors import Door
from tests.test_intake_forgeries import BOB_UID
from tests.test_intake_forgeries import certify
from tests.test_intake_forgeries import fingerprint
from tests.test_intake_forgeries import tsign

CAROL_UID = "Carol Example <carol@example.org>"


def alice_certifies(event, home, **options) -> bytes:
    return certify(home, event, fingerprint(event, "Alice"), **options)


def newest_certification(data: bytes, before: bytes) -> bytes:
    """The one certification in `data` that `before` did not hold, as its own upload (P2)."""
    (block,) = openpgp.read_keys(data)
    (entry,) = openpgp.user_id_signatures(block)
    (new,) = [s for s in entry.signatures if s.raw not in before]
    return openpgp.minimal_key(block, entry.user_id, [new])


def faked(moment: datetime) -> list[str]:
    return ["--faked-system-time", moment.strftime("%Y%m%dT%H%M%S")]


def rows(event, status=None) -> list[Certification]:
    query = db.select(Certification).where(Certification.event_id == event.id)
    if status:
        query = query.where(Certification.status == status)
    return db.session.scalars(query.order_by(Certification.id)).all()


def keyring(event) -> bytes:
    return events.event_home(event).export([k.fingerprint for k in event.keys])


def assert_refused(door, event, data, rule, words, sender="Alice"):
    before = keyring(event)
    answer = door(data, sender)
    assert (answer.status, answer.rule) == ("refused", rule), answer.message
    assert words in answer.message
    assert not answer.ok
    assert keyring(event) == before
    return answer


def assert_accepted(door, data, sender="Alice"):
    answer = door(data, sender)
    assert answer.status == "accepted" and answer.ok, answer.message
    return answer


# --- 1. D3/P6: made after the host started signing, within the window ------


def test_the_host_starting_signing_records_the_moment(verifying_event):
    assert events.take_step(verifying_event, "cool-off") is None
    assert verifying_event.signing_started_at is None
    now = datetime(2026, 12, 6, 9, 15, 30, 123456, tzinfo=UTC)
    assert events.take_step(verifying_event, "start-signing", now) is None
    assert verifying_event.signing_started_at == datetime(2026, 12, 6, 9, 15, 30)
    start, end = intake.signing_window(verifying_event)
    assert (start, end) == (now.replace(microsecond=0), datetime(2027, 1, 5, 9, 15, 30, tzinfo=UTC))


def test_an_event_in_signing_from_before_keeps_its_old_window_start(signing_event):
    signing_event.signing_started_at = None
    signing_event.date = date(2026, 12, 5)
    start, end = intake.signing_window(signing_event)
    assert start == datetime(2026, 12, 5, tzinfo=UTC)
    assert end == start + timedelta(days=30)


def test_a_certification_made_before_signing_started_is_d3(door, signing_event, homes):
    before = signing_event.signing_started_at - timedelta(minutes=10)
    data = alice_certifies(signing_event, homes, extra=faked(before))
    answer = assert_refused(door, signing_event, data, "D3", "in the calm of the signing phase")
    assert "before the host started signing" in answer.message
    # Made now, a certification of her other verified user ID is accepted.
    assert_accepted(
        door, alice_certifies(signing_event, homes, uid="Bob Example <bob@example.net>")
    )


def test_sign_and_intake_state_the_same_end_of_the_window(door, signing_event, homes):
    bundle = bundle_for(attendee_named(signing_event, "Alice"), "http://keyparty.test:8000")
    _, end = intake.signing_window(signing_event)
    assert signing.window_end_text(bundle) == moment_text(end)
    with pytest.raises(signing.SigningError) as stopped:
        signing.check_bundle(bundle, now=end + timedelta(seconds=1))
    assert moment_text(end) in str(stopped.value)
    late = alice_certifies(signing_event, homes, extra=faked(end + timedelta(hours=2)))
    answer = assert_refused(door, signing_event, late, "D3", "after the signing window closed")
    assert f"({moment_text(end)})" in answer.message


# --- 2. C1: one context, from the list fixed at the freeze ------------------


def test_contexts_are_fixed_at_the_freeze_on_the_command_line(runner, frozen_event):
    result = runner.invoke(args=["event", "set", frozen_event.id, "--contexts", "identity"])
    assert result.exit_code != 0
    assert "C1" in result.output and "fixed since the party list was frozen" in result.output
    db.session.expire_all()
    assert frozen_event.contexts == "identity,email,pseudonym"
    # The same list with a new pace is fine.
    result = runner.invoke(
        args=[
            "event",
            "set",
            frozen_event.id,
            "--contexts",
            "identity,email,pseudonym",
            "--pace-gap",
            "30",
        ]
    )
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert frozen_event.pace_min_gap_seconds == 30


def test_contexts_are_fixed_at_the_freeze_on_the_host_page(client, frozen_event):
    page = client.get(f"/host/e/{frozen_event.id}").text
    assert "C1: the contexts are fixed since the freeze" in page
    assert re.search(r'<input[^>]*id="contexts"[^>]*readonly', page)
    data = {"contexts": "identity,email", "pace_gap": "20", "pace_window": "300", "pace_max": "10"}
    page = client.post(f"/host/e/{frozen_event.id}/settings", data=data, follow_redirects=True)
    assert "C1: The contexts are fixed since the party list was frozen" in page.text
    db.session.expire_all()
    assert frozen_event.contexts == "identity,email,pseudonym"


def test_two_context_notations_are_c1(door, signing_event, homes):
    data = alice_certifies(
        signing_event, homes, extra=["--cert-notation", "context@keyparty.org=email"]
    )
    answer = assert_refused(door, signing_event, data, "C1", "2 context notations")
    assert "identity" in answer.message and "email" in answer.message


def test_no_context_notation_is_c1(door, signing_event, homes):
    data = alice_certifies(signing_event, homes, context=None)
    assert_refused(door, signing_event, data, "C1", "no context notation")


def test_a_context_not_on_the_list_is_c1(door, signing_event, homes):
    data = alice_certifies(signing_event, homes, context="fingerprint")
    assert_refused(door, signing_event, data, "C1", "'fingerprint' is not a context at this event")


def test_a_context_removed_from_the_list_is_c1(door, signing_event, homes):
    """An event whose list an older keyparty let the host shorten after people
    verified in the removed context."""
    signing_event.contexts = "identity,pseudonym"
    db.session.commit()
    data = alice_certifies(signing_event, homes, context="email")
    assert_refused(door, signing_event, data, "C1", "'email' is not a context at this event")


# --- 3. C2: generic up to the basis's level, never persona -----------------


def test_a_generic_certification_with_its_context_is_accepted(door, signing_event, homes):
    assert_accepted(door, alice_certifies(signing_event, homes, level=0))
    (row,) = rows(signing_event, "accepted")
    assert (row.level, row.context) == (0, "identity")


def test_a_persona_certification_is_c2(door, signing_event, homes):
    data = alice_certifies(signing_event, homes, level=1)
    assert_refused(door, signing_event, data, "C2", "persona certification")


def test_a_level_above_the_basis_is_c2(door, signing_event, homes):
    data = alice_certifies(signing_event, homes, uid=CAROL_UID, target="Carol", level=3)
    assert_refused(door, signing_event, data, "C2", "more than your verification gives")


def test_a_lower_level_than_the_basis_is_accepted(door, signing_event, homes):
    assert_accepted(door, alice_certifies(signing_event, homes, level=2))


# --- 4. D1: the cap allows one extra day ---------------------------------------


def test_the_cap_allows_one_extra_day(door, signing_event, homes):
    assert_accepted(door, alice_certifies(signing_event, homes, expire="731d"))
    data = alice_certifies(signing_event, homes, uid="Bob Example <bob@example.net>", expire="732d")
    assert_refused(door, signing_event, data, "D1", "cap of 730 days")


# --- 5. T1: depth 1 or more is a trust signature -------------------------------


def test_a_depth_1_trust_signature_is_t1(door, signing_event, homes):
    # Marginal trust, depth 1, restricted to a domain: a regular expression too.
    data = tsign(homes, signing_event, "1\n1\nexample.org")
    assert_refused(door, signing_event, data, "T1", "This is a trust signature")


# --- 6. P2: one certification of one user ID per upload ----------------------


def test_two_certifications_in_one_upload_are_refused_whole(door, signing_event, homes):
    alice_certifies(signing_event, homes)
    alice_certifies(signing_event, homes, uid="Bob Example <bob@example.net>")
    both = homes.export([fingerprint(signing_event, "Bob")])
    answer = assert_refused(door, signing_event, both, "P2", "one certification per request")
    assert "holds 2 certifications on 1 key(s)" in answer.message
    assert rows(signing_event) == []
    assert db.session.scalar(
        db.select(db.func.count()).select_from(RefusalRecord).where(RefusalRecord.rule == "P2")
    )


def test_certifications_of_two_keys_in_one_upload_are_refused_whole(door, signing_event, homes):
    bob = alice_certifies(signing_event, homes)
    carol = alice_certifies(signing_event, homes, uid=CAROL_UID, target="Carol", level=2)
    answer = assert_refused(door, signing_event, bob + carol, "P2", "one certification per request")
    assert "on 2 key(s)" in answer.message
    assert rows(signing_event) == []
    # One at a time, both are accepted.
    assert_accepted(door, bob)
    assert_accepted(door, carol)


# --- 7. A refusal binds no one else -------------------------------------------


def test_refused_for_its_timing_it_is_judged_again_when_it_comes_back(door, signing_event, homes):
    data = alice_certifies(signing_event, homes)
    signing_event.state = "cooling-off"
    db.session.commit()
    assert_refused(door, signing_event, data, "lifecycle", "while the event is signing")
    signing_event.state = "signing"
    db.session.commit()
    assert_accepted(door, data)
    # Both judgements are kept (the refusal counts in the report), one accepted;
    # Alice's page shows the last one.
    assert [r.status for r in rows(signing_event)] == ["refused", "accepted"]
    page = phone_of(door.app, attendee_named(signing_event, "Alice")).get("/me").text
    assert "Taken in by the event" in page and "lifecycle" not in page


def test_someone_elses_upload_changes_nothing_for_the_issuer(
    door,
    app,
    client,
    signing_event,
    homes,
):
    data = alice_certifies(signing_event, homes)
    carol_api = Door("api", door.app, door.runner, door.event, door.folder)
    answer = carol_api(data, sender="Carol")
    assert (answer.status, answer.rule) == ("refused", "T2")
    # Alice's page shows nothing of it, and her own upload is judged on its own.
    alice = attendee_named(signing_event, "Alice")
    assert "T2" not in phone_of(app, alice).get("/me").text
    assert_accepted(door, data)
    page = phone_of(app, alice).get("/me").text
    assert "Taken in by the event" in page and "T2" not in page
    # Carol's copy after Alice's is judged, not answered "already accepted" (P5).
    again = carol_api(data, sender="Carol")
    assert (again.status, again.rule) == ("refused", "T2")
    # Carol is told about her own upload.
    assert "another attendee&#39;s key" in phone_of(
        app, attendee_named(signing_event, "Carol")
    ).get("/me").text.replace("&#x27;", "&#39;")


def test_a_replay_of_an_accepted_certification_changes_nothing(door, signing_event, homes):
    data = alice_certifies(signing_event, homes)
    assert_accepted(door, data)
    stored, before = rows(signing_event), keyring(signing_event)
    answer = door(data)
    assert (answer.status, answer.ok) == ("already accepted", True)
    assert "duplicate" not in answer.message
    assert rows(signing_event) == stored and keyring(signing_event) == before


def test_a_refused_one_sent_twice_is_judged_twice(door, signing_event, homes):
    data = alice_certifies(signing_event, homes, expire="0")
    assert_refused(door, signing_event, data, "D1", "never expires")
    assert_refused(door, signing_event, data, "D1", "never expires")
    assert [(r.status, r.rule) for r in rows(signing_event)] == [("refused", "D1")] * 2


# --- 8. Messages name the real cause ------------------------------------------


def test_a_certification_on_a_withdrawn_verification_is_p6(door, signing_event, homes):
    alice = attendee_named(signing_event, "Alice")
    (verification,) = [
        v
        for v in active_verifications(alice)
        if v.user_id.text == BOB_UID and v.context == "identity"
    ]
    verification.withdrawn_at = verification.recorded_at + timedelta(minutes=1)
    db.session.commit()
    data = alice_certifies(signing_event, homes)
    assert_refused(door, signing_event, data, "P6", "You withdrew your verification")


def test_a_second_certification_of_the_same_user_id_and_context(
    door,
    app,
    signing_event,
    homes,
):
    first = alice_certifies(signing_event, homes)
    assert_accepted(door, first)
    both = alice_certifies(signing_event, homes, level=2, extra=["--force-sign-key"])
    answer = door(newest_certification(both, first))
    assert (answer.status, answer.ok) == ("already accepted", True), answer.message
    assert len(rows(signing_event, "accepted")) == 1
    bob = attendee_named(signing_event, "Bob")
    page = phone_of(app, bob).get("/me/received").text
    assert page.count("Alice Example") == 1


def test_an_acceptance_by_another_process_meanwhile_is_seen(signing_event, homes, monkeypatch):
    """Another server process accepts the same certification between intake's
    look at what was accepted and its commit: the database's partial unique
    index stops a second acceptance, and intake judges again."""
    data = alice_certifies(signing_event, homes)
    (first,) = intake.take_in(signing_event, [("first", data)])
    assert first.status == "accepted"
    looks = []
    real = intake._accepted

    def stale_then_real(event, candidates):
        looks.append(event.id)
        return (set(), set()) if len(looks) == 1 else real(event, candidates)

    monkeypatch.setattr(intake, "_accepted", stale_then_real)
    (again,) = intake.take_in(signing_event, [("again", data)])
    assert again.status == "already accepted" and len(looks) == 2
    assert [r.status for r in rows(signing_event)] == ["accepted"]


def test_keyparty_intake_tallies_each_outcome(runner, signing_event, homes, tmp_path):
    good = tmp_path / "good.asc"
    good.write_bytes(alice_certifies(signing_event, homes))
    copy = tmp_path / "copy.asc"
    copy.write_bytes(good.read_bytes())
    bad = tmp_path / "bad.asc"
    bad.write_bytes(alice_certifies(signing_event, homes, uid=CAROL_UID, target="Carol", level=1))
    result = runner.invoke(args=["intake", signing_event.id, str(good), str(copy), str(bad)])
    assert result.exit_code == 1
    assert "accepted  good.asc" in result.output
    assert "already accepted copy.asc" in result.output and "nothing changed" in result.output
    assert "refused   bad.asc" in result.output and ": C2: " in result.output
    assert "1 accepted, 1 refused, 1 already accepted" in result.output
    assert "duplicate" not in result.output
