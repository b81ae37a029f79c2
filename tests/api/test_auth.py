"""Accounts, bearer tokens and API keys over the API and the CLI; secrets stored only hashed."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from imagegen import jpeg_bytes
from sqlalchemy import text

from api.app import create_app
from pipeline import accounts
from pipeline.cli import main as cli
from pipeline.settings import Settings

CITY_HALL = {"lat": "42.36630", "lon": "-71.10560"}
PASSWORD = "correct horse battery"


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    settings.password_scrypt_log2_n = 10  # the same code path, a fraction of the CPU
    settings.sweep_interval_s = 0
    return settings


@pytest.fixture
def client(fast_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(fast_settings)) as c:
        yield c


def _store(client: TestClient):
    return client.app.state.ctx.store  # type: ignore[attr-defined]


def _account(client: TestClient, email: str, role: str = "resident") -> accounts.Account:
    return accounts.create_account(_store(client), email, PASSWORD, role, log2_n=10)


def _login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _upload(client: TestClient, headers: dict[str, str], fields: dict | None = None, seed: int = 1):
    files = {"photo": ("p.jpg", jpeg_bytes(seed=seed), "image/jpeg")}
    r = client.post("/api/v1/reports", files=files, data={**CITY_HALL, **(fields or {})},
                    headers=headers)  # fmt: skip
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_resident_signs_up_signs_in_and_follows_only_own_reports(client: TestClient) -> None:
    r = client.post("/api/v1/accounts", json={"email": " Ana@Example.org ", "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "ana@example.org" and r.json()["role"] == "resident"
    ana = _login(client, "ANA@example.org")
    assert client.get("/api/v1/me", headers=ana).json()["email"] == "ana@example.org"
    mine = _upload(client, ana)
    anon = _upload(client, ana, {"anonymous": "true"}, seed=2)
    _account(client, "ben@example.org")
    ben = _login(client, "ben@example.org")
    _upload(client, ben, seed=3)

    reports = client.get("/api/v1/me/reports", headers=ana).json()["reports"]
    assert [c["id"] for c in reports] == [mine]
    assert reports[0]["report"]["contact_email"] == "ana@example.org"
    assert anon not in {c["id"] for c in client.get("/api/v1/me/reports", headers=ben).json()[
        "reports"]}  # fmt: skip
    # The public view of Ana's named report never shows her email.
    public = client.get(f"/api/v1/reports/{mine}").json()
    assert "contact_email" not in public["report"] and "ana@" not in str(public)


def test_signed_in_anonymous_report_stores_nothing_personal(client: TestClient) -> None:
    _account(client, "cleo@example.org")
    cleo = _login(client, "cleo@example.org")
    fields = {"anonymous": "true", "name": "Cleo Sharpe", "email": "cleo@example.org"}
    case_id = _upload(client, cleo, fields)
    _upload(client, {}, {"anonymous": "yes", "name": "Dora Quill", "email": "dora@quill.test"}, 4)
    store = _store(client)
    case = store.get(case_id)
    assert case.report.anonymous and case.report.contact_email is None
    assert case.report.contact_name is None
    assert accounts.report_owner(store, case_id) is None
    # Nothing in the case tables mentions either person (the accounts table knows Cleo only
    # because she has an account).
    with store.engine.connect() as c:
        dump = " ".join(
            str(row)
            for table in ("cases", "status_history", "findings", "report_owners")
            for row in c.execute(text(f"SELECT * FROM {table}"))
        )
    for personal in ("Cleo", "cleo@example.org", "Dora", "dora@quill.test"):
        assert personal not in dump


def test_passwords_tokens_and_keys_are_stored_only_hashed(client: TestClient) -> None:
    _account(client, "eve@example.org", "crew")
    headers = _login(client, "eve@example.org")
    token = headers["Authorization"].split()[1]
    key, _ = accounts.create_api_key(_store(client), "SeeClickFix")
    with _store(client).engine.connect() as c:
        pw_hash = c.execute(text("SELECT password_hash FROM accounts")).scalar()
        tokens = [r[0] for r in c.execute(text("SELECT token_sha256 FROM auth_tokens"))]
        keys = [r[0] for r in c.execute(text("SELECT key_sha256 FROM api_keys"))]
    assert pw_hash.startswith("scrypt$10$8$1$") and PASSWORD not in pw_hash
    assert token not in tokens and accounts.sha256_hex(token) in tokens
    assert key not in keys and accounts.sha256_hex(key) in keys
    assert accounts.verify_password(PASSWORD, pw_hash)
    assert not accounts.verify_password(PASSWORD + "!", pw_hash)


def test_wrong_password_and_unknown_email_get_the_same_401(client: TestClient) -> None:
    _account(client, "fay@example.org")
    wrong = client.post("/api/v1/auth/token", json={"email": "fay@example.org", "password": "x"})
    unknown = client.post("/api/v1/auth/token", json={"email": "nobody@x.org", "password": "x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {
        "error": "unauthorized", "message": "wrong email or password",
    }  # fmt: skip
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_expired_revoked_and_malformed_tokens_are_refused(client: TestClient) -> None:
    acct = _account(client, "gus@example.org")
    expired, _ = accounts.issue_token(_store(client), acct, ttl_s=-1)
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["message"]
    # Bad credentials are refused on public endpoints too, never read as "anonymous".
    r = client.get("/api/v1/services", headers={"Authorization": "Bearer slt_madeup"})
    assert r.status_code == 401
    r = client.get("/api/v1/services", headers={"Authorization": "Basic Z3VzOnB3"})
    assert r.status_code == 401 and "Bearer" in r.json()["message"]
    headers = _login(client, "gus@example.org")
    assert client.delete("/api/v1/auth/token", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_disabling_an_account_signs_it_out(client: TestClient) -> None:
    _account(client, "hal@example.org", "crew")
    headers = _login(client, "hal@example.org")
    assert client.get("/api/v1/cases", headers=headers).status_code == 200
    assert accounts.set_disabled(_store(client), "hal@example.org")
    assert client.get("/api/v1/cases", headers=headers).status_code == 401
    r = client.post("/api/v1/auth/token", json={"email": "hal@example.org", "password": PASSWORD})
    assert r.status_code == 401


def test_staff_accounts_are_made_by_an_admin_only(client: TestClient) -> None:
    body = {"email": "ivy@example.org", "password": PASSWORD, "role": "crew"}
    assert client.post("/api/v1/accounts", json=body).status_code == 401
    _account(client, "res@example.org")
    resident = _login(client, "res@example.org")
    r = client.post("/api/v1/accounts", json=body, headers=resident)
    assert r.status_code == 403 and "admin" in r.json()["message"]
    _account(client, "root@example.org", "admin")
    admin = _login(client, "root@example.org")
    r = client.post("/api/v1/accounts", json=body, headers=admin)
    assert r.status_code == 201 and r.json()["role"] == "crew"
    assert client.get("/api/v1/cases", headers=_login(client, "ivy@example.org")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.org", "password": "short"}, "password"),
        ({"email": "a@example.org", "password": PASSWORD, "role": "mayor"}, "role"),
        ({"email": "a@example.org"}, "password"),
    ],
    ids=["email", "weak-password", "role", "no-password"],
)
def test_bad_sign_ups_are_422_and_make_no_account(client: TestClient, body: dict, field: str):
    r = client.post("/api/v1/accounts", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert accounts.list_accounts(_store(client)) == []


def test_an_email_signs_up_once(client: TestClient) -> None:
    body = {"email": "jo@example.org", "password": PASSWORD}
    assert client.post("/api/v1/accounts", json=body).status_code == 201
    r = client.post("/api/v1/accounts", json={**body, "email": "JO@example.org"})
    assert r.status_code == 422 and "exists" in r.json()["message"]


def test_cli_makes_accounts_and_keys_and_revokes_keys(
    client: TestClient, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("STREETLENS_HOME", str(fast_settings.home))
    monkeypatch.setenv("STREETLENS_PASSWORD_SCRYPT_LOG2_N", "10")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli(["accounts", "create", "kim@example.org", "--role", "crew", "--password-stdin"]) == 0
    crew = _login(client, "kim@example.org")
    assert client.get("/api/v1/cases", headers=crew).status_code == 200

    capsys.readouterr()
    assert cli(["keys", "create", "SeeClickFix"]) == 0
    out = capsys.readouterr().out
    key = out.split("send it as X-API-Key): ")[1].split()[0]
    assert key.startswith("slk_")
    for how in ({"headers": {"X-API-Key": key}}, {"params": {"api_key": key}},
                {"headers": {"Authorization": f"Bearer {key}"}}):  # fmt: skip
        assert client.get("/api/v1/services", **how).status_code == 200
    r = client.get("/api/v1/cases", headers={"X-API-Key": key})
    assert r.status_code == 403 and "resident" in r.json()["message"]
    assert cli(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "SeeClickFix" in listing and key not in listing and key[:10] in listing
    assert cli(["keys", "revoke", "SeeClickFix"]) == 0
    r = client.get("/api/v1/services", headers={"X-API-Key": key})
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    assert cli(["keys", "revoke", "SeeClickFix"]) == 1  # nothing live left


def test_openapi_declares_security_schemes_and_roles(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    staff = doc["paths"]["/api/v1/cases/{case_id}/actions"]["post"]
    assert staff["x-roles"] == ["crew", "admin"] and {} not in staff["security"]
    assert {"401", "403", "429"} <= set(staff["responses"])
    public = doc["paths"]["/api/v1/services"]["get"]
    assert {} in public["security"] and "401" not in public["responses"]
    mine = doc["paths"]["/api/v1/me/reports"]["get"]
    assert mine["security"] == [{"bearerToken": []}]
    assert doc["paths"]["/metrics"]["get"]["x-roles"] == ["analyst", "admin", "api_key:metrics"]
