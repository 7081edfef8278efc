"""The GnuPG adapter against real gpg in temporary homes."""

import multiprocessing
import resource
import time

import pytest

from keyparty.gpg import GnuPGHome
from keyparty.gpg import parse_key_listing
from tests.conftest import fingerprint_of
from tests.conftest import key_bytes
from tests.conftest import short_tempdir


@pytest.fixture
def home():
    return GnuPGHome(short_tempdir())


def test_import_and_list_give_typed_records(home):
    outcome = home.import_keys(key_bytes("carol") + key_bytes("hanako"))
    assert sorted(outcome.imported) == sorted([fingerprint_of("carol"), fingerprint_of("hanako")])
    records = {r.fingerprint: r for r in home.list_keys()}
    carol = records[fingerprint_of("carol")]
    assert carol.algorithm_name == "ed25519"
    assert [u.text for u in carol.user_ids] == [
        "Carol Example <carol@example.org>",
        "Carol Example (work) <carol@work.example.net>",
        "Carol Example",
    ]
    assert [u.email for u in carol.user_ids] == [
        "carol@example.org",
        "carol@work.example.net",
        None,
    ]
    assert not carol.revoked and carol.expires is None
    assert carol.subkeys and carol.subkeys[0].fingerprint
    hanako = records[fingerprint_of("hanako")]
    assert hanako.user_ids[0].text == "山田花子 <hanako@example.jp>"


def test_rsa_keys_report_their_size(home):
    home.import_keys(key_bytes("rsa"))
    (record,) = home.list_keys()
    assert record.algorithm_name == "rsa3072"


def test_colon_escapes_are_undone():
    listing = (
        "pub:-:255:22:AAAA:1700000000:::-:::scSC::::::ed25519:::0:\n"
        "fpr:::::::::" + "A" * 40 + ":\n"
        "uid:-::::1700000000::HASH::Mallory\\x3a the \\x0a[GNUPG\\x3a] GOODSIG <m@example.org>::::::::::0:\n"
    )
    (record,) = parse_key_listing(listing)
    assert record.user_ids[0].text == "Mallory: the \n[GNUPG:] GOODSIG <m@example.org>"
    assert record.fingerprint == "A" * 40


def test_export_keeps_what_the_home_holds(home):
    home.import_keys(key_bytes("alice"))
    exported = home.export([fingerprint_of("alice")], armor=True)
    assert exported.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    other = GnuPGHome(short_tempdir())
    assert other.import_keys(exported).imported == [fingerprint_of("alice")]


def test_a_staged_change_is_dropped_when_the_block_fails(home):
    home.import_keys(key_bytes("alice"))
    with pytest.raises(RuntimeError), home.staged() as stage:
        stage.import_keys(key_bytes("bob"))
        assert len(stage.list_keys()) == 2
        raise RuntimeError("refused")
    assert [r.fingerprint for r in home.list_keys()] == [fingerprint_of("alice")]
    with home.staged() as stage:
        stage.import_keys(key_bytes("bob"))
    assert len(home.list_keys()) == 1, "a block that does not commit changes nothing"
    with home.staged() as stage:
        stage.import_keys(key_bytes("bob"))
        stage.commit()
    assert len(home.list_keys()) == 2
    assert not list(home.path.parent.glob(".stage-*")), "stage folders are cleaned up"


def _hold_lock(path, seconds, started):
    with GnuPGHome(path).locked():
        started.set()
        time.sleep(seconds)


def test_the_home_lock_serialises_processes(home):
    started = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(home.path), 0.5, started))
    holder.start()
    assert started.wait(10)
    begin = time.monotonic()
    with home.locked():
        waited = time.monotonic() - begin
    holder.join()
    assert waited > 0.3, "a second writer must wait for the first"


def test_gpg_runs_with_a_memory_bound(home):
    # The bound is what keeps a decompression bomb that slipped through
    # from taking the laptop's memory (DESIGN.md, "Untrusted keys").
    seen = []
    original = home.gpg.__class__._open_subprocess

    def spy(gpg, args, passphrase=False):
        process = original(gpg, args, passphrase)
        seen.append(resource.prlimit(process.pid, resource.RLIMIT_AS))
        return process

    home.gpg._open_subprocess = spy.__get__(home.gpg)
    home.list_keys()
    assert seen and seen[0][0] == home.gpg.memory_limit


def test_an_old_gnupg_is_refused_with_what_to_install():
    from keyparty.gpg import GnuPGError
    from keyparty.gpg import check_version

    check_version((2, 2, 40))
    with pytest.raises(GnuPGError, match="2.2.36 or newer"):
        check_version((2, 2, 27))


def test_keys_imported_in_batches_come_out_as_from_one_call(monkeypatch):
    """import_blocks splits a long import (gpg's keybox merges cost a scan of the
    whole keyring each): the outcome and the home are what one call gives."""
    from keyparty import gpg
    from keyparty import openpgp

    names = ["alice", "bob", "carol", "dalia", "hanako", "rsa", "victor"]
    blocks = [openpgp.dearmor(key_bytes(n)) for n in names]
    blocks.append(openpgp.dearmor(key_bytes("bob")))  # a repeat, in a later batch
    whole, split = GnuPGHome(short_tempdir()), GnuPGHome(short_tempdir())
    one = whole.import_blocks(blocks)
    monkeypatch.setattr(gpg, "IMPORT_BATCH", 3)
    calls = []
    monkeypatch.setattr(
        split, "import_keys", lambda d, o: calls.append(d) or GnuPGHome.import_keys(split, d, o)
    )
    several = split.import_blocks(blocks)
    assert len(calls) == 3
    assert several.imported == one.imported == [fingerprint_of(n) for n in names]
    assert several.counts["count"] == one.counts["count"] == 8
    assert several.counts["imported"] == one.counts["imported"] == 7
    assert several.counts["unchanged"] == one.counts["unchanged"] == 1
    assert split.export(one.imported) == whole.export(one.imported)
