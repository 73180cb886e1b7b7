"""Settings: the one source of configuration, read from `FRONTDESK_*` variables.

Owns parsing and validating configuration and locating the data directory. A missing secret key is
generated once and kept in the data directory, so restarts keep tokens and encrypted secrets valid.
Secrets are `SecretStr` so that they never appear in reprs or logs.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret.key"


class Settings(BaseSettings):
    """Process-wide settings. Build one per app; tests build their own."""

    model_config = SettingsConfigDict(env_prefix="FRONTDESK_", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Where SQLite and the key live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite at data_dir/frontdesk.db."
    )
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    previous_secret_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated former secret keys, still accepted while tokens and "
        "sealed secrets made with them are in use (key rotation).",
    )
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    webhook_allowed_hosts: str = ""
    trusted_proxies: str = Field(
        default="", description="Comma-separated proxy IPs/CIDRs whose X-Forwarded-For is used."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="When set, GET /metrics needs 'Authorization: Bearer <token>'.",
    )
    environment: str = "development"

    access_token_ttl_s: int = Field(default=600, ge=60, le=900)
    refresh_token_idle_s: int = Field(default=7 * 24 * 3600, ge=60)
    refresh_token_absolute_s: int = Field(default=30 * 24 * 3600, ge=60)
    max_message_chars: int = Field(default=4000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    answer_timeout_s: float = Field(default=60.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    sqlite_driver: Literal["inline", "thread"] = Field(
        default="inline",
        description="How SQLite is driven: from the event loop (inline) or on aiosqlite's "
        "threads (thread). See ADR 0022.",
    )
    ws_heartbeat_s: float = Field(default=25.0, gt=0, description="Protocol ping interval.")
    ws_pong_timeout_s: float = Field(default=20.0, gt=0)
    ws_auth_timeout_s: float = Field(default=10.0, gt=0)
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_send_queue_bytes: int = Field(default=1 << 20, ge=4096)
    ws_delta_flush_ms: float = Field(default=25.0, ge=0, le=1000)
    ws_per_message_deflate: bool = False
    ws_feed_check_s: float = Field(
        default=15.0, gt=0, description="A joined conversation quiet this long is re-read."
    )
    ws_max_per_ip: int = Field(default=50, ge=1)
    ws_max_per_site: int = Field(default=10_000, ge=1)
    ws_max_per_process: int = Field(default=20_000, ge=1)
    responder_failure_threshold: int = Field(default=5, ge=1)
    responder_failure_window_s: float = Field(default=60.0, gt=0)
    responder_open_s: float = Field(default=30.0, gt=0)
    responder_history_tokens: int = Field(default=3000, ge=100)
    answer_cache_ttl_s: float = Field(default=3600.0, gt=0)
    run_worker: bool = Field(
        default=True,
        description="Run the job worker in this process (off when a separate "
        "`frontdesk worker` does it).",
    )
    job_lease_s: float = Field(default=60.0, gt=0)
    job_poll_s: float = Field(default=1.0, gt=0)
    job_coalesce_ms: float = Field(
        default=50.0, ge=0, le=1000, description="Shortest time between two worker passes."
    )
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=60)
    smtp_host: str | None = Field(
        default=None, description="SMTP server for email notifications; unset = no email."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(default="FrontDesk <frontdesk@localhost>", max_length=320)
    smtp_security: str = Field(
        default="starttls",
        pattern="^(starttls|tls|none)$",
        description="starttls (port 587), tls (implicit, port 465) or none (loopback relays).",
    )
    smtp_timeout_s: float = Field(default=15.0, gt=0, le=120)
    activity_retention_days: int = Field(
        default=180, ge=0, description="Days of activity (events) kept; 0 keeps everything."
    )
    events_window_size: int = Field(default=10_000, ge=1)
    events_window_age_s: int = Field(default=24 * 3600, ge=1)
    seed_demo: bool = False
    log_level: str = "info"
    otel_enabled: bool = Field(
        default=False,
        description="Export OpenTelemetry traces over OTLP/HTTP (also on when the standard "
        "OTEL_EXPORTER_OTLP_ENDPOINT is set).",
    )
    sentry_dsn: SecretStr | None = Field(
        default=None, description="Report errors to Sentry (the standard SENTRY_DSN works too)."
    )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the plain forms people paste and pick the async driver for them.
            if url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.removeprefix("postgres://")
            elif url.startswith("postgresql://"):
                url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
            elif url.startswith("sqlite:///"):
                url = "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'frontdesk.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    @cached_property
    def server_key(self) -> bytes:
        """The server secret as bytes: configured, or generated once into the data directory."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.ensure_data_dir() / SECRET_KEY_FILE
        if not path.exists():
            # O_EXCL: two processes starting together must not write two different keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()

    @property
    def previous_server_keys(self) -> list[bytes]:
        if self.previous_secret_keys is None:
            return []
        raw = self.previous_secret_keys.get_secret_value()
        return [part.strip().encode() for part in raw.split(",") if part.strip()]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
