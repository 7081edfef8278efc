"""The browser stack works: a live keyparty on a phone, and a fake camera jsQR can read."""

from __future__ import annotations

import pytest

from tests.browser.y4m import qr_video

pytestmark = pytest.mark.browser

FINGERPRINT_PAYLOAD = "OPENPGP4FPR:" + "A" * 40

# Runs in the page: the camera's picture, drawn on a canvas, read by jsQR.
SCAN_ONE_FRAME = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {video: {width: 640, height: 480}, audio: false});
  try {
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.srcObject = stream;
    await video.play();
    const canvas = document.createElement("canvas");
    const context = canvas.getContext("2d", {willReadFrequently: true});
    for (let attempt = 0; attempt < 50; attempt++) {
      if (video.videoWidth > 0) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        context.drawImage(video, 0, 0);
        const image = context.getImageData(0, 0, canvas.width, canvas.height);
        const code = jsQR(image.data, image.width, image.height);
        if (code) {
          return {text: code.data, width: canvas.width, height: canvas.height};
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return {text: null, width: video.videoWidth, height: video.videoHeight};
  } finally {
    stream.getTracks().forEach((track) => track.stop());
  }
}
"""


def test_home_page_fits_a_phone(live_server, phone, artifacts):
    page = phone("alice")
    response = page.goto("/")
    assert response is not None and response.ok, response and response.status
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=artifacts / "smoke-home-360.png", full_page=True)


def test_fake_camera_shows_a_qr_code_jsqr_reads(live_server, phone, tmp_path):
    video = qr_video(FINGERPRINT_PAYLOAD, tmp_path / "fingerprint.y4m")
    page = phone("scanner", video=video)
    page.goto("/")
    assert page.evaluate("window.isSecureContext")
    # Same origin as the page, so the pages' CSP (script-src 'self') allows it.
    page.add_script_tag(url=live_server.url + "/static/vendor/jsQR.js")
    assert page.evaluate("typeof jsQR") == "function"

    scanned = page.evaluate(SCAN_ONE_FRAME)

    assert scanned["text"] == FINGERPRINT_PAYLOAD, scanned
    assert (scanned["width"], scanned["height"]) == (640, 480)
