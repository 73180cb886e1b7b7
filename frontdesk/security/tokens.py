"""Visitor access tokens (JWT) and refresh tokens (opaque).

Access tokens are HS256 JWTs signed with a key derived from the server secret. Decoding accepts
only HS256 (an explicit allowlist, RFC 8725), checks `typ`, `iss`, `aud` (= the site id) and
`exp`, and tells an expired token (`token_expired`) from any other failure (`unauthorized`).
Refresh tokens are 256 random bits shown to the client once and stored as SHA-256 hashes.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from frontdesk.errors import AppError, unauthorized
from frontdesk.security.keys import derive_key, sha256_hex

ALGORITHM = "HS256"
TOKEN_TYPE = "fd-visitor+jwt"
ISSUER = "frontdesk"
VERIFIED_CACHE_SIZE = 20_000


@dataclass(frozen=True, slots=True)
class VisitorClaims:
    site_id: str
    visitor_id: str
    verified: bool
    expires_at: int


class AccessTokens:
    """Signs with the current server key; verifies with it or a previous one, chosen by `kid`,
    so rotating the server key does not sign every visitor out at once."""

    def __init__(self, server_key: bytes, ttl_s: int, previous: list[bytes] | None = None) -> None:
        self._key = derive_key(server_key, "visitor-access-token")
        self._kid = self._key_id(self._key)
        self._keys = {self._kid: self._key}
        for old in previous or []:
            key = derive_key(old, "visitor-access-token")
            self._keys.setdefault(self._key_id(key), key)
        self.ttl_s = ttl_s
        # Tokens that verified, by their exact text (signature included): a visitor sends the
        # same token with every request for its lifetime, and verifying it (base64, JSON, HMAC,
        # claim checks) was a tenth of a chat turn's CPU. A hit still checks expiry.
        self._verified: dict[str, VisitorClaims] = {}

    @staticmethod
    def _key_id(key: bytes) -> str:
        return sha256_hex(key.hex())[:8]

    def issue(self, *, site_id: str, visitor_id: str, verified: bool) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": site_id,
            "sub": visitor_id,
            "iat": now,
            "exp": now + self.ttl_s,
            "vrf": verified,
        }
        headers = {"typ": TOKEN_TYPE, "kid": self._kid}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers=headers)

    def decode(self, token: str) -> VisitorClaims:
        known = self._verified.get(token)
        if known is not None and time.time() < known.expires_at:
            return known
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            # Oldest first (insertion order); expired entries go as they come up.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> VisitorClaims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != TOKEN_TYPE or header.get("alg") != ALGORITHM:
                raise unauthorized("The access token is invalid.")
            key = self._keys.get(str(header.get("kid")))
            if key is None:
                raise unauthorized("The access token is invalid.")
            # The audience is the site the token was issued for; any site id is a valid
            # audience here, and the caller checks that site's origins, so it is checked
            # for shape rather than against one expected value.
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "aud", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AppError(
                "token_expired", "The access token has expired; refresh it.", 401
            ) from exc
        except jwt.PyJWTError as exc:
            raise unauthorized("The access token is invalid.") from exc
        if not isinstance(claims.get("aud"), str) or not isinstance(claims.get("sub"), str):
            raise unauthorized("The access token is invalid.")
        return VisitorClaims(
            site_id=str(claims["aud"]),
            visitor_id=str(claims["sub"]),
            verified=bool(claims.get("vrf", False)),
            expires_at=int(claims["exp"]),
        )


def new_refresh_token() -> tuple[str, str]:
    """A fresh refresh token and the hash to store."""
    token = "fdr_" + secrets.token_urlsafe(32)
    return token, sha256_hex(token)
