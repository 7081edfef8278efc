"""English and Japanese for the pages, mails and messages people see.

The catalogues are GNU gettext files: the English sentence is the msgid,
keyparty/translations/<lang>/LC_MESSAGES/messages.po holds the translation a
translator edits, and messages.mo beside it is what runs (both committed, so
an installed keyparty needs neither Babel's command line nor the network).
`make translations` extracts every marked sentence (babel.cfg), updates the
.po files and compiles them; tests/test_translations.py fails on any
sentence without a translation.

Sentences are str.format templates: `gettext("Hello {name}", name=...)`
translates first, then fills in the {placeholders}, so a translation may
move them. The language is chosen per request: the session's choice
(the switch on the page), else the browser's Accept-Language, else English.
Outside a request (command line, files) the language is English unless a
caller asks for another with `in_language`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.support import NullTranslations
from babel.support import Translations
from flask import Flask
from flask import has_request_context
from flask import request
from flask import session
from flask_babel import Babel
from markupsafe import Markup

from keyparty.rules import Refusal

LANGUAGES = {"en": "English", "ja": "日本語"}
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"

# A language asked for by code that runs outside a request (a mail in its
# recipient's language, the command line), or that overrides the request's.
_forced: ContextVar[str | None] = ContextVar("keyparty_language", default=None)
# Where a request keeps the language it is shown in (WSGI environ key).
_REQUEST_LANGUAGE = "keyparty.language"


def current_language() -> str:
    """The language code ("en" or "ja") sentences are shown in now."""
    forced = _forced.get()
    if forced in LANGUAGES:
        return forced
    if not has_request_context():
        return "en"  # command-line output and files are English unless asked otherwise
    # Found once per request (a page asks dozens of times); choose_language
    # forgets it when the session's choice changes.
    environ = request.environ
    language = environ.get(_REQUEST_LANGUAGE)
    if language is None:
        chosen = session.get("lang")
        if chosen in LANGUAGES:
            language = chosen
        else:
            language = request.accept_languages.best_match(list(LANGUAGES)) or "en"
        environ[_REQUEST_LANGUAGE] = language
    return language


def choose_language(code: str) -> None:
    """Keep `code` (a code of LANGUAGES) as this session's language, from this request on."""
    session["lang"] = code
    request.environ.pop(_REQUEST_LANGUAGE, None)


@cache
def catalogue(language: str) -> NullTranslations:
    """The compiled catalogue (messages.mo) of `language`; English is the msgids themselves."""
    if language == "en":
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS), [language], DOMAIN)


def _translations() -> NullTranslations:
    # The catalogue of the current language, loaded once per process: asking
    # Flask-Babel instead (its locale on `g`, its catalogue cache) cost about
    # a millisecond of CPU per page, on every phone request.
    return catalogue(current_language())


def gettext(text: str, **params) -> str:
    """Translate `text` into the current language, then fill in its {placeholders}.

    An empty text stays empty (gettext("") would be the catalogue's header).
    """
    translated = _translations().gettext(text) if text else text
    return translated.format(**params) if params else translated


@contextmanager
def in_language(language: str | None) -> Iterator[None]:
    """Show sentences in `language` (a code of LANGUAGES) inside the block.

    For mails in their recipient's language and command-line output; an
    unknown or empty code leaves the current language as it is.
    """
    token = _forced.set(language if language in LANGUAGES else _forced.get())
    try:
        yield
    finally:
        _forced.reset(token)


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
    """`text`, translated each time it is shown (see LazyText)."""
    return LazyText(text)


def refusal_message(refusal: Refusal) -> str:
    """A rules.Refusal's sentence in the current language."""
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
    """Flask-Babel with keyparty's language choice; `_` and filters for the templates."""
    Babel(
        app,
        locale_selector=current_language,
        default_translation_directories=str(TRANSLATIONS),
        # The templates call keyparty's own `_` ({placeholder} sentences, not %-format).
        configure_jinja=False,
    )
    app.jinja_env.globals.update(_=gettext, current_language=current_language, LANGUAGES=LANGUAGES)
    app.jinja_env.filters["refusal"] = refusal_message
    app.jinja_env.filters["sentence"] = sentence
