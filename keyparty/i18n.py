"""English and Japanese for the pages people see at the event.

A small catalog instead of gettext machine files: the English sentence is
the key, translations live in translations/<lang>.json, and a test checks
that every sentence the pages and the rules can show has a translation.
The language comes from the session (the switch on the page) or else the
browser's Accept-Language.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from flask import Flask
from flask import has_request_context
from flask import request
from flask import session
from markupsafe import Markup

from keyparty.rules import Refusal

LANGUAGES = {"en": "English", "ja": "日本語"}
CATALOGS = Path(__file__).resolve().parent / "translations"


@cache
def catalog(lang: str) -> dict[str, str]:
    path = CATALOGS / f"{lang}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def current_language() -> str:
    if not has_request_context():
        return "en"  # command-line output and files are English
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES)) or "en"


def gettext(text: str, **params) -> str:
    """Translate `text`, then fill in its {placeholders}."""
    translated = catalog(current_language()).get(text, text) if text else text
    return translated.format(**params) if params else translated


class LazyText:
    """A sentence translated when shown, for messages made before any request
    (form validators are built when the module loads)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return gettext(self.text)

    def __html__(self) -> str:
        return str(Markup.escape(str(self)))


def lazy_gettext(text: str) -> LazyText:
    return LazyText(text)


def refusal_message(refusal: Refusal) -> str:
    # Values such as a state or context name are catalog words too.
    params = {k: gettext(v) if isinstance(v, str) else v for k, v in refusal.params.items()}
    return gettext(refusal.text, **params)


def sentence(said) -> str:
    """Anything with .text and .params, in the current language.

    For a rules.Refusal this is refusal_message; it also takes a refused key
    (keycheck.KeyRefusal, openpgp.KeyMaterialRefused) and a registration.Rejected.
    As there, a str value is a catalog word too; a value with its own .text and
    .params (an openpgp.Phrase naming the detail) is translated the same way.
    """
    params = {}
    for name, value in said.params.items():
        if isinstance(value, str):
            value = gettext(value)
        elif hasattr(value, "text") and hasattr(value, "params"):
            value = sentence(value)
        params[name] = value
    return gettext(said.text, **params)


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(_=gettext, current_language=current_language, LANGUAGES=LANGUAGES)
    app.jinja_env.filters["refusal"] = refusal_message
    app.jinja_env.filters["sentence"] = sentence
