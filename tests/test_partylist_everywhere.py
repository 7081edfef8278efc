"""The frozen party list in everyone's hands: the host page, each attendee's
phone page, the public event page (when the host publishes it), the signing
bundle and a mail to every attendee all hand out the same bytes, whose
`sha256sum` is the digest the host reads aloud."""

from __future__ import annotations

import email
import subprocess
from email import policy
from pathlib import Path

import pytest

from keyparty import delivery
from keyparty import events
from keyparty import signing
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.models import Attendee
from tests.conftest import attendee_named
from tests.conftest import phone_of
from tests.test_cli import keyparty
from tests.test_delivery import Collector
from tests.test_delivery import email_event  # noqa: F401  (a fixture)
from tests.test_delivery import plain
from tests.test_delivery import smtp_server  # noqa: F401  (a fixture)

BASE_URL = "http://keyparty.test:8000"


def sha256sum(path: Path) -> str:
    """What an attendee runs on their copy."""
    done = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def saved(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_every_copy_is_the_frozen_list_byte_for_byte(
    app,
    client,
    frozen_event,
    tmp_path,
    smtp_server,  # noqa: F811
):
    event = frozen_event
    events.set_publish_list(event, True)
    copies: dict[str, bytes] = {}

    host = client.get(f"/host/e/{event.id}/partylist.txt")
    copies["host page"] = host.data
    alice = phone_of(app, attendee_named(event, "Alice"))
    phone = alice.get("/me/partylist.txt")
    assert phone.status_code == 200
    assert phone.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert f'filename="partylist-{event.id}.txt"' in phone.headers["Content-Disposition"]
    copies["phone page"] = phone.data
    public = app.test_client().get(f"/e/{event.id}/partylist.txt")
    assert public.status_code == 200
    copies["public page"] = public.data

    # The signing bundle carries the list; `keyparty sign` writes it next to its files.
    bundle = bundle_for(attendee_named(event, "Bob"), BASE_URL)
    copies["signing bundle"] = signing.write_party_list(bundle, tmp_path / "certs").read_bytes()

    collector = Collector()
    port = smtp_server(collector)
    result = delivery.mail_party_list(event, plain(port), tmp_path / "outbox")
    assert len(result.sent) == 3 and not result.refused, result.summary
    mail = collector.to("alice@example.org")[0]
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == f"partylist-{event.id}.txt"
    copies["mail attachment"] = attachment.get_content().encode("utf-8")
    copies["mail attachment, raw"] = attachment.get_payload(decode=True)

    for where, data in copies.items():
        path = saved(tmp_path, f"{where.replace(' ', '-')}.txt", data)
        assert sha256sum(path) == event.partylist_sha256, where
    body = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert event.partylist_sha256 in body
    assert event.partylist_sha512[:64] in body and event.partylist_sha512[64:] in body
    assert f"sha256sum partylist-{event.id}.txt" in body
    assert "パーティーリストが確定しました" in body
    # Mail programs hide what follows "-- ": both languages come before it.
    assert body.index("パーティーリストが確定しました") < body.index("\n-- \n")


def test_the_phone_page_offers_the_list_after_the_freeze(app, registered_event, frozen_event):
    alice = phone_of(app, attendee_named(frozen_event, "Alice"))
    page = alice.get("/me").text
    assert 'href="/me/partylist.txt"' in page
    assert f"sha256sum partylist-{frozen_event.id}.txt" in page
    page_ja = alice.get("/me", headers={"Accept-Language": "ja"}).text
    assert "パーティーリストをダウンロード" in page_ja


def test_before_the_freeze_there_is_no_list_to_download(app, registered_event):
    alice = phone_of(app, attendee_named(registered_event, "Alice"))
    assert "/me/partylist.txt" not in alice.get("/me").text
    assert alice.get("/me/partylist.txt").status_code == 404
    events.set_publish_list(registered_event, True)
    visitor = app.test_client()
    assert visitor.get(f"/e/{registered_event.id}/partylist.txt").status_code == 404
    page = visitor.get(f"/e/{registered_event.id}").text
    assert "The party list is fixed when the host freezes it" in page


def test_the_public_page_has_the_list_only_when_the_host_publishes_it(app, client, frozen_event):
    event = frozen_event
    visitor = app.test_client()
    page = visitor.get(f"/e/{event.id}").text
    assert "The host has not published the party list here" in page
    assert visitor.get(f"/e/{event.id}/partylist.txt").status_code == 404
    # Nobody without a session gets the phone's copy either.
    assert visitor.get("/me/partylist.txt").status_code == 401

    # The host's toggle.
    host_page = client.get(f"/host/e/{event.id}").text
    assert "Publish the list on the event page" in host_page
    published = client.post(
        f"/host/e/{event.id}/publish-list", data={"publish": "1"}, follow_redirects=True
    )
    public_url = f"http://keyparty.test:8000/e/{event.id}"
    assert f"The party list is published on {public_url} once frozen." in published.text
    assert f'<a href="{public_url}">{public_url}</a>' in published.text
    db.session.refresh(event)
    assert event.publish_list is True
    page = visitor.get(f"/e/{event.id}").text
    assert f'href="/e/{event.id}/partylist.txt"' in page
    assert " ".join(event.partylist_sha256[i : i + 4] for i in range(0, 64, 4)) in page
    page_ja = visitor.get(f"/e/{event.id}", headers={"Accept-Language": "ja"}).text
    assert "パーティーリストをダウンロード" in page_ja and "署名ポリシー" in page_ja
    assert "Stop publishing the list" in client.get(f"/host/e/{event.id}").text
    client.post(f"/host/e/{event.id}/publish-list", data={"publish": "0"})
    assert visitor.get(f"/e/{event.id}/partylist.txt").status_code == 404


def test_the_host_page_button_mails_the_list_to_the_outbox(app, client, frozen_event):
    event = frozen_event
    response = client.post(f"/host/e/{event.id}/mail-list", follow_redirects=True)
    assert "wrote 3 party list mail(s)" in response.text
    outbox = events.event_files(event) / "outbox"
    mails = sorted(outbox.glob(f"{event.id}-partylist-*.eml"))
    assert len(mails) == 3
    parsed = email.message_from_bytes(mails[0].read_bytes(), policy=policy.default)
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_payload(decode=True) == event.partylist.encode("utf-8")
    # Each attendee once: a second press mails nobody.
    again = client.post(f"/host/e/{event.id}/mail-list", follow_redirects=True)
    assert "Every attendee was mailed the party list already." in again.text


def test_a_refused_recipient_does_not_stop_the_others(frozen_event, tmp_path, smtp_server):  # noqa: F811
    collector = Collector(refuse={"bob@example.org"})
    port = smtp_server(collector)
    result = delivery.mail_party_list(frozen_event, plain(port), tmp_path / "outbox")
    assert sorted(a.name for a in result.sent) == ["Alice Example", "Carol Example"]
    assert [address for address, _ in result.refused] == ["bob@example.org"]
    assert "550 no such user" in result.summary
    bob = attendee_named(frozen_event, "Bob")
    assert bob.list_mailed_at is None
    # The next run mails Bob alone.
    collector.refuse.clear()
    result = delivery.mail_party_list(frozen_event, plain(port), tmp_path / "outbox")
    assert [a.name for a in result.sent] == ["Bob Example"]


def test_an_attendee_without_an_address_is_counted_not_mailed(frozen_event, tmp_path):
    carol: Attendee = attendee_named(frozen_event, "Carol")
    carol.email = None
    for key in carol.keys:
        for uid in key.user_ids:
            uid.email = None
    db.session.commit()
    result = delivery.mail_party_list(
        frozen_event, None, tmp_path / "outbox", sender="host@example.org"
    )
    assert len(result.written) == 2 and result.skipped_no_address == 1
    assert "1 attendee(s) have no email address" in result.summary


def test_mail_list_before_the_freeze_is_refused(registered_event, tmp_path):
    with pytest.raises(delivery.DeliveryError, match="not frozen yet"):
        delivery.mail_party_list(registered_event, None, tmp_path / "outbox")


@pytest.mark.slow
def test_the_command_line_publishes_and_mails_the_list(instance, tmp_path):
    from tests.conftest import FIXTURES

    created = keyparty(instance, "event", "create", "CLI Party", "--date", "2026-12-05")
    event_id = created.stdout.strip().splitlines()[-1]
    keys = [str(FIXTURES / "attendees" / f"{n}.asc") for n in ("alice", "bob")]
    assert keyparty(instance, "import", event_id, *keys).returncode == 0
    early = keyparty(instance, "mail-list", event_id)
    assert early.returncode != 0 and "not frozen yet" in early.stderr
    frozen = keyparty(instance, "freeze", event_id, "--yes")
    assert f"keyparty mail-list {event_id}" in frozen.stdout

    published = keyparty(instance, "event", "set", event_id, "--publish-list")
    assert published.returncode == 0, published.stderr
    assert f"/e/{event_id}" in published.stdout

    outbox = tmp_path / "outbox"
    mailed = keyparty(instance, "mail-list", event_id, "--outbox", str(outbox))
    assert mailed.returncode == 0, mailed.stderr
    assert "wrote 2 party list mail(s)" in mailed.stdout
    assert len(list(outbox.glob("*.eml"))) == 2
    second = keyparty(instance, "mail-list", event_id, "--outbox", str(outbox))
    assert "mailed the party list already" in second.stdout
    again = keyparty(instance, "mail-list", event_id, "--outbox", str(outbox), "--again")
    assert "wrote 2 party list mail(s)" in again.stdout
    hidden = keyparty(instance, "event", "set", event_id, "--no-publish-list")
    assert "not on the public event page" in hidden.stdout


def test_keyparty_sign_leaves_the_bundles_list_beside_its_files(email_event, tmp_path):  # noqa: F811
    """email_event ran `keyparty sign BUNDLE --no-upload --out tmp_path/signed`."""
    listing = tmp_path / "signed" / f"partylist-{email_event.id}.txt"
    assert sha256sum(listing) == email_event.partylist_sha256
