"""Fake camera footage: a YUV4MPEG2 video of a QR code for Chromium's fake camera.

Chromium plays such a file as the camera with
``--use-fake-device-for-media-stream --use-file-for-fake-video-capture=PATH``
(it loops the frames).
"""

from __future__ import annotations

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
    if width % 2 or height % 2:
        raise ValueError("4:2:0 video needs an even width and height")
    luma = luma_plane(qr_modules(payload), width, height)
    chroma = bytes([NEUTRAL_CHROMA]) * ((width // 2) * (height // 2))
    frame = b"FRAME\n" + luma + chroma + chroma
    path = Path(path)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for _ in range(frames):
            out.write(frame)
    return path
