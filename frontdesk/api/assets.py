"""The widget's static files: `/widget.js` (the loader a site embeds) and `/w/assets/*` (the chat
frame's JS and CSS), served from the build output `frontdesk/web/static` with an ETag and
Cache-Control.

`make build` (web/) writes `widget.js`, `w/` (the frame's content-hashed JS and CSS) and
`manifest.json` (which of those are current). Files are read once into memory and re-read when
they change on disk. The loader's URL is fixed (it is in every embed snippet), so it is cached
briefly and revalidated; frame assets have hashes in their names, so they are cached for a year.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from frontdesk.errors import not_found

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
LOADER_CACHE = "public, max-age=300, must-revalidate"
HASHED_CACHE = "public, max-age=31536000, immutable"
ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\.(js|css)$")
TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    etag: str
    mtime_ns: int


_cache: dict[Path, StaticFile] = {}


def read_static(relative: str) -> StaticFile | None:
    """The built file at `relative`, or None when it is absent (or outside the build output)."""
    path = (STATIC / relative).resolve()
    if STATIC.resolve() not in path.parents or not path.is_file():
        return None
    mtime = path.stat().st_mtime_ns
    cached = _cache.get(path)
    if cached is None or cached.mtime_ns != mtime:
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
        cached = _cache[path] = StaticFile(body, etag, mtime)
    return cached


def frame_assets() -> tuple[str, str] | None:
    """The current chat frame bundle, `(js, css)` file names under `/w/assets/`, if built."""
    manifest = read_static("manifest.json")
    if manifest is None:
        return None
    names = json.loads(manifest.body)
    js, css = names.get("frame_js"), names.get("frame_css")
    return (str(js), str(css)) if js and css else None


def _serve(file: StaticFile, media_type: str, cache: str, if_none_match: str | None) -> Response:
    headers = {
        "ETag": file.etag,
        "Cache-Control": cache,
        # Host pages on other origins load these; allow it even under their COEP.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if if_none_match and file.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=media_type, headers=headers)


@router.get("/widget.js")
async def loader(
    if_none_match: Annotated[str | None, Header(max_length=500)] = None,
) -> Response:
    file = read_static("widget.js")
    if file is None:
        raise not_found("The widget is not built; run `make build`.")
    return _serve(file, TYPES["js"], LOADER_CACHE, if_none_match)


@router.get("/w/assets/{name}")
async def frame_asset(
    name: str,
    if_none_match: Annotated[str | None, Header(max_length=500)] = None,
) -> Response:
    match = ASSET_NAME.match(name)
    file = read_static(f"w/{name}") if match else None
    if match is None or file is None:
        raise not_found()
    return _serve(file, TYPES[match.group(1)], HASHED_CACHE, if_none_match)
