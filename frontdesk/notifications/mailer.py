"""Sending email over SMTP (aiosmtplib): STARTTLS, implicit TLS, or plain for a loopback relay.

The password comes from settings as a secret and is never logged; a failed send raises, and the
job that called it retries with backoff.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from frontdesk.config import Settings


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    @property
    def sender(self) -> str:
        return self.settings.smtp_from

    async def send(self, message: EmailMessage) -> None:
        settings = self.settings
        if not settings.smtp_host:
            raise RuntimeError("no SMTP server configured (FRONTDESK_SMTP_HOST)")
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=password if settings.smtp_username else None,
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            timeout=settings.smtp_timeout_s,
        )
