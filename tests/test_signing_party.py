"""The frozen party list read by Debian's signing-party tools, run for real.

caff (reads a gpgparticipants list on standard input and picks the keys whose
two boxes are ticked) and gpgsigs (marks the user IDs of a list with the
certifications a key made) run offline, each with its own HOME and GnuPG home
in a temporary folder. `make system-test` installs signing-party; without it
these tests are skipped, except under CI, where that is an error.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import termios
from pathlib import Path

import pytest

from keyparty.partylist import digests
from tests.browser.conftest import in_ci
from tests.conftest import FIXTURES
from tests.conftest import fingerprint_of
from tests.conftest import key_bytes
from tests.conftest import short_tempdir

CAFF = shutil.which("caff")
GPGSIGS = shutil.which("gpgsigs")


@pytest.fixture(autouse=True)
def signing_party_installed():
    if not (CAFF and GPGSIGS):
        if in_ci():
            pytest.fail("CI must have signing-party (make system-test installs it)")
        pytest.skip("signing-party is not installed: make system-test")


@pytest.fixture
def homes():
    """A HOME and a GnuPG home for the signing-party tools, both short and temporary."""
    home, gnupg = short_tempdir("kph"), short_tempdir("kpg")
    yield home, gnupg
    subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False)
    caff_gnupg = home / ".caff" / "gnupghome"
    if caff_gnupg.exists():
        subprocess.run(["gpgconf", "--homedir", str(caff_gnupg), "--kill", "all"], check=False)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(gnupg, ignore_errors=True)


def tool_env(home: Path, gnupg: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GNUPGHOME": str(gnupg),
        "LC_ALL": "C.UTF-8",
    }


def gpg(gnupg: Path, *args: str, data: bytes | None = None) -> None:
    subprocess.run(
        ["gpg", "--homedir", str(gnupg), "--batch", "--no-tty", "--quiet", *args],
        input=data,
        check=True,
        capture_output=True,
    )


def ticked(text: str, numbers: dict[int, tuple[bool, bool]]) -> str:
    """A copy of the list as an attendee marks it: digests written into the
    Checksum blanks with their boxes ticked, and the boxes of the entries given
    ({number: (fingerprint OK, ID OK)})."""
    for algorithm, value in digests(text).items():
        start = text.index(f"{algorithm} Checksum:")
        end = text.index("[ ]", start) + 3
        groups = [value[i : i + 4].upper() for i in range(0, len(value), 4)]
        block = re.sub("____", "{}", text[start:end]).format(*groups)
        text = text[:start] + block[:-3] + "[x]" + text[end:]
    for number, (fingerprint_ok, id_ok) in numbers.items():
        boxes = ["[x]" if ok else "[ ]" for ok in (fingerprint_ok, id_ok)]
        text = text.replace(
            f"{number:03d}  [ ] Fingerprint OK        [ ] ID OK",
            f"{number:03d}  {boxes[0]} Fingerprint OK        {boxes[1]} ID OK",
        )
    return text


def run_with_terminal(args, stdin: Path, env, cwd: Path) -> subprocess.CompletedProcess:
    """caff reads the list on standard input and then opens /dev/tty for its
    questions: give it a pseudo-terminal as its controlling terminal."""
    primary, secondary = os.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(secondary, termios.TIOCSCTTY, 0)

    try:
        with stdin.open("rb") as listing:
            return subprocess.run(
                args,
                stdin=listing,
                capture_output=True,
                env=env,
                cwd=cwd,
                preexec_fn=take_terminal,
                pass_fds=(secondary,),
                timeout=120,
            )
    finally:
        os.close(primary)
        os.close(secondary)


def caffrc(home: Path, signer: str) -> None:
    (home / ".caffrc").write_text(
        "$CONFIG{'owner'} = 'Alice Example';\n"
        "$CONFIG{'email'} = 'alice\\@example.org';\n"
        f"$CONFIG{{'keyid'}} = [ qw{{{signer}}} ];\n"
        "1;\n"
    )


def test_caff_picks_exactly_the_ticked_keys(frozen_event, homes, tmp_path):
    home, gnupg = homes
    alice, bob, carol = (fingerprint_of(n) for n in ("alice", "bob", "carol"))
    numbers = {key.fingerprint: key.list_number for key in frozen_event.keys}
    gpg(gnupg, "--import", data=key_bytes("alice"))
    caffrc(home, alice)
    keys = tmp_path / "keys.asc"
    keys.write_text("".join(key.armored for key in frozen_event.keys))
    copy = tmp_path / "my-copy.txt"
    # Bob: both boxes ticked. Carol: only her fingerprint. Alice: nothing.
    copy.write_text(
        ticked(frozen_event.partylist, {numbers[bob]: (True, True), numbers[carol]: (True, False)})
    )

    done = run_with_terminal(
        [CAFF, "--no-download", "--no-sign", "--no-mail", "--key-file", str(keys)],
        copy,
        tool_env(home, gnupg),
        tmp_path,
    )
    said = done.stderr.decode() + done.stdout.decode()
    assert done.returncode == 0, said
    assert "No checksum found" not in said
    assert "[WARN]" not in said and "[ERROR]" not in said, said
    assert "Found SHA256 checksum (marked as verified" in said
    assert "Found SHA512 checksum (marked as verified" in said
    assert re.findall(r"Adding fingerprint ([0-9A-F]{40})", said) == [bob]
    assert sorted(re.findall(r"Ignoring fingerprint ([0-9A-F]{40})", said)) == sorted(
        [alice, carol]
    )
    # caff went on with the key it picked, imported from keyparty's stored keys.
    assert f"Key {bob} imported" in said


def test_caff_refuses_a_copy_whose_checksums_are_not_ticked(frozen_event, homes, tmp_path):
    """The unmarked list as downloaded: caff stops at its checksum lines."""
    home, gnupg = homes
    gpg(gnupg, "--import", data=key_bytes("alice"))
    caffrc(home, fingerprint_of("alice"))
    copy = tmp_path / "as-downloaded.txt"
    copy.write_bytes(frozen_event.partylist.encode("utf-8"))
    done = run_with_terminal(
        [CAFF, "--no-download", "--no-sign", "--no-mail"], copy, tool_env(home, gnupg), tmp_path
    )
    said = done.stderr.decode()
    assert done.returncode != 0
    assert "SHA256 checksum wasn't marked as verified!" in said
    assert "No checksum found" not in said


def test_gpgsigs_marks_the_user_ids_and_fills_in_the_digests(frozen_event, homes, tmp_path):
    home, gnupg = homes
    bob_key = next(k for k in frozen_event.keys if k.fingerprint == fingerprint_of("bob"))
    first, second = (uid.text for uid in bob_key.user_ids[:2])
    gpg(gnupg, "--import", data=(FIXTURES / "attendees" / "alice.secret.asc").read_bytes())
    gpg(gnupg, "--import", data="".join(k.armored for k in frozen_event.keys).encode())
    # Alice certified Bob's first user ID only (an expiring certification, as keyparty makes).
    gpg(
        gnupg,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--default-cert-expire",
        "1y",
        "--local-user",
        fingerprint_of("alice"),
        "--quick-sign-key",
        bob_key.fingerprint,
        f"={first}",
    )
    listing = tmp_path / "partylist.txt"
    listing.write_bytes(frozen_event.partylist.encode("utf-8"))
    annotated = tmp_path / "annotated.txt"
    done = subprocess.run(
        [GPGSIGS, fingerprint_of("alice"), str(listing), str(annotated)],
        capture_output=True,
        env=tool_env(home, gnupg),
        timeout=120,
    )
    said = done.stderr.decode()
    assert done.returncode == 0, said
    assert "not found on key" not in said and "malformed" not in said, said
    out = annotated.read_text()
    # Each uid line of the list is now tagged: x = an expiring exportable certification.
    assert f"\n(x) {first}\n" in out
    assert f"\n( ) {second}\n" in out
    tagged = re.findall(r"(?m)^\((.)\) ", out)
    assert len(tagged) == sum(len(k.user_ids) for k in frozen_event.keys)
    assert not re.search(r"(?m)^uid ", out), "every user ID line was recognised"
    # gpgsigs writes the file's own digests into the blanks.
    sha256 = digests(frozen_event.partylist)["SHA256"].upper()
    compact = re.sub(r"[^0-9A-F\n]", "", out.split("SHA256 Checksum:")[1].split("[ ]")[0])
    assert compact.replace("\n", "") == sha256
