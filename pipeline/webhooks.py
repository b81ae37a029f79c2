"""Webhooks: subscriptions, signed deliveries, retries with backoff and jitter, a delivery log.

A delivery is a POST of the event as JSON with

    StreetLens-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

(the Stripe scheme: the timestamp is signed too, so a captured request cannot be replayed
later). `verify_signature` is the receiver's side; docs/notifications.md shows it without
StreetLens. Non-2xx answers, timeouts and refused connections are retried after
~backoff * 2^(attempt-1) seconds (half fixed, half random) until `webhook_max_attempts`, then
the delivery is `failed`. Delivery is at least once: receivers dedupe on the event id.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update

from pipeline.db import utcnow
from pipeline.errors import CaseNotFound, InvalidWebhook, SubscriptionNotFound
from pipeline.events import latest_event_id
from pipeline.notify_db import DeliveryRow, WebhookRow
from pipeline.settings import Settings
from pipeline.types import Status

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "StreetLens-Signature"
STATUSES = set(Status.__args__)  # type: ignore[attr-defined]
MAX_URL_CHARS = 2000
PARALLEL = 8  # deliveries in flight at once per worker
RECORD_EVERY, RECORD_EVERY_S = 10, 2.0  # outcomes written together (the log lags this much)


@dataclass(frozen=True)
class Subscription:
    """A webhook subscription as its owner sees it (the secret only when it is created)."""

    id: str
    url: str
    owner: str
    service_code: str | None
    case_id: str | None
    statuses: list[str] | None
    description: str
    created_at: str
    secret: str | None = None


def _to_sub(row: WebhookRow, *, with_secret: bool = False) -> Subscription:
    return Subscription(
        id=row.id, url=row.url, owner=row.owner, service_code=row.service_code,
        case_id=row.case_id, statuses=row.statuses, description=row.description,
        created_at=row.created_at.isoformat(), secret=row.secret if with_secret else None,
    )  # fmt: skip


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The StreetLens-Signature header value for this body at this time."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is recent."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        ts = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign(secret, body, ts).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), or (unless allowed) point into private networks."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidWebhook(f"url is longer than {MAX_URL_CHARS} characters", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhook("url must be an http:// or https:// URL with a host", field="url")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidWebhook(
            f"url host {parts.hostname!r} does not resolve: {exc}", field="url"
        ) from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global:
            raise InvalidWebhook(
                f"url host {parts.hostname!r} is on a private network ({ip}); webhooks go to "
                "public addresses (STREETLENS_WEBHOOK_ALLOW_PRIVATE=true allows it)",
                field="url",
            )


def create_subscription(
    store: Any,
    settings: Settings,
    *,
    owner: str,
    url: str,
    secret: str | None = None,
    service_code: str | None = None,
    case_id: str | None = None,
    statuses: list[str] | None = None,
    description: str = "",
    known_service_codes: set[str] | None = None,
) -> Subscription:
    """Add a subscription; events from now on are delivered to it. The answer holds the secret."""
    check_url(url, allow_private=settings.webhook_allow_private)
    known = known_service_codes
    if service_code is not None and known is not None and service_code not in known:
        raise InvalidWebhook(
            f"unknown service_code {service_code[:64]!r}; this city's: {', '.join(sorted(known))}",
            field="service_code",
        )
    if case_id is not None:
        try:
            store.status(case_id)
        except CaseNotFound:
            raise InvalidWebhook(f"no case with id {case_id[:40]!r}", field="case_id") from None
    if statuses:
        unknown = sorted(set(statuses) - STATUSES)
        if unknown:
            raise InvalidWebhook(
                f"unknown status(es) {unknown}; known: {sorted(STATUSES)}", field="statuses"
            )
    if secret is not None and not 16 <= len(secret) <= 128:
        raise InvalidWebhook(
            "secret must be 16 to 128 characters (or leave it out)", field="secret"
        )
    with store.session() as s:
        row = WebhookRow(
            id=str(uuid.uuid4()),
            url=url,
            secret=secret or "whsec_" + secrets.token_urlsafe(32),
            owner=owner,
            service_code=service_code,
            case_id=case_id,
            statuses=sorted(set(statuses)) if statuses else None,
            description=description,
            after_event_id=latest_event_id(s),
            active=True,
            created_at=utcnow(),
        )
        s.add(row)
    return _to_sub(row, with_secret=True)


def _owned(s: Any, sub_id: str, owner: str | None) -> WebhookRow:
    row = s.get(WebhookRow, sub_id)
    if row is None or not row.active or (owner is not None and row.owner != owner):
        raise SubscriptionNotFound(f"no webhook subscription with id {sub_id!r}")
    return row


def list_subscriptions(store: Any, owner: str | None) -> list[Subscription]:
    """Active subscriptions (all of them when owner is None)."""
    q = select(WebhookRow).where(WebhookRow.active.is_(True)).order_by(WebhookRow.created_at)
    if owner is not None:
        q = q.where(WebhookRow.owner == owner)
    with store.session() as s:
        return [_to_sub(r) for r in s.scalars(q)]


def get_subscription(store: Any, sub_id: str, owner: str | None) -> Subscription:
    """One active subscription (owner None: anyone's)."""
    with store.session() as s:
        return _to_sub(_owned(s, sub_id, owner))


def delete_subscription(store: Any, sub_id: str, owner: str | None) -> None:
    """Stop a subscription; its pending deliveries are cancelled, its log is kept."""
    with store.session() as s:
        row = _owned(s, sub_id, owner)
        row.active = False
        row.deleted_at = utcnow()
        s.execute(
            update(DeliveryRow)
            .where(DeliveryRow.subscription_id == sub_id, DeliveryRow.state == "pending")
            .values(state="cancelled", finished_at=utcnow())
        )


def deliveries(
    store: Any, sub_id: str, owner: str | None, *, state: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """A subscription's delivery log, newest first."""
    with store.session() as s:
        _owned(s, sub_id, owner)
        q = (
            select(DeliveryRow)
            .where(DeliveryRow.subscription_id == sub_id)
            .order_by(DeliveryRow.id.desc())
            .limit(limit)
        )
        if state:
            q = q.where(DeliveryRow.state == state)
        return [
            {
                "id": d.id,
                "event_id": d.event_id,
                "case_id": d.case_id,
                "state": d.state,
                "attempts": d.attempts,
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
                "created_at": d.created_at.isoformat(),
                "finished_at": d.finished_at.isoformat() if d.finished_at else None,
                "next_attempt_at": d.next_attempt_at.isoformat() if d.state == "pending" else None,
                "log": d.log,
                "event": d.payload,
            }
            for d in s.scalars(q)
        ]


def backoff_s(attempts: int, settings: Settings) -> float:
    """Seconds before retry number `attempts`: exponential, capped, half of it random."""
    base = min(settings.webhook_backoff_cap_s, settings.webhook_backoff_s * 2 ** (attempts - 1))
    return base / 2 + random.uniform(0, base / 2)


def _post(client: httpx.Client, row: WebhookRow, d: DeliveryRow) -> tuple[int | None, str | None]:
    body = json.dumps(d.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "StreetLens-Webhooks/1",
        SIGNATURE_HEADER: sign(row.secret, body, int(time.time())),
        "StreetLens-Event": str(d.payload.get("type", "")),
        "StreetLens-Delivery": str(d.id),
    }
    try:
        r = client.post(row.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= r.status_code < 300:
        return r.status_code, None
    return r.status_code, f"HTTP {r.status_code}: {r.text[:200]}"


def deliver_due(store: Any, settings: Settings, limit: int = 50) -> int:
    """Attempt every due delivery once; return how many succeeded now."""
    now = utcnow()
    with store.session() as s:
        due = list(
            s.execute(
                select(DeliveryRow, WebhookRow)
                .join(WebhookRow, WebhookRow.id == DeliveryRow.subscription_id)
                .where(DeliveryRow.state == "pending", DeliveryRow.next_attempt_at <= now)
                .order_by(DeliveryRow.next_attempt_at, DeliveryRow.id)
                .limit(limit)
            ).tuples()
        )
    if not due:
        return 0
    # Subscriptions in parallel (one receiver timing out must not hold up the others'), each
    # one's deliveries in event order.
    groups: dict[str, list[tuple[DeliveryRow, WebhookRow]]] = {}
    for d, sub in sorted(_claim(store, due, settings), key=lambda pair: pair[0].event_id):
        groups.setdefault(sub.id, []).append((d, sub))
    if not groups:
        return 0
    # Redirects are not followed: a subscription names its final URL.
    with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:

        def attempt(group: list[tuple[DeliveryRow, WebhookRow]]) -> int:
            ok, outcomes, flushed = 0, [], time.monotonic()
            for d, sub in group:
                started = time.monotonic()
                code, error = _post(client, sub, d)
                outcomes.append(_outcome(d, settings, code, error, time.monotonic() - started))
                ok += error is None
                if len(outcomes) >= RECORD_EVERY or time.monotonic() - flushed > RECORD_EVERY_S:
                    _record(store, outcomes)
                    outcomes, flushed = [], time.monotonic()
            _record(store, outcomes)
            return ok

        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(groups))) as pool:
            return sum(pool.map(attempt, groups.values()))


def _claim(
    store: Any, due: list[tuple[DeliveryRow, WebhookRow]], settings: Settings
) -> list[tuple[DeliveryRow, WebhookRow]]:
    # Hides the deliveries from other workers while they are tried (one transaction for the
    # batch); a worker dying mid-POST makes them due again once the claim runs out, which
    # outlasts a whole subscription's batch of timeouts.
    per_sub: dict[str, int] = {}
    for _, sub in due:
        per_sub[sub.id] = per_sub.get(sub.id, 0) + 1
    hold = timedelta(seconds=settings.webhook_timeout_s * (max(per_sub.values()) + 2) + 30)
    until = utcnow() + hold
    won = []
    with store.session() as s:
        for d, sub in due:
            res = s.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.id == d.id,
                    DeliveryRow.state == "pending",
                    DeliveryRow.attempts == d.attempts,
                )
                .values(attempts=d.attempts + 1, next_attempt_at=until)
            )
            if res.rowcount == 1:
                won.append((d, sub))
    return won


def _outcome(
    d: DeliveryRow, settings: Settings, code: int | None, error: str | None, elapsed_s: float
) -> dict[str, Any]:
    attempts = d.attempts + 1
    now = utcnow()
    entry = {"attempt": attempts, "at": now.isoformat(), "status_code": code, "error": error,
             "duration_ms": round(elapsed_s * 1000, 1)}  # fmt: skip
    values: dict[str, Any] = {
        "id": d.id,
        "last_status_code": code,
        "last_error": error,
        "log": [*(d.log or []), entry],
    }
    if error is None:
        values.update(state="delivered", finished_at=now)
    elif attempts >= settings.webhook_max_attempts:
        values.update(state="failed", finished_at=now)
        log.warning("webhook delivery %s gave up after %d attempts: %s", d.id, attempts, error)
    else:
        values["next_attempt_at"] = now + timedelta(seconds=backoff_s(attempts, settings))
    return values


def _record(store: Any, outcomes: list[dict[str, Any]]) -> None:
    # One transaction for several outcomes: on SQLite a commit is an fsync, and it was most of
    # a delivery's cost (bench/notify.py).
    if not outcomes:
        return
    with store.session() as s:
        for values in outcomes:
            v = dict(values)
            s.execute(update(DeliveryRow).where(DeliveryRow.id == v.pop("id")).values(**v))
