"""Every sentence the phone pages can show has a Japanese translation.

The English sentence is the key of keyparty/translations/ja.json (see
keyparty/i18n.py). This test gathers the sentences from where they are
written, rather than from a hand-kept list, so a new sentence without a
translation, a translation that lost a {placeholder} and a translation that
nothing uses any more all fail here:

- templates: the string literal in each `_("...")` / `_('...')` call, in every
  template except the host pages and the printed badges (English only);
- Python code under keyparty/: the string literal first argument of each call
  to `_`, `gettext` or `lazy_gettext`;
- keyparty/rules.py: the state names (shown through `_(event.state)`), the
  default context names and their labels, the basis labels and refusals, the
  T2 own-session sentences, and every constant text of a `Refusal(...)` that
  can reach an attendee, i.e. outside the host-only checks below;
- the registration page: the labels of the attendee forms (shown through
  `_(field.label.text)`), and every sentence a refused key can get: the
  constant texts of `KeyRefusal(...)` in keyparty/keycheck.py and of
  `Rejected(...)` in keyparty/registration.py with its "unusable" details, and
  the KeyMaterialRefused sentences of keyparty/openpgp.py with the detail
  phrases passed to `_refuse` and `_malformed` and its "no-key" details.

A refusal text written as an f-string cannot be looked up in the catalog; it
is skipped with a warning.
"""

from __future__ import annotations

import ast
import json
import re
import string
import warnings
from collections import defaultdict
from functools import cache
from pathlib import Path

from keyparty import keycheck
from keyparty import openpgp
from keyparty import registration
from keyparty import rules

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keyparty"
TEMPLATES = ROOT / "templates"
CATALOG = PACKAGE / "translations" / "ja.json"

# Host pages and printouts are English only.
ENGLISH_ONLY_TEMPLATE_DIRS = ("host",)
ENGLISH_ONLY_TEMPLATES = ("badges.html",)

# Refusals for the host, shown in English only. (check_key_change is not one:
# its "frozen" refusals reach the registration page.)
HOST_ONLY_CHECKS = frozenset(
    {"check_step", "check_freeze", "check_pace_settings", "check_contexts_change"}
)

# The forms of the phone pages, whose labels the templates show as `_(field.label.text)`.
ATTENDEE_FORMS = PACKAGE / "attendee" / "forms.py"

# `_(` then a Jinja string literal in either quote style (not `foo_(`, not `x._(`).
TEMPLATE_CALL = re.compile(r"""(?<![\w.])_\(\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", re.S)

TRANSLATION_FUNCTIONS = frozenset({"_", "gettext", "lazy_gettext"})


def jinja_string(literal: str) -> str:
    """The value of a quoted Jinja string literal, unescaped the way Jinja's lexer does it."""
    body = literal[1:-1]
    return body.encode("ascii", "backslashreplace").decode("unicode-escape")


def shown_templates() -> list[Path]:
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        relative = path.relative_to(TEMPLATES)
        if relative.parts[0] in ENGLISH_ONLY_TEMPLATE_DIRS:
            continue
        if relative.as_posix() in ENGLISH_ONLY_TEMPLATES:
            continue
        found.append(path)
    return found


def template_strings():
    for path in shown_templates():
        source = path.read_text(encoding="utf-8")
        for match in TEMPLATE_CALL.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            where = f"{path.relative_to(ROOT).as_posix()}:{line}"
            yield where, jinja_string(match.group(1))


def _callee_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_text(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def python_strings():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            if _callee_name(node) in TRANSLATION_FUNCTIONS and _is_text(node.args[0]):
                yield f"{path.relative_to(ROOT).as_posix()}:{node.lineno}", node.args[0].value


def _text_argument(call: ast.Call, position: int, keyword: str) -> ast.AST | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def call_texts(path: Path, callee: str, position: int, keyword: str, skip=frozenset()):
    """Constant texts given to `callee(...)` calls in `path` (the argument at `position`,
    or named `keyword`), outside the top-level functions named in `skip`."""
    relative = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for top in tree.body:
        if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef) and top.name in skip:
            continue
        for node in ast.walk(top):
            if not isinstance(node, ast.Call) or _callee_name(node) != callee:
                continue
            text = _text_argument(node, position, keyword)
            where = f"{relative}:{node.lineno}"
            if _is_text(text):
                yield where, text.value
            elif isinstance(text, ast.JoinedStr):
                warnings.warn(f"{where}: an f-string refusal cannot be translated", stacklevel=1)
            # Other texts (names, attributes) come from the tables gathered elsewhere.


def refusal_strings():
    """Constant texts of Refusal(...) calls in rules.py, outside the host-only checks."""
    yield from call_texts(Path(rules.__file__), "Refusal", 1, "text", HOST_ONLY_CHECKS)


def registration_strings():
    """What the registration page can show: form labels and every refusal of a key."""
    for name in ("StringField", "EmailField", "TextAreaField", "FileField"):
        yield from call_texts(ATTENDEE_FORMS, name, 0, "label")
    yield from call_texts(Path(keycheck.__file__), "KeyRefusal", 1, "text")
    path = Path(openpgp.__file__)
    for problem, text in openpgp._REFUSALS.items():
        yield f"openpgp._REFUSALS[{problem!r}]", text
    for problem, text in openpgp._REFUSALS_WITH_DETAIL.items():
        yield f"openpgp._REFUSALS_WITH_DETAIL[{problem!r}]", text
    yield from call_texts(path, "_refuse", 1, "detail")
    yield from call_texts(path, "_malformed", 1, "what")
    for tag, detail in openpgp._NOT_A_KEY.items():
        yield f"openpgp._NOT_A_KEY[{tag}]", detail
    yield "openpgp._NOT_A_KEY_OTHERWISE", openpgp._NOT_A_KEY_OTHERWISE
    yield from call_texts(Path(registration.__file__), "Rejected", 3, "text")
    for reason, detail in registration._UNUSABLE.items():
        yield f"registration._UNUSABLE[{reason!r}]", detail
    yield "registration._UNUSABLE_OTHERWISE", registration._UNUSABLE_OTHERWISE


def rules_strings():
    for state in rules.STATES:
        yield "rules.STATES", state
    for context in rules.DEFAULT_CONTEXTS:
        yield "rules.DEFAULT_CONTEXTS", context
    for context, label in rules.CONTEXT_LABELS.items():
        yield f"rules.CONTEXT_LABELS[{context!r}]", label
    for basis in rules.BASES.values():
        yield f"rules.BASES[{basis.id!r}].label", basis.label
        if basis.refusal:
            yield f"rules.BASES[{basis.id!r}].refusal", basis.refusal
    for action, texts in rules._OWN_SESSION_TEXTS.items():
        for text in texts:
            yield f"rules._OWN_SESSION_TEXTS[{action!r}]", text
    yield from refusal_strings()


@cache
def shown_sentences() -> dict[str, tuple[str, ...]]:
    """Each English sentence the phone pages can show, with where it comes from."""
    found: dict[str, set[str]] = defaultdict(set)
    for source in (template_strings(), python_strings(), rules_strings(), registration_strings()):
        for where, text in source:
            if text:
                found[text].add(where)
    return {text: tuple(sorted(places)) for text, places in found.items()}


@cache
def japanese() -> dict[str, str]:
    return json.loads(CATALOG.read_text(encoding="utf-8"))


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


def _listing(texts, sentences) -> str:
    return "\n".join(f"  {text!r}  ({', '.join(sentences.get(text, ()))})" for text in texts)


def test_sentences_are_found_in_templates_code_and_rules():
    """A guard on the collectors: if one finds nothing, the others prove little."""
    assert {path.name for path in shown_templates()} >= {"key.html", "me.html", "scan.html"}
    assert not any(p.relative_to(TEMPLATES).parts[0] == "host" for p in shown_templates())
    assert any(True for _ in template_strings())
    assert any(True for _ in python_strings())
    assert any(True for _ in refusal_strings())
    found = {where.split(":")[0].split("[")[0] for where, _ in registration_strings()}
    assert found >= {
        "keyparty/attendee/forms.py",
        "keyparty/keycheck.py",
        "keyparty/openpgp.py",
        "openpgp._REFUSALS",
        "openpgp._REFUSALS_WITH_DETAIL",
        "openpgp._NOT_A_KEY",
        "keyparty/registration.py",
        "registration._UNUSABLE",
    }, found
    for name in HOST_ONLY_CHECKS:
        assert callable(getattr(rules, name)), f"rules.{name} is gone: update HOST_ONLY_CHECKS"


def test_template_calls_in_both_quote_styles_are_found():
    source = """{{ _("a \\"b\\"") }} {{ _('it\\'s') }} {{ x._("no") }} {{ url_for("no") }}"""
    found = [jinja_string(m.group(1)) for m in TEMPLATE_CALL.finditer(source)]
    assert found == ['a "b"', "it's"]


def test_every_shown_sentence_has_a_japanese_translation():
    sentences = shown_sentences()
    catalog = japanese()
    missing = sorted(t for t in sentences if not str(catalog.get(t, "")).strip())
    assert not missing, f"{len(missing)} sentence(s) without Japanese:\n" + _listing(
        missing, sentences
    )


def test_translations_keep_the_same_placeholders():
    wrong = []
    for english, translated in sorted(japanese().items()):
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


def test_the_catalog_has_no_stale_sentences():
    sentences = shown_sentences()
    stale = sorted(set(japanese()) - set(sentences))
    assert not stale, (
        f"{len(stale)} translation(s) that no page, code or rule shows any more; "
        "remove them from ja.json:\n" + "\n".join(f"  {text!r}" for text in stale)
    )


def test_the_catalog_file_is_sorted_utf8_json():
    catalog = japanese()
    assert all(isinstance(v, str) for v in catalog.values())
    expected = json.dumps(catalog, ensure_ascii=False, sort_keys=True, indent=2) + "\n"
    assert CATALOG.read_text(encoding="utf-8") == expected, (
        "write ja.json with ensure_ascii=False, sort_keys=True, indent=2 and a final newline"
    )
