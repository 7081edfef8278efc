"""Fake camera footage: a YUV4MPEG2 video of a QR code for Chromium's fake camera.

Chromium plays such a file as the camera with
``--use-fake-device-for-media-stream --use-file-for-fake-video-capture=PATH``
(it loops the frames).
"""

from __future__ import annotations

import base64
from pathlib import Path

import qrcode
from qrcode.constants import ERROR_CORRECT_M

BLACK = 0
WHITE = 255
NEUTRAL_CHROMA = 128


def qr_modules(payload: str) -> list[list[bool]]:
    """The QR code of payload, True for dark modules, with a 4-module quiet zone."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(payload)
    code.make(fit=True)
    return code.get_matrix()


def luma_plane(modules: list[list[bool]], width: int, height: int) -> bytes:
    """Black modules on white, filling about 80 % of the height, centred."""
    count = len(modules)
    scale = max(1, int(height * 0.8) // count)
    side = count * scale
    if side > min(width, height):
        raise ValueError(f"a {count}-module code does not fit {width}x{height}")
    left = (width - side) // 2
    top = (height - side) // 2
    blank_row = bytes([WHITE]) * width
    dark = bytes([BLACK]) * scale
    light = bytes([WHITE]) * scale
    rows = [blank_row] * top
    for line in modules:
        row = (
            bytes([WHITE]) * left
            + b"".join(dark if module else light for module in line)
            + bytes([WHITE]) * (width - left - side)
        )
        rows.extend([row] * scale)
    rows.extend([blank_row] * (height - top - side))
    return b"".join(rows)


def qr_video(
    payload: str, path: Path, frames: int = 30, width: int = 640, height: int = 480
) -> Path:
    """Write a 4:2:0 YUV4MPEG2 video of frames identical frames showing payload's QR code."""
    return luma_video(luma_plane(qr_modules(payload), width, height), path, width, height, frames)


def luma_video(luma: bytes, path: Path, width: int, height: int, frames: int = 30) -> Path:
    """Write a grey 4:2:0 YUV4MPEG2 video whose every frame is `luma` (width x height bytes)."""
    if width % 2 or height % 2:
        raise ValueError("4:2:0 video needs an even width and height")
    if len(luma) != width * height:
        raise ValueError(f"{len(luma)} luma bytes for a {width}x{height} frame")
    chroma = bytes([NEUTRAL_CHROMA]) * ((width // 2) * (height // 2))
    frame = b"FRAME\n" + luma + chroma + chroma
    path = Path(path)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for _ in range(frames):
            out.write(frame)
    return path


# Draws a PNG centred on a white frame, `fill` of its width or height, and
# returns the frame's luma (BT.601) as base64: the browser decodes the PNG.
_PNG_TO_LUMA = """async ([dataUrl, width, height, fill]) => {
  const image = new Image();
  image.src = dataUrl;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  const scale = Math.min(width * fill / image.width, height * fill / image.height);
  const w = image.width * scale, h = image.height * scale;
  context.drawImage(image, (width - w) / 2, (height - h) / 2, w, h);
  const rgba = context.getImageData(0, 0, width, height).data;
  let out = "";
  for (let i = 0; i < rgba.length; i += 4) {
    out += String.fromCharCode(
      Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]));
  }
  return btoa(out);
}"""


def picture_video(
    page, png: bytes, path: Path, width: int = 1280, height: int = 720, fill: float = 0.9
) -> Path:
    """A video of the picture `png` (e.g. a screenshot of a printed badge) as a
    camera would see it held in front: centred, `fill` of the frame, in grey.
    `page` is any Playwright page; its browser decodes and scales the picture."""
    data_url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    luma = base64.b64decode(page.evaluate(_PNG_TO_LUMA, [data_url, width, height, fill]))
    return luma_video(luma, path, width, height)
