"""Outbox delivery: claim due rows with SKIP LOCKED, send over SMTP in a thread, retry (MAIL-1)."""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

import psycopg

from app.config import Config
from app.mail.seal import key_for, unseal

log = logging.getLogger("keel.mail")

Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


@dataclass(frozen=True)
class Outgoing:
    id: int
    to: str
    subject: str
    text: str
    html: str
    attempts: int
    seal: bytes | None = None


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    tls: str = "starttls"  # starttls | tls | none
    username: str = ""
    password: str = ""
    sender: str = ""
    timeout: float = 30.0

    @classmethod
    def from_config(cls, config: Config) -> SmtpSettings:
        sender = config.mail_from or formataddr((config.site_name, f"keel@{socket.getfqdn()}"))
        return cls(
            config.smtp_host,
            config.smtp_port,
            config.smtp_tls,
            config.smtp_username,
            config.smtp_password,
            sender,
        )


class PermanentFailure(Exception):
    """The server refused the message for good (5xx): retrying would not help."""


def build_message(settings: SmtpSettings, mail: Outgoing) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring=f"keel{mail.id}")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to us
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


def _open(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.tls == "tls":
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            timeout=settings.timeout,
            context=ssl.create_default_context(),
        )
    smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    smtp.ehlo()
    if settings.tls == "starttls":
        smtp.starttls(context=ssl.create_default_context())
        smtp.ehlo()
    return smtp


def _check(code: int, reply: bytes, step: str) -> None:
    if code >= 400:
        text = f"{step}: {code} {reply.decode('utf-8', 'replace')}"
        raise PermanentFailure(text) if code >= 500 else smtplib.SMTPException(text)


def smtp_send(settings: SmtpSettings, msg: EmailMessage) -> str:
    """One message over one connection, blocking (run it in a thread); returns the final reply."""
    with _open(settings) as smtp:
        if settings.username:
            smtp.login(settings.username, settings.password)
        # Step by step rather than send_message(): we want the server's final reply (queue id).
        _check(*smtp.mail(_address(settings.sender)), "MAIL FROM")
        _check(*smtp.rcpt(str(msg["To"])), "RCPT TO")
        code, reply = smtp.data(msg.as_bytes(policy=policy.SMTP))  # CRLF, as data() expects
        _check(code, reply, "DATA")
        return f"{code} {reply.decode('utf-8', 'replace')}"


def handshake(settings: SmtpSettings) -> str:
    """Connect, negotiate TLS and log in without sending anything (doctor, MAIL-2)."""
    with _open(settings) as smtp:
        if settings.username:
            smtp.login(settings.username, settings.password)
        code, reply = smtp.noop()
        return f"{code} {reply.decode('utf-8', 'replace')}"


def console_send(_settings: SmtpSettings, msg: EmailMessage) -> str:
    """Demo without SMTP: the whole message, links included, goes to the log (MAIL-3, dev only)."""
    body = msg.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    log.info("mail to %s: %s\n%s", msg["To"], msg["Subject"], text)
    return "printed to the console (demo mode, no smtp_host)"


def _address(sender: str) -> str:
    from email.utils import parseaddr

    return parseaddr(sender)[1] or sender


def describe(exc: BaseException) -> str:
    """An error for last_error: the server's words, never our credentials."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace') if isinstance(exc.smtp_error, bytes) else exc.smtp_error}"
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        text = "; ".join(
            f"{code} {reply.decode('utf-8', 'replace')}" for code, reply in exc.recipients.values()
        )
    else:
        text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]


def is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, PermanentFailure):
        return True
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return False  # our configuration, not the message: keep it for when it is fixed
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _reply in exc.recipients.values())
    return False


_CLAIM = """
UPDATE keel_outbox AS o
   SET status = 'sending', attempts = o.attempts + 1, locked_by = %(me)s,
       locked_until = %(now)s + make_interval(secs => %(lease)s)
  FROM (SELECT id FROM keel_outbox
         WHERE (status = 'pending' AND next_attempt_at <= %(now)s)
            OR (status = 'sending' AND locked_until < %(now)s)
         ORDER BY next_attempt_at, id
         LIMIT %(batch)s
         FOR UPDATE SKIP LOCKED) AS due
 WHERE o.id = due.id {only}
RETURNING o.id, o.to_addr, o.subject, o.body_text, o.body_html, o.attempts, o.seal
"""


class Worker:
    """Delivers due outbox rows; any number may run against one database (MAIL-1, OPS-9)."""

    def __init__(
        self,
        connect: Connect,
        settings: SmtpSettings,
        *,
        send: Callable[[SmtpSettings, EmailMessage], str] = smtp_send,
        name: str | None = None,
        batch: int = 20,
        max_attempts: int = 8,
        base_delay: float = 30.0,
        max_delay: float = 3600.0,
        lease: float = 300.0,
        seal_key: bytes | Mapping[str, bytes] | None = None,
    ) -> None:
        self.connect, self.settings, self.send = connect, settings, send
        self.seal_key = (
            {"": seal_key} if isinstance(seal_key, bytes) else seal_key
        )  # app/mail/seal.py: fills in sealed tokens when sending
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.batch, self.max_attempts, self.lease = batch, max_attempts, lease
        self.base_delay, self.max_delay = base_delay, max_delay

    def backoff(self, attempts: int) -> timedelta:
        """30 s, 1 min, 2 min, … capped at an hour: a dead server is not hammered."""
        return timedelta(seconds=min(self.base_delay * 2 ** max(attempts - 1, 0), self.max_delay))

    async def claim(self, now: datetime, only_id: int | None = None) -> list[Outgoing]:
        only = "AND o.id = %(only)s" if only_id is not None else ""
        params = {"me": self.name, "now": now, "lease": self.lease, "batch": self.batch}
        async with self.connect() as conn:
            cur = await conn.execute(_CLAIM.format(only=only), {**params, "only": only_id})
            return [Outgoing(*row) for row in await cur.fetchall()]

    async def deliver(self, mail: Outgoing, now: datetime, *, retry: bool = True) -> str:
        """Send one claimed message and record the outcome; returns the server's reply."""
        try:
            reply = await asyncio.to_thread(
                self.send, self.settings, build_message(self.settings, self._unsealed(mail))
            )
        except Exception as exc:
            final = not retry or is_permanent(exc) or mail.attempts >= self.max_attempts
            await self._failed(mail, now, describe(exc), final)
            if retry:  # the interactive caller (`keel mail test`) reports the error itself
                log.warning(
                    "mail %s to %s %s: %s",
                    mail.id, mail.to, "failed" if final else "will be retried", describe(exc),
                )  # fmt: skip
            raise
        async with self.connect() as conn:
            await conn.execute(
                "UPDATE keel_outbox SET status = 'sent', sent_at = %s, last_error = NULL,"
                " locked_by = NULL, locked_until = NULL, seal = NULL"
                " WHERE id = %s AND locked_by = %s",
                (now, mail.id, self.name),
            )
        log.info("mail %s sent to %s", mail.id, mail.to, extra={"mail_id": mail.id})
        return reply

    def _unsealed(self, mail: Outgoing) -> Outgoing:
        if mail.seal is None:
            return mail
        key = key_for(self.seal_key, mail.seal) if self.seal_key else None
        if key is None:
            raise PermanentFailure("sealed mail needs secret_key to be set on this server")
        return replace(
            mail,
            text=unseal(key, mail.seal, mail.text),
            html=unseal(key, mail.seal, mail.html),
        )

    async def _failed(self, mail: Outgoing, now: datetime, error: str, final: bool) -> None:
        async with self.connect() as conn:
            await conn.execute(
                "UPDATE keel_outbox SET status = %s, last_error = %s, next_attempt_at = %s,"
                " locked_by = NULL, locked_until = NULL,"
                " seal = CASE WHEN %s THEN NULL ELSE seal END WHERE id = %s AND locked_by = %s",
                (
                    "failed" if final else "pending",
                    error,
                    now + self.backoff(mail.attempts),
                    final,
                    mail.id,
                    self.name,
                ),
            )

    async def run_once(self, now: datetime | None = None) -> int:
        """Claim one batch of due mail and try each; returns how many were claimed."""
        now = now or datetime.now(UTC)
        claimed = await self.claim(now)
        for mail in claimed:
            try:
                await self.deliver(mail, now)
            except Exception:  # noqa: S112 - recorded on the row and logged; go on with the rest
                continue
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, interval: float = 2.0) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once() >= self.batch
            except Exception:
                log.exception("mail delivery round failed; retrying in %.0f s", interval)
                busy = False
            if not busy:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
