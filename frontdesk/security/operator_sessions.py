"""Operator sign-in sessions and their CSRF tokens.

A session is a 256-bit random token in a `__Host-` cookie (Secure, HttpOnly, SameSite=Lax); the
database keeps only its hash, with an idle timeout (30 min) and an absolute one (8 h). The CSRF
token is a signed double-submit value: HMAC(server key, session hash), sent back by the dashboard
in `X-CSRF-Token` and in a readable cookie; it changes whenever the session does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from frontdesk.security.keys import derive_key, sha256_hex

SESSION_COOKIE = "__Host-fd_session"
CSRF_COOKIE = "__Host-fd_csrf"
CSRF_HEADER = "x-csrf-token"
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=8)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_session_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, sha256_hex(token)


class CsrfTokens:
    def __init__(self, server_key: bytes) -> None:
        self._key = derive_key(server_key, "operator-csrf")

    def for_session(self, session_hash: str) -> str:
        return hmac.new(self._key, session_hash.encode(), hashlib.sha256).hexdigest()

    def valid(self, session_hash: str, header: str | None, cookie: str | None) -> bool:
        if not header or not cookie:
            return False
        expected = self.for_session(session_hash)
        return hmac.compare_digest(header.encode(), cookie.encode()) and hmac.compare_digest(
            header.encode(), expected.encode()
        )
