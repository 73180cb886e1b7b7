from __future__ import annotations

import time

import jwt
import pytest

from frontdesk.errors import AppError
from frontdesk.responders.config import public_responder, seal_responder, unseal_responder
from frontdesk.security.apikeys import looks_valid, new_api_key
from frontdesk.security.identity import sign_identity, verify_identity
from frontdesk.security.keys import SecretBox
from frontdesk.security.passwords import hash_password, verify_password
from frontdesk.security.tokens import AccessTokens

KEY = b"k" * 48


def test_access_token_round_trip_and_claims() -> None:
    tokens = AccessTokens(KEY, 600)
    token = tokens.issue(site_id="site_a", visitor_id="vis_b", verified=True)
    claims = tokens.decode(token)
    assert (claims.site_id, claims.visitor_id, claims.verified) == ("site_a", "vis_b", True)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256" and header["typ"] == "fd-visitor+jwt" and header["kid"]


def test_verified_tokens_are_remembered_but_expire_and_never_vouch_for_others() -> None:
    tokens = AccessTokens(KEY, 2)  # exp = whole seconds: at least 1 s from now
    token = tokens.issue(site_id="site_a", visitor_id="vis_b", verified=False)
    first = tokens.decode(token)
    assert tokens.decode(token) is first  # the second time from the verified tokens
    head, payload, signature = token.split(".")
    tampered = [
        f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        f"{head}.{payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{signature}",
    ]
    for other in tampered:
        with pytest.raises(AppError) as error:
            tokens.decode(other)
        assert error.value.code == "unauthorized"
    time.sleep(max(0.0, first.expires_at - time.time()) + 0.05)
    with pytest.raises(AppError) as error:
        tokens.decode(token)
    assert error.value.code == "token_expired"


def test_access_token_from_another_server_key_fails() -> None:
    token = AccessTokens(b"other" * 10, 600).issue(site_id="s", visitor_id="v", verified=False)
    with pytest.raises(AppError) as error:
        AccessTokens(KEY, 600).decode(token)
    assert error.value.code == "unauthorized"


def test_other_algorithms_rejected() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    tokens = AccessTokens(KEY, 600)
    now = int(time.time())
    claims = {"iss": "frontdesk", "aud": "s", "sub": "v", "iat": now, "exp": now + 60}
    header = {"typ": "fd-visitor+jwt"}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = [
        jwt.encode(claims, rsa_key, algorithm="RS256", headers=header),
        jwt.encode(claims, "x" * 64, algorithm="HS512", headers=header),
        jwt.encode(claims, None, algorithm="none", headers=header),
    ]
    for token in forged:
        with pytest.raises(AppError) as error:
            tokens.decode(token)
        assert error.value.code == "unauthorized"


def test_api_key_format() -> None:
    key, prefix, key_hash = new_api_key()
    assert key.startswith("fd_") and key.startswith(prefix) and len(key_hash) == 64
    assert len(key) >= 3 + 43 + 6
    assert looks_valid(key)
    assert not looks_valid(key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_identity_signature_is_hex_hmac() -> None:
    signature = sign_identity("secret", "site_a", "u1", 2_000_000_000)
    assert len(signature) == 64
    user = verify_identity(
        {"user_id": "u1", "expires": 2_000_000_000, "signature": signature.upper()},
        site_id="site_a",
        secret="secret",
    )
    assert user == "u1"


def test_passwords_are_argon2id() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$") and "m=19456,t=2,p=1" in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "wrong")


def test_responder_keys_are_sealed() -> None:
    box = SecretBox(KEY)
    raw = {
        "kind": "openai",
        "base_url": "https://api.example",
        "api_key": "sk-live",
        "model": "m",
        "fallback": {"kind": "dify", "base_url": "https://dify.example", "api_key": "app-1"},
    }
    stored = seal_responder(raw, box)
    assert "sk-live" not in str(stored) and "app-1" not in str(stored)
    assert unseal_responder(stored, box) == raw
    shown = public_responder(stored)
    assert shown["api_key"] == "********" and shown["fallback"]["api_key"] == "********"


def test_server_key_rotation_keeps_tokens_and_secrets() -> None:
    old, new = b"old-key" * 8, b"new-key" * 8
    token = AccessTokens(old, 600).issue(site_id="s", visitor_id="v", verified=False)
    sealed = SecretBox(old).seal("site-secret")
    rotated_tokens = AccessTokens(new, 600, previous=[old])
    assert rotated_tokens.decode(token).visitor_id == "v"
    assert SecretBox(new, previous=[old]).open(sealed) == "site-secret"
    fresh = rotated_tokens.issue(site_id="s", visitor_id="v", verified=False)
    assert jwt.get_unverified_header(fresh)["kid"] != jwt.get_unverified_header(token)["kid"]
    with pytest.raises(AppError):
        AccessTokens(new, 600).decode(token)  # once the old key is dropped, so are its tokens
