from __future__ import annotations

import pytest

from frontdesk.security.origins import OriginError, normalise_origin, origin_allowed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://Shop.Example", "https://shop.example"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://shop.example:80/", "http://shop.example"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise_origin(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "shop.example",
        "ftp://shop.example",
        "https://shop.example/path",
        "https://a.*.example",
        "https://user@shop.example",
        "https://shop.example:99999",
    ],
)
def test_rejects(raw: str) -> None:
    with pytest.raises(OriginError):
        normalise_origin(raw, allow_wildcard=True)


def test_wildcard_needs_permission() -> None:
    with pytest.raises(OriginError):
        normalise_origin("https://*.shop.example")
    assert (
        normalise_origin("https://*.Shop.example", allow_wildcard=True) == "https://*.shop.example"
    )


def test_matching() -> None:
    allow = ["https://shop.example", "https://*.cdn.example"]
    assert origin_allowed("https://SHOP.example:443", allow)
    assert origin_allowed("https://a.b.cdn.example", allow)
    assert not origin_allowed("https://cdn.example", allow)
    assert not origin_allowed("http://shop.example", allow)
    assert not origin_allowed("https://evilcdn.example", allow)
    assert not origin_allowed("https://shop.example.evil", allow)
    assert not origin_allowed("null", allow)
    assert not origin_allowed(None, allow)
