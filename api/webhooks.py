"""Webhook subscriptions: create, list, read, delete, and each one's delivery log.

Analyst and admin accounts manage every subscription; a client app calling with its API key
(role analyst/admin, or the `webhooks` scope) sees and manages only its own. Signing and retries:
pipeline/webhooks.py and docs/notifications.md.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, require
from pipeline import webhooks
from pipeline.errors import Forbidden

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

# Who may call these routes: analyst and admin accounts, and client apps whose API key has
# one of these roles or the `webhooks` scope; `owner_scope` narrows any API-key client to the
# subscriptions it made itself.
WEBHOOK_ROLES = ("analyst", "admin")
WEBHOOK_SCOPE = "webhooks"
webhook_caller = require(*WEBHOOK_ROLES, scopes=(WEBHOOK_SCOPE,))
Caller = Annotated[Principal, Depends(webhook_caller)]


class WebhookIn(BaseModel):
    """A new subscription: where to POST, and which events (all when no filter is given)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http(s) URL that receives POSTed events")
    secret: str | None = Field(
        default=None, description="16-128 characters; generated (and returned once) if omitted"
    )
    service_code: str | None = Field(default=None, max_length=64)
    case_id: str | None = Field(default=None, max_length=36)
    statuses: list[str] | None = Field(default=None, max_length=16)
    description: str = Field(default="", max_length=500)


def owner_scope(who: Principal) -> str | None:
    """The owner whose subscriptions the caller manages (None: everyone's)."""
    if who.kind == "api_key":
        return f"api_key:{who.client}"
    if who.kind == "account" and who.role in WEBHOOK_ROLES:
        return None
    raise Forbidden("webhooks are managed by analysts, admins and API-key client apps")


def _owner_of(who: Principal) -> str:
    if who.kind == "api_key":
        return f"api_key:{who.client}"
    return f"account:{who.account_id or who.role}"


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


def _out(sub: webhooks.Subscription) -> dict[str, Any]:
    body = dataclasses.asdict(sub)
    if body["secret"] is None:
        body.pop("secret")
    return body


@router.post("", status_code=201)
async def create_webhook(request: Request, spec: WebhookIn, who: Caller) -> dict[str, Any]:
    """Subscribe a URL to case status changes; the answer holds the signing secret (once)."""
    owner_scope(who)
    ctx = _ctx(request)
    codes = {s.code for s in ctx.city.services}
    sub = await run_in_threadpool(
        lambda: webhooks.create_subscription(
            ctx.store,
            ctx.settings,
            owner=_owner_of(who),
            known_service_codes=codes,
            **spec.model_dump(),
        )
    )
    return _out(sub)


@router.get("")
async def list_webhooks(request: Request, who: Caller) -> list[dict[str, Any]]:
    """The subscriptions the caller manages."""
    subs = await run_in_threadpool(
        webhooks.list_subscriptions, _ctx(request).store, owner_scope(who)
    )
    return [_out(s) for s in subs]


@router.get("/{sub_id}")
async def get_webhook(request: Request, sub_id: str, who: Caller) -> dict[str, Any]:
    """One subscription (not its secret)."""
    sub = await run_in_threadpool(
        webhooks.get_subscription, _ctx(request).store, sub_id, owner_scope(who)
    )
    return _out(sub)


@router.delete("/{sub_id}", status_code=204)
async def delete_webhook(request: Request, sub_id: str, who: Caller) -> Response:
    """Stop a subscription; pending deliveries are cancelled, the log is kept."""
    await run_in_threadpool(
        webhooks.delete_subscription, _ctx(request).store, sub_id, owner_scope(who)
    )
    return Response(status_code=204)


@router.get("/{sub_id}/deliveries")
async def list_deliveries(
    request: Request,
    sub_id: str,
    who: Caller,
    state: Annotated[Literal["pending", "delivered", "failed", "cancelled"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """The subscription's deliveries, newest first, each with its attempts."""
    return await run_in_threadpool(
        lambda: webhooks.deliveries(
            _ctx(request).store, sub_id, owner_scope(who), state=state, limit=limit
        )
    )
