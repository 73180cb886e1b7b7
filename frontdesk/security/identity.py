"""Identity proofs: how a site's backend vouches for one of its users.

Two forms (docs/protocol.md): an HMAC-SHA256 over `"{site_id}|{user_id}|{expires}"` with the site
secret, or an HS256 JWT signed with the site secret (`sub`, `exp`, `aud` = site id). Comparison is
constant-time and expiry is enforced; every failure is `identity_invalid`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import jwt

from frontdesk.errors import AppError

MAX_USER_ID = 255


def identity_invalid(reason: str) -> AppError:
    return AppError("identity_invalid", f"The identity proof is invalid: {reason}", 401)


def sign_identity(secret: str, site_id: str, user_id: str, expires: int) -> str:
    """The HMAC a site's backend computes (also used by tests and the docs' samples)."""
    message = f"{site_id}|{user_id}|{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_identity(identity: dict[str, Any], *, site_id: str, secret: str) -> str:
    """Return the verified user id or raise `identity_invalid`."""
    if "token" in identity:
        return _verify_token(identity["token"], site_id=site_id, secret=secret)
    user_id = identity.get("user_id")
    expires = identity.get("expires")
    signature = identity.get("signature")
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID:
        raise identity_invalid("user_id must be a non-empty string.")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise identity_invalid("expires must be a unix time in seconds.")
    if not isinstance(signature, str):
        raise identity_invalid("signature must be a hex string.")
    expected = sign_identity(secret, site_id, user_id, expires)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise identity_invalid("the signature does not match.")
    if expires < int(time.time()):
        raise identity_invalid("it has expired.")
    return user_id


def _verify_token(token: object, *, site_id: str, secret: str) -> str:
    if not isinstance(token, str):
        raise identity_invalid("token must be a string.")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=site_id,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise identity_invalid("it has expired.") from exc
    except jwt.PyJWTError as exc:
        raise identity_invalid("the token does not verify.") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_USER_ID:
        raise identity_invalid("sub must be a non-empty string.")
    return subject
