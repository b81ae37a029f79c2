"""Ingest benchmark: concurrent ~1 MB photo uploads over real HTTP to `streetlens serve`, next
to a bare FastAPI endpoint that only writes the file (the baseline, measured in the same run).

    python bench/ingest.py [--seconds 10] [--concurrency 16] [--backends default,scaled]
                           [--api-workers 2] [--profile]

For each backend set it prints accepted/s, p50/p99 latency and the ratio to the bare endpoint;
then runs the detector worker(s) until the queue drains (after the load, as on separate
machines: on a small machine the worker would compete with ingestion) and checks that
accepted = cases = stored photos = processed. `default` is SQLite (also the queue: no broker)
+ a local folder; `scaled` is a private PostgreSQL + PostGIS, a private redis-server and S3 on
moto's server. `--profile` times each step of the upload path in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from fastapi import FastAPI, File, Form, UploadFile  # noqa: E402
from ingest_backends import Proc, env_for, free_port, machine_busy, make_backends  # noqa: E402
from tqdm import tqdm  # noqa: E402

CENTER = (42.3736, -71.1190)  # Harvard Square, Cambridge MA
PHOTO_SIZE = (2000, 1500)
BOUNDARY = "streetlens-bench-7d1f"
FINAL = ("needs_review", "open", "in_progress", "closed", "rejected", "failed")


# --- photos and request bodies ---------------------------------------------------------------


def base_photos(data_dir: Path, n: int) -> list[bytes]:
    """Real street photos (potholes-seg val), cropped to 4:3 and upscaled to 2000x1500 with a
    phone sensor's grain: JPEGs of about 1 MB."""
    import numpy as np
    from PIL import Image

    paths = sorted((data_dir / "potholes-seg" / "images" / "val").glob("*.jpg"))[:n]
    if not paths:
        sys.exit(f"no photos in {data_dir}/potholes-seg/images/val: set STREETLENS_DATA_DIR")
    rng = np.random.default_rng(0)
    out = []
    for p in tqdm(paths, desc="photos", unit="photo", leave=False):
        img = Image.open(p).convert("RGB")
        w, h = img.size
        ch = min(h, w * 3 // 4)
        img = img.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
        img = img.resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
        grain = np.asarray(img, np.float32) + rng.normal(0, 3.0, (*PHOTO_SIZE[::-1], 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=95)
        out.append(buf.getvalue())
    return out


def city_points(n: int = 400) -> list[tuple[float, float]]:
    """Random points within ~600 m of Harvard Square that the city's boundary contains."""
    from pipeline.context import Context
    from pipeline.settings import Settings

    geo = Context(Settings()).geo
    rng = random.Random(0)
    pts = []
    while len(pts) < n:
        lat = CENTER[0] + rng.uniform(-0.005, 0.005)
        lon = CENTER[1] + rng.uniform(-0.007, 0.007)
        if geo.contains(lat, lon):
            pts.append((lat, lon))
    return pts


def distinct(jpeg: bytes, tag: bytes) -> bytes:
    """The photo with a JPEG comment segment after SOI: the same pixels, distinct bytes."""
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag + jpeg[2:]


def multipart(photo: bytes, lat: float, lon: float, key: str) -> bytes:
    """A multipart/form-data body as a phone app sends it (built once, no client overhead)."""
    fields = {"lat": f"{lat:.6f}", "lon": f"{lon:.6f}", "idempotency_key": key}
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="photo"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


class Uploads:
    """An endless supply of distinct uploads at points inside the city."""

    def __init__(self, photos: list[bytes], points: list[tuple[float, float]], run: str) -> None:
        self.photos, self.points, self.run, self.n = photos, points, run, 0

    def next(self) -> bytes:
        """The next request body."""
        self.n += 1
        lat, lon = self.points[self.n % len(self.points)]
        tag = f"{self.run}-{self.n}"
        photo = distinct(self.photos[self.n % len(self.photos)], tag.encode())
        return multipart(photo, lat, lon, tag)


# --- the bare baseline -----------------------------------------------------------------------


def bare_app() -> FastAPI:
    """The baseline: parse the same multipart upload, write the photo to a file, answer 202."""
    out = Path(os.environ["BENCH_BARE_DIR"])
    app = FastAPI()

    @app.post("/api/v1/reports", status_code=202)
    async def upload(
        photo: Annotated[UploadFile, File()],
        lat: Annotated[str | None, Form()] = None,
        lon: Annotated[str | None, Form()] = None,
    ) -> dict:
        data = await photo.read()
        name = uuid.uuid4().hex
        (out / name).write_bytes(data)
        return {"id": name}

    @app.get("/healthz")
    async def health() -> dict:
        return {"status": "ok"}

    return app


# --- load ------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one load phase measured."""

    label: str
    seconds: float
    latencies_s: list[float]
    codes: dict[int, int]
    ids: list[str]
    unqueued: list[str]
    # CPU seconds in the measured phase: the server's processes, this load generator, and the
    # fraction of the machine's CPU that was busy (None where /proc is not there to ask).
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    busy: float | None = None

    @property
    def accepted(self) -> int:
        """Uploads answered 202."""
        return self.codes.get(202, 0)

    def rate(self) -> float:
        """Accepted uploads per second."""
        return self.accepted / self.seconds

    def line(self) -> str:
        """One line of numbers."""
        lat = sorted(self.latencies_s)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000 if lat else float("nan")
        other = {c: n for c, n in self.codes.items() if c != 202}
        return (
            f"{self.label:<10} {self.accepted:6d} accepted in {self.seconds:4.1f} s = "
            f"{self.rate():6.1f}/s · p50 {p50:6.1f} ms · p99 {p99:6.1f} ms"
            + (f" · other answers {other}" if other else "")
        )

    def cpu_line(self) -> str | None:
        """Where the machine's CPU went, per accepted upload."""
        if self.server_cpu_s is None or self.client_cpu_s is None or not self.accepted:
            return None
        per = 1000 / self.accepted
        busy = f" · machine {self.busy:.0%} busy" if self.busy is not None else ""
        return (
            f"{self.label:<10} CPU per upload: server {self.server_cpu_s * per:5.2f} ms, "
            f"load generator {self.client_cpu_s * per:5.2f} ms{busy}"
        )


async def _load(
    url: str, uploads: Uploads, seconds: float, concurrency: int, label: str, keepalive: bool = True
) -> Result:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    ids: list[str] = []
    unqueued: list[str] = []
    keep = concurrency if keepalive else 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=keep)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        end = time.monotonic() + seconds
        bar = tqdm(desc=label, unit="upload", leave=False)

        async def one_client() -> None:
            while time.monotonic() < end:
                body = uploads.next()
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers=headers)
                    code = r.status_code
                    if code == 202:
                        answer = r.json()
                        ids.append(answer["id"])
                        if not answer.get("queued", True):
                            unqueued.append(answer["id"])
                except httpx.HTTPError:
                    code = 0
                latencies.append(time.perf_counter() - t0)
                codes[code] = codes.get(code, 0) + 1
                bar.update()

        start = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        took = time.monotonic() - start
        bar.close()
    return Result(label, took, latencies, codes, ids, unqueued)


def _measured(
    url: str, uploads: Uploads, seconds: float, concurrency: int, label: str, server: Proc
) -> Result:
    """The measured phase, with the CPU each side used in it."""
    s0, c0, m0 = server.cpu_s(), time.process_time(), machine_busy()
    res = asyncio.run(_load(url, uploads, seconds, concurrency, label))
    s1, c1, m1 = server.cpu_s(), time.process_time(), machine_busy()
    if s0 is not None and s1 is not None:
        res.server_cpu_s, res.client_cpu_s = s1 - s0, c1 - c0
    if m0 and m1 and m1[1] > m0[1]:
        res.busy = (m1[0] - m0[0]) / (m1[1] - m0[1])
    return res


def load(
    url: str, uploads: Uploads, seconds: float, concurrency: int, label: str, server: Proc
) -> tuple[Result, Result]:
    """A warm-up, then `concurrency` clients uploading back to back for `seconds`."""
    # A new connection per warm-up request reaches every API process, so each has loaded the
    # city's layers (seconds, on its first upload) before the clock starts.
    # On a busy machine that takes longer than one round: warm up until uploads answer fast.
    # Each phase starts with nothing left to write back from the one before (the bare
    # endpoint leaves ~1 GB of unsynced files, which the next server's fsyncs would wait on).
    os.sync()
    warm = asyncio.run(_load(url, uploads, 4.0, concurrency, f"{label} warm-up", keepalive=False))
    for _ in range(15):
        if warm.latencies_s and statistics.median(warm.latencies_s) < 1.0:
            break
        more = asyncio.run(_load(url, uploads, 4.0, concurrency, f"{label} warm-up", False))
        warm.latencies_s, warm.ids, warm.unqueued = (
            more.latencies_s,
            warm.ids + more.ids,
            warm.unqueued + more.unqueued,
        )
        for code, n in more.codes.items():
            warm.codes[code] = warm.codes.get(code, 0) + n
    os.sync()
    return warm, _measured(url, uploads, seconds, concurrency, label, server)


# --- one backend set -------------------------------------------------------------------------


def serve(env: dict, port: int, workers: int, log: Path) -> Proc:
    """`streetlens serve --no-worker` with `workers` API processes."""
    argv = [sys.executable, "-m", "pipeline.cli", "serve", "--no-worker"]
    return Proc([*argv, "--port", str(port), "--workers", str(workers)], env, log)


class State:
    """The service's store and photo store, read with the same settings the service has."""

    def __init__(self, env: dict) -> None:
        from pipeline.context import Context
        from pipeline.settings import Settings

        prefix = "STREETLENS_"
        kw = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
        self.ctx = Context(Settings(**kw))

    def by_status(self) -> dict[str, int]:
        """Cases by status."""
        from sqlalchemy import func, select

        from pipeline.store import CaseRow

        with self.ctx.store.session() as s:
            q = select(CaseRow.status, func.count()).group_by(CaseRow.status)
            return {k: int(v) for k, v in s.execute(q).tuples()}

    def photos(self) -> int:
        """Photos in the photo store."""
        return self.ctx.media.count()

    def close(self) -> None:
        """Release the store's connections."""
        self.ctx.store.close()


def drain(
    env: dict, state: State, total: int, work: Path, concurrency: int, timeout_s: float
) -> float:
    """Run the detector worker until every case is processed; return how long it took."""
    worker = Proc(
        [sys.executable, "-m", "pipeline.cli", "worker", "--concurrency", str(concurrency)],
        env,
        work / "worker.log",
    )
    start = time.monotonic()
    try:
        with tqdm(total=total, desc="processing", unit="case", leave=False) as bar:
            while time.monotonic() - start < timeout_s:
                by = state.by_status()
                done = sum(by.get(s, 0) for s in FINAL)
                bar.update(done - bar.n)
                if done >= total:
                    break
                if worker.p.poll() is not None:
                    sys.exit(f"the worker ended:\n{worker.log.read_text()[-3000:]}")
                time.sleep(1)
    finally:
        worker.stop()
    return time.monotonic() - start


def run_backend(
    name: str,
    args: argparse.Namespace,
    photos: list[bytes],
    points: list,
    work: Path,
    bare: Result,
) -> None:
    """Load one backend set, drain its queue, check nothing was lost or doubled, print."""
    home = work / name / "home"
    home.mkdir(parents=True)
    backends = make_backends(name, work / name)
    proc = state = None
    try:
        env = env_for(home, backends)
        port = free_port()
        proc = serve(env, port, args.api_workers, work / name / "serve.log")
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/api/v1/reports"
        warm, res = load(
            url, Uploads(photos, points, name), args.seconds, args.concurrency, name, proc
        )
        proc.stop()  # ingestion is over
        proc = None
        ids = warm.ids + res.ids
        unqueued = warm.unqueued + res.unqueued
        if unqueued:  # committed but not queued: what the sweeper in `serve` is for
            sweep_env = dict(env, STREETLENS_RECEIVED_GRACE_S="0")
            sweep = [sys.executable, "-m", "pipeline.cli", "sweep"]
            subprocess.run(sweep, env=sweep_env, cwd=REPO, check=True)
        state = State(env)
        took = 0.0
        if not args.no_drain:
            took = drain(
                env, state, len(ids), work / name, args.worker_concurrency, args.drain_timeout
            )
        by = state.by_status()
        cases, stored = sum(by.values()), state.photos()
        processed = sum(by.get(s, 0) for s in FINAL)
        ok = len(set(ids)) == len(ids) == cases == stored
        ok = ok and (args.no_drain or processed == cases)
        print(f"[{name}] {res.line()}")
        if cpu := res.cpu_line():
            print(f"[{name}] {cpu}")
        print(f"[{name}] ratio to the bare endpoint: {res.rate() / bare.rate():.2f}x")
        print(
            f"[{name}] queued at upload: {len(ids) - len(unqueued)} of {len(ids)}"
            + (" (the rest enqueued by one sweep)" if unqueued else "")
        )
        print(
            f"[{name}] worker: {args.worker_concurrency} process(es), run after the load phase"
            f" (as on separate machines); queue drained in {took:.0f} s"
        )
        print(
            f"[{name}] accepted {len(ids)} (warm-up included) · cases {cases} · stored photos "
            f"{stored} · processed {processed} {dict(sorted(by.items()))} → "
            f"{'nothing lost, nothing doubled' if ok else 'MISMATCH'}"
        )
    finally:
        if proc is not None:
            proc.stop()
        if state is not None:
            state.close()
        backends.close()


def run_bare(args: argparse.Namespace, photos: list[bytes], points: list, work: Path) -> Result:
    """The baseline: the same load against the bare file-writing endpoint."""
    out = work / "bare"
    out.mkdir()
    env = dict(os.environ, BENCH_BARE_DIR=str(out))
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        # The same multi-process server as `streetlens serve` (pipeline/httpserve.py).
        "import sys; sys.path[:0] = ['bench', '.']; from pipeline.httpserve import serve; "
        f"serve('ingest:bare_app', factory=True, host='127.0.0.1', port={port}, "
        f"workers={args.api_workers}, log_level='info', access_log=False)",
    ]
    proc = Proc(argv, env, work / "bare.log")
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")
        warm, res = load(
            f"http://127.0.0.1:{port}/api/v1/reports",
            Uploads(photos, points, "bare"),
            args.seconds,
            args.concurrency,
            "bare",
            proc,
        )
    finally:
        proc.stop()
    stored = sum(1 for _ in out.iterdir())
    print(f"[bare] {res.line()} · files written {stored} = {warm.accepted + res.accepted} accepted")
    if cpu := res.cpu_line():
        print(f"[bare] {cpu}")
    return res


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--backends", default="default,scaled")
    p.add_argument("--api-workers", type=int, default=2, help="uvicorn processes, both servers")
    p.add_argument("--worker-concurrency", type=int, default=2, help="detector worker processes")
    p.add_argument("--drain-timeout", type=float, default=1800.0)
    p.add_argument("--photos", type=int, default=24, help="distinct base photos")
    p.add_argument("--profile", action="store_true", help="also time each upload step")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, stores)")
    p.add_argument("--no-drain", action="store_true", help="skip processing (ingest only)")
    args = p.parse_args(argv)

    from pipeline.settings import Settings

    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="streetlens-bench-"))
    try:
        photos = base_photos(settings.data_dir, args.photos)
        points = city_points()
        mean = statistics.mean(len(x) for x in photos) / 1e6
        print(
            f"ingest bench: {args.seconds:.0f} s per run, {args.concurrency} concurrent clients,"
            f" {args.api_workers} API process(es) per server, {len(photos)} real photos "
            f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({mean:.2f} MB mean), every upload distinct"
        )
        if args.profile:
            from ingest_profile import profile

            profile(photos, points, work)
        bare = run_bare(args, photos, points, work)
        for name in args.backends.split(","):
            run_backend(name.strip(), args, photos, points, work, bare)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
