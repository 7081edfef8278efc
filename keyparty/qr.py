"""QR codes for badges: the OpenPGP fingerprint payload and inline SVG markup."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET

import qrcode
import qrcode.constants

from keyparty.partylist import normalize_fingerprint

__all__ = ["QUIET_ZONE", "fingerprint_payload", "qr_svg"]

# The quiet zone the QR standard asks for, in modules, on every side.
QUIET_ZONE = 4


def fingerprint_payload(fpr: str) -> str:
    """``OPENPGP4FPR:`` and 40 uppercase hex digits, as OpenKeychain reads it.

    No spaces and no trailing newline: OpenKeychain refuses a code with one.
    """
    return "OPENPGP4FPR:" + normalize_fingerprint(fpr)


def _path_data(matrix: list[list[bool]]) -> str:
    """SVG path data drawing each horizontal run of dark modules as one rectangle
    (one user unit per module): half the markup of a square per module, which
    counts on a page of a thousand badges."""
    runs = []
    for y, row in enumerate(matrix):
        x, width = 0, len(row)
        while x < width:
            if row[x]:
                start = x
                while x < width and row[x]:
                    x += 1
                n = x - start
                runs.append(f"M{start},{y}h{n}v1h-{n}z")
            else:
                x += 1
    return "".join(runs)


@functools.lru_cache(maxsize=4096)
def qr_svg(payload: str, title: str | None = None) -> str:
    """An inline ``<svg>`` element (no XML prolog) holding the QR code of `payload`.

    Error correction M, a quiet zone of four modules, black on white. It scales
    to its container (a viewBox, ``width="100%"``, no fixed size). `title`, if
    given, becomes the ``<title>`` (the accessible name). Results are cached.
    """
    # Drawn from the module matrix directly: qrcode's image classes call a
    # drawer per module, a fifth of the time of a code.
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET_ZONE)
    code.add_data(payload)
    code.make(fit=True)
    matrix = code.get_matrix()  # with the quiet zone
    side = str(len(matrix))
    # A viewBox alone sets the proportions (a fixed size in mm would not scale);
    # no id: many codes share one page.
    svg = ET.Element(
        "svg",
        {
            "viewBox": f"0 0 {side} {side}",
            "xmlns": "http://www.w3.org/2000/svg",
            "width": "100%",
            "shape-rendering": "crispEdges",
        },
    )
    if title is None:
        svg.set("aria-hidden", "true")
    else:
        svg.set("role", "img")
        ET.SubElement(svg, "title").text = title
    ET.SubElement(svg, "rect", x="0", y="0", width=side, height=side, fill="#ffffff")
    ET.SubElement(
        svg,
        "path",
        {
            "d": _path_data(matrix),
            "fill": "#000000",
            "fill-opacity": "1",
            "fill-rule": "nonzero",
            "stroke": "none",
        },
    )
    return ET.tostring(svg, encoding="unicode")
