"""Rate limits: token buckets per key, account and address; in-process, and shared in Redis."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from helpers import require

from api.app import create_app
from pipeline import accounts
from pipeline.ratelimit import Limit, MemoryLimiter, RedisLimiter
from pipeline.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    require(_redis_up(), "Redis is not running at 127.0.0.1:6379")
    return REDIS_URL


def _tight(settings: Settings, **kw: object) -> Settings:
    settings.sweep_interval_s = 0
    settings.ratelimit_ip_per_min, settings.ratelimit_ip_burst = 6, 3  # one token per 10 s
    settings.ratelimit_key_per_min, settings.ratelimit_key_burst = 6, 2
    for k, v in kw.items():
        setattr(settings, k, v)
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(_tight(settings))) as c:
        yield c


def _get(client: TestClient, headers: dict | None = None):
    return client.get("/api/v1/services", headers=headers or {})


def test_burst_then_429_with_retry_after(client: TestClient) -> None:
    assert [_get(client).status_code for _ in range(3)] == [200, 200, 200]
    r = _get(client)
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limited" and "address" in r.json()["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 10


def test_each_api_key_has_its_own_bucket(client: TestClient) -> None:
    store = client.app.state.ctx.store  # type: ignore[attr-defined]
    a, _ = accounts.create_api_key(store, "app A")
    b, _ = accounts.create_api_key(store, "app B")
    assert [_get(client, {"X-API-Key": a}).status_code for _ in range(3)] == [200, 200, 429]
    assert _get(client, {"X-API-Key": b}).status_code == 200  # B is not A
    assert _get(client).status_code == 200  # nor is the address's bucket touched by keys
    r = _get(client, {"X-API-Key": a})
    assert r.status_code == 429 and "API key" in r.json()["message"]


def test_a_key_sent_as_a_form_field_counts_like_a_header(client: TestClient) -> None:
    # Open311 clients send api_key in the form; it is that key's bucket, not the address's.
    key, _ = accounts.create_api_key(client.app.state.ctx.store, "open311 app")  # type: ignore[attr-defined]

    def upload(api_key: str) -> int:
        files = {"photo": ("p.jpg", b"not a photo", "image/jpeg")}
        return client.post("/api/v1/reports", files=files, data={"api_key": api_key}).status_code

    assert [upload(key) for _ in range(3)] == [422, 422, 429]
    assert upload("slk_not-a-key") == 401
    assert _get(client).status_code == 200


def test_guessing_keys_is_throttled_by_address(client: TestClient) -> None:
    codes = [_get(client, {"X-API-Key": f"slk_guess{i}"}).status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]


def test_limits_can_be_switched_off(settings: Settings) -> None:
    with TestClient(create_app(_tight(settings, ratelimit_enabled=False))) as c:
        assert {_get(c).status_code for _ in range(8)} == {200}


def test_loopback_is_not_limited_per_address_but_its_keys_are(settings: Settings) -> None:
    # Loopback is a local tool, or a proxy that does not forward the client's address.
    app = create_app(_tight(settings))
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        assert {_get(c).status_code for _ in range(6)} == {200}
        key, _ = accounts.create_api_key(app.state.ctx.store, "local app")
        assert [_get(c, {"X-API-Key": key}).status_code for _ in range(3)] == [200, 200, 429]


def test_memory_bucket_refills_at_its_rate() -> None:
    lim, limit = MemoryLimiter(), Limit(per_min=600, burst=2)  # 10 tokens/s

    async def go() -> list[float]:
        waits = [await lim.take("b", limit) for _ in range(3)]
        await asyncio.sleep(0.15)
        waits.append(await lim.take("b", limit))
        return waits

    w = asyncio.run(go())
    assert w[:2] == [0, 0] and 0 < w[2] <= 0.1 and w[3] == 0


def test_redis_buckets_are_shared_by_every_process(redis_url: str) -> None:
    bucket = f"test:{secrets.token_hex(6)}"
    limit = Limit(per_min=6, burst=3)

    async def go() -> list[float]:
        # Two limiters stand for two API processes: they draw from one bucket.
        one, two = RedisLimiter(redis_url), RedisLimiter(redis_url)
        try:
            return [await lim.take(bucket, limit) for lim in (one, two, one, two)]
        finally:
            await one.close()
            await two.close()

    waits = asyncio.run(go())
    assert waits[:3] == [0, 0, 0]
    assert 9 <= waits[3] <= 10  # one token per 10 s, measured on Redis's clock


def test_two_apps_on_one_redis_share_the_limit(settings: Settings, redis_url: str) -> None:
    _tight(settings, ratelimit_redis_url=redis_url)
    import redis

    r = redis.Redis.from_url(redis_url)
    r.delete("streetlens:rl:ip:testclient")  # a fresh bucket for this run
    r.close()
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        codes = [_get(c).status_code for c in (a, b, a, b)]
    assert codes == [200, 200, 200, 429]


def test_redis_down_falls_back_to_process_buckets(settings: Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    _tight(settings, ratelimit_redis_url=f"redis://127.0.0.1:{closed}/0")
    with TestClient(create_app(settings)) as c:
        codes = [_get(c).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # still served, still limited
