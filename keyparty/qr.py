"""QR codes for badges: the OpenPGP fingerprint payload and inline SVG markup."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET

import qrcode
import qrcode.constants
from qrcode.image.styles.moduledrawers.svg import BaseSvgQRModuleDrawer
from qrcode.image.svg import SvgPathImage

from keyparty.partylist import normalize_fingerprint

__all__ = ["QUIET_ZONE", "fingerprint_payload", "qr_svg"]

# The quiet zone the QR standard asks for, in modules, on every side.
QUIET_ZONE = 4
# qrcode's SVG images count 10 "pixels" per millimetre: one module = 1 user unit.
_BOX_SIZE = 10


def fingerprint_payload(fpr: str) -> str:
    """``OPENPGP4FPR:`` and 40 uppercase hex digits, as OpenKeychain reads it.

    No spaces and no trailing newline: OpenKeychain refuses a code with one.
    """
    return "OPENPGP4FPR:" + normalize_fingerprint(fpr)


class _RowRunDrawer(BaseSvgQRModuleDrawer):
    """Draws each horizontal run of dark modules as one rectangle.

    qrcode's own path drawer writes one square per dark module; joining runs
    halves the markup, which counts on a page of a thousand badges. The image
    calls drawrect for every module, row by row, left to right.
    """

    img: SvgPathImage

    def initialize(self, *args, **kwargs) -> None:
        super().initialize(*args, **kwargs)
        self._start: tuple[int, int] | None = None
        self._length = 0

    def drawrect(self, box, is_active) -> None:
        x, y = (pixels // self.img.box_size for pixels in box[0])
        if is_active:
            start = self._start
            if start is not None and start[1] == y and start[0] + self._length == x:
                self._length += 1
            else:
                self._flush()
                self._start, self._length = (x, y), 1
        else:
            self._flush()
        if x == self.img.border + self.img.width - 1:
            self._flush()

    def _flush(self) -> None:
        if self._start is not None:
            x, y = self._start
            n = self._length
            self.img._subpaths.append(f"M{x},{y}h{n}v1h-{n}z")
            self._start = None


@functools.lru_cache(maxsize=4096)
def qr_svg(payload: str, title: str | None = None) -> str:
    """An inline ``<svg>`` element (no XML prolog) holding the QR code of `payload`.

    Error correction M, a quiet zone of four modules, black on white. It scales
    to its container (a viewBox, ``width="100%"``, no fixed size). `title`, if
    given, becomes the ``<title>`` (the accessible name). Results are cached.
    """
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=_BOX_SIZE,
        border=QUIET_ZONE,
    )
    code.add_data(payload)
    code.make(fit=True)
    drawer = _RowRunDrawer()
    image = code.make_image(image_factory=SvgPathImage, module_drawer=drawer, eye_drawer=drawer)
    svg = image.get_image()

    side = str(code.modules_count + 2 * QUIET_ZONE)
    # A fixed size in mm would not scale; the viewBox alone sets the proportions.
    for attribute in ("width", "height", "version"):
        svg.attrib.pop(attribute, None)
    svg.set("width", "100%")
    svg.set("viewBox", f"0 0 {side} {side}")
    svg.set("shape-rendering", "crispEdges")
    # Many codes share one page: an id would be duplicated.
    for path in svg.iter("path"):
        path.attrib.pop("id", None)

    background = ET.Element("rect", x="0", y="0", width=side, height=side, fill="#ffffff")
    svg.insert(0, background)
    if title is None:
        svg.set("aria-hidden", "true")
    else:
        svg.set("role", "img")
        element = ET.Element("title")
        element.text = title
        svg.insert(0, element)
    return ET.tostring(svg, encoding="unicode")
