"""The accounts store on both backends: SQLite and PostgreSQL + PostGIS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import accounts
from pipeline.db import utcnow
from pipeline.errors import InvalidReport, Unauthorized
from pipeline.media import sha256_hex
from pipeline.store import SqlCaseStore
from pipeline.types import Report

PASSWORD = "a long enough password"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlCaseStore]:
    url = (
        f"sqlite:///{tmp_path / 'cases.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_database")()
    )
    s = SqlCaseStore(url)
    yield s
    s.close()


def test_accounts_and_tokens(store: SqlCaseStore) -> None:
    acct = accounts.create_account(store, "Mo@Example.org", PASSWORD, "analyst", log2_n=8)
    assert acct.email == "mo@example.org"
    with pytest.raises(InvalidReport, match="exists"):
        accounts.create_account(store, "mo@example.org", PASSWORD, log2_n=8)
    assert accounts.authenticate(store, "MO@example.org ", PASSWORD, log2_n=8).id == acct.id
    with pytest.raises(Unauthorized):
        accounts.authenticate(store, "mo@example.org", PASSWORD + "x", log2_n=8)
    live, expires = accounts.issue_token(store, acct, 60)
    dead, _ = accounts.issue_token(store, acct, -1)
    assert 59 <= (expires - utcnow()).total_seconds() <= 60
    assert accounts.account_for_token(store, live).role == "analyst"
    with pytest.raises(Unauthorized, match="expired"):
        accounts.account_for_token(store, dead)
    accounts.issue_token(store, acct, 60)  # a new sign-in sweeps the expired token away
    with pytest.raises(Unauthorized, match="not valid"):
        accounts.account_for_token(store, dead)
    assert accounts.revoke_token(store, live) and not accounts.revoke_token(store, live)
    with pytest.raises(Unauthorized):
        accounts.account_for_token(store, live)


def test_api_keys_listed_and_revoked(store: SqlCaseStore) -> None:
    a1, k1 = accounts.create_api_key(store, "SeeClickFix")
    a2, _ = accounts.create_api_key(store, "SeeClickFix", scopes=("webhooks",))
    b, kb = accounts.create_api_key(store, "Prometheus", scopes=("metrics", "metrics"))
    assert kb.scopes == ("metrics",) and accounts.api_key_for(store, b).scopes == ("metrics",)
    with pytest.raises(InvalidReport, match="scope"):
        accounts.create_api_key(store, "x", scopes=("everything",))
    assert [k.client for k in accounts.list_api_keys(store)] == ["SeeClickFix"] * 2 + ["Prometheus"]
    assert accounts.revoke_api_keys(store, k1.prefix) == 1  # one key, by its prefix
    with pytest.raises(Unauthorized, match="revoked"):
        accounts.api_key_for(store, a1)
    assert accounts.api_key_for(store, a2).client == "SeeClickFix"
    assert accounts.revoke_api_keys(store, "SeeClickFix") == 1  # the client's remaining key
    assert accounts.revoke_api_keys(store, "SeeClickFix") == 0
    assert accounts.api_key_for(store, b).role == "resident"


def test_report_owners(store: SqlCaseStore) -> None:
    acct = accounts.create_account(store, "nia@example.org", PASSWORD, log2_n=8)
    ids = []
    for i in range(3):
        report = Report(
            photo_sha256=sha256_hex(bytes([i])), photo_content_type="image/jpeg",
            lat=42.37, lon=-71.1, anonymous=False, contact_email="nia@example.org",
        )  # fmt: skip
        ids.append(store.create_case(report, 1))
    for cid in ids[:2]:
        accounts.link_report(store, cid, acct.id)
    accounts.link_report(store, ids[0], acct.id)  # a retried upload links nothing twice
    assert sorted(accounts.reports_of(store, acct.id)) == sorted(ids[:2])
    assert accounts.reports_of(store, acct.id, limit=1, offset=2) == []
    assert accounts.report_owner(store, ids[2]) is None
