"""The marker for sentences translated where they are shown, not where they are written.

keyparty's rules, key checks and refusal tables are plain data with no Flask
in them; the web pages translate their sentences when they show them
(keyparty/i18n.py). `N_("...")` leaves the text as it is and only tells
Babel's extraction (`make translations`, keyword N_) that the text is a
sentence to translate.
"""

from __future__ import annotations


def N_(text: str) -> str:  # noqa: N802 - the name gettext tools know
    """Return `text` unchanged; marks it for `pybabel extract -k N_`."""
    return text
