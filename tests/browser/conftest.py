"""Real-browser fixtures: Debian's Chromium driven by Playwright, phones, a live server.

Every test in this folder is marked ``browser``. Without /usr/bin/chromium
(``make system-test`` installs it) the folder is skipped, except under CI
(the CI environment variable set), where that is an error: CI must have it.
Playwright never downloads a browser here; don't run ``playwright install``.

Fixtures:
- ``live_server``: keyparty served by waitress on 127.0.0.1 on a free port,
  on a fresh instance; ``.url`` (no trailing slash) and ``.app``.
- ``browser``: one headless Chromium for the session.
- ``phone(name, video=None, locale="en-US")``: a new Page in a phone-sized
  context (360x740 CSS px, 2x, touch) whose base URL is the live server; with
  ``video`` (a y4m file, see y4m.py) the phone gets its own Chromium whose
  camera shows that video. If the test fails, each phone's screen is saved
  in test-artifacts/ as ``<test>-<phone name>.png``.
- ``artifacts``: test-artifacts/ at the top of the checkout, for screenshots.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extras install it
    sync_playwright = None

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Containers often have a 64 MB /dev/shm, too small for Chromium.
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

PHONE_VIEWPORT = {"width": 360, "height": 740}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tools() -> str | None:
    """Why browser tests cannot run here, or None if they can."""
    if sync_playwright is None:
        return "Playwright is not installed: pip install -e '.[test]'"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return (
            f"{CHROMIUM} is missing: make system-test (or apt-get install chromium fonts-noto-cjk)"
        )
    return None


def pytest_collection_modifyitems(config, items):
    reason = missing_tools()
    for item in items:
        if HERE not in Path(item.path).resolve().parents:
            continue
        item.add_marker(pytest.mark.browser)
        if reason and not in_ci():
            item.add_marker(pytest.mark.skip(reason=f"browser tests skipped: {reason}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def playwright():
    reason = missing_tools()
    if reason:
        pytest.fail(f"CI must be able to run the browser tests: {reason}", pytrace=False)
    with sync_playwright() as driver:
        yield driver


def launch(playwright, *extra_args: str):
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=[*LAUNCH_ARGS, *extra_args]
    )


@pytest.fixture(scope="session")
def browser(playwright):
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def mobile_user_agent(browser) -> str:
    return (
        "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 "
        f"(KHTML, like Gecko) Chrome/{browser.version} Mobile Safari/537.36"
    )


@pytest.fixture
def phone(request, playwright, browser, live_server, artifacts):
    """Factory: phone(name, video=None, locale="en-US") -> a Page on a fresh phone."""
    own_browsers = []
    phones = []

    def make_phone(name: str = "phone", video: Path | None = None, locale: str = "en-US"):
        if video is None:
            chromium = browser
        else:
            video = Path(video).resolve()
            if not video.is_file():
                raise FileNotFoundError(video)
            # The fake camera's file is a launch flag: one Chromium per camera.
            chromium = launch(playwright, f"--use-file-for-fake-video-capture={video}")
            own_browsers.append(chromium)
        context = chromium.new_context(
            viewport=PHONE_VIEWPORT,
            screen=PHONE_VIEWPORT,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            locale=locale,
            user_agent=mobile_user_agent(chromium),
            base_url=live_server.url,
        )
        context.grant_permissions(["camera"], origin=live_server.url)
        page = context.new_page()
        phones.append((name, context, page))
        return page

    yield make_phone

    report = getattr(request.node, "report_call", None)
    failed = report is not None and report.failed
    for name, context, page in phones:
        if failed and not page.is_closed():
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{name}")
            try:
                page.screenshot(path=artifacts / f"{stem}.png", full_page=True)
            except Exception as error:  # keep the test's own failure in front
                print(f"could not save a screenshot of {name}: {error}")
        context.close()
    for chromium in own_browsers:
        chromium.close()


def join(page, token: str) -> None:
    """Open a join link and press its button, as a phone does (O2: only the
    button spends the link), in whatever language the page speaks."""
    page.goto(f"/join/{token}")
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/me")
    page.wait_for_load_state()
