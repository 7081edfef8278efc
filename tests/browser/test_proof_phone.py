"""O2 on a real phone (Chromium): register a key, prove possession by typing
the code from the decrypted challenge, join with the link's code; a link
preview spends nothing, and a phone that has joined is asked before it
switches to someone else."""

from __future__ import annotations

import html
import re
from datetime import date

import pytest

from keyparty import events
from keyparty.extensions import db
from tests.conftest import code_in
from tests.conftest import decrypt_with
from tests.conftest import fingerprint_of
from tests.conftest import key_bytes
from tests.conftest import register
from tests.conftest import secret_home
from tests.conftest import stop_agent

pytestmark = pytest.mark.browser


@pytest.fixture
def open_event(live_server):
    with live_server.app.app_context():
        event = events.create_event("Proof Party", date(2026, 12, 5))
        register(event, "alice")
        event_id = event.id
        db.session.remove()
    return event_id


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= 360


def register_and_prove(page, event_id, artifacts, stem, labels):
    """Fill the form, decrypt the challenge with Hanako's own gpg, type the code."""
    page.goto(f"/e/{event_id}/register")
    page.locator("#name").fill("Hanako")
    page.locator("#key_text").fill(key_bytes("hanako").decode())
    page.get_by_role("button", name=labels["register"]).click()
    assert "/prove/" in page.url
    assert labels["prove"] in page.content()
    assert fits(page)
    page.screenshot(path=artifacts / f"{stem}-prove.png", full_page=True)
    armored = html.unescape(page.locator("pre.armored").first.inner_text())
    home = secret_home("hanako")
    try:
        letter = decrypt_with(home, armored)
    finally:
        stop_agent(home)
    page.locator("#code").fill(code_in(letter))
    page.get_by_role("button", name=labels["check"]).click()
    page.wait_for_load_state()


def test_register_prove_by_code_and_join_with_the_qr_link(
    live_server, open_event, phone, artifacts
):
    laptop = phone("laptop")
    labels = {
        "register": "Register my key",
        "prove": "Prove that you hold your key",
        "check": "Check the code",
    }
    register_and_prove(laptop, open_event, artifacts, "proof-en", labels)
    content = laptop.content()
    assert "You proved that you hold" in content and "shown only this once" in content
    assert laptop.locator(".qr svg").count() == 1, "the join link comes as a code to scan"
    link = laptop.locator("a.join-link").inner_text()
    assert re.fullmatch(rf"{re.escape(live_server.url)}/join/[\w-]+", link)
    laptop.screenshot(path=artifacts / "proof-en-registered.png", full_page=True)

    # A chat app's link preview opens the link first: nothing is spent.
    preview = phone("preview")
    preview.goto(link)
    assert "Join on this phone" in preview.content()

    hanako = phone("hanako")
    hanako.goto(link)
    assert fits(hanako)
    hanako.get_by_role("button", name="Join on this phone").click()
    hanako.wait_for_url("**/me")
    assert hanako.url.endswith("/me") and "山田花子" in hanako.content()

    # The same phone opens Alice's link (say, handed out by the host): it is asked.
    with live_server.app.app_context():
        event = events.get_event(open_event)
        alice_link = events.new_join_link(event, fingerprint_of("alice"))
        db.session.remove()
    hanako.goto(f"/join/{alice_link}")
    assert "This phone already speaks for Hanako" in hanako.content()
    hanako.screenshot(path=artifacts / "proof-en-second-link.png", full_page=True)
    hanako.get_by_role("link", name="Keep Hanako").click()
    hanako.wait_for_url("**/me")
    assert hanako.url.endswith("/me") and "山田花子" in hanako.content()


def test_the_proof_step_speaks_japanese(live_server, open_event, phone, artifacts):
    page = phone("hanako-ja", locale="ja-JP")
    labels = {
        "register": "自分の鍵を登録する",
        "prove": "鍵を持っていることを証明してください",
        "check": "コードを確認",
    }
    register_and_prove(page, open_event, artifacts, "proof-ja", labels)
    content = page.content()
    assert '<html lang="ja">' in content
    assert "を持っていることが証明されました" in content
    link = page.locator("a.join-link").inner_text()
    page.goto(link)
    assert "このスマートフォンで参加" in page.content()
    page.screenshot(path=artifacts / "proof-ja-join.png", full_page=True)
