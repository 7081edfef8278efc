"""O2 after a move: the instance folder is copied to a second server on another
port, and attendees get back in there by proving possession again; their
signing token and their consent work on the new server."""

from __future__ import annotations

import html
import json
import re
import shutil
import threading
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlencode

import waitress
from waitress import wasyncore

from keyparty import create_app
from keyparty.extensions import db
from keyparty.models import Certification
from tests.conftest import code_in
from tests.conftest import csrf_of
from tests.conftest import decrypt_with
from tests.conftest import fingerprint_of
from tests.conftest import secret_home
from tests.conftest import short_tempdir
from tests.conftest import stop_agent


class Phone:
    """A phone's browser over real HTTP: its own cookies, redirects followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def _open(self, request) -> tuple[str, str, int]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.geturl(), response.read().decode(), response.status
        except urllib.error.HTTPError as error:
            return error.geturl(), error.read().decode(), error.code

    def get(self, path: str, headers: dict | None = None) -> tuple[str, str, int]:
        return self._open(urllib.request.Request(self.base + path, headers=headers or {}))

    def post(self, path: str, data: dict) -> tuple[str, str, int]:
        body = urlencode(data).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST"))


def rejoin(phone: Phone, event_id: str, name: str) -> str:
    """Fingerprint, challenge decrypted by the key's holder, code typed: /me."""
    _, page, _ = phone.get(f"/e/{event_id}/rejoin")
    url, page, status = phone.post(
        f"/e/{event_id}/rejoin",
        {"csrf_token": csrf_of(page), "fingerprint": fingerprint_of(name)},
    )
    assert status == 200 and "/prove/" in url, page
    armored = re.search(r'<pre class="armored">(-----BEGIN PGP MESSAGE-----.*?)</pre>', page, re.S)
    home = secret_home(name)
    try:
        letter = decrypt_with(home, html.unescape(armored.group(1)))
    finally:
        stop_agent(home)
    path = url.removeprefix(phone.base)
    url, page, status = phone.post(path, {"csrf_token": csrf_of(page), "code": code_in(letter)})
    assert status == 200 and url.endswith("/me"), page
    return page


def test_rejoin_on_a_copy_of_the_instance_on_another_server(
    app, certified_event, instance, monkeypatch
):
    event_id = certified_event.id
    db.session.remove()
    db.engine.dispose()
    copy = short_tempdir("kpm")
    shutil.copytree(instance, copy, dirs_exist_ok=True)
    monkeypatch.setenv("KEYPARTY_INSTANCE", str(copy))
    moved = create_app({"TESTING": True})
    server = waitress.create_server(moved, host="127.0.0.1", port=0, threads=4)
    base = f"http://127.0.0.1:{server.effective_port}"
    moved.config["PUBLIC_URL"] = base
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        # A phone at the new address has no session: it re-joins with proof.
        alice = Phone(base)
        assert alice.get("/me")[2] == 401
        me = rejoin(alice, event_id, "alice")
        assert "Alice Example" in me
        _, token_page, status = alice.post("/me/signing-token", {"csrf_token": csrf_of(me)})
        assert status == 200
        token = re.search(r'<span id="token">([^<]+)</span>', token_page).group(1)
        _, bundle, status = alice.get(
            f"/api/e/{event_id}/bundle", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200
        assert len(json.loads(bundle)["verifications"]) == 4

        # Bob decides on the certifications of his key on the new server (O1).
        bob = Phone(base)
        rejoin(bob, event_id, "bob")
        _, received, _ = bob.get("/me/received")
        accept = re.search(r'action="(/me/received/(\d+)/accepted)"', received)
        _, after, status = bob.post(accept.group(1), {"csrf_token": csrf_of(received)})
        assert status == 200 and "Accepted: it is published with your key." in after
        with moved.app_context():
            decided = db.session.get(Certification, int(accept.group(2)))
            assert decided.owner_decision == "accepted"
    finally:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map, ignore_all=True))
        thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=5)
        with moved.app_context():
            db.engine.dispose()
        shutil.rmtree(copy, ignore_errors=True)
