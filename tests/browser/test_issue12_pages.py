"""Screenshots and layout checks of the pages issue 12 changed, at 360x740
(a phone) and 1280x900 (a laptop), in English and Japanese, saved as
test-artifacts/issue12-<page>-<language>-<width>.png.

Each page is checked where a person would notice: it fits the width (no
sideways scrolling), it is in the language asked for, and the things that
must stay whole (a digest group, the signing token's groups) do.
"""

from __future__ import annotations

from datetime import date

import pytest

from keyparty import events
from keyparty import pairing
from keyparty import registration
from keyparty.extensions import db
from tests.browser.conftest import join
from tests.conftest import attendee_named
from tests.conftest import key_bytes
from tests.conftest import signing_event_on_server

pytestmark = pytest.mark.browser

SIZES = {"360": {"width": 360, "height": 740}, "1280": {"width": 1280, "height": 900}}
LOCALES = {"en": "en-US", "ja": "ja-JP"}
# A word each language's page shows, so a screenshot is known to be in it.
JAPANESE = ("の", "を", "は")


@pytest.fixture
def events_on_server(live_server):
    """Three events: one open for registration, one frozen, one signing (Alice
    verified Bob; a computer waits for Alice's answer)."""
    app = live_server.app
    with app.app_context():
        made = {}
        for state in ("registration", "frozen"):
            event = events.create_event(f"Screens {state}", date.today())
            for name in ("alice", "bob", "carol"):
                registration.register_keys(
                    event, [(name, key_bytes(name))], events.event_home(event)
                )
            if state == "frozen":
                events.take_step(event, "freeze")
            made[state] = {
                "id": event.id,
                "alice": attendee_named(event, "Alice").keys[0].fingerprint,
            }
        event = signing_event_on_server("Screens signing", ("alice", "bob", "carol"))
        alice = attendee_named(event, "Alice")
        pairing.start(event, [alice.keys[0].fingerprint])
        made["signing"] = {"id": event.id, "alice": alice.keys[0].fingerprint}
        db.session.remove()
    return made


def join_as(page, app, event_id: str, fingerprint: str) -> None:
    """A new join link from the host, opened on the phone and its button pressed."""
    with app.app_context():
        token = events.new_join_link(events.get_event(event_id), fingerprint)
        db.session.remove()
    join(page, token)


def shoot(page, name: str, language: str, artifacts) -> None:
    """Both widths of the page now open: fits, is in `language`, saved."""
    for width, size in SIZES.items():
        page.set_viewport_size(size)
        page.wait_for_load_state()
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"], (
            f"{name} scrolls sideways at {width} px in {language}"
        )
        assert page.evaluate("document.documentElement.lang") == language
        text = page.inner_text("main")
        if language == "ja":
            assert any(word in text for word in JAPANESE), f"{name} is not in Japanese"
        page.screenshot(path=artifacts / f"issue12-{name}-{language}-{width}.png", full_page=True)


def new_page(browser, live_server, language: str):
    context = browser.new_context(
        viewport=SIZES["360"], locale=LOCALES[language], base_url=live_server.url
    )
    return context, context.new_page()


@pytest.mark.parametrize("language", ["en", "ja"])
def test_host_pages(browser, live_server, events_on_server, artifacts, language):
    context, page = new_page(browser, live_server, language)
    try:
        page.goto("/host/")
        shoot(page, "host-index", language, artifacts)
        registration_id = events_on_server["registration"]["id"]
        page.goto(f"/host/e/{registration_id}")
        totals = page.locator("dl.totals dd").all_inner_texts()
        assert totals and all(value.isdigit() for value in totals)
        page.locator("details", has=page.locator("#expiry_days")).locator("summary").click()
        shoot(page, "host-event-registration", language, artifacts)
        page.goto(f"/host/e/{registration_id}/confirm/freeze")
        shoot(page, "host-confirm-freeze", language, artifacts)
        page.goto(f"/host/e/{events_on_server['frozen']['id']}")
        assert page.locator("ul.names li").count() == 3  # nobody confirmed yet (T4)
        shoot(page, "host-event-frozen", language, artifacts)
        page.goto(f"/host/e/{events_on_server['signing']['id']}")
        assert page.locator("ul.downloads a").count() == 6
        shoot(page, "host-event-signing", language, artifacts)
        page.goto(f"/host/e/{events_on_server['signing']['id']}/confirm/close")
        shoot(page, "host-confirm-close", language, artifacts)
    finally:
        context.close()


@pytest.mark.parametrize("language", ["en", "ja"])
def test_phone_pages(browser, live_server, events_on_server, artifacts, language):
    app = live_server.app
    frozen, signing = events_on_server["frozen"], events_on_server["signing"]
    context, page = new_page(browser, live_server, language)
    try:
        page.goto(f"/e/{frozen['id']}/register")
        assert page.locator("form[enctype]").count() == 0  # closed after the freeze
        shoot(page, "register-after-freeze", language, artifacts)

        join_as(page, app, frozen["id"], frozen["alice"])
        for width, size in SIZES.items():
            page.set_viewport_size(size)
            # Each group of four of the digest stays on one line.
            lines = page.evaluate(
                "[...document.querySelectorAll('.digest .group')]"
                ".map(g => g.getClientRects().length)"
            )
            assert len(lines) == 16 and set(lines) == {1}, (width, lines)
        shoot(page, "me-frozen-digest", language, artifacts)

        join_as(page, app, signing["id"], signing["alice"])
        box = page.locator(".pairing")
        assert box.count() == 1 and box.locator(".pair-code").inner_text().count("-") == 1
        shoot(page, "me-signing-pairing", language, artifacts)
        page.locator("form[action='/me/signing-token'] button").click()
        token = page.locator("#token").inner_text()
        groups = page.locator(".token-groups span").all_inner_texts()
        assert "-".join(groups) == token and all(len(g) == 4 for g in groups)
        shoot(page, "signing-token", language, artifacts)
        page.goto("/me")
        page.locator("form[action='/me/signing-token'] button").click()
        assert page.locator(".flash.error").count() == 1  # "the old one no longer works"
        shoot(page, "signing-token-again", language, artifacts)
    finally:
        context.close()
