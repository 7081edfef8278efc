"""O2: only the key's holder speaks for the key. Proof of possession by a
decrypted challenge or a signature (real gpg, fixture secret keys), sessions
that a purge, a relink or a proof ends, join links spent only by a POST,
host imports that send each join link encrypted to its key."""

from __future__ import annotations

import email
import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from email import policy

import pytest

from keyparty import events
from keyparty import proof
from keyparty import rules
from keyparty.extensions import db
from keyparty.gpg import judge_signatures
from keyparty.models import Attendee
from keyparty.models import Challenge
from keyparty.models import Key
from keyparty.models import utcnow
from tests.conftest import FIXTURES
from tests.conftest import attendee_named
from tests.conftest import challenge_on
from tests.conftest import clearsign_with
from tests.conftest import code_in
from tests.conftest import csrf_of
from tests.conftest import decrypt_with
from tests.conftest import fingerprint_of
from tests.conftest import key_bytes
from tests.conftest import on_postgres
from tests.conftest import phone_of
from tests.conftest import press_join
from tests.conftest import prove_by_code
from tests.conftest import register
from tests.conftest import secret_home
from tests.conftest import stop_agent

ALICE = fingerprint_of("alice")


@pytest.fixture
def homes():
    """Each fixture attendee's own machine, made when first asked for."""
    made = {}

    def home(name):
        if name not in made:
            made[name] = secret_home(name)
        return made[name]

    yield home
    for made_home in made.values():
        stop_agent(made_home)


def web_register(client, event, name, key_name):
    """Register a fixture key on the web form; returns the proof page's address."""
    response = client.post(
        f"/e/{event.id}/register", data={"name": name, "key_text": key_bytes(key_name).decode()}
    )
    assert response.status_code == 302 and "/prove/" in response.location, response.text
    return response.location


def answer(client, prove_url, **data):
    page = client.get(prove_url).text
    return client.post(prove_url, data={"csrf_token": csrf_of(page), **data})


def join_link_on(page: str) -> str:
    return re.search(r'class="join-link">http://[^/]+/join/([^<]+)</a>', page).group(1)


def key_of(event, fingerprint) -> Key:
    return db.session.scalar(db.select(Key).where(Key.fingerprint == fingerprint))


# -- squatting ---------------------------------------------------------------------


def test_a_squatter_gets_nothing_and_the_owner_takes_the_entry(app, event, homes):
    mallory = app.test_client()
    prove_url = web_register(mallory, event, "Mallory", "alice")
    entry = key_of(event, ALICE).attendee
    assert entry.name == "Mallory" and entry.proven_at is None
    assert entry.join_token_sha256 is None, "no join link before proof (O2)"
    assert mallory.get("/me").status_code == 401

    # Mallory cannot answer: a guessed code, and her own key's signature, are refused.
    guessed = answer(mallory, prove_url, code="ABCD-EFGH")
    assert guessed.status_code == 409 and "O2: That is not the code" in guessed.text
    assert "4 tries left" in guessed.text
    page = mallory.get(prove_url).text
    text = re.search(r'<pre class="armored">(keyparty proof.*?)</pre>', page, re.S).group(1)
    own = answer(mallory, prove_url, signed=clearsign_with(homes("bob"), text))
    assert "signed by another key" in own.text and ALICE in own.text
    assert mallory.get("/me").status_code == 401

    # Say the host even handed Mallory a link for that entry: she has a session.
    token = events.new_join_link(event, ALICE)
    press_join(mallory, token)
    assert mallory.get("/me").status_code == 200

    # Alice registers her own key: it shows the proof step again, and she proves it.
    alice = app.test_client()
    alice_url = web_register(alice, event, "Alice", "alice")
    assert "prove that you hold it to take its entry" in alice.get(alice_url).text
    proven = prove_by_code(alice, alice_url, "alice")
    assert proven.status_code == 200 and "shown only this once" in proven.text
    press_join(alice, join_link_on(proven.text))
    assert "Alice" in alice.get("/me").text

    db.session.expire_all()
    entry = key_of(event, ALICE).attendee
    assert entry.name == "Alice" and entry.proven_at is not None
    # Mallory's session ended, and her old link is spent.
    assert mallory.get("/me").status_code == 401
    assert mallory.get(f"/join/{token}").status_code == 404
    assert db.session.scalar(db.select(db.func.count()).select_from(Attendee)) == 1


def test_a_squatter_cannot_confirm_verify_or_decide(app, event):
    """Without a session there is no say: T4 confirmation, T2 verification, O1 decisions."""
    register(event, "alice", "bob")
    assert events.take_step(event, "freeze") is None
    stranger = app.test_client()
    assert stranger.post("/me/confirm", data={"entry_correct": "y"}).status_code == 401
    assert stranger.post("/me/received/1/accepted").status_code == 401
    assert stranger.post("/me/signing-token").status_code == 401
    bob_key = key_of(event, fingerprint_of("bob"))
    uid = bob_key.user_ids[0]
    refused = stranger.post(
        f"/e/{event.id}/k/{bob_key.fingerprint}/u/{uid.id}",
        data={f"u{uid.id}-context": "identity", f"u{uid.id}-basis": "photo-id"},
    )
    assert refused.status_code == 401
    assert all(a.entry_confirmed_at is None for a in event.attendees)


# -- proof by decryption --------------------------------------------------------------


def test_proof_by_decryption_takes_the_code_once(client, event, homes):
    prove_url = web_register(client, event, "Hanako", "hanako")
    page = client.get(prove_url).text
    assert "gpg --decrypt keyparty-challenge.asc" in page
    download = client.get(prove_url + "/challenge.asc")
    assert download.data.startswith(b"-----BEGIN PGP MESSAGE-----")
    letter = decrypt_with(homes("hanako"), download.data)
    code = code_in(letter)
    assert re.fullmatch(r"[A-HJ-KM-NP-Z2-9]{4}-[A-HJ-KM-NP-Z2-9]{4}", code), code
    link = re.search(r"http://\S+/join/(\S+)", letter).group(1)

    wrong = answer(client, prove_url, code="2222-2222")
    assert wrong.status_code == 409 and "not the code of this challenge" in wrong.text
    typed = answer(client, prove_url, code=code.lower().replace("-", " "))
    assert typed.status_code == 200 and "shown only this once" in typed.text
    # Replayed: the same code (and the link of that message) work no more.
    again = answer(client, prove_url, code=code)
    assert "already answered" in again.text
    assert client.get(f"/join/{link}").status_code == 404


def test_the_link_in_the_decrypted_challenge_joins_and_proves(client, event, homes):
    prove_url = web_register(client, event, "Zoë", "zoe")
    letter = decrypt_with(homes("zoe"), challenge_on(client.get(prove_url).text))
    link = re.search(r"http://\S+/join/(\S+)", letter).group(1)
    phone = client.application.test_client()
    press_join(phone, link)
    assert phone.get("/me").status_code == 200
    assert attendee_named(event, "Zoë").proven_at is not None


def test_an_expired_challenge_is_refused(client, event, homes):
    prove_url = web_register(client, event, "Hanako", "hanako")
    letter = decrypt_with(homes("hanako"), challenge_on(client.get(prove_url).text))
    challenge = db.session.scalar(db.select(Challenge))
    challenge.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    late = answer(client, prove_url, code=code_in(letter))
    assert late.status_code == 409 and "has expired (each one lasts 30 minutes)" in late.text
    assert challenge.key.attendee.proven_at is None


def test_five_wrong_codes_end_a_challenge(client, event):
    prove_url = web_register(client, event, "Hanako", "hanako")
    for _ in range(rules.CHALLENGE_MAX_FAILURES):
        answer(client, prove_url, code="2222-2222")
    assert "Too many wrong answers" in client.get(prove_url).text


# -- proof by signature ---------------------------------------------------------------


def challenge_text_of(client, prove_url) -> str:
    return client.get(prove_url + "/challenge.txt").text


def test_proof_by_clearsigned_text(client, event, homes):
    prove_url = web_register(client, event, "Alice", "alice")
    text = challenge_text_of(client, prove_url)
    assert f"Key: {ALICE}" in text and "Nonce: " in text and event.id in text
    signed = clearsign_with(homes("alice"), text)
    # Changed after signing: refused, nothing proven.
    modified = signed.replace("Nonce: ", "Nonce: 0")
    refused = answer(client, prove_url, signed=modified)
    assert refused.status_code == 409
    assert "O2: The signature does not match the text" in refused.text
    proven = answer(client, prove_url, signed=signed)
    assert proven.status_code == 200 and "shown only this once" in proven.text


def test_proof_by_detached_signature(client, event, homes, tmp_path):
    import subprocess

    prove_url = web_register(client, event, "Rupert", "rsa")
    text = challenge_text_of(client, prove_url)
    file = tmp_path / "challenge.txt"
    file.write_text(text)
    made = subprocess.run(
        ["gpg", "--homedir", str(homes("rsa").path), "--batch", "--armor", "--detach-sign"],
        input=file.read_bytes(),
        capture_output=True,
        check=True,
    )
    proven = answer(client, prove_url, signed=made.stdout.decode())
    assert proven.status_code == 200 and "shown only this once" in proven.text


def test_a_replayed_signature_of_an_older_challenge_is_refused(client, event, homes):
    first = web_register(client, event, "Alice", "alice")
    old_signed = clearsign_with(homes("alice"), challenge_text_of(client, first))
    assert answer(client, first, signed=old_signed).status_code == 200
    # The same signature on the used challenge, and on a new one.
    assert "already answered" in answer(client, first, signed=old_signed).text
    second = web_register(client, event, "Alice", "alice")
    replayed = answer(client, second, signed=old_signed)
    assert replayed.status_code == 409
    assert "not this challenge&#39;s text" in replayed.text


def test_a_signature_by_another_key_is_refused(client, event, homes):
    prove_url = web_register(client, event, "Alice", "alice")
    by_carol = clearsign_with(homes("carol"), challenge_text_of(client, prove_url))
    refused = answer(client, prove_url, signed=by_carol)
    assert refused.status_code == 409 and "signed by another key" in refused.text
    nothing = answer(client, prove_url, signed="hello")
    assert "No OpenPGP signature was found" in nothing.text
    assert key_of(event, ALICE).attendee.proven_at is None


def test_signature_verdicts_from_status_lines():
    good = [("NEWSIG", ""), ("VALIDSIG", f"{'A' * 40} 2026-11-29 1 0 4 0 22 8 01 {ALICE}")]
    assert judge_signatures(good, b"x").signers == (ALICE,)
    assert judge_signatures([("NEWSIG", ""), ("BADSIG", "K A")], None).status == "bad"
    unknown = judge_signatures(
        [("NEWSIG", ""), ("ERRSIG", "7775A1B4 22 8 01 1 9 " + "B" * 40)], None
    )
    assert unknown.status == "no-key" and unknown.unknown_issuers == ("B" * 40,)
    assert judge_signatures([], None).status == "none"
    assert rules.normalize_code(" abcd-efgh ") == "ABCDEFGH"
    two = rules.check_signed_proof(ALICE, "good", [ALICE, ALICE], [], 2, "t", "t")
    assert two.rule == "O2" and "2 signatures" in two.message


# -- sessions and join links ------------------------------------------------------------


def test_a_link_preview_spends_nothing_and_a_joined_phone_is_asked(app, registered_event):
    alice, bob = (attendee_named(registered_event, n) for n in ("Alice", "Bob"))
    phone = phone_of(app, alice)
    bob_link = events.new_join_link(registered_event, bob.keys[0].fingerprint)
    # A preview bot and a HEAD request: the link still works afterwards.
    assert app.test_client().get(f"/join/{bob_link}").status_code == 200
    assert app.test_client().head(f"/join/{bob_link}").status_code == 200

    asked = phone.get(f"/join/{bob_link}").text
    assert "This phone already speaks for Alice Example" in asked
    assert "Keep Alice Example" in asked and "Switch to Bob Example" in asked
    # Pressing join without choosing to switch does not switch.
    kept = phone.post(f"/join/{bob_link}")
    assert kept.status_code == 409
    assert "Alice Example" in phone.get("/me").text
    press_join(phone, bob_link, switch=True)
    assert "Bob Example" in phone.get("/me").text


def test_a_relink_ends_the_old_session_and_signing_token(app, signing_event):
    alice = attendee_named(signing_event, "Alice")
    phone = phone_of(app, alice)
    page = phone.get("/me").text
    token_page = phone.post("/me/signing-token", data={"csrf_token": csrf_of(page)}).text
    token = re.search(r'<span id="token">([^<]+)</span>', token_page).group(1)
    bearer = {"Authorization": f"Bearer {token}"}
    bundle = app.test_client().get(f"/api/e/{signing_event.id}/bundle", headers=bearer)
    assert bundle.status_code == 200
    events.new_join_link(signing_event, alice.keys[0].fingerprint)
    assert phone.get("/me").status_code == 401
    gone = app.test_client().get(f"/api/e/{signing_event.id}/bundle", headers=bearer)
    assert gone.status_code == 401


def test_cookies_of_a_purged_event_open_nothing_in_the_next(app, signing_event):
    old = {a.name: (a.id, phone_of(app, a)) for a in signing_event.attendees}
    assert events.take_step(signing_event, "close") is None
    # A challenge holds the name and email given with it: personal data.
    proof.start(signing_event.keys[0], "rejoin", "http://keyparty.test:8000", "Al", "a@x.org")
    events.purge(signing_event)
    assert db.session.scalar(db.select(db.func.count()).select_from(Challenge)) == 0
    new_event = events.create_event("Next Party", signing_event.date)
    register(new_event, "hanako", "zoe", "dalia")
    new_ids = {a.id for a in new_event.attendees}
    # SQLite hands out the same ids again: the secret is what tells them apart.
    if not on_postgres():
        assert new_ids & {attendee_id for attendee_id, _ in old.values()}
    for attendee in new_event.attendees:
        proof.open_session(attendee)
    for _, old_phone in old.values():
        assert old_phone.get("/me").status_code == 401
        assert old_phone.get("/me/received").status_code == 401


def test_a_cookie_without_the_secret_opens_nothing(app, registered_event):
    alice = attendee_named(registered_event, "Alice")
    phone_of(app, alice)
    forged = app.test_client()
    with forged.session_transaction() as session:
        session.update(event_id=registered_event.id, attendee_id=alice.id, secret="guess")
    assert forged.get("/me").status_code == 401


# -- re-join -------------------------------------------------------------------------------


def test_rejoin_by_fingerprint_or_badge_code(app, frozen_event, homes):
    alice = attendee_named(frozen_event, "Alice")
    old_phone = phone_of(app, alice)
    new_phone = app.test_client()
    page = new_phone.get(f"/e/{frozen_event.id}/rejoin").text
    unknown = new_phone.post(
        f"/e/{frozen_event.id}/rejoin", data={"csrf_token": csrf_of(page), "fingerprint": "AB" * 20}
    )
    assert unknown.status_code == 400 and "No key with this fingerprint" in unknown.text
    started = new_phone.post(
        f"/e/{frozen_event.id}/rejoin",
        data={"csrf_token": csrf_of(page), "fingerprint": f"OPENPGP4FPR:{ALICE}#MAC=x"},
    )
    assert started.status_code == 302
    back = prove_by_code(new_phone, started.location, "alice")
    assert back.status_code == 302 and back.location.endswith("/me")
    assert "Alice Example" in new_phone.get("/me").text
    assert old_phone.get("/me").status_code == 401


# -- rate limit ---------------------------------------------------------------------------------


def test_registration_is_rate_limited_per_address(app, client, event):
    app.config.update(REGISTRATION_LIMIT=2, REGISTRATION_WINDOW_SECONDS=600)
    for name in ("alice", "bob"):
        web_register(client, event, name, name)
    limited = client.post(
        f"/e/{event.id}/register", data={"name": "c", "key_text": key_bytes("carol").decode()}
    )
    assert limited.status_code == 429
    assert "at most 2 keys in 10 minutes. Try again in" in limited.text
    assert key_of(event, fingerprint_of("carol")) is None
    other = app.test_client()
    elsewhere = other.post(
        f"/e/{event.id}/register",
        data={"name": "c", "key_text": key_bytes("carol").decode()},
        environ_base={"REMOTE_ADDR": "192.168.1.50"},
    )
    assert elsewhere.status_code == 302, "another address is not slowed down"


# -- host: imports, clean-up, freeze ----------------------------------------------------------------


def encrypted_part(mail) -> bytes:
    _control, encrypted = mail.get_payload()
    return encrypted.get_payload().encode("ascii")


def test_host_import_sends_each_join_link_encrypted_to_its_key(app, runner, event, homes):
    files = [str(FIXTURES / "attendees" / f"{n}.asc") for n in ("alice", "bob")]
    result = runner.invoke(args=["import", event.id, *files])
    assert result.exit_code == 0, result.output
    assert "/join/" not in result.output
    outbox = events.event_files(event) / "outbox"
    mails = sorted(outbox.glob("*.eml"))
    assert [m.name for m in mails] == sorted(
        f"{event.id}-join-{fingerprint_of(n)}.eml" for n in ("alice", "bob")
    )
    assert len(list(outbox.glob("join-*.asc"))) == 2
    for name in ("alice", "bob"):
        mail = email.message_from_bytes(
            (outbox / f"{event.id}-join-{fingerprint_of(name)}.eml").read_bytes(),
            policy=policy.default,
        )
        assert f"{name}@example.org" in mail["To"]
        assert mail.get_content_type() == "multipart/encrypted"
        inner = decrypt_with(homes(name), encrypted_part(mail))
        token = re.search(r"http://\S+/join/(\S+)", inner).group(1)
        phone = app.test_client()
        press_join(phone, token)
        assert phone.get("/me").status_code == 200
        # The armored file decrypts to the same link.
        armored = (outbox / f"join-{fingerprint_of(name)}.asc").read_bytes()
        assert f"/join/{token}" in decrypt_with(homes(name), armored)
    db.session.expire_all()
    assert all(a.proven_at is not None for a in event.attendees)


def test_host_import_hand_out_prints_links_and_says_so(runner, event):
    result = runner.invoke(
        args=["import", event.id, str(FIXTURES / "attendees" / "carol.asc"), "--hand-out"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("/join/") == 1
    assert "face to face" in result.output
    assert not (events.event_files(event) / "outbox").exists()


def test_host_import_mails_join_links_over_smtp(app, runner, event, homes):
    from aiosmtpd.controller import Controller

    from tests.test_delivery import Collector
    from tests.test_delivery import free_port

    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_SECURITY="none")
        result = runner.invoke(args=["import", event.id, str(FIXTURES / "attendees/dalia.asc")])
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    assert f"mailed   {fingerprint_of('dalia')}" in result.output
    ((_sender, recipients, content),) = collector.mails
    mail = email.message_from_bytes(content, policy=policy.default)
    inner = decrypt_with(homes("dalia"), encrypted_part(mail))
    assert recipients == [mail["To"]] and "/join/" in inner


def test_host_removes_a_key_before_the_freeze_only(app, client, runner, registered_event):
    carol = fingerprint_of("carol")
    removed = runner.invoke(args=["remove", registered_event.id, carol])
    assert removed.exit_code == 0, removed.output
    assert "Carol" in removed.output and "attendee is removed too" in removed.output
    assert key_of(registered_event, carol) is None
    listed = {k.fingerprint for k in events.event_home(registered_event).list_keys()}
    assert carol not in listed and ALICE in listed
    assert runner.invoke(args=["check", registered_event.id]).exit_code == 0, "both homes follow"
    page = client.get(f"/host/e/{registered_event.id}").text
    assert "Not proven yet (O2)" in page and "Bob Example" in page
    client.post(f"/host/e/{registered_event.id}/remove/{fingerprint_of('bob')}")
    assert key_of(registered_event, fingerprint_of("bob")) is None
    register(registered_event, "carol")
    assert events.take_step(registered_event, "freeze") is None
    late = runner.invoke(args=["remove", registered_event.id, carol])
    assert late.exit_code != 0 and "frozen" in late.output


def test_the_host_page_names_unproven_and_unconfirmed_entries(app, client, frozen_event):
    alice = attendee_named(frozen_event, "Alice")
    phone = phone_of(app, alice)
    page = phone.get("/me").text
    phone.post(
        "/me/confirm",
        data={"csrf_token": csrf_of(page), "entry_correct": "y", "digest_matches": "y"},
    )
    host = client.get(f"/host/e/{frozen_event.id}").text
    unproven = re.search(r'<ul class="list unproven">(.*?)</ul>', host, re.S).group(1)
    unconfirmed = re.search(r'<ul class="names">(.*?)</ul>', host, re.S).group(1)
    assert "Alice" not in unproven and "Bob Example" in unproven and "Carol" in unproven
    assert "Alice" not in unconfirmed and "Bob Example" in unconfirmed


def test_challenges_are_stored_as_hashes_only(client, event, homes):
    prove_url = web_register(client, event, "Alice", "alice")
    letter = decrypt_with(homes("alice"), challenge_on(client.get(prove_url).text))
    code = code_in(letter).replace("-", "")
    link = re.search(r"/join/(\S+)", letter).group(1)
    challenge = db.session.scalar(db.select(Challenge))
    stored = " ".join(str(v) for v in vars(challenge).values())
    assert code not in stored and link not in stored
    assert challenge.expires_at - challenge.created_at == timedelta(minutes=30)
    assert challenge.expires_at > datetime.now(UTC).replace(tzinfo=None)


def test_a_key_that_cannot_encrypt_proves_by_signing(client, event):
    """A sign-only key gets no encrypted challenge: the page offers the text to sign."""
    import subprocess

    from tests.conftest import short_tempdir

    home = short_tempdir("kpo")
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback"]
    gpg += ["--passphrase", ""]
    uid = "Sign Only <signonly@example.org>"
    subprocess.run([*gpg, "--quick-gen-key", uid, "ed25519", "sign", "never"], check=True)
    public = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True)
    try:
        response = client.post(
            f"/e/{event.id}/register",
            data={"name": "Sig", "key_text": public.stdout.decode()},
        )
        assert response.status_code == 302
        page = client.get(response.location).text
        assert "BEGIN PGP MESSAGE" not in page and "Sign this text with your key" in page
        assert client.get(response.location + "/challenge.asc").status_code == 404
        text = client.get(response.location + "/challenge.txt").text
        signed = subprocess.run(
            [*gpg, "--clearsign"], input=text.encode(), check=True, capture_output=True
        )
        proven = answer(client, response.location, signed=signed.stdout.decode())
        assert proven.status_code == 200 and "shown only this once" in proven.text
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def test_status_names_unproven_entries(runner, registered_event):
    shown = runner.invoke(args=["status", registered_event.id])
    assert "not proven yet (O2): Alice Example" in shown.output


def test_the_host_page_import_sends_links_encrypted(client, event, homes):
    import io

    response = client.post(
        f"/host/e/{event.id}/import",
        data={"files": [(io.BytesIO(key_bytes("hanako")), "hanako.asc")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert "/join/" not in response.text and "sent encrypted to the key" in response.text
    armored = events.event_files(event) / "outbox" / f"join-{fingerprint_of('hanako')}.asc"
    assert "/join/" in decrypt_with(homes("hanako"), armored.read_bytes())


def test_a_host_import_of_a_squatted_key_sends_its_holder_a_new_link(app, runner, event, homes):
    mallory = app.test_client()
    web_register(mallory, event, "Mallory", "alice")
    result = runner.invoke(args=["import", event.id, str(FIXTURES / "attendees" / "alice.asc")])
    assert result.exit_code == 0, result.output
    assert "not proven yet: a new join link goes to the key's holder" in result.output
    outbox = events.event_files(event) / "outbox"
    letter = decrypt_with(homes("alice"), (outbox / f"join-{ALICE}.asc").read_bytes())
    alice = app.test_client()
    press_join(alice, re.search(r"/join/(\S+)", letter).group(1))
    assert alice.get("/me").status_code == 200
    assert mallory.get("/me").status_code == 401
