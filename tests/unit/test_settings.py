from __future__ import annotations

import logging
from pathlib import Path

import pytest

from frontdesk.config import SECRET_KEY_FILE, load_settings


def test_secret_key_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings(data_dir=tmp_path).server_key
    second = load_settings(data_dir=tmp_path).server_key
    assert first == second and len(first) >= 48
    key_file = tmp_path / SECRET_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_secrets_never_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(secret_key="super-secret-value-123")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("settings: %s", settings)
    assert "super-secret-value-123" not in repr(settings)
    assert "super-secret-value-123" not in caplog.text


def test_environment_and_url_forms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRONTDESK_DATABASE_URL", "postgres://u@h:5432/db")
    monkeypatch.setenv("FRONTDESK_PUBLIC_URL", "https://chat.example/")
    settings = load_settings()
    assert settings.resolved_database_url == "postgresql+asyncpg://u@h:5432/db"
    assert settings.public_url == "https://chat.example"
    default = load_settings(database_url=None, data_dir=tmp_path)
    assert default.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/frontdesk.db"


def test_invalid_settings_rejected() -> None:
    with pytest.raises(ValueError):
        load_settings(access_token_ttl_s=3600)  # longer than 15 minutes
