"""Where an upload's time goes: each step of the upload path timed in-process (wall and CPU
per upload, one at a time), for `python bench/ingest.py --profile`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from ingest import BOUNDARY, CENTER, Uploads, bare_app, distinct

Row = tuple[str, float, float]


@contextlib.contextmanager
def _timer(name: str, n: int, rows: list[Row]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows.append((name, wall / n * 1e3, cpu / n * 1e3))


async def _post_all(app: object, bodies: list[bytes]) -> None:
    """POST each body through the ASGI app in this process: the server's work, no socket."""
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for body in bodies:
            r = await client.post("/api/v1/reports", content=body, headers=headers)
            assert r.status_code == 202, r.text


def profile(photos: list[bytes], points: list, work: Path, n: int = 40) -> None:
    """Print the wall and CPU milliseconds of each upload step on ~1 MB photos."""
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    from api.app import create_app
    from pipeline import intake, tasks
    from pipeline.context import Context
    from pipeline.media import LocalMediaStore
    from pipeline.settings import Settings
    from vision.image import decode, inspect

    ctx = Context(Settings(home=work / "profile", ratelimit_enabled=False))
    _ = ctx.geo, ctx.store, ctx.city, ctx.celery
    ups = Uploads(photos, points, "profile")
    bodies = [ups.next() for _ in range(n)]
    datas = [distinct(photos[i % len(photos)], f"p{i}".encode()) for i in range(n)]
    form = intake.ReportForm(lat=CENTER[0], lon=CENTER[1])
    headers = Headers({"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
    rows: list[Row] = []

    async def parse_all() -> None:
        for body in bodies:

            async def stream(b: bytes = body):
                yield b

            parsed = await MultiPartParser(headers, stream()).parse()
            await parsed["photo"].read()  # type: ignore[union-attr]
            await parsed.close()

    with _timer("multipart parse (starlette, spools >1 MB to disk)", n, rows):
        asyncio.run(parse_all())
    with _timer("structure check (what intake runs: vision.image.inspect)", n, rows):
        for d in datas:
            inspect(d, max_pixels=50_000_000, max_bytes=30_000_000)
    with _timer("  a 64 px draft decode instead (before this change)", n, rows):
        for d in datas:
            decode(d, max_pixels=50_000_000, max_bytes=30_000_000, target_long_side=64)
    with _timer("sha256", n, rows):
        for d in datas:
            hashlib.sha256(d).hexdigest()
    with _timer("build_report (all validation: structure, fields, city)", n, rows):
        reports = [intake.build_report(ctx, d, form)[0] for d in datas]
    plain = work / "profile" / "plain"
    plain.mkdir(parents=True)
    with _timer("write file, no fsync (what the bare endpoint does)", n, rows):
        for i, d in enumerate(datas):
            (plain / str(i)).write_bytes(d)
    media = LocalMediaStore(work / "profile" / "media")
    with _timer("media put (write + fsync + rename + dir fsync)", n, rows):
        for d, r in zip(datas, reports, strict=True):
            media.put(d, "image/jpeg", sha256=r.photo_sha256)
    with _timer("create_case (SQLite: photo + case + history, one commit)", n, rows):
        ids = [ctx.store.create_case(r, len(d), idempotency_key=uuid.uuid4().hex)
               for r, d in zip(reports, datas, strict=True)]  # fmt: skip
    with _timer("enqueue (the store is the queue: nothing to send)", n, rows):
        for cid in ids:
            tasks.enqueue(ctx, cid)
    broker = f"sqla+sqlite:///{work / 'profile' / 'broker.db'}"
    cel = Context(Settings(home=work / "profile", broker_url=broker))
    _ = cel.celery
    with _timer("  enqueue on Celery + kombu's SQLite broker (when named)", n, rows):
        for cid in ids:
            tasks.enqueue(cel, cid)
    datas2 = [distinct(photos[i % len(photos)], f"q{i}".encode()) for i in range(n)]
    with _timer("intake.submit + enqueue (all of the above)", n, rows):
        for d in datas2:
            tasks.enqueue(ctx, intake.submit(ctx, d, form, idempotency_key=uuid.uuid4().hex))
    app = create_app(
        Settings(home=work / "profile-app", sweep_interval_s=0, ratelimit_enabled=False)
    )
    asyncio.run(_post_all(app, [ups.next() for _ in range(2)]))  # loads the city's layers
    with _timer("whole POST through the StreetLens ASGI app", n, rows):
        asyncio.run(_post_all(app, [ups.next() for _ in range(n)]))
    (work / "profile-bare").mkdir()
    os.environ["BENCH_BARE_DIR"] = str(work / "profile-bare")
    with _timer("whole POST through the bare ASGI app", n, rows):
        asyncio.run(_post_all(bare_app(), [ups.next() for _ in range(n)]))
    print(f"[profile] one ~{len(datas[0]) / 1e6:.1f} MB upload at a time, in-process, mean of {n}:")
    print(f"[profile]   {'step':<54} {'wall ms':>8} {'CPU ms':>8}")
    for name, wall, cpu in rows:
        print(f"[profile]   {name:<54} {wall:8.2f} {cpu:8.2f}")
