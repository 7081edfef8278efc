"""Every sentence keyparty can show has a Japanese translation.

The sentences are found by Babel's extraction, the very command
`make translations` runs (babel.cfg and the Makefile's keywords): the `_()`
calls of the templates, the gettext calls and N_ markers of the code, and
the sentence argument of each refusal constructor. The translations are the
gettext catalogue keyparty/translations/ja/LC_MESSAGES/messages.po; the
compiled messages.mo beside it is what runs. A new sentence without a
translation, a translation that lost a {placeholder}, a translation nothing
uses any more and a .mo older than its .po all fail here, naming what to do.
"""

from __future__ import annotations

import json
import re
import string
import subprocess
import sys
from functools import cache
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from keyparty import openpgp
from keyparty import registration
from keyparty import rules

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "keyparty" / "translations"
JA_PO = TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po"
JA_MO = JA_PO.with_suffix(".mo")
PYBABEL = Path(sys.executable).parent / "pybabel"


@cache
def extraction() -> tuple[frozenset[str], str]:
    """The msgids `make translations-extract` finds, and what it printed on stderr."""
    pot = ROOT / "build" / "test-messages.pot"
    result = subprocess.run(
        ["make", "-s", "translations-extract", f"PYBABEL={PYBABEL}", f"POT={pot}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with pot.open("rb") as stream:
        found = frozenset(m.id for m in read_po(stream) if m.id)
    pot.unlink()
    return found, result.stderr


def extracted() -> frozenset[str]:
    return extraction()[0]


@cache
def japanese() -> dict[str, str]:
    """msgid -> msgstr of ja.po; fuzzy entries count as untranslated."""
    with JA_PO.open("rb") as stream:
        catalog = read_po(stream)
    return {m.id: ("" if m.fuzzy else m.string) for m in catalog if m.id}


def placeholders(text: str) -> set[str]:
    """The names of the {placeholders} in a str.format sentence."""
    names = set()
    for _literal, field, _spec, _conversion in string.Formatter().parse(text):
        if field is not None:
            names.add(re.split(r"[.\[]", field, maxsplit=1)[0])
    return names


class _AnyValue:
    """Stands in for a placeholder's value: takes any format spec, as a date or a number does."""

    def __format__(self, spec: str) -> str:
        return "x"


def test_extraction_finds_the_sentences_of_pages_code_and_rule_tables():
    """A guard on the extraction: the tables the pages translate at run time are all
    marked (N_), the refusal constructors and the templates are read."""
    found = extracted()
    tables = {
        "rules.STATES": list(rules.STATES),
        "rules.DEFAULT_CONTEXTS": list(rules.DEFAULT_CONTEXTS),
        "rules.CONTEXT_LABELS": list(rules.CONTEXT_LABELS.values()),
        "rules.STEPS": [label for _, _, label in rules.STEPS.values()],
        "rules.BASES": [b.label for b in rules.BASES.values()]
        + [b.refusal for b in rules.BASES.values() if b.refusal],
        "rules._OWN_SESSION_TEXTS": [t for ts in rules._OWN_SESSION_TEXTS.values() for t in ts],
        "rules._PACE_SETTING_TEXTS": list(rules._PACE_SETTING_TEXTS.values()),
        "openpgp._REFUSALS": list(openpgp._REFUSALS.values()),
        "openpgp._REFUSALS_WITH_DETAIL": list(openpgp._REFUSALS_WITH_DETAIL.values()),
        "openpgp._NOT_A_KEY": [*openpgp._NOT_A_KEY.values(), openpgp._NOT_A_KEY_OTHERWISE],
        "registration._UNUSABLE": [
            *registration._UNUSABLE.values(),
            registration._UNUSABLE_OTHERWISE,
        ],
    }
    unmarked = [
        f"  {where}: {text!r}"
        for where, texts in tables.items()
        for text in texts
        if text not in found
    ]
    assert not unmarked, "sentences not marked for extraction (wrap them in N_):\n" + "\n".join(
        unmarked
    )
    # Templates, gettext calls and refusal constructors of each kind.
    assert "Scan a badge" in found  # a template, templates/me.html
    assert "This is not an email address." in found  # lazy_gettext in attendee/forms.py
    assert "Your name" in found  # a form label, N_ in attendee/forms.py
    assert any(t.startswith("This key expired on {expires}") for t in found)  # KeyRefusal
    assert any("the signature at byte {start}" in t for t in found)  # _malformed


def test_no_sentence_is_an_untranslatable_f_string():
    """Babel skips an f-string with values in it: such a sentence could never be translated."""
    skipped = [line for line in extraction()[1].splitlines() if "f-string" in line]
    assert not skipped, (
        "write these as '{placeholder}' sentences with the values as params:\n" + "\n".join(skipped)
    )


def test_every_sentence_has_a_japanese_translation():
    catalog = japanese()
    missing = sorted(t for t in extracted() if not catalog.get(t, "").strip())
    assert not missing, (
        f"{len(missing)} sentence(s) without Japanese; run `make translations`, then translate "
        f"them in {JA_PO.relative_to(ROOT)} and run `make translations` again:\n"
        + "\n".join(f"  {text!r}" for text in missing)
    )


def test_translations_keep_the_same_placeholders():
    wrong = []
    for english, translated in sorted(japanese().items()):
        if not translated:
            continue
        try:
            same = placeholders(english) == placeholders(translated)
            translated.format(**dict.fromkeys(placeholders(translated), _AnyValue()))
        except (ValueError, IndexError, KeyError) as error:
            wrong.append(f"  {english!r}: {error}")
            continue
        if not same:
            wrong.append(
                f"  {english!r}: {sorted(placeholders(english))} "
                f"!= {sorted(placeholders(translated))} in {translated!r}"
            )
    assert not wrong, "translations with different {placeholders}:\n" + "\n".join(wrong)


def test_the_catalogue_has_no_stale_sentences():
    stale = sorted(set(japanese()) - extracted())
    assert not stale, (
        f"{len(stale)} translation(s) that nothing shows any more; `make translations` "
        "removes them:\n" + "\n".join(f"  {text!r}" for text in stale)
    )


def test_the_compiled_catalogue_matches_the_po_file():
    with JA_MO.open("rb") as stream:
        compiled = {m.id: m.string for m in read_mo(stream) if m.id}
    expected = {k: v for k, v in japanese().items() if v}
    assert compiled == expected, (
        f"{JA_MO.relative_to(ROOT)} is older than its .po file: run `make translations-compile`"
    )


def test_no_json_catalogue_is_left_behind():
    left = sorted(p.name for p in TRANSLATIONS.glob("*.json"))
    assert not left, (
        f"{left}: the old JSON catalogue is read no more. Move its sentences with "
        "`.venv/bin/python scripts/json_to_po.py`, then `make translations` and `git rm` it."
    )


def test_the_json_mover_adds_missing_sentences_and_keeps_translated_ones(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import json_to_po
    finally:
        sys.path.pop(0)
    po = tmp_path / "ja" / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "Kept"\nmsgstr "そのまま"\n\nmsgid "Empty"\nmsgstr ""\n',
        encoding="utf-8",
    )
    source = tmp_path / "ja.json"
    source.write_text(
        json.dumps({"Kept": "別の訳", "Empty": "空", "New {name}": "新しい{name}"}),
        encoding="utf-8",
    )
    changed, differing = json_to_po.merge(source, po)
    assert (changed, differing) == (2, ["Kept"])
    with po.open("rb") as stream:
        merged = {m.id: m.string for m in read_po(stream) if m.id}
    assert merged == {"Kept": "そのまま", "Empty": "空", "New {name}": "新しい{name}"}
    assert json_to_po.merge(source, po) == (0, ["Kept"])  # a second run changes nothing
