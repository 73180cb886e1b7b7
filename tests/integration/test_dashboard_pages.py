"""Serving the dashboard build: the page for every client-side route, hashed assets cached for a
year, no page for a missing asset, the strict CSP, and asset paths under a sub-path deployment.

The build output directory is pointed at a small build made here, so these tests do not depend
on `make build` having run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from frontdesk.api import assets
from frontdesk.config import load_settings
from frontdesk.main import create_app

INDEX = (
    '<!doctype html><html><head><script type="module" crossorigin '
    'src="/dashboard/assets/index-AbC_12-x.js"></script>'
    '<link rel="stylesheet" crossorigin href="/dashboard/assets/index-Zz9.css"></head>'
    '<body><div id="app"></div></body></html>'
)


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    static = tmp_path / "static"
    (static / "dashboard" / "assets").mkdir(parents=True)
    (static / "dashboard" / "index.html").write_text(INDEX)
    (static / "dashboard" / "assets" / "index-AbC_12-x.js").write_text("console.log(1)")
    (static / "dashboard" / "assets" / "index-Zz9.css").write_text("body{margin:0}")
    (static / "secret.txt").write_text("no")
    monkeypatch.setattr(assets, "STATIC", static)
    yield static


async def test_routes_get_the_page_and_assets_are_cached(
    build: Path, client: httpx.AsyncClient
) -> None:
    for path in ("/dashboard", "/dashboard/", "/dashboard/inbox", "/dashboard/inbox/conv_1"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert page.text == INDEX
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe" not in csp and "frame-ancestors 'none'" in csp
    script = await client.get("/dashboard/assets/index-AbC_12-x.js")
    assert script.status_code == 200 and script.text == "console.log(1)"
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = await client.get(
        "/dashboard/assets/index-AbC_12-x.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304
    style = await client.get("/dashboard/assets/index-Zz9.css")
    assert style.headers["content-type"].startswith("text/css")
    for missing in (
        "/dashboard/assets/nothing.js",
        "/dashboard/assets/..%2F..%2Fsecret.txt",
        "/dashboard/assets/sub/index-Zz9.css",
        "/dashboard/assets/index.html",
    ):
        response = await client.get(missing)
        assert response.status_code == 404, missing
        assert response.json()["error"]["code"] == "not_found"


async def test_not_built_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    monkeypatch.setattr(assets, "STATIC", tmp_path / "empty")
    page = await client.get("/dashboard/overview")
    assert page.status_code == 200 and "make build" in page.text


@pytest.fixture
async def prefixed(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose public URL has a path. Its lifespan is not run: serving the page needs only
    the settings (no database, broker or worker)."""
    settings = load_settings(
        data_dir=tmp_path / "data", public_url="https://desk.example/support/desk"
    )
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://desk.example"
    ) as http:
        yield http


async def test_assets_carry_the_public_url_path(build: Path, prefixed: httpx.AsyncClient) -> None:
    page = await prefixed.get("/dashboard/sites")
    assert 'src="/support/desk/dashboard/assets/index-AbC_12-x.js"' in page.text
    assert 'href="/support/desk/dashboard/assets/index-Zz9.css"' in page.text
