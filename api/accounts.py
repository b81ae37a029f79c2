"""Signing up, signing in and out, and a signed-in person's own reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth import ACCOUNT_ROLES, Principal, bearer_token, public, require, take_ip
from pipeline import accounts
from pipeline.context import Context
from pipeline.errors import Forbidden, Unauthorized
from pipeline.ratelimit import Limit

router = APIRouter(tags=["accounts"])


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


class Credentials(BaseModel):
    """An email and a password."""

    email: str = Field(max_length=254, examples=["resident@example.org"])
    password: str = Field(max_length=accounts.MAX_PASSWORD)


class NewAccount(Credentials):
    """A new account: residents sign up themselves; an admin creates staff accounts."""

    role: accounts.AccountRole = "resident"


async def _login_bucket(request: Request) -> None:
    # scrypt costs tens of ms of CPU per try: sign-ins and sign-ups get their own small bucket.
    s = _ctx(request).settings
    limit = Limit(s.ratelimit_login_per_min, s.ratelimit_login_burst)
    await take_ip(request, "login", limit, "address (sign-in attempts)")


@router.post("/api/v1/auth/token", dependencies=[Depends(public())])
async def sign_in(request: Request, body: Credentials) -> dict[str, Any]:
    """Exchange an email and password for a bearer token (it expires; sign in again then)."""
    await _login_bucket(request)
    ctx = _ctx(request)
    n = ctx.settings.password_scrypt_log2_n
    acct = await run_in_threadpool(
        lambda: accounts.authenticate(ctx.store, body.email, body.password, log2_n=n)
    )
    ttl = ctx.settings.auth_token_ttl_s
    token, expires = await run_in_threadpool(accounts.issue_token, ctx.store, acct, ttl)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": int(ttl),
        "expires_at": expires.isoformat(),
        "account_id": acct.id,
        "role": acct.role,
    }


@router.delete("/api/v1/auth/token", status_code=204)
async def sign_out(
    request: Request, _: Annotated[Principal, Depends(require(*ACCOUNT_ROLES, accounts_only=True))]
) -> Response:
    """Sign out: this bearer token stops working."""
    token = bearer_token(request)
    if token:
        await run_in_threadpool(accounts.revoke_token, _ctx(request).store, token)
    return Response(status_code=204)


@router.post("/api/v1/accounts", status_code=201)
async def sign_up(
    request: Request, body: NewAccount, who: Annotated[Principal, Depends(public())]
) -> dict[str, Any]:
    """Create an account: anyone may sign up as a resident; staff accounts need an admin."""
    if body.role != "resident" and who.role != "admin":
        if who.kind == "anonymous":
            raise Unauthorized(f"sign in as an admin to create a {body.role} account")
        raise Forbidden(f"only an admin creates {body.role} accounts")
    await _login_bucket(request)
    ctx = _ctx(request)
    n = ctx.settings.password_scrypt_log2_n
    acct = await run_in_threadpool(
        lambda: accounts.create_account(ctx.store, body.email, body.password, body.role, log2_n=n)
    )
    return {"id": acct.id, "email": acct.email, "role": acct.role}


@router.get("/api/v1/me")
async def me(
    request: Request,
    who: Annotated[Principal, Depends(require(*ACCOUNT_ROLES, accounts_only=True))],
) -> dict[str, Any]:
    """The signed-in account."""
    acct = await run_in_threadpool(accounts.get_account, _ctx(request).store, who.account_id)
    if acct is None:
        raise Unauthorized("this account no longer exists")
    return {"id": acct.id, "email": acct.email, "role": acct.role}


@router.get("/api/v1/me/reports")
async def my_reports(
    request: Request,
    who: Annotated[Principal, Depends(require(*ACCOUNT_ROLES, accounts_only=True))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """The signed-in person's own (named) reports, newest first, with their status and history."""
    store = _ctx(request).store

    def load() -> list[dict[str, Any]]:
        ids = accounts.reports_of(store, who.account_id or "", limit, offset)
        return [store.get(i).model_dump(mode="json") for i in ids]

    return {"reports": await run_in_threadpool(load), "limit": limit, "offset": offset}
