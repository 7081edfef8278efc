"""The host page tells the truth and does every host action of the README.

Totals are read off the rendered page and compared with `keyparty status`;
each action is taken through the page and checked by what it changed.
"""

from __future__ import annotations

import io
import re
import zipfile

from keyparty import openpgp
from keyparty import signing
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.models import Event
from keyparty.models import utcnow
from tests.conftest import attendee_named
from tests.conftest import fingerprint_of
from tests.conftest import press_join


def page_totals(html: str) -> dict[str, int]:
    """The totals as the page shows them: <dd data-total="NAME">N</dd>."""
    found = re.findall(r'<dd data-total="([^"]+)">([^<]*)</dd>', html)
    assert found, "no totals on the page"
    return {name: int(value) for name, value in found}  # int() fails on anything not a number


def status_totals(runner, event_id: str) -> dict[str, int]:
    result = runner.invoke(args=["status", event_id])
    assert result.exit_code == 0, result.output
    numbers = dict(re.findall(r"^([a-z][a-z ]+): (\d+)$", result.output, re.M))
    return {name: int(value) for name, value in numbers.items()}


def test_registration_page_counts_are_numbers(client, registered_event):
    page = client.get(f"/host/e/{registered_event.id}").text
    assert "built-in method" not in page
    totals = page_totals(page)
    assert totals["attendees"] == 3 and totals["keys"] == 3
    assert totals["entries confirmed"] == 0 and totals["verifications"] == 0


def test_the_page_and_keyparty_status_show_the_same_totals(client, runner, certified_event):
    event = certified_event
    page = page_totals(client.get(f"/host/e/{event.id}").text)
    assert page == status_totals(runner, event.id)
    assert page["keys"] == 3 and page["verifications"] == 4
    assert page["certifications accepted"] == 4 and page["certifications published"] == 0


def test_unconfirmed_entries_are_listed_by_name_after_the_freeze(client, runner, frozen_event):
    alice = attendee_named(frozen_event, "Alice")
    alice.entry_confirmed_at = utcnow()
    db.session.commit()
    page = client.get(f"/host/e/{frozen_event.id}").text
    listed = re.search(r'<ul class="names">(.*?)</ul>', page, re.S).group(1)
    assert "Bob" in listed and "Carol" in listed and "Alice" not in listed
    status = runner.invoke(args=["status", frozen_event.id]).output
    (line,) = [line for line in status.splitlines() if line.startswith("not confirmed yet (T4)")]
    assert "Bob" in line and "Carol" in line and "Alice" not in line
    assert page_totals(page)["entries unconfirmed"] == 2


def test_freeze_asks_for_confirmation_first(client, registered_event):
    event_id = registered_event.id
    page = client.get(f"/host/e/{event_id}").text
    assert f'href="/host/e/{event_id}/confirm/freeze"' in page
    # A post without the confirmation changes nothing and leads to the question.
    response = client.post(f"/host/e/{event_id}/step/freeze")
    assert response.status_code == 302 and response.location.endswith("/confirm/freeze")
    db.session.refresh(registered_event)
    assert registered_event.state == "registration"
    question = client.get(f"/host/e/{event_id}/confirm/freeze").text
    assert "no key can be added, changed or removed" in question
    assert 'name="confirmed" value="yes"' in question
    done = client.post(
        f"/host/e/{event_id}/step/freeze", data={"confirmed": "yes"}, follow_redirects=True
    )
    assert "The event is now frozen." in done.text
    db.session.refresh(registered_event)
    assert registered_event.state == "frozen"


def test_close_and_purge_ask_for_confirmation(client, signing_event):
    event_id = signing_event.id
    assert client.post(f"/host/e/{event_id}/step/close").location.endswith("/confirm/close")
    db.session.refresh(signing_event)
    assert signing_event.state == "signing"
    assert "exports are final" in client.get(f"/host/e/{event_id}/confirm/close").text
    client.post(f"/host/e/{event_id}/step/close", data={"confirmed": "yes"})
    db.session.refresh(signing_event)
    assert signing_event.state == "closed"

    page = client.get(f"/host/e/{event_id}").text
    assert f'href="/host/e/{event_id}/confirm/purge"' in page
    assert client.post(f"/host/e/{event_id}/purge").location.endswith("/confirm/purge")
    assert len(signing_event.attendees) == 3
    question = client.get(f"/host/e/{event_id}/confirm/purge").text
    assert "This cannot be undone." in question
    done = client.post(
        f"/host/e/{event_id}/purge", data={"confirmed": "yes"}, follow_redirects=True
    )
    assert "Deleted the personal data" in done.text and "3 attendees" in done.text
    db.session.expire_all()
    assert db.session.get(Event, event_id).attendees == []


def test_intake_of_uploaded_certification_files(client, signing_event, alice_home, tmp_path):
    bundle = bundle_for(attendee_named(signing_event, "Alice"), "http://keyparty.test:8000")
    signers = signing.choose_signers(alice_home, bundle, [])
    signing.certify_all(alice_home, bundle, signers)
    files = signing.write_files(alice_home, bundle, signers, tmp_path / "certs")
    page = client.get(f"/host/e/{signing_event.id}").text
    assert f'action="/host/e/{signing_event.id}/intake"' in page
    uploads = [(io.BytesIO(p.read_bytes()), p.name) for p in files]
    uploads.append((io.BytesIO(b"not a certification"), "junk.txt"))
    result = client.post(
        f"/host/e/{signing_event.id}/intake",
        data={"files": uploads},
        content_type="multipart/form-data",
    )
    assert "4 accepted, 1 refused, 0 already there." in result.text
    assert "junk.txt" in result.text
    again = client.post(
        f"/host/e/{signing_event.id}/intake",
        data={"files": [(io.BytesIO(files[0].read_bytes()), files[0].name)]},
        content_type="multipart/form-data",
    )
    assert "0 accepted, 0 refused, 1 already there." in again.text


def test_each_export_downloads_from_the_page(client, certified_event):
    event = certified_event
    page = client.get(f"/host/e/{event.id}").text
    for name in ("keyring.asc", "keyring.gpg", "per-key.zip", "per-uid.zip", "wkd.zip"):
        assert f'href="/host/e/{event.id}/export/{name}"' in page, name
    armored = client.get(f"/host/e/{event.id}/export/keyring.asc")
    assert armored.data.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    binary = client.get(f"/host/e/{event.id}/export/keyring.gpg").data
    assert {b.fingerprint for b in openpgp.read_keys(binary)} == {k.fingerprint for k in event.keys}
    per_key = zipfile.ZipFile(io.BytesIO(client.get(f"/host/e/{event.id}/export/per-key.zip").data))
    assert len(per_key.namelist()) == 3
    per_uid = zipfile.ZipFile(io.BytesIO(client.get(f"/host/e/{event.id}/export/per-uid.zip").data))
    assert len(per_uid.namelist()) >= 3
    wkd = zipfile.ZipFile(io.BytesIO(client.get(f"/host/e/{event.id}/export/wkd.zip").data))
    assert any("/hu/" in name for name in wkd.namelist())
    assert client.get(f"/host/e/{event.id}/export/secrets.txt").status_code == 404


def test_relink_from_the_page_gives_a_new_link_that_joins_once(client, registered_event):
    fingerprint = fingerprint_of("bob")
    response = client.post(f"/host/e/{registered_event.id}/relink/{fingerprint}")
    assert response.status_code == 200
    link = re.search(r"<code>(http://[^<]+/join/[^<]+)</code>", response.text).group(1)
    token = link.rsplit("/", 1)[1]
    # A GET only shows the join button (O2); pressing it spends the link.
    assert client.get(f"/join/{token}").status_code == 200
    press_join(client, token)
    assert client.get(f"/join/{token}").status_code == 404  # used once


def test_certification_settings_from_the_page_until_the_freeze(client, registered_event):
    event_id = registered_event.id
    data = {
        "expiry_days": "200",
        "cap_days": "400",
        "window_days": "14",
        "notation_domain": "example.org",
        "policy_url": "https://keys.example.org/policy",
    }
    saved = client.post(
        f"/host/e/{event_id}/certification-settings", data=data, follow_redirects=True
    )
    assert "Settings saved." in saved.text
    db.session.refresh(registered_event)
    assert (
        registered_event.cert_expiry_days,
        registered_event.cert_expiry_cap_days,
        registered_event.signing_window_days,
        registered_event.notation_domain,
        registered_event.policy_url,
    ) == (200, 400, 14, "example.org", "https://keys.example.org/policy")

    private = client.post(
        f"/host/e/{event_id}/certification-settings",
        data={**data, "policy_url": "http://192.168.1.20:8000/e/x/policy"},
        follow_redirects=True,
    )
    assert "C1:" in private.text and "local or private address (192.168.1.20)" in private.text
    assert "written into every certification for ever" in private.text
    longer = client.post(
        f"/host/e/{event_id}/certification-settings",
        data={**data, "expiry_days": "500"},
        follow_redirects=True,
    )
    assert "D1:" in longer.text
    db.session.refresh(registered_event)
    assert registered_event.cert_expiry_days == 200
    assert registered_event.policy_url == "https://keys.example.org/policy"

    client.post(f"/host/e/{event_id}/step/freeze", data={"confirmed": "yes"})
    assert "Certification settings" not in client.get(f"/host/e/{event_id}").text
    frozen = client.post(
        f"/host/e/{event_id}/certification-settings",
        data={**data, "window_days": "20"},
        follow_redirects=True,
    )
    assert "frozen:" in frozen.text
    db.session.refresh(registered_event)
    assert registered_event.signing_window_days == 14


def test_keyparty_event_set_changes_certification_settings(runner, registered_event):
    event_id = registered_event.id
    result = runner.invoke(
        args=[
            "event",
            "set",
            event_id,
            "--expiry-days",
            "180",
            "--signing-window-days",
            "10",
            "--notation-domain",
            "party.example.net",
            "--policy-url",
            "https://party.example.net/policy",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "expire after 180 days" in result.output
    assert "policy URL https://party.example.net/policy" in result.output
    refused = runner.invoke(
        args=[
            "event",
            "set",
            event_id,
            "--policy-url",
            "http://localhost:8000/p",
            "--pace-gap",
            "5",
        ]
    )
    assert refused.exit_code != 0 and "C1:" in refused.output and "localhost" in refused.output
    db.session.refresh(registered_event)
    assert registered_event.policy_url == "https://party.example.net/policy"
    assert registered_event.pace_min_gap_seconds == 20  # nothing changed, not even the pace
    cleared = runner.invoke(args=["event", "set", event_id, "--policy-url", ""])
    assert cleared.exit_code == 0
    db.session.refresh(registered_event)
    assert registered_event.policy_url is None


def test_the_bundle_never_carries_the_address_the_signer_reached(app, signing_event):
    alice = attendee_named(signing_event, "Alice")
    app.config["PUBLIC_URL"] = None
    bundle = bundle_for(alice, "http://192.168.1.20:8000")
    assert bundle["event"]["policy_url"] is None
    app.config["PUBLIC_URL"] = "https://keyparty.example.org"
    bundle = bundle_for(alice, "http://192.168.1.20:8000")
    assert bundle["event"]["policy_url"] == (
        f"https://keyparty.example.org/e/{signing_event.id}/policy"
    )
    app.config["PUBLIC_URL"] = "http://10.0.0.5:8000"  # a private public URL is no policy URL
    assert bundle_for(alice, "http://10.0.0.5:8000")["event"]["policy_url"] is None
