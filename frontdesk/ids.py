"""Public identifiers: a readable prefix plus 128 random bits (`site_…`, `vis_…`, `conv_…`).

Random, not sequential, so that an id reveals nothing about volume and cannot be guessed.
"""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _random_base36(nbytes: int = 16) -> str:
    number = int.from_bytes(secrets.token_bytes(nbytes), "big")
    digits = []
    while number:
        number, rest = divmod(number, 36)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits)).rjust(25, "0")


def new_id(prefix: str) -> str:
    return f"{prefix}_{_random_base36()}"
