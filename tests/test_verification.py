"""Verifying at the event, through the phone pages: the rules hold where
verifications are recorded."""

import re

from keyparty import create_app
from keyparty import events
from keyparty.extensions import db
from keyparty.models import RefusalRecord
from keyparty.models import Verification
from keyparty.partylist import group_digest
from tests.conftest import attendee_named
from tests.conftest import key_bytes
from tests.conftest import phone_of


def key_of(event, first_name):
    return attendee_named(event, first_name).keys[0]


def verify(client, event, key, uid_index=0, context="identity", basis="photo-id"):
    uid = key.user_ids[uid_index]
    prefix = f"u{uid.id}"
    return client.post(
        f"/e/{event.id}/k/{key.fingerprint}/u/{uid.id}",
        data={f"{prefix}-context": context, f"{prefix}-basis": basis},
    )


def active(signer):
    return db.session.scalars(
        db.select(Verification).where(
            Verification.signer_id == signer.id, Verification.withdrawn_at.is_(None)
        )
    ).all()


def refusals(event):
    return db.session.scalars(
        db.select(RefusalRecord.rule).where(RefusalRecord.event_id == event.id)
    ).all()


def test_one_verification_per_user_id_with_its_level(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    carol_key = key_of(verifying_event, "Carol")
    phone = phone_of(app, alice)
    page = phone.get(f"/e/{verifying_event.id}/k/{carol_key.fingerprint}").text
    assert page.count("Record this user ID") == 3, "one decision per user ID (P2)"
    assert "sign all" not in page.lower()

    response = verify(phone, verifying_event, carol_key, uid_index=1, basis="known-personally")
    assert response.status_code == 302
    (recorded,) = active(alice)
    assert recorded.user_id.text == "Carol Example (work) <carol@work.example.net>"
    assert (recorded.context, recorded.level) == ("identity", 2)
    page = phone.get(f"/e/{verifying_event.id}/k/{carol_key.fingerprint}").text
    assert page.count("You verified this") == 1


def test_the_same_tap_twice_records_once(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    phone = phone_of(app, alice)
    bob_key = key_of(verifying_event, "Bob")
    verify(phone, verifying_event, bob_key)
    verify(phone, verifying_event, bob_key)
    assert len(active(alice)) == 1


def test_a_second_context_on_the_same_user_id_is_its_own_verification(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    phone = phone_of(app, alice)
    bob_key = key_of(verifying_event, "Bob")
    verify(phone, verifying_event, bob_key, context="identity")
    verify(phone, verifying_event, bob_key, context="email")
    assert sorted(v.context for v in active(alice)) == ["email", "identity"]


def test_refused_bases_say_why_and_are_counted(app, verifying_event):
    phone = phone_of(app, attendee_named(verifying_event, "Alice"))
    bob_key = key_of(verifying_event, "Bob")
    vouched = verify(phone, verifying_event, bob_key, basis="vouched")
    assert vouched.status_code == 409
    assert "T2:" in vouched.text and "transitive trust" in vouched.text
    crowd = verify(phone, verifying_event, bob_key, basis="everyone-signs")
    assert "P3:" in crowd.text and "peer pressure" in crowd.text
    nice = verify(phone, verifying_event, bob_key, basis="seemed-nice")
    assert "P3:" in nice.text and "not an identity check" in nice.text
    assert sorted(refusals(verifying_event)) == ["P3", "P3", "T2"]
    assert not active(attendee_named(verifying_event, "Alice"))


def test_rushing_to_the_next_person_is_refused_with_the_wait(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    phone = phone_of(app, alice)
    assert verify(phone, verifying_event, key_of(verifying_event, "Bob")).status_code == 302
    # Another user ID of the same person is not rushing: one ID check covers it.
    assert verify(phone, verifying_event, key_of(verifying_event, "Bob"), 1).status_code == 302
    rushed = verify(phone, verifying_event, key_of(verifying_event, "Carol"))
    assert rushed.status_code == 409
    assert "P4:" in rushed.text
    wait = int(re.search(r"wait (\d+) s", rushed.text).group(1))
    assert 1 <= wait <= 20
    assert len(active(alice)) == 2


def test_no_verification_before_the_owner_confirmed_their_entry(app, frozen_event):
    bob = attendee_named(frozen_event, "Bob")
    from keyparty.models import utcnow

    bob.entry_confirmed_at = utcnow()
    db.session.commit()
    events.take_step(frozen_event, "start-verifying")
    phone = phone_of(app, bob)
    alice_key = key_of(frozen_event, "Alice")
    page = phone.get(f"/e/{frozen_event.id}/k/{alice_key.fingerprint}").text
    assert "T4" in page and "Record this user ID" not in page
    refused = verify(phone, frozen_event, alice_key)
    assert refused.status_code == 409 and "T4:" in refused.text


def test_an_owner_confirms_their_own_entry(app, frozen_event):
    alice = attendee_named(frozen_event, "Alice")
    phone = phone_of(app, alice)
    page = phone.get("/me").text
    shown = re.findall(r'<span class="group">([0-9a-f]{4})</span>', page)
    assert shown == group_digest(frozen_event.partylist_sha256), "in groups of four"
    assert "Confirm my entry" in page
    half = phone.post("/me/confirm", data={"entry_correct": "y"}, follow_redirects=True)
    assert "Tick both boxes" in half.text
    assert alice.entry_confirmed_at is None
    phone.post("/me/confirm", data={"entry_correct": "y", "digest_matches": "y"})
    db.session.refresh(alice)
    assert alice.entry_confirmed_at is not None


def test_confirming_before_the_freeze_is_refused(app, registered_event):
    phone = phone_of(app, attendee_named(registered_event, "Alice"))
    response = phone.post(
        "/me/confirm", data={"entry_correct": "y", "digest_matches": "y"}, follow_redirects=True
    )
    assert "no frozen list yet" in response.text


def test_your_own_key_cannot_be_verified_by_you(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    phone = phone_of(app, alice)
    own = key_of(verifying_event, "Alice")
    assert "This is your own key" in phone.get(f"/e/{verifying_event.id}/k/{own.fingerprint}").text
    refused = verify(phone, verifying_event, own)
    assert "T2:" in refused.text and not active(alice)


def test_without_a_session_a_phone_is_told_to_join(client, verifying_event):
    bob_key = key_of(verifying_event, "Bob")
    page = client.get(f"/e/{verifying_event.id}/k/{bob_key.fingerprint}")
    assert page.status_code == 200
    assert "join the event first" in page.text
    refused = verify(client, verifying_event, bob_key)
    assert refused.status_code == 401
    assert "Join first" in refused.text
    assert db.session.scalar(db.select(db.func.count()).select_from(Verification)) == 0


def test_no_page_shows_who_else_verified_a_key(app, verifying_event):
    carol_key = key_of(verifying_event, "Carol")
    verify(phone_of(app, attendee_named(verifying_event, "Alice")), verifying_event, carol_key)
    bob_phone = phone_of(app, attendee_named(verifying_event, "Bob"))
    page = bob_phone.get(f"/e/{verifying_event.id}/k/{carol_key.fingerprint}").text
    assert "You verified" not in page and "Alice" not in page
    carol_page = phone_of(app, attendee_named(verifying_event, "Carol")).get("/me").text
    assert "Alice" not in carol_page, "P5: not even the owner sees who verified them yet"


def test_one_attendee_cannot_see_or_withdraw_anothers_verification(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    verify(phone_of(app, alice), verifying_event, key_of(verifying_event, "Carol"))
    (mine,) = active(alice)
    bob_phone = phone_of(app, attendee_named(verifying_event, "Bob"))
    assert bob_phone.post(f"/v/{mine.id}/withdraw").status_code == 404
    assert "Carol" not in bob_phone.get("/me/verifications").text
    db.session.refresh(mine)
    assert mine.withdrawn_at is None


def test_withdraw_until_signing_starts_and_nothing_added_after_verifying(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    phone = phone_of(app, alice)
    verify(phone, verifying_event, key_of(verifying_event, "Bob"))
    (first,) = active(alice)
    events.take_step(verifying_event, "cool-off")
    late = verify(phone, verifying_event, key_of(verifying_event, "Bob"), uid_index=1)
    assert late.status_code == 409 and "P6:" in late.text
    assert phone.post(f"/v/{first.id}/withdraw").status_code == 302
    assert not active(alice)

    verifying_event.state = "verifying"
    db.session.commit()
    verify(phone, verifying_event, key_of(verifying_event, "Bob"), uid_index=1)
    (second,) = active(alice)
    verifying_event.state = "signing"
    db.session.commit()
    refused = phone.post(f"/v/{second.id}/withdraw", follow_redirects=True)
    assert "P6:" in refused.text
    assert active(alice) == [second]


def test_a_join_link_works_once(app, event):
    from keyparty import registration

    result = registration.register_keys(
        event, [("alice.asc", key_bytes("alice"))], events.event_home(event)
    )
    token = result.accepted[0].join_token
    # A link preview or mail scanner opens it: nothing is spent (O2).
    for _ in range(2):
        assert "Join on this phone" in app.test_client().get(f"/join/{token}").text
    assert app.test_client().head(f"/join/{token}").status_code == 200
    first = app.test_client().post(f"/join/{token}")
    assert first.status_code == 302
    again = app.test_client().get(f"/join/{token}")
    assert again.status_code == 404 and "already used" in again.text


def test_the_host_sees_event_wide_totals_only(app, client, verifying_event):
    phone = phone_of(app, attendee_named(verifying_event, "Alice"))
    verify(phone, verifying_event, key_of(verifying_event, "Bob"))
    verify(phone, verifying_event, key_of(verifying_event, "Carol"), basis="vouched")
    page = client.get(f"/host/e/{verifying_event.id}").text
    assert '<dd data-total="verifications">1</dd>' in page
    assert "T2 1" in page
    header = re.search(r"<tr>(<th>.*?)</tr>", page).group(1)
    # No column counts anything per attendee (P5).
    assert re.findall(r"<th>([^<]*)</th>", header) == [
        "#",
        "Name",
        "Fingerprint",
        "Key",
        "Join link",
    ]


def test_the_scanner_is_offered_on_localhost_and_explained_elsewhere(app, verifying_event):
    phone = phone_of(app, attendee_named(verifying_event, "Alice"))
    local = phone.get("/scan", base_url="http://localhost:8000").text
    assert 'id="scanner"' in local and "vendor/jsQR.js" in local
    # The laptop's address on the party's Wi-Fi.
    app.config["TRUSTED_HOSTS"].fixed.append("192.168.1.10")
    lan_phone = phone_of(
        app, attendee_named(verifying_event, "Alice"), base_url="http://192.168.1.10:8000"
    )
    lan = lan_phone.get("/scan", base_url="http://192.168.1.10:8000").text
    assert 'id="scanner"' not in lan
    assert "--tls-cert" in lan


def test_my_code_shows_both_codes_and_the_fingerprint(app, verifying_event):
    alice = attendee_named(verifying_event, "Alice")
    page = phone_of(app, alice).get("/me/code").text
    assert page.count("<svg") == 2
    assert alice.keys[0].fingerprint[:4] in page


RADIO = re.compile(
    r'<input (checked )?id="u(\d+)-(context|basis)-(\d+)" name="u\2-\3" required type="radio" value="([^"]*)">'
)


def radios(page: str, uid_id: int) -> dict[str, list[tuple[str, bool]]]:
    """The radio buttons of one user ID's form: (value, checked) by field, in order."""
    found: dict[str, list[tuple[str, bool]]] = {"context": [], "basis": []}
    for checked, uid, field, _index, value in RADIO.findall(page):
        if int(uid) == uid_id:
            found[field].append((value, bool(checked)))
    return found


def test_a_refused_choice_comes_back_as_it_was_picked(app, verifying_event):
    """The key page's radio buttons: nothing picked at first, and after a
    refusal (409) or an incomplete form (400) the signer's own picks again."""
    phone = phone_of(app, attendee_named(verifying_event, "Alice"))
    bob_key = key_of(verifying_event, "Bob")
    uid = bob_key.user_ids[0]
    page = phone.get(f"/e/{verifying_event.id}/k/{bob_key.fingerprint}").text
    first = radios(page, uid.id)
    assert [v for v, _ in first["context"]] == ["identity", "email", "pseudonym"]
    assert [v for v, _ in first["basis"]] == [
        "photo-id",
        "known-personally",
        "vouched",
        "everyone-signs",
        "seemed-nice",
    ]
    assert not any(c for field in first.values() for _, c in field), "nothing picked yet"
    assert "I have known them personally for years" in page

    refused = verify(phone, verifying_event, bob_key, context="pseudonym", basis="seemed-nice")
    assert refused.status_code == 409 and "P3:" in refused.text
    again = radios(refused.text, uid.id)
    assert [v for v, c in again["context"] if c] == ["pseudonym"]
    assert [v for v, c in again["basis"] if c] == ["seemed-nice"]
    # The other user IDs' forms start afresh.
    other = radios(refused.text, bob_key.user_ids[1].id)
    assert other["context"] and not any(c for field in other.values() for _, c in field)

    incomplete = phone.post(
        f"/e/{verifying_event.id}/k/{bob_key.fingerprint}/u/{uid.id}",
        data={f"u{uid.id}-basis": "photo-id"},
    )
    assert incomplete.status_code == 400
    assert "Choose a context" in incomplete.text
    again = radios(incomplete.text, uid.id)
    assert not any(c for _, c in again["context"])
    assert [v for v, c in again["basis"] if c] == ["photo-id"]
    assert not active(attendee_named(verifying_event, "Alice"))


def test_the_key_pages_forms_carry_a_csrf_token_the_server_takes(app, verifying_event):
    """With CSRF on (as `keyparty serve` runs): verify, then withdraw, each with
    the token its form on the key page carries; a post without it stores nothing."""
    # A second app on the same instance: its requests get their own app
    # context (flask.g, where the token is kept), not the fixture's.
    served = create_app({"TESTING": True, "PUBLIC_URL": app.config["PUBLIC_URL"]})
    served.config["WTF_CSRF_ENABLED"] = False  # the join button, as phone_of presses it
    alice = attendee_named(verifying_event, "Alice")
    phone = phone_of(served, alice)
    served.config["WTF_CSRF_ENABLED"] = True
    bob_key = key_of(verifying_event, "Bob")
    uid = bob_key.user_ids[0]
    path = f"/e/{verifying_event.id}/k/{bob_key.fingerprint}"
    page = phone.get(path).text
    token = re.search(rf'name="u{uid.id}-csrf_token" type="hidden" value="([^"]+)"', page)
    fields = {f"u{uid.id}-context": "identity", f"u{uid.id}-basis": "photo-id"}
    assert phone.post(f"{path}/u/{uid.id}", data=fields).status_code == 400
    assert not active(alice)
    db.session.commit()  # outside a request SQLite reads under the write lock
    fields[f"u{uid.id}-csrf_token"] = token.group(1)
    assert phone.post(f"{path}/u/{uid.id}", data=fields).status_code == 302
    (made,) = active(alice)
    db.session.commit()
    page = phone.get(path).text
    assert "You verified this (identity, level 3)." in page
    withdraw = re.search(
        rf'action="/v/{made.id}/withdraw" class="inline">\s*'
        r'<input id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)">\s*'
        r'<input type="hidden" name="next" value="([^"]+)">',
        page,
    )
    assert withdraw, "the withdraw button's form"
    answer = phone.post(
        f"/v/{made.id}/withdraw",
        data={"csrf_token": withdraw.group(1), "next": withdraw.group(2)},
    )
    assert answer.status_code == 302 and answer.headers["Location"] == path
    assert not active(alice)
