"""Move translations written in the old JSON catalogue into the gettext catalogue.

keyparty's Japanese used to live in keyparty/translations/ja.json (English
sentence -> Japanese). Branches started before the move to gettext may still
add sentences there. After merging such a branch:

    .venv/bin/python scripts/json_to_po.py            # ja.json -> ja .po
    make translations                                  # extract, update, compile
    git rm keyparty/translations/ja.json

Every sentence of the JSON file that the .po file lacks, or has untranslated
or fuzzy, is written into the .po file; a sentence translated differently in
both is left as the .po file has it and listed, to be looked at by hand. The
script is idempotent and exits 0; tests/test_translations.py fails while a
ja.json is still there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from babel.messages.pofile import write_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "keyparty" / "translations"


def merge(json_path: Path, po_path: Path) -> tuple[int, list[str]]:
    """Write the JSON catalogue's translations into the .po file.

    Returns (how many sentences were added or filled in, the sentences whose
    translations differ and were left as the .po file has them).
    """
    sentences: dict[str, str] = json.loads(json_path.read_text(encoding="utf-8"))
    if po_path.exists():
        with po_path.open("rb") as stream:
            catalog = read_po(stream)
    else:
        catalog = Catalog(locale=po_path.parent.parent.name)
    changed, differing = 0, []
    for english, translated in sorted(sentences.items()):
        if not english or not translated.strip():
            continue
        message = catalog.get(english)
        if message is None:
            catalog.add(english, translated)
            changed += 1
        elif not message.string or message.fuzzy:
            message.string = translated
            message.flags.discard("fuzzy")
            changed += 1
        elif message.string != translated:
            differing.append(english)
    with po_path.open("wb") as stream:
        write_po(stream, catalog, width=0, sort_output=True, omit_header=False)
    return changed, differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", default="ja")
    args = parser.parse_args(argv)
    json_path = TRANSLATIONS / f"{args.language}.json"
    po_path = TRANSLATIONS / args.language / "LC_MESSAGES" / "messages.po"
    if not json_path.exists():
        print(f"{json_path.relative_to(ROOT)}: not there, nothing to move.")
        return 0
    changed, differing = merge(json_path, po_path)
    print(f"{changed} sentence(s) moved into {po_path.relative_to(ROOT)}.")
    for english in differing:
        print(f"kept the .po translation of (the JSON one differs): {english!r}")
    print(f"Now: make translations && git rm {json_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
