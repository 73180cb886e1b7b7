"""Keys derived from the server secret, and encryption of stored secrets.

Each purpose gets its own key (HKDF-SHA256 with a purpose label), so a token key can never be used
to decrypt a site secret and rotating one purpose does not touch the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(server_key: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"frontdesk", info=purpose.encode()
    ).derive(server_key)


class SecretBox:
    """Encrypts secrets at rest (site secrets, webhook secrets) with the server key; opens what
    previous server keys sealed, so a key rotation keeps stored secrets readable."""

    def __init__(self, server_key: bytes, previous: list[bytes] | None = None) -> None:
        keys = [server_key, *(previous or [])]
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(derive_key(k, "secret-box"))) for k in keys]
        )

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:  # wrong server key: a configuration error, not user input
            raise RuntimeError("a stored secret cannot be decrypted with this server key") from exc


def new_site_secret() -> str:
    return "fds_" + secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
