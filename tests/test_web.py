"""The pages, through Flask's test client: what a host and an attendee see."""

import io
import re

from keyparty import create_app
from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Event
from tests.conftest import fingerprint_of
from tests.conftest import fixture_bytes
from tests.conftest import key_bytes
from tests.conftest import press_join
from tests.conftest import prove_by_code

PHONE = {"REMOTE_ADDR": "192.168.1.23"}


def test_host_pages_answer_only_the_laptop(client):
    assert client.get("/host/").status_code == 200
    refused = client.get("/host/", environ_base=PHONE)
    assert refused.status_code == 403
    assert "laptop running keyparty" in refused.text
    assert "KEYPARTY_HOST_PASSWORD" in refused.text
    assert client.post("/host/events", data={"name": "X"}, environ_base=PHONE).status_code == 403


def test_with_a_host_password_everyone_logs_in(app, monkeypatch):
    monkeypatch.setenv("KEYPARTY_HOST_PASSWORD", "s3cret party")
    guarded = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    with guarded.app_context():
        client = guarded.test_client()
        assert client.get("/host/").status_code == 302
        wrong = client.post("/host/login", data={"password": "nope"}, environ_base=PHONE)
        assert "not the host password" in wrong.text
        client.post("/host/login", data={"password": "s3cret party"}, environ_base=PHONE)
        assert client.get("/host/", environ_base=PHONE).status_code == 200


def test_host_creates_an_event_and_registration_is_open(client):
    response = client.post("/host/events", data={"name": "Café Crypto 2027", "date": "2027-03-01"})
    assert response.status_code == 302
    event = db.session.get(Event, "cafe-crypto-2027")
    assert event.state == "registration"
    page = client.get("/host/e/cafe-crypto-2027").text
    assert "/e/cafe-crypto-2027/register" in page
    assert "Freeze the party list" in page


def test_attendee_registers_by_paste_and_gets_a_join_link_once(client, event):
    page = client.get(f"/e/{event.id}/register").text
    assert "gpg --armor --export" in page
    response = client.post(
        f"/e/{event.id}/register",
        data={
            "name": "Hanako",
            "email": "hanako@example.jp",
            "key_text": key_bytes("hanako").decode(),
        },
    )
    # O2: no join link before the registrant proves they hold the key.
    assert response.status_code == 302 and "/prove/" in response.location
    attendee = db.session.scalar(db.select(Attendee))
    assert attendee.proven_at is None and attendee.join_token_sha256 is None
    response = prove_by_code(client, response.location, "hanako")
    assert response.status_code == 200
    assert "shown only this once" in response.text
    link = re.search(r'href="(http://keyparty.test:8000/join/[^"]+)"', response.text).group(1)
    assert "<svg" in response.text, "the join link comes as a code to scan with the phone"
    token = link.rsplit("/", 1)[1]
    db.session.refresh(attendee)
    assert token not in (attendee.join_token_sha256 or "")

    press_join(client, token)
    me = client.get("/me").text
    assert "山田花子 &lt;hanako@example.jp&gt;" in me


def test_attendee_registers_by_file_upload(client, event):
    response = client.post(
        f"/e/{event.id}/register",
        data={"name": "Zoë", "key_file": (io.BytesIO(key_bytes("zoe")), "zoe.asc")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert fingerprint_of("zoe")[:4] in response.text


def test_a_refused_registration_says_what_is_wrong_and_keeps_the_form(client, event):
    response = client.post(
        f"/e/{event.id}/register",
        data={"name": "Oops", "key_text": fixture_bytes("bad/secret.asc").decode()},
    )
    assert response.status_code == 400
    assert "SECRET key" in response.text
    assert 'value="Oops"' in response.text
    assert db.session.scalar(db.select(db.func.count()).select_from(Attendee)) == 0


def test_names_from_strangers_are_escaped_on_pages(client, event):
    response = client.post(
        f"/e/{event.id}/register",
        data={"name": "<script>alert(1)</script>", "key_text": key_bytes("alice").decode()},
        follow_redirects=True,
    )
    assert response.status_code == 200
    host_page = client.get(f"/host/e/{event.id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in host_page
    assert "<script>alert(1)" not in host_page


def test_an_unknown_join_link_gets_a_plain_message(client):
    response = client.get("/join/not-a-token")
    assert response.status_code == 404
    assert "does not work" in response.text


def test_host_freezes_and_reads_the_digests_aloud(client, registered_event):
    page = client.get(f"/host/e/{registered_event.id}").text
    assert "Freeze the party list" in page
    # O2: the imported links were never redeemed, so the freeze's confirmation names them.
    asked = client.post(f"/host/e/{registered_event.id}/step/freeze", follow_redirects=True).text
    assert "entries are not proven yet (O2)" in asked
    assert all(f"{name} Example" in asked for name in ("Alice", "Bob", "Carol"))
    db.session.refresh(registered_event)
    assert registered_event.state == "registration"
    client.post(f"/host/e/{registered_event.id}/step/freeze", data={"confirmed": "yes"})
    db.session.refresh(registered_event)
    assert registered_event.state == "frozen"
    page = client.get(f"/host/e/{registered_event.id}").text
    sha = registered_event.partylist_sha256
    groups = re.findall(r"<span>([0-9a-f]{4})</span>", page)
    assert "".join(groups[:16]) == sha
    listing = client.get(f"/host/e/{registered_event.id}/partylist.txt")
    assert listing.data == registered_event.partylist.encode("utf-8")
    assert "attachment" in listing.headers["Content-Disposition"]


def test_an_out_of_order_step_is_refused_with_what_to_do_first(client, registered_event):
    response = client.post(
        f"/host/e/{registered_event.id}/step/start-signing", follow_redirects=True
    )
    assert "First: Freeze the party list" in response.text
    db.session.refresh(registered_event)
    assert registered_event.state == "registration"


def test_host_imports_a_keyring_and_a_signup_sheet(client, event):
    response = client.post(
        f"/host/e/{event.id}/import",
        data={
            "files": [
                (io.BytesIO(key_bytes("alice") + key_bytes("bob")), "ring.asc"),
                (io.BytesIO(fixture_bytes("bad/rsa1024.asc")), "old.asc"),
                (io.BytesIO(fixture_bytes("signups.csv")), "signups.csv"),
            ],
            "hand_out": "y",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert "2 accepted, 1 refused" in response.text
    assert response.text.count("http://keyparty.test:8000/join/") == 2
    assert "RSA with 1024 bits" in response.text


def test_badges_carry_both_codes_for_each_key(client, frozen_event):
    page = client.get(f"/host/e/{frozen_event.id}/badges").text
    assert page.count("<svg") == 2 * len(frozen_event.keys)
    for key in frozen_event.keys:
        assert f"http://keyparty.test:8000/e/{frozen_event.id}/k/{key.fingerprint}" in page
    assert "size: A4" in page


def test_a_badge_url_opens_that_keys_page(client, frozen_event):
    key = frozen_event.keys[0]
    page = client.get(f"/e/{frozen_event.id}/k/{key.fingerprint}")
    assert page.status_code == 200
    assert key.fingerprint[:4] in page.text
    assert client.get(f"/e/{frozen_event.id}/k/{'0' * 40}").status_code == 404


def test_security_headers(client):
    response = client.get("/")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_forms_need_a_csrf_token(instance):
    strict = create_app({"TESTING": True})
    with strict.app_context():
        response = strict.test_client().post("/host/events", data={"name": "No token"})
        assert response.status_code == 400
        assert db.session.scalar(db.select(db.func.count()).select_from(Event)) == 0


def test_guessing_join_links_is_slowed_down(client):
    statuses = [client.get(f"/join/guess{n}").status_code for n in range(12)]
    assert statuses[:10] == [404] * 10
    assert statuses[-1] == 429
    assert "Wait" in client.get("/join/guess-more").text


def test_scripted_calls_send_the_csrf_token_in_a_header(instance):
    strict = create_app({"TESTING": True})
    with strict.app_context():
        client = strict.test_client()
        page = client.get("/host/").text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        response = client.post(
            "/host/events", data={"name": "Scripted"}, headers={"X-CSRFToken": token}
        )
        assert response.status_code == 302
        assert db.session.get(Event, "scripted") is not None


def test_an_upload_over_the_limit_gets_a_plain_message(client, event):
    response = client.post(
        f"/e/{event.id}/register",
        data={"name": "Big", "key_file": (io.BytesIO(b"x" * (3 * 1024 * 1024)), "big.asc")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert "gpg --armor --export" in response.text


def test_a_japanese_phone_registers_in_japanese(client, event):
    japanese = {"Accept-Language": "ja"}
    form = client.get(f"/e/{event.id}/register", headers=japanese).text
    assert '<html lang="ja">' in form
    assert "自分の鍵を登録する" in form and "Register my key" not in form
    assert "お名前" in form and "秘密鍵は絶対に送らないでください。" in form
    assert "<code>gpg --armor --export FINGERPRINT &gt; mykey.asc</code>" in form

    response = client.post(
        f"/e/{event.id}/register",
        data={"name": "花子", "key_text": fixture_bytes("bad/secret.asc").decode()},
        headers=japanese,
    )
    assert response.status_code == 400
    assert "登録されませんでした。" in response.text
    assert "送られたのは公開鍵ではなく「秘密鍵」です。" in response.text
    assert "SECRET key" not in response.text
    assert "自分の鍵を登録する" in response.text

    # A refusal that names a detail gets the detail in Japanese too.
    cut = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n"
    response = client.post(
        f"/e/{event.id}/register", data={"name": "花子", "key_text": cut}, headers=japanese
    )
    assert "途中で切れています（END の行がありません）。" in response.text


def test_the_host_sets_contexts_and_pace_on_the_page(client, event):
    page = client.get(f"/host/e/{event.id}").text
    assert 'value="identity,email,pseudonym"' in page
    data = {"contexts": "identity,email", "pace_gap": "30", "pace_window": "300", "pace_max": "8"}
    saved = client.post(f"/host/e/{event.id}/settings", data=data, follow_redirects=True)
    assert "Settings saved." in saved.text
    db.session.refresh(event)
    assert (event.contexts, event.pace_min_gap_seconds, event.pace_max_in_window) == (
        "identity,email",
        30,
        8,
    )
    refused = client.post(
        f"/host/e/{event.id}/settings", data={**data, "pace_window": "10"}, follow_redirects=True
    )
    assert "P4:" in refused.text
    db.session.refresh(event)
    assert event.pace_window_seconds == 300


def test_form_errors_speak_the_phones_language(client, event):
    response = client.post(
        f"/e/{event.id}/register",
        data={"name": "", "email": "not-an-address", "key_text": key_bytes("alice").decode()},
        headers={"Accept-Language": "ja"},
    )
    assert response.status_code == 400
    assert "入力してください。" in response.text
    assert "メールアドレスではありません。" in response.text
    english = client.post(f"/e/{event.id}/register", data={"name": ""})
    assert "Please fill this in." in english.text


def test_form_messages_of_wtforms_follow_the_page_language(client):
    """A date the form cannot read is named in the page's language, also when
    requests in two languages alternate (the catalogue is kept per language)."""
    for _ in range(2):
        english = client.post("/host/events", data={"name": "Party", "date": "next friday"})
        assert "Not a valid date value." in english.text
        japanese = client.post(
            "/host/events",
            data={"name": "Party", "date": "next friday"},
            headers={"Accept-Language": "ja"},
        )
        assert "無効な日付型です。" in japanese.text
        assert "Not a valid date value." not in japanese.text
