"""Owners decide (O1), email certifications need the mail (C3), and every
export round-trips through a fresh gpg with only what owners accepted."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta

from keyparty import events
from keyparty import exports
from keyparty import publishing
from keyparty import report
from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import utcnow
from tests.conftest import attendee_named
from tests.conftest import phone_of
from tests.conftest import short_tempdir

BOB_UID = "Bob Example <bob@example.org>"
BOB_UID2 = "Bob Example <bob@example.net>"


def received(event, owner, uid, context):
    return next(
        c
        for c in publishing.certifications_received(attendee_named(event, owner))
        if c.user_id_text == uid and c.context == context
    )


def button(client, path):
    page = client.get(path).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    return {"csrf_token": token.group(1)} if token else {}


def gpg_sigs(data: bytes, extra=()):
    """Import into a fresh home; return `--check-sigs` colon lines and the home."""
    home = short_tempdir()
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-autostart", "--import"],
        input=data,
        capture_output=True,
        check=True,
    )
    listing = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-autostart",
            "--with-colons",
            "--check-sigs",
            "--list-options",
            "show-sig-subpackets=20",
            *extra,
        ],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return listing


def decide(app, event, owner, certification, decision):
    phone = phone_of(app, attendee_named(event, owner))
    return phone.post(
        f"/me/received/{certification.id}/{decision}",
        data=button(phone, "/me/received"),
        follow_redirects=True,
    )


def test_owners_accept_or_decline_and_only_accepted_is_exported(app, certified_event):
    event = certified_event
    identity = received(event, "Bob", BOB_UID, "identity")
    second = received(event, "Bob", BOB_UID2, "identity")
    bob_page = phone_of(app, attendee_named(event, "Bob")).get("/me/received").text
    assert "Alice Example" in bob_page and bob_page.count("Decline") == 3
    assert "it is published with your key" in decide(app, event, "Bob", identity, "accepted").text
    assert "The signer is not told" in decide(app, event, "Bob", second, "declined").text
    db.session.refresh(identity)
    assert (identity.owner_decision, second.owner_decision) == ("accepted", "declined")

    alice_fpr = attendee_named(event, "Alice").keys[0].fingerprint
    listing = gpg_sigs(exports.keyring(event))
    uid_blocks = listing.split("\nuid:")
    bob_org = next(b for b in uid_blocks if f"::{BOB_UID}::" in b.split("\n")[0])
    bob_net = next(b for b in uid_blocks if f"::{BOB_UID2}::" in b.split("\n")[0])
    # The accepted one, good, with its context notation; the declined one absent.
    assert f"sig:!::22:{alice_fpr[-16:]}" in bob_org
    assert "context@keyparty.orgidentity" in bob_org
    assert alice_fpr[-16:] not in bob_net, "declined: never exported"
    assert "context@keyparty.orgemail" not in listing, "email waits for the mail (C3)"


def test_a_decline_after_accepting_takes_off_that_certification_alone(
    app, certified_event, monkeypatch
):
    """Changing one's mind takes one signature off one key in the published
    keyring; the rest of the keyring is not rebuilt (at 1000 keys with 50 000
    certifications a rebuild takes minutes)."""
    from keyparty import consistency

    event = certified_event
    identity = received(event, "Bob", BOB_UID, "identity")
    second = received(event, "Bob", BOB_UID2, "identity")
    carol = received(event, "Carol", "Carol Example <carol@example.org>", "identity")
    for owner, certification in (("Bob", identity), ("Bob", second), ("Carol", carol)):
        decide(app, event, owner, certification, "accepted")
    alice_key_id = attendee_named(event, "Alice").keys[0].fingerprint[-16:]
    before = gpg_sigs(exports.keyring(event)).count(f"sig:!::22:{alice_key_id}")
    rebuilds = []
    monkeypatch.setattr(publishing, "_fill", lambda *a: rebuilds.append(a))

    assert "The signer is not told" in decide(app, event, "Bob", identity, "declined").text

    assert rebuilds == []
    listing = gpg_sigs(exports.keyring(event))
    uid_blocks = listing.split("\nuid:")
    bob_org = next(b for b in uid_blocks if f"::{BOB_UID}::" in b.split("\n")[0])
    bob_net = next(b for b in uid_blocks if f"::{BOB_UID2}::" in b.split("\n")[0])
    assert alice_key_id not in bob_org, "declined: off the published key"
    assert f"sig:!::22:{alice_key_id}" in bob_net, "Bob's other user ID keeps its own"
    assert listing.count(f"sig:!::22:{alice_key_id}") == before - 1
    assert f"sig:!::22:{alice_key_id}" in next(
        b for b in uid_blocks if "carol@" in b.split("\n")[0]
    )
    assert consistency.check(event) == []


def test_an_email_certification_cannot_be_accepted_on_the_page(app, certified_event):
    email = received(certified_event, "Bob", BOB_UID, "email")
    page = decide(app, certified_event, "Bob", email, "accepted").text
    assert "C3:" in page
    db.session.refresh(email)
    assert email.owner_decision is None


def test_nobody_decides_for_another_owner(app, certified_event):
    carol_cert = received(certified_event, "Carol", "Carol Example <carol@example.org>", "identity")
    assert decide(app, certified_event, "Bob", carol_cert, "accepted").status_code == 404
    db.session.refresh(carol_cert)
    assert carol_cert.owner_decision is None


def test_the_signer_is_never_told_of_a_decline(app, certified_event):
    second = received(certified_event, "Bob", BOB_UID2, "identity")
    decide(app, certified_event, "Bob", second, "declined")
    alice_page = phone_of(app, attendee_named(certified_event, "Alice")).get("/me").text
    assert "eclined" not in alice_page
    assert alice_page.count("Taken in by the event") == 4


def test_every_export_format_round_trips(app, certified_event, tmp_path):
    event = certified_event
    decide(app, event, "Bob", received(event, "Bob", BOB_UID, "identity"), "accepted")
    decide(
        app,
        event,
        "Carol",
        received(event, "Carol", "Carol Example <carol@example.org>", "identity"),
        "accepted",
    )
    alice_fpr = attendee_named(event, "Alice").keys[0].fingerprint

    binary = exports.write_keyring(event, tmp_path / "ring.gpg", binary=True).read_bytes()
    assert not binary.startswith(b"-----")
    for data in (binary, exports.keyring(event)):
        listing = gpg_sigs(data)
        assert listing.count("pub:") == 3
        # Alice's two published certifications, on Bob's key and on Carol's.
        others = [b for b in listing.split("pub:")[1:] if alice_fpr not in b.split("\n")[1]]
        assert sum(b.count(f"sig:!::22:{alice_fpr[-16:]}") for b in others) == 2

    per_key = exports.write_per_key(event, tmp_path / "keys")
    assert sorted(p.stem for p in per_key) == sorted(k.fingerprint for k in event.keys)
    bob_fpr = attendee_named(event, "Bob").keys[0].fingerprint
    assert alice_fpr in gpg_sigs((tmp_path / "keys" / f"{bob_fpr}.asc").read_bytes())

    per_uid = exports.write_per_user_id(event, tmp_path / "uids")
    assert len(per_uid) == sum(len(k.user_ids) for k in event.keys)
    for path in per_uid:
        listing = gpg_sigs(path.read_bytes())
        assert listing.count("\nuid:") == 1


def test_the_wkd_tree_has_the_right_hashes(certified_event, tmp_path):
    written = exports.write_wkd(certified_event, tmp_path / "wkd")
    gpg_hash = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(short_tempdir()),
            "--batch",
            "--no-autostart",
            "--with-wkd-hash",
            "--import-options",
            "show-only",
            "--import",
        ],
        input=exports.keyring(certified_event),
        capture_output=True,
        check=True,
    ).stdout.decode()
    direct = tmp_path / "wkd" / "example.org" / ".well-known" / "openpgpkey"
    advanced = (
        tmp_path / "wkd" / "openpgpkey.example.org" / ".well-known" / "openpgpkey" / "example.org"
    )
    bob_hash = exports.wkd_hash("bob")
    assert f"{bob_hash}@example.org" in gpg_hash, "keyparty's hash is gpg's"
    for base in (direct, advanced):
        assert (base / "policy").exists()
        listing = gpg_sigs((base / "hu" / bob_hash).read_bytes())
        assert "bob@example.org" in listing and "bob@example.net" not in listing
    assert len(written) > 4


def test_an_attendee_downloads_their_own_signed_key(app, certified_event):
    decide(
        app,
        certified_event,
        "Bob",
        received(certified_event, "Bob", BOB_UID, "identity"),
        "accepted",
    )
    response = phone_of(app, attendee_named(certified_event, "Bob")).get("/me/key.asc")
    assert response.status_code == 200
    alice_fpr = attendee_named(certified_event, "Alice").keys[0].fingerprint
    listing = gpg_sigs(response.data)
    assert listing.count("pub:") == 1 and alice_fpr in listing


def test_the_report_has_event_wide_totals_a_graph_and_what_expires(
    app, runner, certified_event, tmp_path
):
    decide(
        app,
        certified_event,
        "Bob",
        received(certified_event, "Bob", BOB_UID, "identity"),
        "accepted",
    )
    totals = report.totals(certified_event)
    assert totals["certifications"] == {"awaiting owner": 3, "published": 1}
    graph = report.certification_graph(certified_event)
    assert len(graph.nodes) == 3 and len(graph.edges) == 1
    assert len(report.expiring(publishing.owner_accepted(certified_event), 400)) == 1
    assert report.expiring(publishing.owner_accepted(certified_event), 30) == []
    result = runner.invoke(args=["report", certified_event.id, "--graph", str(tmp_path / "g.svg")])
    assert result.exit_code == 0, result.output
    assert "published 1" in result.output and "Alice" not in result.output
    assert "<svg" in (tmp_path / "g.svg").read_text()


def test_purge_keeps_exports_and_totals_only(app, runner, certified_event):
    event = certified_event
    refused = runner.invoke(args=["purge", event.id, "--yes"])
    assert refused.exit_code != 0 and "close" in refused.output
    assert events.take_step(event, "close") is None
    result = runner.invoke(args=["purge", event.id], input="y\n")
    assert result.exit_code == 0, result.output
    assert "deleted 3 attendees" in result.output
    assert db.session.scalar(db.select(db.func.count()).select_from(Attendee)) == 0
    assert db.session.scalar(db.select(db.func.count()).select_from(Certification)) == 0
    final = events.event_files(event) / "final"
    assert (final / "keyring.asc").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK")
    assert "Alice" not in (final / "totals.json").read_text()
    assert not events.event_home(event).path.joinpath("pubring.kbx").exists()


def test_each_attendee_sees_their_own_certifications_expiring_soon(app, certified_event):
    carol_cert = received(certified_event, "Carol", "Carol Example <carol@example.org>", "identity")
    carol_cert.expires = utcnow() + timedelta(days=10)
    db.session.commit()
    alice = phone_of(app, attendee_named(certified_event, "Alice")).get("/me").text
    carol = phone_of(app, attendee_named(certified_event, "Carol")).get("/me").text
    bob = phone_of(app, attendee_named(certified_event, "Bob")).get("/me").text
    assert "Expiring soon" in alice and "Given: Carol Example &lt;carol@example.org&gt;" in alice
    assert "Received: Carol Example &lt;carol@example.org&gt;" in carol
    assert "Expiring soon" not in bob, "a year away is not soon"
