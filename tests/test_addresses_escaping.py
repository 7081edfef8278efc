"""One definition of a user ID's address, and one escaping helper per destination."""

from __future__ import annotations

import pytest

from keyparty.addresses import email_of
from keyparty.addresses import mailbox_of
from keyparty.escaping import for_filename
from keyparty.escaping import for_terminal


@pytest.mark.parametrize(
    ("user_id", "address"),
    [
        ("Alice Example <alice@example.org>", "alice@example.org"),
        ("Carol Example (work) <carol@work.example.net>", "carol@work.example.net"),
        ("bare.address+tag@example.net", "bare.address+tag@example.net"),
        ("山田花子 <hanako@example.jp>", "hanako@example.jp"),
        ("Ida <ida@bücher.example>", "ida@bücher.example"),
        ("Ümit <ümit@example.org>", "ümit@example.org"),
        # Not addresses: a URI, a path, no domain dots, two @, a name alone.
        ("Ursula URI <https://example.org/ursula>", None),
        ("Dot Dot <dot@..>", None),
        ("Path Walk <walk@../../etc>", None),
        ("Two Ats <a@b@example.org>", None),
        ("Local <root@localhost>", None),
        ("Carol Example", None),
        ("Two <a@example.org> <b@example.org>", None),
        ("Space <a b@example.org>", None),
        ("Dots <a..b@example.org>", None),
        ("IP <a@192.0.2.1>", None),
        ("Newline <a@exam\nple.org>", None),
        ("Slash <a@exa/mple.org>", None),
    ],
)
def test_one_definition_of_the_address_of_a_user_id(user_id, address):
    assert email_of(user_id) == address


def test_a_non_ascii_domain_goes_out_idna_encoded_and_a_non_ascii_local_part_needs_smtputf8():
    ida = mailbox_of("Ida <ida@Bücher.example>")
    assert ida.ascii_domain == "xn--bcher-kva.example" and ida.wire == "ida@xn--bcher-kva.example"
    assert not ida.needs_smtputf8
    assert mailbox_of("Ümit <ümit@example.org>").needs_smtputf8


def test_terminal_text_shows_control_characters_visibly():
    assert for_terminal("Eve \x1b[2J\x1b]0;pwned\x07 <eve@example.org>") == (
        "Eve \\x1b[2J\\x1b]0;pwned\\x07 <eve@example.org>"
    )
    assert for_terminal("Nina\nSecond") == "Nina\\x0aSecond"
    assert for_terminal("Bidi \u202eevil\u202c") == "Bidi \\u202eevil\\u202c"
    assert for_terminal("back\\slash") == "back\\\\slash", "a backslash is never ambiguous"
    assert for_terminal(b"Jos\xe9") == "Jos\\xe9", "bytes that are not UTF-8 are shown as bytes"
    assert for_terminal("山田花子 Zoë") == "山田花子 Zoë"
    assert for_terminal("\x9b2J") == "\\x9b2J", "C1 CSI too"


def test_file_names_keep_only_safe_characters():
    assert for_filename("../../etc/passwd") == "etc_passwd"
    assert for_filename("identity") == "identity"
    assert for_filename("\x1b[2J") == "2J"
    assert for_filename("...") == "x"
