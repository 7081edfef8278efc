"""The party list file: format, escaping of strangers' user IDs, digests."""

import hashlib
import shutil
import subprocess
from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from keyparty.partylist import BOX_LINE
from keyparty.partylist import ListEntry
from keyparty.partylist import digests
from keyparty.partylist import group_digest
from keyparty.partylist import group_fingerprint
from keyparty.partylist import normalize_fingerprint
from keyparty.partylist import render_party_list
from keyparty.partylist import safe_text

FPR_JA = "0123456789ABCDEF0123456789ABCDEF01234567"
FPR_AR = "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
FPR_EVIL = "FEDCBA9876543210FEDCBA9876543210FEDCBA98"
EVIL_UID = "Mallory <m@example.org>\n[GNUPG:] GOODSIG 0000000000000000 Alice\x1b[31m"
FROZEN = datetime(2026, 1, 25, 18, 4, 59)


def three_entries() -> list[ListEntry]:
    return [
        ListEntry(
            number=1,
            fingerprint=FPR_JA,
            algorithm="ed25519",
            created=date(2024, 1, 2),
            expires=date(2027, 1, 2),
            user_ids=("山田太郎 <taro@example.jp>", "Yamada Taro <taro@example.org>"),
            usage="SC",
        ),
        ListEntry(
            number=2,
            fingerprint=FPR_AR,
            algorithm="rsa3072",
            created=date(2021, 6, 30),
            expires=None,
            user_ids=("ليلى أحمد <layla@example.org>",),
            usage="SC",
        ),
        ListEntry(
            number=3,
            fingerprint=FPR_EVIL,
            algorithm="ed25519",
            created=date(2025, 12, 1),
            expires=date(2026, 12, 1),
            user_ids=(EVIL_UID,),
        ),
    ]


def render(entries=None, **overrides) -> str:
    arguments = {
        "event_name": "FOSDEM 2026 keysigning",
        "event_id": "fosdem-2026",
        "event_date": date(2026, 2, 1),
        "frozen_at": FROZEN,
        "entries": three_entries() if entries is None else entries,
    }
    arguments.update(overrides)
    return render_party_list(**arguments)


def keys_section(text: str) -> str:
    return text.split("Keys\n----\n\n", 1)[1]


SEP = "_" * 79

# The example: what the entries of a three-key list look like, exactly
# (gpgparticipants' layout: gpg's own pub/uid lines, a separator after each).
EXPECTED_KEYS = f"""\
001  [ ] Fingerprint OK        [ ] ID OK
pub   ed25519 2024-01-02 [SC] [expires: 2027-01-02]
      0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567
uid                      山田太郎 <taro@example.jp>
uid                      Yamada Taro <taro@example.org>

{SEP}

002  [ ] Fingerprint OK        [ ] ID OK
pub   rsa3072 2021-06-30 [SC]
      89AB CDEF 0123 4567 89AB  CDEF 0123 4567 89AB CDEF
uid                      ليلى أحمد <layla@example.org>

{SEP}

003  [ ] Fingerprint OK        [ ] ID OK
pub   ed25519 2025-12-01 [expires: 2026-12-01]
      FEDC BA98 7654 3210 FEDC  BA98 7654 3210 FEDC BA98
uid                      Mallory <m@example.org>\\x0a[GNUPG:] GOODSIG 0000000000000000 Alice\\x1b[31m

{SEP}
"""


def test_entries_render_as_in_the_example():
    assert keys_section(render()) == EXPECTED_KEYS


def test_checksum_blanks_as_gpgparticipants_writes_them():
    text = render()
    sha256 = (
        "SHA256 Checksum: ____ ____   ____ ____   ____ ____   ____ ____\n\n"
        "                 ____ ____   ____ ____   ____ ____   ____ ____              [ ]\n"
    )
    assert sha256 in text
    start = text.index("SHA512 Checksum:")
    block = text[start : text.index("[ ]", start) + 3]
    assert block.count("____") == 32 and block.count("\n\n") == 3


def test_list_has_each_fingerprint_grouped_and_a_box_line_per_entry():
    text = render()
    for fpr in (FPR_JA, FPR_AR, FPR_EVIL):
        assert group_fingerprint(fpr) in text
        assert fpr not in text  # only ever shown grouped
    box_lines = [line for line in text.splitlines() if line.endswith(BOX_LINE)]
    assert len(box_lines) == 3
    assert BOX_LINE == "[ ] Fingerprint OK        [ ] ID OK"


def test_control_characters_in_user_ids_are_escaped():
    text = render()
    assert "\x1b" not in text
    assert "\\x1b[31m" in text
    # The user ID stays on its one uid line: no line of the file starts a status line.
    assert not any(line.startswith("[GNUPG:]") for line in text.split("\n"))
    (evil_line,) = [line for line in text.split("\n") if "GOODSIG" in line]
    assert evil_line.startswith("uid                      Mallory <m@example.org>\\x0a[GNUPG:]")
    # Every line break in the file is a plain LF ending a line of our own.
    assert text.splitlines() == text.split("\n")[:-1]


def test_japanese_and_arabic_are_kept_as_they_are():
    text = render()
    assert "\nuid                      山田太郎 <taro@example.jp>\n" in text
    assert "\nuid                      ليلى أحمد <layla@example.org>\n" in text


def test_header_and_instructions():
    text = render()
    lines = text.split("\n")
    assert "Event:     FOSDEM 2026 keysigning" in lines
    assert "Event id:  fosdem-2026" in lines
    assert "Date:      2026-02-01" in lines
    assert "Frozen at: 2026-01-25T18:04Z (UTC)" in lines
    assert "Keys:      3" in lines
    assert "    sha256sum FILE" in lines
    assert "    sha512sum FILE" in lines
    assert "printed copy" in text
    assert "tick" in text
    assert "Date:      date not set" in render(event_date=None).split("\n")


def test_frozen_time_is_shown_in_utc():
    berlin = timezone(timedelta(hours=1))
    text = render(frozen_at=datetime(2026, 1, 25, 19, 4, tzinfo=berlin))
    assert "Frozen at: 2026-01-25T18:04Z (UTC)" in text


def test_event_name_from_a_stranger_is_escaped():
    text = render(event_name="Party\n\x1b[2J\u202eevil")
    assert "Event:     Party\\x0a\\x1b[2J\\u202eevil\n" in text


def test_file_format_utf8_lf_final_newline_no_trailing_spaces():
    entries = three_entries()
    entries[1] = ListEntry(2, FPR_AR, "rsa3072", date(2021, 6, 30), None, ("Trailing  ",))
    text = render(entries, event_name="Name ending in a space ")
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\r" not in text
    for line in text.split("\n"):
        assert line == line.rstrip(), repr(line)
    assert "uid                      Trailing\\x20\\x20\n" in text
    assert "Event:     Name ending in a space\\x20\n" in text
    text.encode("utf-8")  # every character encodable
    # Entries are separated by a line of underscores between blank lines.
    assert f"\n\n{SEP}\n\n002  [ ] Fingerprint OK" in text
    assert "\n\n\n" not in keys_section(text)


def test_rendering_is_deterministic():
    first = render()
    assert render() == first
    assert render(list(reversed(three_entries()))) == first
    assert digests(render()) == digests(first)


def test_numbers_have_three_digits_as_gpgparticipants_writes_them():
    def entries(numbers):
        return [
            ListEntry(n, f"{n:040X}", "ed25519", date(2024, 1, 1), None, (f"User {n}",))
            for n in numbers
        ]

    text = keys_section(render(entries([1, 12, 999, 1000])))
    assert text.startswith("001  [ ] Fingerprint OK")
    assert "\n012  [ ] Fingerprint OK" in text
    assert "\n999  [ ] Fingerprint OK" in text
    assert "\n1000  [ ] Fingerprint OK" in text
    assert "\npub   ed25519 2024-01-01\n" in text  # no usage known, no expiry


def test_numbers_must_be_unique_and_positive():
    entry = three_entries()[0]
    with pytest.raises(ValueError):
        render([entry, entry])
    with pytest.raises(ValueError):
        render([ListEntry(0, FPR_JA, "ed25519", date(2024, 1, 1), None, ("x",))])


def test_key_without_user_ids_and_empty_list():
    text = render([ListEntry(1, FPR_JA, "ed25519", date(2024, 1, 1), None, ())])
    assert "\n      (no user ID)\n" in text
    assert keys_section(render([])) == "(no keys)\n"


def test_group_fingerprint():
    assert group_fingerprint(FPR_JA) == "0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567"
    assert group_fingerprint("0123 4567 89ab cdef 0123  4567 89ab cdef 0123 4567") == (
        group_fingerprint(FPR_JA)
    )
    assert normalize_fingerprint(" " + FPR_JA.lower() + "\n") == FPR_JA
    for bad in ("", FPR_JA[:-1], FPR_JA + "0", "G" * 40, FPR_JA[:-1] + "\n"):
        with pytest.raises(ValueError):
            group_fingerprint(bad)


def test_safe_text():
    assert safe_text("a\nb") == "a\\x0ab"
    assert safe_text("\x00\t\r\x1b\x7f") == "\\x00\\x09\\x0d\\x1b\\x7f"
    assert safe_text("\x80\x85\x9b\x9f") == "\\x80\\x85\\x9b\\x9f"
    assert safe_text("\u2028\u2029") == "\\u2028\\u2029"
    bidi = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert safe_text(bidi) == "".join(f"\\u{ord(c):04x}" for c in bidi)
    assert safe_text("bad byte \udcff") == "bad byte \\udcff"
    # A literal backslash cannot pass for an escape.
    assert safe_text("a\\x0ab") == "a\\\\x0ab"
    kept = "Zoë Ñúñez 山田太郎 ليلى שלום 😀 <z@example.org> \u00a0 \u200f"
    assert safe_text(kept) == kept


def test_digests_equal_hashlib_over_utf8():
    text = render()
    data = text.encode("utf-8")
    assert digests(text) == {
        "SHA256": hashlib.sha256(data).hexdigest(),
        "SHA512": hashlib.sha512(data).hexdigest(),
    }
    assert len(digests(text)["SHA256"]) == 64
    assert digests(text)["SHA512"] == digests(text)["SHA512"].lower()


@pytest.mark.skipif(
    not (shutil.which("sha256sum") and shutil.which("sha512sum")), reason="coreutils not found"
)
def test_digests_match_coreutils(tmp_path):
    text = render()
    path = tmp_path / "partylist.txt"
    path.write_bytes(text.encode("utf-8"))
    sums = digests(text)
    for command, name in (("sha256sum", "SHA256"), ("sha512sum", "SHA512")):
        out = subprocess.run([command, str(path)], capture_output=True, text=True, check=True)
        assert out.stdout.split()[0] == sums[name]


def test_group_digest():
    digest = digests("x")["SHA256"]
    chunks = group_digest(digest)
    assert len(chunks) == 16
    assert all(len(chunk) == 4 for chunk in chunks)
    assert "".join(chunks) == digest
    assert group_digest("abcdefg", 3) == ["abc", "def", "g"]
    with pytest.raises(ValueError):
        group_digest(digest, 0)
