"""What the widget looks like: closed, open, on a phone, in dark mode and in Russian, compared
with the committed baselines (tests/browser/baselines/*.png) pixel by pixel.

A screenshot matches when at most MAX_DIFF of its pixels differ noticeably from the baseline.
A missing baseline is written from the current run (commit it); every run's screenshots are kept
in tests/browser/artifacts/ (gitignored) for inspection. The pixel comparison runs in Chromium
itself (canvas), so the suite needs no imaging library.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Desk, HostServer
from tests.browser.helpers import LAUNCHER, open_chat

pytestmark = pytest.mark.browser
Env = tuple[Desk, HostServer, HostServer]

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"
ARTIFACTS = HERE / "artifacts"
MAX_DIFF = 0.015  # share of pixels allowed to differ
CHANNEL_TOLERANCE = 48  # summed |ΔR|+|ΔG|+|ΔB| under which a pixel counts as equal

DIFF_JS = """async ([a, b, tolerance]) => {
  const load = async (data) =>
    createImageBitmap(await (await fetch('data:image/png;base64,' + data)).blob());
  const [x, y] = await Promise.all([load(a), load(b)]);
  if (x.width !== y.width || x.height !== y.height) return 1;
  const canvas = new OffscreenCanvas(x.width, x.height);
  const g = canvas.getContext('2d', {willReadFrequently: true});
  g.drawImage(x, 0, 0);
  const p = g.getImageData(0, 0, x.width, x.height).data;
  g.clearRect(0, 0, x.width, x.height);
  g.drawImage(y, 0, 0);
  const q = g.getImageData(0, 0, x.width, x.height).data;
  let differing = 0;
  for (let i = 0; i < p.length; i += 4) {
    const delta = Math.abs(p[i] - q[i]) + Math.abs(p[i+1] - q[i+1]) + Math.abs(p[i+2] - q[i+2]);
    if (delta > tolerance) differing++;
  }
  return differing / (p.length / 4);
}"""


@pytest.fixture(scope="module")
def differ(browser: Any) -> Iterator[Callable[[bytes, bytes], float]]:
    context = browser.new_context()
    page = context.new_page()

    def diff(a: bytes, b: bytes) -> float:
        encoded = [base64.b64encode(x).decode() for x in (a, b)]
        return float(page.evaluate(DIFF_JS, [*encoded, CHANNEL_TOLERANCE]))

    yield diff
    context.close()


def check(name: str, png: bytes, differ: Callable[[bytes, bytes], float]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}.png").write_bytes(png)
    baseline = BASELINES / f"{name}.png"
    if not baseline.exists():
        BASELINES.mkdir(exist_ok=True)
        baseline.write_bytes(png)
        return
    ratio = differ(baseline.read_bytes(), png)
    assert ratio <= MAX_DIFF, f"{name}: {ratio:.2%} of pixels differ (see {ARTIFACTS / name}.png)"


def shot(page: Page) -> bytes:
    return page.screenshot(animations="disabled", caret="hide")


def settle_open(page: Page, extras: bool) -> None:
    frame = open_chat(page)
    if extras:  # the main site's offer card and quick actions
        expect(frame.locator(".fd-offer")).to_be_visible()
        expect(frame.locator(".fd-action").first).to_be_visible()
    frame.evaluate("document.activeElement && document.activeElement.blur()")
    page.wait_for_timeout(200)  # the last layout and paint


def scene(browser: Any, **options: Any) -> Any:
    return browser.new_context(
        **{"viewport": {"width": 1024, "height": 768}, "locale": "en-US", **options}
    )


@pytest.mark.parametrize(
    ("name", "options", "site"),
    [
        ("open", {}, "main"),
        ("mobile", {"viewport": {"width": 390, "height": 780}, "has_touch": True}, "main"),
        ("dark", {"color_scheme": "dark"}, "main"),
        ("russian", {"locale": "ru-RU"}, "russian"),
    ],
)
def test_screens_open(
    desk: Env,
    browser: Any,
    differ: Callable[[bytes, bytes], float],
    name: str,
    options: dict[str, Any],
    site: str,
) -> None:
    server, host, _ = desk
    context = scene(browser, **options)
    try:
        page = context.new_page()
        page.goto(host.url(getattr(server.sites, site)))
        expect(page.locator(LAUNCHER)).to_be_visible()
        settle_open(page, extras=site == "main")
        check(name, shot(page), differ)
    finally:
        context.close()


def test_screen_closed(desk: Env, browser: Any, differ: Callable[[bytes, bytes], float]) -> None:
    server, host, _ = desk
    context = scene(browser)
    try:
        page = context.new_page()
        page.goto(host.url(server.sites.main))
        expect(page.locator(LAUNCHER)).to_be_visible()
        page.wait_for_timeout(100)
        check("closed", shot(page), differ)
    finally:
        context.close()
