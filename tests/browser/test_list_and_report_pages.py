"""The pages of the party list and the report in a real Chromium, at a phone's
360x740 and a laptop's 1280x900, in English and Japanese; each is saved in
test-artifacts/ as list-<page>-<language>-<width>.png."""

from __future__ import annotations

import hashlib

import pytest

from keyparty import events
from keyparty.extensions import db
from keyparty.models import Certification
from keyparty.models import utcnow
from tests.browser.conftest import join
from tests.browser.test_event_phones import party  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser

SIZES = [(360, 740), (1280, 900)]
LOCALES = {"en": "en-US", "ja": "ja-JP"}


def publish_and_certify(live_server, event_id, keys):
    """The host publishes the list; three published certifications (two of them
    a mutual pair) for the report's graph, as intake and owners would leave them."""
    with live_server.app.app_context():
        event = events.get_event(event_id)
        events.set_publish_list(event, True)
        by_fpr = {k.fingerprint: k for k in event.keys}
        pairs = [("alice", "bob"), ("bob", "alice"), ("bob", "carol")]
        for signer, owner in pairs:
            key = by_fpr[keys[owner]]
            db.session.add(
                Certification(
                    event_id=event.id,
                    signer_id=by_fpr[keys[signer]].attendee_id,
                    key_id=key.id,
                    user_id_id=key.user_ids[0].id,
                    issuer_fingerprint=keys[signer],
                    target_fingerprint=keys[owner],
                    user_id_text=key.user_ids[0].text,
                    context="identity",
                    level=3,
                    signature_sha256=hashlib.sha256(f"{signer}{owner}".encode()).hexdigest(),
                    status="accepted",
                    owner_decision="accepted",
                    decided_at=utcnow(),
                )
            )
        db.session.commit()
        db.session.remove()


def shoot(browser, live_server, artifacts, path, name, storage_state=None):
    """Screenshots of `path` at both sizes in both languages; returns the pages' text."""
    texts = {}
    for lang, locale in LOCALES.items():
        for width, height in SIZES:
            context = browser.new_context(
                viewport={"width": width, "height": height},
                locale=locale,
                base_url=live_server.url,
                storage_state=storage_state,
                device_scale_factor=1,
            )
            page = context.new_page()
            response = page.goto(path)
            assert response.status == 200, (path, response.status)
            if width == 360:
                overflow = page.evaluate("document.documentElement.scrollWidth")
                assert overflow <= 360, f"{path} scrolls sideways at 360 px ({lang})"
            page.screenshot(path=artifacts / f"list-{name}-{lang}-{width}.png", full_page=True)
            texts[(lang, width)] = page.inner_text("body")
            context.close()
    return texts


@pytest.mark.slow
def test_list_and_report_pages_at_both_sizes_in_both_languages(
    live_server,
    party,  # noqa: F811
    browser,
    artifacts,
    tmp_path,
):
    event_id, keys = party["event"], party["keys"]
    publish_and_certify(live_server, event_id, keys)
    with live_server.app.app_context():
        digest = events.get_event(event_id).partylist_sha256

    # Alice's phone session, reused by every screenshot of her page.
    joining = browser.new_context(base_url=live_server.url)
    page = joining.new_page()
    join(page, party["tokens"]["alice"])
    state = joining.storage_state()
    # What the browser saves from the phone page and from the public page is
    # the frozen file: sha256sum prints the digest read aloud.
    for where in ("/me", f"/e/{event_id}"):
        page.goto(where)
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the party list").click()
        saved = tmp_path / f"download-{len(where)}.txt"
        download.value.save_as(saved)
        assert download.value.suggested_filename == f"partylist-{event_id}.txt"
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest, where
    joining.close()

    me = shoot(browser, live_server, artifacts, "/me", "me", state)
    assert "Download the party list" in me[("en", 360)]
    assert "パーティーリストをダウンロード" in me[("ja", 360)]

    public = shoot(browser, live_server, artifacts, f"/e/{event_id}", "event")
    assert digest[:4] in public[("en", 1280)] and "sha256sum" in public[("en", 1280)]
    assert "パーティーリストをダウンロード" in public[("ja", 360)]

    scan = shoot(browser, live_server, artifacts, "/scan", "scan", state)
    assert "Point the camera at a badge code." in scan[("en", 360)]

    host = shoot(browser, live_server, artifacts, f"/host/e/{event_id}", "host-event")
    assert "Mail the list to every attendee" in host[("en", 1280)]
    assert "Stop publishing the list" in host[("en", 1280)]

    report = shoot(browser, live_server, artifacts, f"/host/e/{event_id}/report", "host-report")
    text = report[("en", 1280)]
    assert "largest strongly connected set" in text and "2 keys" in text
    assert "001" in text and "Alice Example" in text
