"""`keyparty sign`: every failure said plainly with a non-zero exit, renewals at a
second event, and the signing token sent only to the server named on the command
line (issue 11, items 5, 7 and 8). Real gpg in the signer's own home throughout."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from keyparty import events
from keyparty import intake
from keyparty import registration
from keyparty import signing
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import utcnow
from tests.conftest import FIXTURES
from tests.conftest import attendee_named
from tests.conftest import fingerprint_of
from tests.conftest import key_bytes
from tests.conftest import record
from tests.conftest import short_tempdir
from tests.test_signing import sign

BASE_URL = "http://keyparty.test:8000"


def sign_bundle(bundle: dict, digest: str, home: GnuPGHome, tmp_path: Path, *more: str):
    """`keyparty sign BUNDLE` with this bundle, in the signer's own home."""
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    args = [str(path), "--homedir", str(home.path), "--digest", digest]
    return sign(*args, "--out", str(tmp_path / "out"), *more)


def sign_offline(event, name: str, home: GnuPGHome, tmp_path: Path):
    """`keyparty sign BUNDLE --no-upload` as attendee `name`."""
    bundle = bundle_for(attendee_named(event, name), BASE_URL)
    return sign_bundle(bundle, event.partylist_sha256, home, tmp_path, "--no-upload")


def own_home(*files: str) -> GnuPGHome:
    home = GnuPGHome(short_tempdir("kps"), agent=True)
    for name in files:
        home.import_keys((FIXTURES / "attendees" / name).read_bytes(), options=None)
    return home


def kill_agent(home: GnuPGHome) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home.path), "--kill", "gpg-agent"], check=False)


def test_primary_secret_key_offline_is_said_and_nothing_is_certified(signing_event, tmp_path):
    # Alice's machine holds only her subkeys (the primary secret key is offline).
    full = own_home("alice.secret.asc")
    subkeys_only = subprocess.run(
        ["gpg", "--homedir", str(full.path), "--batch", "--export-secret-subkeys"],
        capture_output=True,
        check=True,
    ).stdout
    kill_agent(full)
    home = GnuPGHome(short_tempdir("kps"), agent=True)
    home.import_keys(subkeys_only, options=None)
    try:
        result = sign_offline(signing_event, "Alice", home, tmp_path)
    finally:
        kill_agent(home)
    assert result.returncode == 1, result
    assert "primary secret key is offline" in result.stderr
    assert "certifying needs the primary key" in result.stderr
    assert "--no-upload" in result.stderr and "Nothing was certified" in result.stderr


def test_pinentry_without_a_terminal_says_gpg_tty_or_passphrase_fd(
    app, event, tmp_path, monkeypatch
):
    # Victor's key has a passphrase: with no terminal, pinentry cannot ask.
    victor = registration.register_keys(
        event,
        [("victor.asc", key_bytes("victor")), ("alice.asc", key_bytes("alice"))],
        events.event_home(event),
    )
    assert not victor.rejected
    _verify_and_start_signing(event, "Victor", "Alice")
    for name in ("GPG_TTY", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    home = own_home("victor.secret.asc")
    try:
        result = sign_offline(event, "Victor", home, tmp_path)
    finally:
        kill_agent(home)
    assert result.returncode == 1, result
    assert "Inappropriate ioctl for device" in result.stderr
    assert "GPG_TTY" in result.stderr and "--passphrase-fd" in result.stderr
    assert "Key not changed" not in result.stderr


def _verify_and_start_signing(event, signer_name: str, owner_name: str) -> None:
    assert events.take_step(event, "freeze") is None
    for attendee in event.attendees:
        attendee.entry_confirmed_at = utcnow()
    db.session.commit()
    assert events.take_step(event, "start-verifying") is None
    record(event, signer_name, owner_name, 0, "identity", "photo-id", 0)
    assert events.take_step(event, "cool-off") is None
    assert events.take_step(event, "start-signing") is None
    event.date = date.today()
    db.session.commit()


def test_a_certified_key_that_expired_is_named_not_the_signing_key(app, event, tmp_path):
    # A key that expires a few seconds after it was registered.
    maker = GnuPGHome(short_tempdir("kpm"), agent=True)
    subprocess.run(
        ["gpg", "--homedir", str(maker.path), "--batch", "--pinentry-mode", "loopback"]
        + ["--passphrase", "", "--quick-gen-key", "Short Lived <short@example.org>"]
        + ["ed25519", "cert,sign", "seconds=8"],
        check=True,
        capture_output=True,
    )
    short = maker.export([k.fingerprint for k in maker.list_keys()])
    kill_agent(maker)
    event.date = None  # an event with no date set: the key is valid when registered
    db.session.commit()
    result = registration.register_keys(
        event, [("short.asc", short), ("alice.asc", key_bytes("alice"))], events.event_home(event)
    )
    assert not result.rejected, [r.message for r in result.rejected]
    event.date = date.today()
    _verify_and_start_signing(event, "Alice", "Short")
    time.sleep(9)
    home = own_home("alice.secret.asc")
    try:
        run = sign_offline(event, "Alice", home, tmp_path)
    finally:
        kill_agent(home)
    assert run.returncode == 1, run
    assert "the key being certified" in run.stderr and "expired" in run.stderr
    assert "signing key has expired" not in run.stderr
    assert "Nothing was certified" in run.stderr


def test_some_failed_exits_non_zero_and_says_how_many(signing_event, alice_home, tmp_path):
    bundle = bundle_for(attendee_named(signing_event, "Alice"), BASE_URL)
    bundle["verifications"][0]["user_id"] = "Not On The Key <x@example.org>"
    digest = signing_event.partylist_sha256
    result = sign_bundle(bundle, digest, alice_home, tmp_path, "--no-upload")
    assert result.returncode == 1, result
    assert "made 3, skipped 0, failed 1" in result.stdout
    assert "1 of 4 certifications failed" in result.stderr


def test_renewal_at_a_second_event_makes_a_new_certification(signing_event, alice_home, tmp_path):
    first = signing_event
    bundle = bundle_for(attendee_named(first, "Alice"), BASE_URL)
    signers = signing.choose_signers(alice_home, bundle, [])
    assert len(signing.certify_all(alice_home, bundle, signers).made) == 4

    # A year on: the same people meet at another event and Alice verifies Bob again.
    second = events.create_event("Second Party", date(2026, 12, 6))
    registration.register_keys(
        second,
        [(f"{n}.asc", key_bytes(n)) for n in ("alice", "bob")],
        events.event_home(second),
    )
    _verify_and_start_signing(second, "Alice", "Bob")
    bundle = bundle_for(attendee_named(second, "Alice"), BASE_URL)
    report = signing.certify_all(alice_home, bundle, signers)
    assert report.made == [(fingerprint_of("bob"), "Bob Example <bob@example.org>", "identity")]
    assert not report.failed and not report.skipped
    files = signing.write_files(alice_home, bundle, signers, tmp_path / "second")
    assert len(files) == 1
    outcomes = intake.take_in(second, [(p.name, p.read_bytes()) for p in files])
    assert [o.status for o in outcomes] == ["accepted"], [o.message for o in outcomes]
    # Running again certifies nothing twice.
    again = signing.certify_all(alice_home, bundle, signers)
    assert not again.made and len(again.skipped) == 1


def test_a_bundle_naming_another_server_is_refused(signing_event, alice_home, tmp_path):
    bundle = bundle_for(attendee_named(signing_event, "Alice"), "http://evil.example:8000")
    server = f"{BASE_URL}/e/{signing_event.id}"
    digest = signing_event.partylist_sha256
    result = sign_bundle(bundle, digest, alice_home, tmp_path, "--token", "t", "--server", server)
    assert result.returncode == 1
    assert "This bundle is for http://evil.example:8000" in result.stderr
    assert "only to the server you name" in result.stderr


def test_a_bundle_file_with_a_token_but_no_server_uploads_nowhere(
    signing_event, alice_home, tmp_path
):
    bundle = bundle_for(attendee_named(signing_event, "Alice"), BASE_URL)
    digest = signing_event.partylist_sha256
    result = sign_bundle(bundle, digest, alice_home, tmp_path, "--token", "secret-token")
    assert result.returncode == 1
    assert "Not uploaded (--server EVENT-ADDRESS missing)" in result.stderr
    assert len(list((tmp_path / "out").glob("*.asc"))) == 4


@pytest.mark.parametrize("event_url", ["http://elsewhere.example/e/x", "not a url"])
def test_check_server_refuses_what_the_signer_did_not_name(event_url):
    bundle = {"event": {"url": event_url}}
    with pytest.raises(signing.SigningError, match="only to the server you name"):
        signing.check_server(bundle, "http://keyparty.test:8000/e/test-party")
    signing.check_server(
        {"event": {"url": "HTTP://Keyparty.test:8000/e/test-party"}},
        "http://keyparty.test:8000/e/test-party",
    )


class _Dropping:
    """A server on loopback that reads each request whole and closes the
    connection without answering, as a server whose process died does."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                while length and len(body) < int(length.group(1)):
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.requests.append(head.split(b"\r\n")[0])

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def dropping_server():
    server = _Dropping()
    yield server
    server.close()


def test_a_server_that_drops_the_upload_is_said_and_the_files_kept(
    signing_event, alice_home, tmp_path, dropping_server
):
    # The server took the request and died before answering (issue 13, item 5):
    # one sentence and exit 1, not a traceback; the files stay for a later run.
    server = f"http://127.0.0.1:{dropping_server.port}/e/{signing_event.id}"
    bundle = bundle_for(attendee_named(signing_event, "Alice"), server.rsplit("/e/", 1)[0])
    digest = signing_event.partylist_sha256
    result = sign_bundle(bundle, digest, alice_home, tmp_path, "--token", "t", "--server", server)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "Upload stopped: the server closed the connection without answering" in result.stderr
    assert "run keyparty sign again later" in result.stderr
    assert len(list((tmp_path / "out").glob("*.asc"))) == 4
    assert dropping_server.requests[0].startswith(b"POST /api/e/")


def test_a_server_that_drops_the_bundle_request_is_said(alice_home, tmp_path, dropping_server):
    source = f"http://127.0.0.1:{dropping_server.port}/e/some-party"
    result = sign(source, "--token", "t", "--homedir", str(alice_home.path), "--digest", "0")
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert (
        f"Cannot reach {source}: the server closed the connection without answering"
        in result.stderr
    )
    assert dropping_server.requests == [b"GET /api/e/some-party/bundle HTTP/1.1"]
