"""What keyparty protects against on a shared Wi-Fi: other Host names,
password guessing, stale host sessions, open redirects, cached tokens,
flooding, and bodies too large to read."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from sqlalchemy import update

from keyparty import create_app
from keyparty import events
from keyparty.extensions import db
from keyparty.models import RateLimit
from tests.conftest import attendee_named
from tests.conftest import key_bytes
from tests.conftest import phone_of
from tests.conftest import prove_by_code
from tests.test_serve import fetch
from tests.test_serve import serve
from tests.test_serve import stop

PHONE = {"REMOTE_ADDR": "192.168.1.23"}


def host_app(monkeypatch, password: str):
    monkeypatch.setenv("KEYPARTY_HOST_PASSWORD", password)
    return create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})


def test_other_host_names_are_refused(client):
    assert client.get("/", base_url="http://localhost:8000").status_code == 200
    assert client.get("/", base_url="http://127.0.0.1:8000").status_code == 200
    # PUBLIC_URL's host (the tests' http://keyparty.test:8000) is trusted too.
    assert client.get("/", base_url="http://keyparty.test").status_code == 200
    # A DNS-rebinding page reaches the laptop under its own name.
    for name in ("evil.example", "attacker.test:8000", "localhost.evil.example"):
        response = client.get("/host/", base_url=f"http://{name}")
        assert response.status_code == 400, name


def test_a_host_name_from_the_setting_is_trusted(instance, monkeypatch):
    monkeypatch.setenv("KEYPARTY_TRUSTED_HOSTS", "party.example.org, keys.example.net")
    app = create_app({"TESTING": True})
    client = app.test_client()
    assert client.get("/", base_url="https://party.example.org").status_code == 200
    assert client.get("/", base_url="https://keys.example.net").status_code == 200
    assert client.get("/", base_url="https://other.example.org").status_code == 400


def test_password_guessing_waits_longer_and_longer(app, monkeypatch):
    guarded = host_app(monkeypatch, "s3cret party")
    with guarded.app_context():
        client = guarded.test_client()
        statuses = [
            client.post("/host/login", data={"password": f"guess{n}"}, environ_base=PHONE)
            for n in range(7)
        ]
        assert [r.status_code for r in statuses] == [401] * 5 + [429] * 2
        assert "Wait" in statuses[-1].text and "try again" in statuses[-1].text
        # Even the right password waits now: guessing gets nothing more.
        right = client.post("/host/login", data={"password": "s3cret party"}, environ_base=PHONE)
        assert right.status_code == 429
        # Another address is not held up by this one.
        other = {"REMOTE_ADDR": "192.168.1.99"}
        assert client.post("/host/login", data={"password": "s3cret party"}, environ_base=other)
        assert client.get("/host/", environ_base=other).status_code == 200


def test_the_wait_grows_past_the_first_minute(app, monkeypatch):
    guarded = host_app(monkeypatch, "s3cret party")
    with guarded.app_context():
        client = guarded.test_client()
        waits = []
        for _ in range(4):
            for n in range(6):
                response = client.post(
                    "/host/login", data={"password": f"g{n}"}, environ_base=PHONE
                )
            waits.append(int(response.text.split("Wait ")[1].split(" s")[0]))
            # A minute passes: every counting window started a minute earlier.
            db.session.execute(update(RateLimit).values(window_start=RateLimit.window_start - 61))
            db.session.commit()
        assert waits[0] <= 60 and max(waits) > 60, waits


def test_logout_and_sessions_end_with_the_password(app, monkeypatch):
    guarded = host_app(monkeypatch, "first password")
    with guarded.app_context():
        client = guarded.test_client()
        client.post("/host/login", data={"password": "first password"}, environ_base=PHONE)
        page = client.get("/host/", environ_base=PHONE)
        assert page.status_code == 200 and "Log out" in page.text
        client.post("/host/logout", environ_base=PHONE)
        assert client.get("/host/", environ_base=PHONE).status_code == 302
        client.post("/host/login", data={"password": "first password"}, environ_base=PHONE)
        assert client.get("/host/", environ_base=PHONE).status_code == 200
        cookie = client.get_cookie("session").value
    # The server restarts with another password: the old session is over.
    changed = host_app(monkeypatch, "second password")
    with changed.app_context():
        client = changed.test_client()
        client.set_cookie("session", cookie)
        response = client.get("/host/", environ_base=PHONE)
        assert response.status_code == 302 and "/host/login" in response.location


@pytest.mark.parametrize(
    "target",
    [
        "/%09/evil.example",
        "/\t/evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "//evil.example",
        "https:evil.example",
        "https://evil.example/",
        "/%0a/evil.example",
        "/ /evil.example",
    ],
)
def test_the_language_switch_stays_on_this_server(client, target):
    response = client.get("/lang/ja", query_string={"next": target})
    assert response.status_code == 302
    assert response.location == "/"


def test_the_language_switch_returns_to_the_page(client):
    response = client.get("/lang/ja", query_string={"next": "/e/x/register?y=1"})
    assert response.location == "/e/x/register?y=1"


def test_pages_with_tokens_are_not_cached(client, app, signing_event):
    event = events.create_event("Open Party")
    started = client.post(
        f"/e/{event.id}/register",
        data={"name": "Hanako", "key_text": key_bytes("hanako").decode()},
    )
    assert client.get(started.location).headers["Cache-Control"] == "no-store"
    registered = prove_by_code(client, started.location, "hanako")
    assert "/join/" in registered.text
    assert registered.headers["Cache-Control"] == "no-store"
    assert client.get("/host/").headers["Cache-Control"] == "no-store"
    assert client.get(f"/host/e/{event.id}").headers["Cache-Control"] == "no-store"
    phone = phone_of(app, attendee_named(signing_event, "Alice"))
    token_page = phone.post("/me/signing-token")
    assert "keyparty sign" in token_page.text
    assert token_page.headers["Cache-Control"] == "no-store"


def test_registration_is_rate_limited_per_address(client, event):
    statuses = [
        client.post(
            f"/e/{event.id}/register", data={"name": "X", "key_text": "junk"}, environ_base=PHONE
        ).status_code
        for _ in range(12)
    ]
    assert statuses[:10] == [400] * 10 and statuses[10:] == [429, 429]
    other = client.post(
        f"/e/{event.id}/register",
        data={"name": "X", "key_text": "junk"},
        environ_base={"REMOTE_ADDR": "192.168.1.24"},
    )
    assert other.status_code == 400


def test_join_attempts_are_rate_limited(client):
    statuses = [client.get(f"/join/guess{n}", environ_base=PHONE).status_code for n in range(12)]
    assert statuses[:10] == [404] * 10 and 429 in statuses[10:]
    assert "Wait" in client.get("/join/x", environ_base=PHONE).text


def test_uploads_are_rate_limited_so_refusals_cannot_pile_up(client, signing_event):
    from keyparty.extensions import db
    from keyparty.models import Certification
    from keyparty.registration import hash_token

    alice = attendee_named(signing_event, "Alice")
    alice.signing_token_sha256 = hash_token("alice-token")
    db.session.commit()
    url = f"/api/e/{signing_event.id}/certifications"
    headers = {"Authorization": "Bearer alice-token"}
    started = time.monotonic()
    statuses = []
    while time.monotonic() - started < 5 and len(statuses) < 200:
        statuses.append(client.post(url, data=key_bytes("bob"), headers=headers).status_code)
    assert statuses.count(200) == 30 and statuses[-1] == 429
    refused = db.session.query(Certification).filter_by(event_id=signing_event.id).count()
    assert refused <= 30
    assert "Wait" in client.post(url, data=b"x", headers=headers).json["error"]


def test_a_join_token_never_reaches_the_log(client, caplog, monkeypatch, event):
    """A failing /join/<token> (here the database fails) logs no token."""
    token = "SECRET-JOIN-TOKEN-abcdef0123456789"

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    monkeypatch.setattr("keyparty.proof.hash_token", broken)
    with caplog.at_level(logging.DEBUG):
        response = client.get(f"/join/{token}")
    assert response.status_code == 500
    assert caplog.records, "the failure is logged"
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert token not in logged
    assert "/join/…" in logged


def test_a_body_over_the_limit_is_refused_before_it_is_read(instance):
    process, port = serve(instance)
    try:
        fetch(f"http://127.0.0.1:{port}/")
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(
            b"POST /e/x/register HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 50000000\r\n\r\nname=x&key_text="
        )
        s.settimeout(5)
        started = time.monotonic()
        answer = s.recv(65536)
        # Answered at once, without waiting for 50 MB that never come.
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert time.monotonic() - started < 2
        s.close()
    finally:
        stop(process)


def test_forms_elsewhere_take_a_few_kib(client, event):
    response = client.post("/host/events", data={"name": "x" * (64 * 1024)})
    assert response.status_code == 413
    assert events.counts(event)["keys"] == 0
