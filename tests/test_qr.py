"""QR payloads, the inline SVG, and the printable badge page."""

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
import qrcode
import qrcode.constants
from jinja2 import Environment
from jinja2 import FileSystemLoader
from markupsafe import Markup

from keyparty.partylist import group_fingerprint
from keyparty.qr import QUIET_ZONE
from keyparty.qr import fingerprint_payload
from keyparty.qr import qr_svg

SVG_NS = "http://www.w3.org/2000/svg"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
FPR_2 = "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
RUN = re.compile(r"M(\d+),(\d+)h(\d+)v1h-(\d+)z")


def test_fingerprint_payload_is_exact():
    assert fingerprint_payload(FPR) == "OPENPGP4FPR:" + FPR
    spaced = "0123 4567 89ab cdef 0123  4567 89ab cdef 0123 4567\n"
    assert fingerprint_payload(spaced) == "OPENPGP4FPR:" + FPR
    payload = fingerprint_payload(spaced)
    assert not re.search(r"\s", payload)
    assert re.fullmatch(r"OPENPGP4FPR:[0-9A-F]{40}", payload)
    for bad in ("", FPR[:-2], "OPENPGP4FPR:" + FPR, "Z" * 40):
        with pytest.raises(ValueError):
            fingerprint_payload(bad)


def modules_from_svg(svg: str) -> tuple[int, list[list[bool]]]:
    """Read the dark modules back out of the SVG path, as a grid including the quiet zone."""
    root = ET.fromstring(svg)
    x0, y0, width, height = (int(v) for v in root.get("viewBox").split())
    assert (x0, y0) == (0, 0) and width == height
    grid = [[False] * width for _ in range(height)]
    (path,) = root.iter(f"{{{SVG_NS}}}path")
    d = path.get("d")
    runs = RUN.findall(d)
    assert "".join(f"M{x},{y}h{n}v1h-{m}z" for x, y, n, m in runs) == d
    for x, y, n, m in runs:
        assert n == m
        for column in range(int(x), int(x) + int(n)):
            assert not grid[int(y)][column]  # runs do not overlap
            grid[int(y)][column] = True
    return width, grid


def test_svg_is_inline_markup_that_scales():
    svg = qr_svg(fingerprint_payload(FPR))
    assert svg.startswith("<svg ")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == f"{{{SVG_NS}}}svg"
    assert root.get("viewBox")
    assert root.get("height") is None
    assert root.get("width") in (None, "100%")
    assert "mm" not in svg and "px" not in svg
    assert 'xmlns="http://www.w3.org/2000/svg"' in svg
    assert "ns0:" not in svg and "svg:" not in svg
    assert " id=" not in svg  # many codes share one page
    (path,) = root.iter(f"{{{SVG_NS}}}path")
    assert path.get("fill") == "#000000"
    (background,) = root.iter(f"{{{SVG_NS}}}rect")
    assert background.get("fill") == "#ffffff"
    assert background.get("width") == background.get("height") == root.get("viewBox").split()[2]


def test_svg_holds_the_code_of_the_payload_with_quiet_zone_and_level_m():
    payload = fingerprint_payload(FPR)
    side, grid = modules_from_svg(qr_svg(payload))

    reference = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET_ZONE)
    reference.add_data(payload)
    reference.make(fit=True)
    assert grid == reference.get_matrix()

    # Quiet zone: four light modules on every side.
    q = QUIET_ZONE
    assert q == 4
    size = side - 2 * q
    assert (size - 17) % 4 == 0  # a real QR version: 17 + 4v modules
    for i in range(side):
        for j in list(range(q)) + list(range(side - q, side)):
            assert not grid[i][j] and not grid[j][i]
    code = [row[q : side - q] for row in grid[q : side - q]]

    # Finder pattern in the top-left corner.
    assert all(code[0][:7]) and all(code[6][:7]) and all(row[0] and row[6] for row in code[:7])
    assert all(code[r][c] for r in range(2, 5) for c in range(2, 5))

    # Error correction level, read from both copies of the format information
    # (ISO/IEC 18004): its two top bits, masked with 1 0, are 0 0 for level M.
    first = (code[8][0] ^ 1, code[8][1] ^ 0)
    second = (code[size - 1][8] ^ 1, code[size - 2][8] ^ 0)
    assert first == second == (0, 0)


def test_svg_title_is_escaped_and_optional():
    svg = qr_svg("http://10.0.0.2:5000/k/" + FPR, title='Key of <b>"Zoë"</b> & co')
    root = ET.fromstring(svg)
    (title,) = root.iter(f"{{{SVG_NS}}}title")
    assert title.text == 'Key of <b>"Zoë"</b> & co'
    assert "<b>" not in svg
    assert root.get("role") == "img"
    assert "<title>" not in qr_svg("http://10.0.0.2:5000/k/" + FPR)


def test_qr_svg_is_cached():
    payload = "http://192.0.2.7:5000/k/" + FPR + "#cache-test"
    before = qr_svg.cache_info()
    first = qr_svg(payload)
    second = qr_svg(payload)
    after = qr_svg.cache_info()
    assert first is second
    assert after.hits >= before.hits + 1
    assert after.maxsize == 4096


def badge(number, name, fpr, user_ids):
    url = f"http://192.168.1.20:5000/k/{fpr}"
    return SimpleNamespace(
        number=number,
        name=name,
        fingerprint_groups=group_fingerprint(fpr),
        fingerprint_svg=Markup(qr_svg(fingerprint_payload(fpr))),
        url=url,
        url_svg=Markup(qr_svg(url)),
        user_ids=user_ids,
    )


def render_badges(badges) -> str:
    environment = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)
    event = SimpleNamespace(name="FOSDEM <2026>", id="fosdem-2026")
    return environment.get_template("badges.html").render(event=event, badges=badges)


def three_badges():
    return [
        badge(1, "<script>alert(1)</script>", FPR, ["<img src=x onerror=alert(1)> <a@b.org>"]),
        badge(2, "山田太郎", FPR_2, ["山田太郎 <t@example.jp>"]),
        badge(3, "ليلى أحمد", "FEDCBA9876543210FEDCBA9876543210FEDCBA98", []),
    ]


def test_badges_page_escapes_names_and_has_two_codes_per_badge():
    badges = three_badges()
    html = render_badges(badges)

    assert "<script" not in html
    assert '<p class="name" dir="auto">&lt;script&gt;alert(1)&lt;/script&gt;</p>' in html
    assert "<img" not in html and "&lt;img src=x" in html
    assert "FOSDEM &lt;2026&gt;" in html
    assert '<p class="name" dir="auto">山田太郎</p>' in html
    assert '<p class="name" dir="auto">ليلى أحمد</p>' in html

    assert html.count('<article class="badge">') == 3
    assert html.count("<svg ") == 6 and html.count("</svg>") == 6
    for item in badges:
        assert str(item.fingerprint_svg) in html and str(item.url_svg) in html
        first, second = item.fingerprint_groups.split("  ")
        assert f"{first}\n{second}" in html
        assert f">{item.url}</p>" in html
    assert html.count("OpenKeychain / fingerprint") == 3
    assert html.count("Phone camera / verification page") == 3


def test_badges_page_is_a_standalone_a4_print_page():
    html = render_badges(three_badges())
    assert html.startswith("<!doctype html>")
    assert '<html lang="en">' in html
    assert '<meta charset="utf-8">' in html
    assert "{% extends" not in (TEMPLATES / "badges.html").read_text(encoding="utf-8")
    assert "@page { size: A4; margin: 10mm; }" in html
    assert "break-inside: avoid" in html
    assert html.count("<style>") == 1


def test_badges_page_loads_nothing_from_elsewhere():
    badges = three_badges()
    html = render_badges(badges)
    allowed = {item.url for item in badges} | {SVG_NS}
    found = re.findall(r"""https?://[^\s"'<>)]*""", html, flags=re.IGNORECASE)
    assert found and set(found) <= allowed
    for needle in ("@import", "url(", "@font-face"):
        assert needle not in html.lower()

    tags = TagCollector()
    tags.feed(html)
    assert not {"script", "link", "img", "iframe", "object", "embed", "base"} & tags.names
    assert not {"src", "href", "srcset", "action", "data"} & tags.attributes
    assert not any(name.startswith("on") for name in tags.attributes)


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.names.add(tag)
        self.attributes.update(name for name, _ in attrs)


def test_badges_are_grouped_eight_per_sheet():
    fprs = [f"{n:040X}" for n in range(1, 10)]
    html = render_badges([badge(n, f"Person {n}", f, []) for n, f in enumerate(fprs, 1)])
    assert html.count('<section class="sheet">') == 2
    assert html.count('<article class="badge">') == 9


def test_badge_without_a_number():
    html = render_badges([badge(None, "No number yet", FPR, [])])
    assert 'class="number"' not in html
    assert "None" not in html
