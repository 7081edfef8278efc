"""The in-page scanner in a real Chromium with a fake camera: a whole printed
badge (both codes in view) and the payload spellings other apps write."""

from __future__ import annotations

import re

import pytest

from keyparty import events
from keyparty.extensions import db
from keyparty.models import utcnow
from tests.browser.conftest import join
from tests.browser.test_event_phones import party  # noqa: F401  (a fixture)
from tests.browser.test_event_phones import start_verifying
from tests.browser.y4m import picture_video
from tests.browser.y4m import qr_video

pytestmark = pytest.mark.browser

VERIFY_PAGE = re.compile(r"/e/[^/]+/k/[0-9A-F]{40}$")


def everyone_confirmed_and_verifying(live_server, event_id):
    with live_server.app.app_context():
        event = events.get_event(event_id)
        for attendee in event.attendees:
            attendee.entry_confirmed_at = attendee.entry_confirmed_at or utcnow()
        db.session.commit()
        db.session.remove()
    start_verifying(live_server, event_id)


def photograph_badge(browser, live_server, event_id, name, artifacts):
    """Print the badges page and take a picture of one badge, as a phone
    camera held over the printed sheet would see it."""
    context = browser.new_context(device_scale_factor=2, base_url=live_server.url)
    page = context.new_page()
    page.goto(f"/host/e/{event_id}/badges")
    badge = page.locator(".badge").filter(has_text=name)
    assert badge.count() == 1
    assert badge.locator("svg").count() == 2, "both codes on the badge"
    png = badge.screenshot()
    (artifacts / f"scanner-badge-{name.split()[0].lower()}.png").write_bytes(png)
    return context, page, png


def test_a_whole_badge_with_both_codes_in_view(
    live_server,
    party,  # noqa: F811
    phone,
    browser,
    artifacts,
    tmp_path,
):
    event_id, keys = party["event"], party["keys"]
    context, printer, png = photograph_badge(
        browser, live_server, event_id, "Bob Example", artifacts
    )
    video = picture_video(printer, png, tmp_path / "badge.y4m")
    context.close()

    everyone_confirmed_and_verifying(live_server, event_id)
    alice = phone("alice", video=video)
    join(alice, party["tokens"]["alice"])
    alice.goto("/scan")
    assert alice.locator("#scanner").count() == 1
    alice.wait_for_url(VERIFY_PAGE, timeout=20_000)
    assert alice.url.endswith(f"/k/{keys['bob']}")
    assert "Bob Example" in alice.content()


PAYLOADS = {
    "lower-case scheme": lambda fpr: "openpgp4fpr:" + fpr.lower(),
    "mixed case, spaces, newline": lambda fpr: (
        "OpenPGP4Fpr:" + " ".join(fpr[i : i + 4] for i in range(0, 40, 4)) + "\n"
    ),
    "extra data after #": lambda fpr: f"OPENPGP4FPR:{fpr}#MAC=0123456789abcdef0123",
}


@pytest.mark.parametrize("variant", list(PAYLOADS))
def test_payload_spellings_other_apps_write(
    live_server,
    party,  # noqa: F811
    phone,
    artifacts,
    tmp_path,
    variant,
):
    event_id, keys = party["event"], party["keys"]
    everyone_confirmed_and_verifying(live_server, event_id)
    video = qr_video(PAYLOADS[variant](keys["bob"]), tmp_path / "code.y4m")
    alice = phone("alice", video=video)
    join(alice, party["tokens"]["alice"])
    alice.goto("/scan")
    alice.wait_for_url(VERIFY_PAGE, timeout=15_000)
    assert alice.url.endswith(f"/k/{keys['bob']}")


@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_a_short_key_id_is_still_refused(
    live_server,
    party,  # noqa: F811
    phone,
    artifacts,
    tmp_path,
    locale,
):
    event_id, keys = party["event"], party["keys"]
    everyone_confirmed_and_verifying(live_server, event_id)
    video = qr_video("OPENPGP4FPR:" + keys["bob"][-16:], tmp_path / "keyid.y4m")
    alice = phone("alice", video=video, locale=locale)
    join(alice, party["tokens"]["alice"])
    alice.goto("/scan")
    status = alice.locator("#scan-status")
    expected = "short key ID" if locale == "en-US" else "短い鍵ID"
    status.filter(has_text=expected).wait_for(timeout=15_000)
    assert alice.url.endswith("/scan"), "no page is opened for a key ID"
    alice.screenshot(path=artifacts / f"scanner-keyid-{locale}.png")


# Chromium on Linux has no BarcodeDetector (Android, ChromeOS and macOS do).
# This stands in for it with the Shape Detection API's shape: detect() resolves
# to every code in the frame, each with its rawValue.
DETECTOR = """window.BarcodeDetector = class {
  constructor(options) { window.detectorFormats = options.formats; }
  async detect(source) {
    window.detectorCalls = (window.detectorCalls || 0) + 1;
    return %s.map(rawValue => ({ rawValue, format: "qr_code" }));
  }
};"""


def test_where_the_browser_finds_every_code_the_scanner_uses_it(
    live_server,
    party,  # noqa: F811
    phone,
    tmp_path,
):
    event_id, keys = party["event"], party["keys"]
    everyone_confirmed_and_verifying(live_server, event_id)
    # The camera shows a code of no use; the detector reports a badge's two codes,
    # the first of them another server's address.
    video = qr_video("hello", tmp_path / "nothing.y4m")
    alice = phone("alice", video=video)
    found = ["https://elsewhere.example/e/x/k/" + keys["bob"], "OPENPGP4FPR:" + keys["bob"]]
    alice.add_init_script(DETECTOR % repr(found).replace("'", '"'))
    join(alice, party["tokens"]["alice"])
    alice.goto("/scan")
    alice.wait_for_url(VERIFY_PAGE, timeout=15_000)
    assert alice.url.endswith(f"/k/{keys['bob']}")
