"""Who is calling: API keys for client apps, accounts with roles, and each endpoint's declared role.

CONTRACT (other modules rely on these names; the auth work fills in the bodies):

- `Principal`: the caller — kind ("anonymous" | "api_key" | "account"), role, account id and
  client (API key's client name) where known.
- `principal(request)`: FastAPI dependency; reads `Authorization: Bearer <token>` (accounts) or
  `X-API-Key` / `api_key` (client apps) and answers the Principal (anonymous when none given);
  bad credentials raise `Unauthorized`.
- `require(*roles)`: dependency factory for routes; returns the Principal or raises
  `Unauthorized` (no credentials) / `Forbidden` (wrong role). Every route declares its roles
  with it (or `public()` for open endpoints) so the role x endpoint matrix test can read them.
- `api_key_principal(request, api_key)`: for Open311, where the key comes as a form/query field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

Role = Literal["anonymous", "resident", "crew", "analyst", "admin"]
ROLES: tuple[Role, ...] = ("anonymous", "resident", "crew", "analyst", "admin")


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    kind: Literal["anonymous", "api_key", "account"]
    role: Role
    account_id: str | None = None
    client: str | None = None


ANONYMOUS = Principal(kind="anonymous", role="anonymous")


async def principal(request: Request) -> Principal:
    """The caller (placeholder until the auth work lands: everyone is anonymous)."""
    return ANONYMOUS


def require(*roles: Role) -> Callable:
    """A dependency that admits only `roles` (placeholder: admits everyone)."""

    async def _dep(request: Request) -> Principal:
        return await principal(request)

    _dep.roles = roles  # type: ignore[attr-defined]
    return _dep


def public() -> Callable:
    """A dependency for endpoints anyone may call."""
    return require(*ROLES)


async def api_key_principal(request: Request, api_key: str | None) -> Principal:
    """The client app behind an Open311 `api_key` (placeholder: anonymous)."""
    return ANONYMOUS
