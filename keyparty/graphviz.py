"""The Graphviz adapter: the only code that runs Graphviz's layout programs.

It takes DOT source (keyparty writes it, see report.graph_dot) and returns the
drawing as SVG or PNG bytes from Debian's `graphviz` (`dot -K ENGINE -T FORMAT`,
source on standard input). Nothing is fetched: Graphviz runs locally, with a
timeout. DOT language: https://graphviz.org/doc/info/lang.html
"""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["GraphvizError", "quote", "render"]

FORMATS = ("svg", "png")
ENGINES = ("dot", "neato", "sfdp")
TIMEOUT_SECONDS = 120


class GraphvizError(RuntimeError):
    """Graphviz is missing or failed; the message says what to do."""


def quote(text: str) -> str:
    """`text` as a DOT double-quoted string that Graphviz shows exactly as given.

    Inside a quoted string DOT ends the string at `"`; in labels Graphviz reads
    backslash escapes (`\\N` is the node's name, `\\n`, `\\l` break lines), so a
    backslash is doubled and a quote escaped. Each line break of `text` becomes
    Graphviz's own `\\n` (a centred line). The caller makes control characters
    visible first (partylist.safe_text).
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "\\n".join(text.splitlines()) + '"'


def binary() -> str:
    """The path of Graphviz's `dot` (KEYPARTY_DOT, default `dot` on PATH)."""
    name = os.environ.get("KEYPARTY_DOT", "dot")
    found = shutil.which(name)
    if not found:
        raise GraphvizError(
            f"Graphviz's {name!r} is not installed: apt-get install graphviz (make setup does)."
        )
    return found


def render(source: str, fmt: str = "svg", engine: str = "dot") -> bytes:
    """Lay out and draw DOT `source` with `engine`; the bytes of an SVG or PNG file.

    Raises GraphvizError when Graphviz is missing, fails or takes longer than
    TIMEOUT_SECONDS; ValueError for an unknown format or engine.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: one of {', '.join(ENGINES)}")
    try:
        done = subprocess.run(
            [binary(), f"-K{engine}", f"-T{fmt}"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GraphvizError(
            f"Graphviz took longer than {TIMEOUT_SECONDS} s to draw the graph."
        ) from None
    if done.returncode != 0 or not done.stdout:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GraphvizError(
            f"Graphviz could not draw the graph: {said[-1] if said else 'no output'}"
        )
    return done.stdout
