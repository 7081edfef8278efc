"""The smaller things a host and attendees tripped over (issue 12), each fixed."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import attendee_named
from tests.conftest import fixture_bytes
from tests.conftest import phone_of


def test_email_is_not_offered_for_a_user_id_without_an_address(app, verifying_event):
    carol = attendee_named(verifying_event, "Carol").keys[0]
    page = phone_of(app, attendee_named(verifying_event, "Alice")).get(
        f"/e/{verifying_event.id}/k/{carol.fingerprint}"
    )
    assert page.status_code == 200
    forms = {
        uid.text: re.search(rf'name="u{uid.id}-context"[^>]*value="email"', page.text)
        for uid in carol.user_ids
    }
    assert forms["Carol Example <carol@example.org>"] is not None
    assert forms["Carol Example"] is None


def test_after_the_freeze_the_registration_form_is_not_shown(client, frozen_event):
    page = client.get(f"/e/{frozen_event.id}/register").text
    assert "Registration is closed" in page
    assert 'enctype="multipart/form-data"' not in page and "Register my key" not in page


def test_a_refused_secret_key_is_not_sent_back_into_the_form(client, event):
    secret = fixture_bytes("attendees/alice.secret.asc").decode()
    response = client.post(f"/e/{event.id}/register", data={"name": "Alice", "key_text": secret})
    assert response.status_code == 400
    assert "SECRET key" in response.text
    assert "PRIVATE KEY BLOCK" not in response.text
    assert secret.splitlines()[3] not in response.text  # no line of the key's data
    assert 'value="Alice"' in response.text  # the rest of the form is kept


def test_the_phone_digest_is_grouped_by_four_in_unbreakable_groups(app, frozen_event):
    page = phone_of(app, attendee_named(frozen_event, "Bob")).get("/me").text
    groups = re.findall(r'<span class="group">([0-9a-f]{4})</span>', page)
    assert "".join(groups) == frozen_event.partylist_sha256
    css = app.test_client().get("/static/keyparty.css").text
    assert re.search(r"\.digest \.group \{[^}]*white-space: nowrap", css)
    assert not re.search(r"\.digest[^{]*\{[^}]*break-all", css)


def test_keyparty_help_shows_no_flask_options(instance):
    result = subprocess.run(
        [sys.executable, "-m", "keyparty", "--help"], capture_output=True, text=True
    )  # on the test's own instance (KEYPARTY_INSTANCE)
    assert result.returncode == 0
    for flask_option in ("--env-file", "--app", "--debug"):
        assert flask_option not in result.stdout
    assert "sign" in result.stdout and "status" in result.stdout


def test_accepted_means_one_thing_on_each_page():
    """The signer's page says the event took the certification in; the owner's
    page says the owner accepted it. Neither says a bare "Accepted"."""
    from pathlib import Path

    templates = Path(__file__).resolve().parent.parent / "templates"
    me = (templates / "me.html").read_text(encoding="utf-8")
    received = (templates / "received.html").read_text(encoding="utf-8")
    assert "Taken in by the event: the key owner decides whether it is published." in me
    assert "You accepted it: it is published with your key." in received
    assert '_("Accepted")' not in me + received


def test_the_project_carries_its_own_rules_document():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "](docs/rules.md)" in readme
    assert "](../" not in readme, "the README links outside the repository"
    rules_doc = (root / "docs" / "rules.md").read_text(encoding="utf-8")
    used = set(
        re.findall(r'Refusal\(\s*"([CDTPO]\d)"', (root / "keyparty" / "rules.py").read_text())
    )
    assert used, "no rule ids found in rules.py"
    for rule in sorted(used | {"C1", "C2", "C3", "D1", "D2", "D3", "D4", "T1", "T2", "T3", "T4"}):
        assert f"**{rule}:" in rules_doc, f"{rule} is not explained in docs/rules.md"
