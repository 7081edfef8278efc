"""Random user ID bytes through the whole of keyparty (issue 11, item 11).

Each example adds a user ID of random bytes (newlines, control characters, bytes
that are not UTF-8, long strings, non-ASCII addresses) to a real key with real
gpg, then registers it, freezes the party list, has Alice verify it, certifies it
with Alice's own gpg, takes the certification in, lets the owner accept it and
exports it. It comes out either refused with a plain sentence, or byte-identical
at every step; nothing is written outside keyparty's folders.
"""

from __future__ import annotations

import os
import subprocess
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import event as label
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keyparty import events
from keyparty import exports
from keyparty import intake
from keyparty import openpgp
from keyparty import publishing
from keyparty import registration
from keyparty import signing
from keyparty import verification
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.models import utcnow
from tests.conftest import at
from tests.conftest import key_bytes
from tests.conftest import short_tempdir

BASE_UID = b"Terry Target <terry@example.org>"
REFUSED_AS = {"user-id-not-utf8", "user-id-nul", "long-user-id"}

control = st.characters(min_codepoint=1, max_codepoint=0x1F) | st.sampled_from(
    ["\x7f", "\x9b", "\u202e", "\u2028", "\x1b[2J", "\x1b]0;t\x07", "\\n", ":", "="]
)
user_ids = st.one_of(
    st.binary(min_size=1, max_size=60),
    st.lists(st.text(max_size=8) | control, min_size=1, max_size=8).map(
        lambda parts: "".join(parts).encode("utf-8")
    ),
    st.builds(
        lambda name, local, domain: f"{name} <{local}@{domain}.example>".encode(),
        st.text(max_size=12),
        st.text(alphabet="abcü山.-_", min_size=1, max_size=10),
        st.text(alphabet="abcdü日本-", min_size=1, max_size=10),
    ),
    st.binary(min_size=1000, max_size=1100),
).filter(lambda uid: b"\0" not in uid and uid.strip())


@pytest.fixture(scope="module")
def target_home():
    path = short_tempdir("kpt")
    gpg = ["gpg", "--homedir", str(path), "--batch", "--pinentry-mode", "loopback"]
    gpg += ["--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", BASE_UID.decode(), "ed25519", "cert,sign", "never"],
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True
    ).stdout
    fingerprint = next(
        line.split(b":")[9].decode() for line in listing.splitlines() if line.startswith(b"fpr")
    )
    subprocess.run([*gpg, "--quick-add-key", fingerprint, "cv25519", "encr"], check=True)
    pristine = subprocess.run(
        [*gpg, "--export-secret-keys", fingerprint], check=True, capture_output=True
    ).stdout
    yield [g.encode() for g in gpg], fingerprint, pristine
    subprocess.run(["gpgconf", "--homedir", str(path), "--kill", "gpg-agent"], check=False)


def _target_key(
    gpg: list[bytes], fingerprint: str, pristine: bytes, uid: bytes
) -> tuple[bytes, bytes] | None:
    """The target key with its base user ID and a new one made of `uid` (as gpg
    stored it: gpg trims surrounding spaces); None if gpg refused it. Each example
    starts from the same key, so that a replayed example sees what it saw first."""
    fpr = fingerprint.encode()
    subprocess.run([*gpg, b"--yes", b"--delete-secret-and-public-key", fpr], check=True)
    subprocess.run([*gpg, b"--import"], input=pristine, check=True, capture_output=True)
    before = set(_blocks(gpg, fingerprint).user_ids)
    added = subprocess.run(
        [*gpg, b"--utf8-strings", b"--quick-add-uid", fingerprint.encode(), uid],
        capture_output=True,
    )
    block = _blocks(gpg, fingerprint)
    new = [u for u in block.user_ids if u not in before]
    if added.returncode != 0 or len(new) != 1:
        return None
    return openpgp.keep_user_ids(block, lambda u: u in (BASE_UID, new[0])), new[0]


def _blocks(gpg: list[bytes], fingerprint: str) -> openpgp.KeyBlock:
    exported = subprocess.run(
        [*gpg, b"--export", fingerprint.encode()], check=True, capture_output=True
    ).stdout
    return openpgp.read_keys(exported)[0]


@settings(
    max_examples=int(os.environ.get("KEYPARTY_PROPERTY_EXAMPLES", "14")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(uid=user_ids)
def test_random_user_id_bytes_are_refused_plainly_or_come_out_byte_identical(
    app, alice_home, target_home, empty_home, tmp_path_factory, uid
):
    gpg, fingerprint, pristine = target_home
    made = _target_key(gpg, fingerprint, pristine, uid)
    assume(made is not None)
    data, exact = made
    cwd_before = set(Path.cwd().iterdir())

    event = events.create_event(f"Property {os.urandom(4).hex()}", date.today())
    result = registration.register_keys(
        event,
        [("target.asc", data), ("alice.asc", key_bytes("alice"))],
        events.event_home(event),
    )
    refused = [r for r in result.rejected if r.fingerprint == fingerprint]
    label(f"refused: {refused[0].problem}" if refused else "certified and exported")
    if refused:
        (refusal,) = refused
        assert refusal.problem in REFUSED_AS, refusal.message
        assert refusal.message.endswith(".") and "FINGERPRINT" in refusal.message
        assert fingerprint not in {k.fingerprint for k in event.keys}
        assert not events.event_home(event).list_keys([fingerprint])
        return
    assert not result.rejected, [r.message for r in result.rejected]
    target = next(k for k in event.keys if k.fingerprint == fingerprint)
    stored = {u.text.encode("utf-8", "surrogateescape"): u for u in target.user_ids}
    assert set(stored) == {BASE_UID, exact}

    # The party list shows it on one line, visibly; the digest covers those bytes.
    assert events.take_step(event, "freeze") is None
    assert "\x1b" not in event.partylist and "\u202e" not in event.partylist
    for attendee in event.attendees:
        attendee.entry_confirmed_at = utcnow()
    db.session.commit()
    assert events.take_step(event, "start-verifying") is None
    alice = next(a for a in event.attendees if a.name.startswith("Alice"))
    _, problem = verification.record(
        alice, alice, stored[exact], "identity", "photo-id", at(event, 0)
    )
    assert problem is None, problem
    assert events.take_step(event, "cool-off") is None
    assert events.take_step(event, "start-signing") is None

    bundle = bundle_for(alice, "http://keyparty.test:8000")
    assert [v["user_id"].encode() for v in bundle["verifications"]] == [exact]
    signers = signing.choose_signers(alice_home, bundle, [])
    report = signing.certify_all(alice_home, bundle, signers)
    assert len(report.made) == 1 and not report.failed, report
    out = tmp_path_factory.mktemp("certs")
    files = signing.write_files(alice_home, bundle, signers, out)
    assert [p.parent for p in files] == [out]
    outcomes = intake.take_in(event, [(p.name, p.read_bytes()) for p in files])
    assert [o.status for o in outcomes] == ["accepted"], [o.message for o in outcomes]
    (certification,) = publishing.certifications_received(target.attendee)
    assert publishing.decide(certification, "accepted") is None

    folder = tmp_path_factory.mktemp("uids")
    certified = []
    for path in exports.write_per_user_id(event, folder):
        for block in openpgp.read_keys(path.read_bytes()):
            if block.fingerprint != fingerprint:
                continue
            for entry in openpgp.user_id_signatures(block):
                if any(s.issuer_fingerprint == signers[0] for s in entry.signatures):
                    certified.append(entry.user_id)
    assert certified == [exact]

    # Nothing outside keyparty's folders: no ~/.gnupg, nothing in the working directory.
    assert not list(empty_home.iterdir())
    assert set(Path.cwd().iterdir()) == cwd_before
