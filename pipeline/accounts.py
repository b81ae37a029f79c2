"""Accounts, bearer tokens and API keys: stored hashed, checked here, used by `api.auth`.

Passwords are hashed with scrypt (a slow, memory-hard KDF; its parameters are stored with each
hash so they can be raised later). Bearer tokens and API keys are long random strings, shown
once and stored only as their SHA-256: a stolen database holds nothing that opens a door.
Reports made by a signed-in resident are linked to the account in `report_owners`; anonymous
reports get no row there, so nothing ties them to a person.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, get_args

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    String,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db import Base, aware, utcnow
from pipeline.errors import InvalidReport, Unauthorized

if TYPE_CHECKING:
    from pipeline.store import SqlCaseStore

AccountRole = Literal["resident", "crew", "analyst", "admin"]
ACCOUNT_ROLES: tuple[AccountRole, ...] = get_args(AccountRole)
STAFF_ROLES: tuple[AccountRole, ...] = ("crew", "analyst", "admin")
# What an API key may carry beyond its role: `metrics` lets a scraper read /metrics,
# `webhooks` lets an integrator manage its webhook subscriptions.
KEY_SCOPES = ("metrics", "webhooks")
TOKEN_PREFIX = "slt_"  # bearer tokens of accounts
KEY_PREFIX = "slk_"  # API keys of client apps
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
SCRYPT_R, SCRYPT_P = 8, 1


class AccountRow(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuthTokenRow(Base):
    __tablename__ = "auth_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client: Mapped[str] = mapped_column(String(100), index=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings: which key is which
    role: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReportOwnerRow(Base):
    __tablename__ = "report_owners"
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True)
class Account:
    """A person who signs in."""

    id: str
    email: str
    role: AccountRole
    disabled: bool = False


@dataclass(frozen=True)
class ApiKey:
    """A client app's key, as listed (the key itself is never stored)."""

    id: str
    client: str
    prefix: str
    role: AccountRole
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def sha256_hex(secret: str) -> str:
    """The stored form of a token or key (they are random: a fast hash suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, log2_n: int = 15) -> str:
    """scrypt$log2N$r$p$salt$hash: the parameters travel with the hash."""
    salt = secrets.token_bytes(16)
    n = 1 << log2_n
    digest = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=256 * n * SCRYPT_R,
        dklen=32,
    )
    return f"scrypt${log2_n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored hash (constant-time comparison)."""
    try:
        algo, log2_n, r, p, salt, digest = stored.split("$")
        n, r_, p_ = 1 << int(log2_n), int(r), int(p)
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=_unb64(salt), n=n, r=r_, p=p_, maxmem=256 * n * r_, dklen=32
    )
    return hmac.compare_digest(got, _unb64(digest))


def normalize_email(email: str) -> str:
    """Trimmed, lower-cased and checked; InvalidReport when it is not an address."""
    e = (email or "").strip().lower()
    if len(e) > 254 or not EMAIL_RE.match(e):
        raise InvalidReport(f"{email[:60]!r} is not an email address", field="email")
    return e


def check_role(role: str) -> AccountRole:
    """One of the account roles, or InvalidReport."""
    if role not in ACCOUNT_ROLES:
        raise InvalidReport(
            f"role must be one of {', '.join(ACCOUNT_ROLES)}, got {role[:20]!r}", field="role"
        )
    return role  # type: ignore[return-value]


def create_account(
    store: SqlCaseStore, email: str, password: str, role: str = "resident", *, log2_n: int = 15
) -> Account:
    """A new account; InvalidReport for a bad email, weak password, unknown role or taken email."""
    email = normalize_email(email)
    role = check_role(role)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidReport(
            f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password"
        )
    row = AccountRow(
        id=str(uuid.uuid4()), email=email, password_hash=hash_password(password, log2_n), role=role
    )
    try:
        with store.session() as s:
            s.add(row)
    except IntegrityError:
        raise InvalidReport(f"an account for {email} exists already", field="email") from None
    return Account(row.id, row.email, role)


# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH: dict[int, str] = {}


def authenticate(store: SqlCaseStore, email: str, password: str, *, log2_n: int = 15) -> Account:
    """The account whose email and password these are; Unauthorized otherwise (one message for
    every failure, so the answer does not reveal which emails have accounts)."""
    e = (email or "").strip().lower()
    with store.session() as s:
        row = s.scalar(select(AccountRow).where(AccountRow.email == e))
    if row is None:
        dummy = _DUMMY_HASH.setdefault(log2_n, hash_password("x" * MIN_PASSWORD, log2_n))
        verify_password(password, dummy)
    ok = row is not None and verify_password(password, row.password_hash) and not row.disabled
    if not ok:
        raise Unauthorized("wrong email or password")
    return Account(row.id, row.email, row.role, row.disabled)  # type: ignore[arg-type,union-attr]


def get_account(store: SqlCaseStore, account_id: str) -> Account | None:
    """The account with this id, or None."""
    with store.session() as s:
        row = s.get(AccountRow, account_id)
    return None if row is None else Account(row.id, row.email, row.role, row.disabled)  # type: ignore[arg-type]


def account_email(store: SqlCaseStore, account_id: str | None) -> str | None:
    """The email of an account (a signed-in resident's contact address), or None."""
    acct = get_account(store, account_id) if account_id else None
    return acct.email if acct else None


def find_account(store: SqlCaseStore, email: str) -> Account | None:
    """The account with this email, or None."""
    with store.session() as s:
        row = s.scalar(select(AccountRow).where(AccountRow.email == email.strip().lower()))
    return None if row is None else Account(row.id, row.email, row.role, row.disabled)  # type: ignore[arg-type]


def list_accounts(store: SqlCaseStore) -> list[Account]:
    """Every account, oldest first."""
    with store.session() as s:
        rows = s.scalars(select(AccountRow).order_by(AccountRow.created_at)).all()
    return [Account(r.id, r.email, r.role, r.disabled) for r in rows]  # type: ignore[arg-type]


def set_disabled(store: SqlCaseStore, email: str, disabled: bool = True) -> bool:
    """Disable (or enable) an account; its tokens stop working at once. False when unknown."""
    with store.session() as s:
        row = s.scalar(select(AccountRow).where(AccountRow.email == email.strip().lower()))
        if row is None:
            return False
        row.disabled = disabled
        if disabled:
            s.execute(delete(AuthTokenRow).where(AuthTokenRow.account_id == row.id))
    return True


def issue_token(store: SqlCaseStore, account: Account, ttl_s: float) -> tuple[str, datetime]:
    """A new opaque bearer token for the account and when it expires (shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    with store.session() as s:
        # Expired tokens are dead weight: each login sweeps its own account's.
        s.execute(
            delete(AuthTokenRow).where(
                AuthTokenRow.account_id == account.id, AuthTokenRow.expires_at < now
            )
        )
        s.add(
            AuthTokenRow(
                token_sha256=sha256_hex(token),
                account_id=account.id,
                created_at=now,
                expires_at=expires,
            )
        )
    return token, expires


def account_for_token(store: SqlCaseStore, token: str) -> Account:
    """The account a bearer token belongs to; Unauthorized when unknown, expired or disabled."""
    with store.session() as s:
        found = s.execute(
            select(AuthTokenRow.expires_at, AccountRow)
            .join(AccountRow, AccountRow.id == AuthTokenRow.account_id)
            .where(AuthTokenRow.token_sha256 == sha256_hex(token))
        ).first()
    if found is None:
        raise Unauthorized("the bearer token is not valid: sign in again")
    expires_at, row = found
    if aware(expires_at) <= utcnow():
        raise Unauthorized("the bearer token has expired: sign in again")
    if row.disabled:
        raise Unauthorized("this account is disabled")
    return Account(row.id, row.email, row.role, row.disabled)


def revoke_token(store: SqlCaseStore, token: str) -> bool:
    """Sign out: the token stops working. False when it was not valid."""
    with store.session() as s:
        res = s.execute(delete(AuthTokenRow).where(AuthTokenRow.token_sha256 == sha256_hex(token)))
        return res.rowcount == 1


def create_api_key(
    store: SqlCaseStore, client: str, role: str = "resident", scopes: tuple[str, ...] = ()
) -> tuple[str, ApiKey]:
    """A new key for a client app: the key (shown once, never stored) and its listing."""
    client = (client or "").strip()
    if not 1 <= len(client) <= 100 or not client.isprintable():
        raise InvalidReport("the client name must be 1-100 printable characters", field="client")
    role = check_role(role)
    bad = [sc for sc in scopes if sc not in KEY_SCOPES]
    if bad:
        raise InvalidReport(
            f"unknown scope {bad[0]!r}; known: {', '.join(KEY_SCOPES)}", field="scope"
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(
        id=str(uuid.uuid4()),
        client=client,
        key_sha256=sha256_hex(key),
        prefix=key[:10],
        role=role,
        scopes=sorted(set(scopes)),
        created_at=utcnow(),
    )
    with store.session() as s:
        s.add(row)
    return key, _key(row)


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        client=row.client,
        prefix=row.prefix,
        role=row.role,  # type: ignore[arg-type]
        scopes=tuple(row.scopes or ()),
        created_at=aware(row.created_at),
        revoked_at=aware(row.revoked_at) if row.revoked_at else None,
    )


def api_key_for(store: SqlCaseStore, key: str) -> ApiKey:
    """The live key with this value; Unauthorized when unknown or revoked."""
    with store.session() as s:
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_sha256 == sha256_hex(key)))
    if row is None:
        raise Unauthorized("the API key is not valid: ask the city for a key")
    if row.revoked_at is not None:
        raise Unauthorized("the API key was revoked: ask the city for a new one")
    return _key(row)


def list_api_keys(store: SqlCaseStore, client: str | None = None) -> list[ApiKey]:
    """Keys (live and revoked), oldest first, optionally of one client."""
    q = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
    if client is not None:
        q = q.where(ApiKeyRow.client == client)
    with store.session() as s:
        return [_key(r) for r in s.scalars(q)]


def revoke_api_keys(store: SqlCaseStore, which: str) -> int:
    """Revoke the key with this id or prefix, or every live key of the client with this name."""
    now = utcnow()
    live = ApiKeyRow.revoked_at.is_(None)
    with store.session() as s:
        res = s.execute(
            update(ApiKeyRow)
            .where(live, (ApiKeyRow.id == which) | (ApiKeyRow.prefix == which))
            .values(revoked_at=now)
        )
        if res.rowcount:
            return res.rowcount
        res = s.execute(
            update(ApiKeyRow).where(live, ApiKeyRow.client == which).values(revoked_at=now)
        )
        return res.rowcount


def link_report(store: SqlCaseStore, case_id: str, account_id: str) -> None:
    """Record that a signed-in resident made this (named) report; a retry changes nothing."""
    with store.session() as s:
        if s.get(ReportOwnerRow, case_id) is None:
            s.add(ReportOwnerRow(case_id=case_id, account_id=account_id, created_at=utcnow()))


def report_owner(store: SqlCaseStore, case_id: str) -> str | None:
    """The account that made this report, or None (anonymous, or made before signing in)."""
    with store.session() as s:
        return s.scalar(select(ReportOwnerRow.account_id).where(ReportOwnerRow.case_id == case_id))


def reports_of(store: SqlCaseStore, account_id: str, limit: int = 50, offset: int = 0) -> list[str]:
    """Case ids of an account's reports, newest first."""
    q = (
        select(ReportOwnerRow.case_id)
        .where(ReportOwnerRow.account_id == account_id)
        .order_by(ReportOwnerRow.created_at.desc(), ReportOwnerRow.case_id)
        .limit(limit)
        .offset(offset)
    )
    with store.session() as s:
        return list(s.scalars(q))
