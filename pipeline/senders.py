"""Email and SMS to reporters about their case, through a pluggable sender.

The default sender writes one JSON line per message to `<home>/outbox/messages.jsonl` (a city
can tail it, and tests read it); `STREETLENS_EMAIL_SENDER=smtp` sends email over SMTP;
`STREETLENS_SENDER_FACTORY=module:callable` plugs in anything else (an SMS gateway). Messages
are composed when the fan-out sees a status change, kept in `notification_messages`, and sent
(with retries) by `send_due`. Anonymous reports get nothing, and keep nothing here.
"""

from __future__ import annotations

import importlib
import json
import logging
import random
import smtplib
import threading
from dataclasses import asdict, dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update

from pipeline.db import utcnow
from pipeline.errors import ConfigError
from pipeline.events import Event
from pipeline.notify_db import MessageRow
from pipeline.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
CLAIM_S = 120.0  # a claimed message is hidden this long from other senders

# What each status means to the person who reported the problem.
STATUS_WORDS: dict[str, str] = {
    "received": "we received your report",
    "processing": "we are looking at your photo",
    "needs_review": "city staff are reviewing your report",
    "open": "your report is open and routed to the responsible department",
    "in_progress": "a crew is working on it",
    "closed": "the case is closed",
    "rejected": "the city cannot act on this report",
    "failed": "we could not process your photo",
}
RESOLUTION_WORDS: dict[str, str] = {
    "fixed": "the problem was fixed",
    "duplicate": "it was already reported, and is handled in the earlier case",
    "not_city_responsibility": "it is not the city's responsibility",
    "no_action": "no action was needed",
}


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one person."""

    channel: str  # email | sms
    to: str
    subject: str
    body: str
    case_id: str
    event_id: int


class Sender(Protocol):
    """Something that can deliver a message, or raise trying."""

    def send(self, message: OutgoingMessage) -> None:
        """Deliver one message (raise on failure: it is retried)."""


class FileSender:
    """Appends one JSON line per message to a file (the default, for every channel)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> None:
        """Append the message as one JSON line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**asdict(message), "at": utcnow().isoformat()}, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


class SmtpSender:
    """Email over SMTP (STREETLENS_SMTP_*)."""

    def __init__(self, s: Settings) -> None:
        self.s = s

    def send(self, message: OutgoingMessage) -> None:
        """Send one email; SMTP errors propagate (the message is retried)."""
        if message.channel != "email":
            raise ConfigError(f"the SMTP sender cannot send {message.channel} messages")
        msg = EmailMessage()
        msg["From"] = self.s.smtp_from
        msg["To"] = message.to
        msg["Subject"] = message.subject
        msg.set_content(message.body)
        with smtplib.SMTP(self.s.smtp_host, self.s.smtp_port, timeout=30) as smtp:
            if self.s.smtp_starttls:
                smtp.starttls()
            if self.s.smtp_user:
                smtp.login(self.s.smtp_user, self.s.smtp_password.get_secret_value())
            smtp.send_message(msg)


class ChannelSender:
    """Hands each message to the sender of its channel."""

    def __init__(self, by_channel: dict[str, Sender]) -> None:
        self.by_channel = by_channel

    def send(self, message: OutgoingMessage) -> None:
        """Send through the channel's sender."""
        sender = self.by_channel.get(message.channel)
        if sender is None:
            raise ConfigError(f"no sender is configured for {message.channel} messages")
        sender.send(message)

    @property
    def channels(self) -> set[str]:
        """The channels that can be sent."""
        return set(self.by_channel)


def outbox_path(s: Settings) -> Path:
    """Where the file sender writes."""
    return s.home / "outbox" / "messages.jsonl"


def make_sender(s: Settings) -> ChannelSender:
    """The sender these settings ask for."""
    if s.sender_factory:
        module, _, name = s.sender_factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"STREETLENS_SENDER_FACTORY={s.sender_factory!r} cannot be imported: {exc}"
            ) from exc
        custom = factory(s)
        return custom if isinstance(custom, ChannelSender) else ChannelSender(
            {"email": custom, "sms": custom}
        )  # fmt: skip
    file_sender = FileSender(outbox_path(s))
    senders: dict[str, Sender] = {}
    if s.email_sender == "file":
        senders["email"] = file_sender
    elif s.email_sender == "smtp":
        senders["email"] = SmtpSender(s)
    if s.sms_sender == "file":
        senders["sms"] = file_sender
    return ChannelSender(senders)


def compose(
    event: Event, report: dict[str, Any], case: dict[str, Any], s: Settings
) -> list[OutgoingMessage]:
    """The messages one status change sends to the case's reporter (none when anonymous)."""
    if report.get("anonymous", True) or not event.changed:
        return []
    wanted = {x.strip() for x in s.notify_statuses.split(",") if x.strip()}
    if event.status not in wanted:
        return []
    url = s.public_case_url.format(case_id=event.case_id)
    what = (case.get("category") or event.service_code or "street problem").replace("_", " ")
    where = (case.get("place") or {}).get("address") or report.get("address_string")
    about = f"{what} near {where}" if where else what
    words = STATUS_WORDS.get(event.status, event.status.replace("_", " "))
    if event.status == "closed" and case.get("resolution") in RESOLUTION_WORDS:
        words = f"{words}: {RESOLUTION_WORDS[case['resolution']]}"
    was = (event.previous_status or "new").replace("_", " ")
    now = event.status.replace("_", " ")
    short = event.case_id[:8]
    out = []
    if report.get("contact_email"):
        hello = f"Hello {report['contact_name']}," if report.get("contact_name") else "Hello,"
        lines = [
            hello,
            "",
            f"Your report ({about}) changed from '{was}' to '{now}': {words}.",
        ]
        if event.why:
            lines.append(f"Note from the city: {event.why}")
        lines += ["", f"Follow your case here: {url}", "", "You get this message because you "
                  "left your email address with the report."]  # fmt: skip
        out.append(
            OutgoingMessage(
                channel="email",
                to=report["contact_email"],
                subject=f"Your report {short}: {now}",
                body="\n".join(lines),
                case_id=event.case_id,
                event_id=event.id,
            )
        )
    if report.get("contact_phone"):
        out.append(
            OutgoingMessage(
                channel="sms",
                to=report["contact_phone"],
                subject="",
                body=f"Your {what} report is now '{now}': {words}. {url}",
                case_id=event.case_id,
                event_id=event.id,
            )
        )
    return out


def _retry_delay_s(attempts: int) -> float:
    base = min(3600.0, 30.0 * 2 ** (attempts - 1))
    return base / 2 + random.uniform(0, base / 2)


def send_due(store: Any, sender: ChannelSender, limit: int = 50) -> int:
    """Send the messages that are due; return how many were sent now."""
    now = utcnow()
    with store.session() as s:
        rows = list(
            s.scalars(
                select(MessageRow)
                .where(MessageRow.state == "pending", MessageRow.next_attempt_at <= now)
                .order_by(MessageRow.id)
                .limit(limit)
            )
        )
    sent = 0
    for row in rows:
        # Claim it: another worker's sender that read the same row loses this update.
        with store.session() as s:
            won = s.execute(
                update(MessageRow)
                .where(
                    MessageRow.id == row.id,
                    MessageRow.state == "pending",
                    MessageRow.attempts == row.attempts,
                )
                .values(
                    attempts=row.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=CLAIM_S),
                )
            ).rowcount
        if won != 1:
            continue
        msg = OutgoingMessage(
            channel=row.channel, to=row.recipient, subject=row.subject, body=row.body,
            case_id=row.case_id, event_id=row.event_id,
        )  # fmt: skip
        values: dict[str, Any]
        try:
            sender.send(msg)
            values = {"state": "sent", "sent_at": utcnow(), "last_error": None}
            sent += 1
        except Exception as exc:
            attempts = row.attempts + 1
            log.warning("message %s (case %s) failed: %s", row.id, row.case_id, exc)
            values = {"last_error": f"{type(exc).__name__}: {exc}"[:2000]}
            if attempts >= MAX_ATTEMPTS or isinstance(exc, ConfigError):
                values["state"] = "failed"
            else:
                values["next_attempt_at"] = utcnow() + timedelta(seconds=_retry_delay_s(attempts))
        with store.session() as s:
            s.execute(update(MessageRow).where(MessageRow.id == row.id).values(**values))
    return sent
