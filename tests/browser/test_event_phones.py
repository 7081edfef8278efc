"""Two phones run the in-person part of an event in a real Chromium: join,
confirm their own entries, scan each other with the in-page scanner, record
decisions, and meet the rules."""

from __future__ import annotations

import re
from datetime import date

import pytest

from keyparty import events
from keyparty import registration
from keyparty.badges import verification_url
from keyparty.extensions import db
from keyparty.models import Verification
from keyparty.models import utcnow
from keyparty.qr import fingerprint_payload
from tests.browser.y4m import qr_video
from tests.conftest import key_bytes

pytestmark = pytest.mark.browser


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= 360


@pytest.fixture
def party(live_server):
    """A frozen event with Alice, Bob and Carol; Carol already confirmed her entry."""
    with live_server.app.app_context():
        event = events.create_event("Browser Party", date(2026, 12, 5))
        tokens = {}
        for name in ("alice", "bob", "carol"):
            result = registration.register_keys(
                event, [(name, key_bytes(name))], events.event_home(event)
            )
            accepted = result.accepted[0]
            tokens[name] = accepted.join_token
        assert events.take_step(event, "freeze") is None
        keys = {k.attendee.name.split()[0].lower(): k.fingerprint for k in event.keys}
        carol = next(a for a in event.attendees if a.name.startswith("Carol"))
        carol.entry_confirmed_at = utcnow()
        db.session.commit()
        party = {"event": event.id, "tokens": tokens, "keys": keys}
        db.session.remove()  # hold no transaction while the phones work
    return party


def start_verifying(live_server, event_id):
    with live_server.app.app_context():
        assert events.take_step(events.get_event(event_id), "start-verifying") is None


def join_and_confirm(page, token, artifacts, name):
    page.goto(f"/join/{token}")
    page.get_by_role("button", name="Join on this phone").click()
    page.wait_for_url("**/me")
    page.wait_for_load_state()
    assert page.url.endswith("/me"), "the token leaves the address bar"
    assert no_horizontal_scroll(page)
    page.get_by_text("My fingerprint and user IDs above are correct.").click()
    page.get_by_text("My digest matches the one the host read aloud.").click()
    page.get_by_role("button", name="Confirm my entry").click()
    assert "Others can verify your key" in page.content()
    page.screenshot(path=artifacts / f"phone-{name}-me.png", full_page=True)


def record(page, uid_index, context, basis):
    section = page.locator("section.uid").nth(uid_index)
    section.locator(f"input[value='{context}']").check()
    section.locator(f"input[value='{basis}']").check()
    section.get_by_role("button", name="Record this user ID").click()


def scan_with_camera(page, artifacts, name):
    response = page.goto("/scan")
    # Read from the response: the fake camera may find the code and leave the
    # page before a locator would look.
    assert 'id="scanner"' in response.text(), "127.0.0.1 is a secure context"
    page.screenshot(path=artifacts / f"phone-{name}-scan.png")
    page.wait_for_url(re.compile(r"/e/[^/]+/k/[0-9A-F]{40}$"), timeout=15_000)


def test_two_phones_verify_each_other(live_server, party, phone, artifacts, tmp_path):
    event_id, keys = party["event"], party["keys"]
    # Alice's camera sees Bob's OpenKeychain code; Bob's sees Alice's badge URL code.
    alice_sees = qr_video(fingerprint_payload(keys["bob"]), tmp_path / "bob.y4m")
    bob_sees = qr_video(
        verification_url(live_server.url, event_id, keys["alice"]), tmp_path / "alice.y4m"
    )
    alice = phone("alice", video=alice_sees)
    bob = phone("bob", video=bob_sees)

    join_and_confirm(alice, party["tokens"]["alice"], artifacts, "alice")
    # Before verifying starts, a badge page explains and offers no decision.
    alice.goto(f"/e/{event_id}/k/{keys['bob']}")
    assert "Record this user ID" not in alice.content()
    start_verifying(live_server, event_id)

    # T4: Bob has not confirmed his entry yet, so nobody can verify him.
    alice.goto(f"/e/{event_id}/k/{keys['bob']}")
    assert "T4" in alice.content() and "Record this user ID" not in alice.content()
    join_and_confirm(bob, party["tokens"]["bob"], artifacts, "bob")

    # Alice scans Bob with the in-page scanner (an OPENPGP4FPR: code).
    scan_with_camera(alice, artifacts, "alice")
    assert alice.url.endswith(f"/k/{keys['bob']}")
    assert no_horizontal_scroll(alice)
    alice.screenshot(path=artifacts / "phone-alice-verify-bob.png", full_page=True)
    assert alice.locator("section.uid").count() == 2, "one decision per user ID"
    record(alice, 0, "identity", "photo-id")
    assert "Recorded" in alice.content()

    # A basis that is not first-hand is refused with the reason.
    record(alice, 1, "identity", "everyone-signs")
    content = alice.content()
    assert "P3:" in content and "peer pressure" in content
    alice.screenshot(path=artifacts / "phone-alice-refused-basis.png", full_page=True)

    # Straight on to the next person: rushed (P4), with the wait shown.
    alice.goto(f"/e/{event_id}/k/{keys['carol']}")
    record(alice, 0, "identity", "photo-id")
    rushed = alice.locator(".flash.refusal").inner_text()
    assert rushed.startswith("P4:") and re.search(r"wait \d+ s", rushed)
    alice.screenshot(path=artifacts / "phone-alice-rushed.png", full_page=True)

    # Bob scans Alice's badge URL code, records, then withdraws it.
    scan_with_camera(bob, artifacts, "bob")
    assert bob.url.endswith(f"/k/{keys['alice']}")
    record(bob, 0, "email", "known-personally")
    assert "Recorded" in bob.content()
    bob.goto("/me/verifications")
    bob.screenshot(path=artifacts / "phone-bob-verifications.png", full_page=True)
    bob.get_by_role("button", name="Withdraw").click()
    assert "Withdrawn" in bob.content()
    assert "You have not verified anyone yet." in bob.content()

    # T3: Bob never sees that Alice verified him.
    bob.goto("/me")
    assert "Alice" not in bob.content()

    with live_server.app.app_context():
        rows = db.session.scalars(db.select(Verification)).all()
        active = [
            (v.signer.name, v.user_id.text, v.context, v.level) for v in rows if not v.withdrawn_at
        ]
        assert active == [("Alice Example", "Bob Example <bob@example.org>", "identity", 3)]


def test_the_phone_pages_speak_japanese(live_server, party, phone, artifacts):
    page = phone("hanako", locale="ja-JP")
    page.goto(f"/join/{party['tokens']['alice']}")
    page.get_by_role("button", name="このスマートフォンで参加").click()
    page.wait_for_url("**/me")
    page.wait_for_load_state()
    content = page.content()
    assert '<html lang="ja">' in content
    assert "パーティーリスト" in content
    assert no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-ja-me.png", full_page=True)
    # The switch on the page goes back to English.
    page.get_by_role("link", name="English").click()
    assert '<html lang="en">' in page.content()
