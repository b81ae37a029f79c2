"""`streetlens accounts …` and `streetlens keys …`: staff accounts and client apps' API keys.

Secrets are printed once, on creation, and never stored: a lost key is revoked and replaced.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from pipeline import accounts
from pipeline.settings import Settings
from pipeline.store import SqlCaseStore


def _store(args: argparse.Namespace) -> SqlCaseStore:
    return SqlCaseStore(Settings().database_url)


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): from stdin, a prompt, or made up and printed once."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if sys.stdin.isatty() and not args.generate:
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise SystemExit("streetlens: the passwords differ")
        return first, False
    return secrets.token_urlsafe(15), True


def cmd_accounts_create(args: argparse.Namespace) -> int:
    """streetlens accounts create EMAIL --role ROLE."""
    settings = Settings()
    password, generated = _password(args)
    store = _store(args)
    try:
        acct = accounts.create_account(
            store, args.email, password, args.role, log2_n=settings.password_scrypt_log2_n
        )
    finally:
        store.close()
    print(f"account {acct.id}  {acct.email}  role {acct.role}")
    if generated:
        print(f"password (shown once; change it by making a new account): {password}")
    return 0


def cmd_accounts_list(args: argparse.Namespace) -> int:
    """streetlens accounts list."""
    store = _store(args)
    try:
        for a in accounts.list_accounts(store):
            print(f"{a.id}  {a.role:<8}  {a.email}{'  (disabled)' if a.disabled else ''}")
    finally:
        store.close()
    return 0


def cmd_accounts_disable(args: argparse.Namespace) -> int:
    """streetlens accounts disable EMAIL (its tokens stop working at once)."""
    store = _store(args)
    try:
        ok = accounts.set_disabled(store, args.email, not args.enable)
    finally:
        store.close()
    if not ok:
        print(f"streetlens: no account for {args.email}", file=sys.stderr)
        return 1
    print(f"{args.email} {'enabled' if args.enable else 'disabled'}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    """streetlens keys create CLIENT [--role ROLE] [--scope metrics]."""
    store = _store(args)
    try:
        key, info = accounts.create_api_key(store, args.client, args.role, tuple(args.scope or ()))
    finally:
        store.close()
    scopes = f"  scopes {','.join(info.scopes)}" if info.scopes else ""
    print(f"key {info.id}  client {info.client!r}  role {info.role}{scopes}")
    print(f"API key (shown once; send it as X-API-Key): {key}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    """streetlens keys list [CLIENT]."""
    store = _store(args)
    try:
        keys = accounts.list_api_keys(store, args.client)
    finally:
        store.close()
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
        scopes = ",".join(k.scopes) or "-"
        print(f"{k.id}  {k.prefix}…  {k.role:<8}  {scopes:<8}  {state:<22}  {k.client}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """streetlens keys revoke ID|PREFIX|CLIENT."""
    store = _store(args)
    try:
        n = accounts.revoke_api_keys(store, args.which)
    finally:
        store.close()
    if not n:
        print(f"streetlens: no live key matches {args.which!r}", file=sys.stderr)
        return 1
    print(f"revoked {n} key(s)")
    return 0


def add_account_commands(sub: argparse._SubParsersAction) -> None:
    """Register `accounts` and `keys` on the main parser."""
    ac = sub.add_parser("accounts", help="people who sign in (resident, crew, analyst, admin)")
    acsub = ac.add_subparsers(dest="accounts_command", required=True)
    c = acsub.add_parser("create", help="create an account (staff accounts are made here)")
    c.add_argument("email")
    c.add_argument("--role", choices=accounts.ACCOUNT_ROLES, required=True)
    c.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    c.add_argument("--generate", action="store_true", help="make up a password and print it")
    c.set_defaults(func=cmd_accounts_create)
    ls = acsub.add_parser("list", help="list accounts")
    ls.set_defaults(func=cmd_accounts_list)
    d = acsub.add_parser("disable", help="disable an account and sign it out everywhere")
    d.add_argument("email")
    d.add_argument("--enable", action="store_true", help="enable it again instead")
    d.set_defaults(func=cmd_accounts_disable)

    k = sub.add_parser("keys", help="API keys of client apps (Open311 clients, scrapers)")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key for a client app (printed once)")
    kc.add_argument("client", help="who the key is for, e.g. 'SeeClickFix'")
    kc.add_argument("--role", choices=accounts.ACCOUNT_ROLES, default="resident")
    kc.add_argument("--scope", action="append", choices=accounts.KEY_SCOPES)
    kc.set_defaults(func=cmd_keys_create)
    kl = ksub.add_parser("list", help="list keys (never the keys themselves)")
    kl.add_argument("client", nargs="?")
    kl.set_defaults(func=cmd_keys_list)
    kr = ksub.add_parser("revoke", help="revoke a key by id or prefix, or all of a client's")
    kr.add_argument("which")
    kr.set_defaults(func=cmd_keys_revoke)
