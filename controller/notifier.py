"""Messages to people (verification and password-reset codes): SMTP, or files in DATA_DIR/outbox/.

With ``smtp.host`` set, messages go through that server (aiosmtplib): STARTTLS by default, implicit TLS, or
plain on loopback only (settings refuse credentials in clear elsewhere). Without it (``make run``, a lab) each
message is one 0600 file in DATA_DIR/outbox/, which whoever runs the controller reads. Neither path logs a
message's body: it holds a code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

import aiosmtplib

from controller.errors import Unavailable
from controller.private_files import write_private
from controller.settings import Settings

log = logging.getLogger("vpnfleet.notifier")

OUTBOX = "outbox"
#: seconds an SMTP exchange may take before the message counts as undeliverable
SMTP_TIMEOUT = 20.0


class Notifier(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None:
        """Deliver one message; raises Unavailable when it cannot be delivered."""


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    msg.set_content(body)
    return msg


class SmtpNotifier:
    """Sends through an SMTP server (``smtp.*`` settings)."""

    def __init__(self, host: str, port: int, sender: str, security: str = "starttls", username: str = "",
                 password: str = "", timeout: float = SMTP_TIMEOUT) -> None:
        self.host, self.port, self.sender, self.security = host, port, sender, security
        self._username, self._password = username, password
        self.timeout = timeout

    async def send(self, to: str, subject: str, body: str) -> None:
        try:
            await aiosmtplib.send(
                _message(self.sender, to, subject, body), hostname=self.host, port=self.port,
                username=self._username or None, password=self._password or None,
                use_tls=self.security == "tls", start_tls=self.security == "starttls",
                timeout=self.timeout)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            # the server's answer may quote the recipient, never the body: safe to log
            log.warning("could not send a message to %s through %s:%s: %s", to, self.host, self.port, exc)
            raise Unavailable(f"the mail server could not be reached or refused the message ({type(exc).__name__})") \
                from None
        log.info("message to %s sent through %s:%s", to, self.host, self.port)


class OutboxNotifier:
    """Writes each message to a new 0600 file in ``directory`` (RFC 5322 text, ``.eml``)."""

    def __init__(self, directory: Path, sender: str = "vpnfleet@localhost") -> None:
        self.directory = directory
        self.sender = sender

    async def send(self, to: str, subject: str, body: str) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"{stamp}-{secrets.token_hex(4)}.eml"
        data = _message(self.sender, to, subject, body).as_bytes()
        try:
            await asyncio.to_thread(self._write, path, data)
        except OSError as exc:
            raise Unavailable(f"could not write the message to {self.directory}: {exc.strerror}") from None
        log.info("message to %s written to %s", to, path)

    def _write(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, data)


def make_notifier(settings: Settings) -> Notifier:
    """SMTP when smtp.host is set, else the outbox directory."""
    if settings.smtp_host:
        return SmtpNotifier(settings.smtp_host, settings.smtp_port, settings.smtp_sender, settings.smtp_security,
                            settings.smtp_username, settings.smtp_password)
    return OutboxNotifier(settings.data_dir / OUTBOX, settings.smtp_sender)
