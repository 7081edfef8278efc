"""The base of every form: Flask-WTF's, with WTForms' own messages (a
field's "Not a valid date value.") in the page's language from a catalogue
loaded once per process per language.

Flask-WTF loads WTForms' catalogue again for every request that builds a form
(about half a millisecond of CPU on every phone page); keyparty's language is
already known (`keyparty.i18n.current_language`).
"""

from __future__ import annotations

from functools import cache

from flask_wtf import FlaskForm
from wtforms.i18n import get_translations

from keyparty.i18n import current_language


@cache
def wtforms_catalogue(language: str):
    """WTForms' translations of its built-in messages into `language`."""
    return get_translations([language])


class Form(FlaskForm):
    """A FlaskForm (CSRF and all) whose WTForms messages follow the page's language."""

    class Meta:
        def get_translations(self, form):
            return wtforms_catalogue(current_language())
