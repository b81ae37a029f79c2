"""Who is calling: API keys for client apps, accounts with roles, and each endpoint's declared role.

CONTRACT (other modules rely on these names):

- `Principal`: the caller — kind ("anonymous" | "api_key" | "account"), role, account id and
  client (API key's client name) where known.
- `principal(request)`: FastAPI dependency; reads `Authorization: Bearer <token>` (accounts) or
  `X-API-Key` / `api_key` (client apps) and answers the Principal (anonymous when none given);
  bad credentials raise `Unauthorized`.
- `require(*roles)`: dependency factory for routes; returns the Principal or raises
  `Unauthorized` (no credentials) / `Forbidden` (wrong role). Every route declares its roles
  with it (or `public()` for open endpoints) so the role x endpoint matrix test can read them.
- `api_key_principal(request, api_key)`: for Open311, where the key comes as a form/query field.

Every request that passes a `require` dependency also takes a token from its rate-limit bucket
(per API key, per account, or per client IP for callers without credentials); a request with
credentials that are not valid pays from its IP's bucket, so guessing keys is throttled too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from pipeline import accounts
from pipeline.errors import Forbidden, RateLimited, Unauthorized
from pipeline.ratelimit import Limit, Limiter, MemoryLimiter, make_limiter, retry_after

Role = Literal["anonymous", "resident", "crew", "analyst", "admin"]
ROLES: tuple[Role, ...] = ("anonymous", "resident", "crew", "analyst", "admin")
ACCOUNT_ROLES: tuple[Role, ...] = ("resident", "crew", "analyst", "admin")
STAFF: tuple[Role, ...] = ("crew", "analyst", "admin")


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    kind: Literal["anonymous", "api_key", "account"]
    role: Role
    account_id: str | None = None
    client: str | None = None
    key_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        """Who did it, as recorded in a case's history (never an email: history is public)."""
        if self.kind == "account":
            return f"{self.role}:{self.account_id}"
        if self.kind == "api_key":
            return f"key:{self.key_id}"
        return "anonymous"


ANONYMOUS = Principal(kind="anonymous", role="anonymous")


@dataclass(frozen=True)
class Requirement:
    """What a route declared: the roles it admits, API-key scopes that also admit, and whether
    only a signed-in person (not a client app's key) will do."""

    roles: tuple[Role, ...]
    scopes: tuple[str, ...] = ()
    accounts_only: bool = False

    @property
    def is_public(self) -> bool:
        """Anyone at all may call it."""
        return "anonymous" in self.roles

    def admits(self, p: Principal) -> bool:
        """Whether this caller may go on."""
        if self.accounts_only and p.kind == "api_key":
            return False
        return p.role in self.roles or bool(p.scopes & set(self.scopes))


def _credentials(request: Request) -> tuple[str, str] | None:
    """("token" | "key", value) from the request's headers or query, or None."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized("send credentials as `Authorization: Bearer <token or API key>`")
        return ("key" if value.startswith(accounts.KEY_PREFIX) else "token", value)
    key = request.headers.get("x-api-key") or request.query_params.get("api_key")
    return ("key", key) if key else None


async def _key_principal(request: Request, key: str) -> Principal:
    k = await run_in_threadpool(accounts.api_key_for, request.app.state.ctx.store, key)
    return Principal(
        kind="api_key", role=k.role, client=k.client, key_id=k.id, scopes=frozenset(k.scopes)
    )


async def principal(request: Request) -> Principal:
    """The caller: an account (bearer token), a client app (API key) or anonymous."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    creds = _credentials(request)
    ctype = request.headers.get("content-type", "")
    if creds is None and ctype.startswith(("multipart/form-data", "application/x-www-form")):
        # Open311 clients send api_key as a form field; FastAPI has parsed the form already
        # (Starlette keeps it), so the key counts for rate limits and roles like a header.
        key = (await request.form()).get("api_key")
        creds = ("key", key) if isinstance(key, str) and key else None
    if creds is None:
        p = ANONYMOUS
    elif creds[0] == "key":
        p = await _key_principal(request, creds[1])
    else:
        a = await run_in_threadpool(
            accounts.account_for_token, request.app.state.ctx.store, creds[1]
        )
        p = Principal(kind="account", role=a.role, account_id=a.id)
    request.state.principal = p
    return p


def bearer_token(request: Request) -> str | None:
    """The raw bearer token of this request (to sign it out), or None."""
    creds = _credentials(request)
    return creds[1] if creds and creds[0] == "token" else None


def _limiter(request: Request) -> Limiter:
    state = request.app.state
    lim = getattr(state, "limiter", None)
    loop = asyncio.get_running_loop()
    # A Redis client belongs to one event loop (a test's client may start another).
    if lim is None or (not isinstance(lim, MemoryLimiter) and state.limiter_loop is not loop):
        lim = make_limiter(state.ctx.settings.ratelimit_redis_url)
        state.limiter, state.limiter_loop = lim, loop
    return lim


def client_ip(request: Request) -> str:
    """The caller's address (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else "unknown"


async def take(request: Request, bucket: str, limit: Limit, what: str) -> None:
    """Take a token from `bucket` once per request; RateLimited (429) when it is empty."""
    s = request.app.state.ctx.settings
    if not s.ratelimit_enabled:
        return
    done: set[str] | None = getattr(request.state, "rl_buckets", None)
    if done is None:
        done = request.state.rl_buckets = set()
    if bucket in done:
        return
    done.add(bucket)
    wait = await _limiter(request).take(bucket, limit)
    if wait > 0:
        raise RateLimited(
            f"too many requests from this {what}: retry in {retry_after(wait)} s",
            retry_after_s=wait,
        )


async def take_ip(request: Request, prefix: str, limit: Limit, what: str) -> None:
    """Take from the caller's address's bucket named `prefix`, unless the address is exempt."""
    ip = client_ip(request)
    exempt = request.app.state.ctx.settings.ratelimit_exempt_ips
    if ip not in {a.strip() for a in exempt.split(",")}:
        await take(request, f"{prefix}:{ip}", limit, what)


async def rate_limit(request: Request, p: Principal) -> None:
    """Charge the caller's bucket: its API key, its account, or its IP."""
    s = request.app.state.ctx.settings
    if p.kind == "api_key":
        limit = Limit(s.ratelimit_key_per_min, s.ratelimit_key_burst)
        await take(request, f"key:{p.key_id}", limit, "API key")
    elif p.kind == "account":
        limit = Limit(s.ratelimit_account_per_min, s.ratelimit_account_burst)
        await take(request, f"acct:{p.account_id}", limit, "account")
    else:
        limit = Limit(s.ratelimit_ip_per_min, s.ratelimit_ip_burst)
        await take_ip(request, "ip", limit, "address")


def require(*roles: Role, scopes: tuple[str, ...] = (), accounts_only: bool = False) -> Callable:
    """A dependency that admits only `roles` (or API keys holding one of `scopes`); with
    `accounts_only`, client apps' keys are refused even when their role would do."""
    req = Requirement(tuple(roles), tuple(scopes), accounts_only)

    async def _dep(request: Request) -> Principal:
        try:
            p = await principal(request)
        except Unauthorized:
            await rate_limit(request, ANONYMOUS)  # a guesser pays from its IP's bucket
            raise
        await rate_limit(request, p)
        if req.admits(p):
            return p
        needs = " or ".join(r for r in req.roles if r != "anonymous") or "a scoped API key"
        if p.kind == "anonymous":
            raise Unauthorized(
                f"sign in (Authorization: Bearer <token>) to use this; it needs: {needs}"
            )
        if accounts_only and p.kind == "api_key":
            raise Forbidden("this is for a signed-in person, not a client app's API key")
        raise Forbidden(f"your role ({p.role}) may not do this; it needs: {needs}")

    _dep.requirement = req  # type: ignore[attr-defined]
    _dep.roles = req.roles  # type: ignore[attr-defined]
    return _dep


def public() -> Callable:
    """A dependency for endpoints anyone may call."""
    return require(*ROLES)


async def api_key_principal(request: Request, api_key: str | None) -> Principal:
    """The client app behind an Open311 `api_key` (form or query field), else the caller as
    `principal` sees it; an unknown or revoked key raises Unauthorized."""
    if not api_key:
        return await principal(request)
    try:
        p = await _key_principal(request, api_key)
    except Unauthorized:
        await rate_limit(request, ANONYMOUS)
        raise
    await rate_limit(request, p)
    request.state.principal = p
    return p


@dataclass(frozen=True)
class Endpoint:
    """One route as the app serves it (included routers' prefixes and dependencies applied)."""

    path: str
    methods: frozenset[str]
    route: Any  # an APIRoute, or the Starlette route (docs, mounts) when `api` is False
    api: bool
    include_in_schema: bool
    requirement: Requirement | None


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every route of the app, flattened (FastAPI may keep included routers unflattened)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers: app.routes is flat
        contexts: list[Any] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    out = []
    for rc in contexts:
        original = getattr(rc, "original_route", rc)
        is_api = isinstance(original, APIRoute)
        path = getattr(rc, "path_format", None) or getattr(rc, "path", "") or ""
        out.append(
            Endpoint(
                path=path,
                methods=frozenset(getattr(rc, "methods", None) or ()),
                route=original,
                api=is_api,
                include_in_schema=bool(getattr(rc, "include_in_schema", True)),
                requirement=requirement_of(rc) if is_api else None,
            )
        )
    return out


def requirement_of(route: Any) -> Requirement | None:
    """The Requirement a route declared (through any of its dependencies), or None."""
    found: list[Requirement] = []
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        req = getattr(dep.call, "requirement", None)
        if isinstance(req, Requirement):
            found.append(req)
        stack.extend(dep.dependencies)
    if not found:
        return None
    # Several declarations (a router's and a route's): a caller must pass them all.
    roles = tuple(r for r in ROLES if all(r in f.roles for f in found))
    scopes = tuple(sorted(set.intersection(*(set(f.scopes) for f in found))))
    return Requirement(roles, scopes, any(f.accounts_only for f in found))


SECURITY_SCHEMES: dict[str, Any] = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An account's token from POST /api/v1/auth/token (or an API key).",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A client app's key (`streetlens keys create CLIENT`).",
    },
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
}
_ANSWERS = {
    "401": "No credentials, or credentials that are not valid",
    "403": "The caller's role may not do this",
    "429": "Too many requests: see the Retry-After header",
}


def document_security(app: FastAPI, schema: dict[str, Any]) -> None:
    """Add the security schemes, and each operation's roles, to an OpenAPI document."""
    comps = schema.setdefault("components", {})
    comps.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    comps.setdefault("schemas", {}).setdefault("Error", _ERROR_SCHEMA)
    for ep in endpoints(app):
        if not ep.api or not ep.include_in_schema:
            continue
        req = ep.requirement
        ops = schema.get("paths", {}).get(ep.path, {})
        for method in ep.methods:
            op = ops.get(method.lower())
            if op is None or req is None:
                continue
            schemes = [{"bearerToken": []}, {"apiKeyHeader": []}, {"apiKeyQuery": []}]
            if req.accounts_only:
                schemes = schemes[:1]
            op["security"] = [{}, *schemes] if req.is_public else schemes
            op["x-roles"] = list(req.roles) + [f"api_key:{s}" for s in req.scopes]
            who = "anyone" if req.is_public else ", ".join(op["x-roles"])
            op["description"] = (op.get("description") or "") + f"\n\n**Who may call:** {who}"
            codes = ["429"] if req.is_public else ["401", "403", "429"]
            for code in codes:
                op.setdefault("responses", {}).setdefault(
                    code,
                    {
                        "description": _ANSWERS[code],
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )


def install(app: FastAPI) -> None:
    """Document the security schemes and each route's roles in the app's OpenAPI."""
    original = app.openapi
    documented: list[int] = []

    def openapi() -> dict[str, Any]:
        schema = original()  # FastAPI caches it, and builds it again when routes are added
        if not documented or documented[-1] != id(schema):
            document_security(app, schema)
            documented.append(id(schema))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
