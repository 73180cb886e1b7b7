"""API key format: `fd_` + 43 url-safe characters (256 random bits) + a 6-character checksum.

The checksum (CRC32 in base 62) lets a scanner or the server reject a mistyped key without a
database lookup. Only the SHA-256 of the whole key is stored.
"""

from __future__ import annotations

import secrets
import zlib

from frontdesk.security.keys import sha256_hex

PREFIX = "fd_"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _checksum(body: str) -> str:
    number = zlib.crc32(body.encode())
    out = []
    for _ in range(6):
        number, rest = divmod(number, 62)
        out.append(_B62[rest])
    return "".join(reversed(out))


def new_api_key() -> tuple[str, str, str]:
    """(the key shown once, its display prefix, its stored hash)."""
    body = secrets.token_urlsafe(32)
    key = f"{PREFIX}{body}{_checksum(body)}"
    return key, key[:10], sha256_hex(key)


def looks_valid(key: str) -> bool:
    if not key.startswith(PREFIX) or len(key) < len(PREFIX) + 7:
        return False
    body, checksum = key[len(PREFIX) : -6], key[-6:]
    return _checksum(body) == checksum
