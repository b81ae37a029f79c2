"""Ingest benchmark: concurrent ~1 MB photo uploads over real HTTP to `streetlens serve`, next
to a bare FastAPI endpoint that only writes the file (the baseline, measured in the same run).

    python bench/ingest.py [--seconds 8] [--rounds 3] [--concurrency 16] [--warm-up 4]
                           [--backends default,scaled] [--api-workers 2] [--no-drain] [--profile]

Both servers run side by side; for each backend set the load goes `--rounds` times to the bare
endpoint and to StreetLens in turn (the order flips every round, so a drift in the machine's
speed, which moves the bare endpoint between ~200 and ~310/s within minutes, falls on both).
It prints each round's pair, accepted/s and p50/p99 latency over all its phases, and the ratio
to the bare endpoint as the median of the rounds' ratios. Then it runs the detector worker(s)
until the queue drains (after the load, as on separate machines: on a small machine the worker
would compete with ingestion; ~3 s a photo on 2 cores, so drain small loads) and checks that
accepted = cases = stored photos = processed. `default` is SQLite (also the queue: no broker)
+ a local folder; `scaled` is a private PostgreSQL + PostGIS, a private redis-server and S3 on
moto's server. `--profile` times each step of the upload path in-process.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Annotated

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi import FastAPI, File, Form, UploadFile  # noqa: E402
from ingest_backends import Proc, env_for, free_port, make_backends  # noqa: E402
from ingest_load import BOUNDARY, Result, measured, warm_up  # noqa: E402
from tqdm import tqdm  # noqa: E402

CENTER = (42.3736, -71.1190)  # Harvard Square, Cambridge MA
PHOTO_SIZE = (2000, 1500)
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


class Server:
    """A running server under load: its uploads, its warm-up and its measured phases."""

    def __init__(self, label: str, proc: Proc, port: int, uploads: Uploads) -> None:
        self.label, self.proc, self.uploads = label, proc, uploads
        self.url = f"http://127.0.0.1:{port}/api/v1/reports"
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")
        self.warm: Result | None = None
        self.phases: list[Result] = []

    def measure(self, args: argparse.Namespace) -> Result:
        """One measured phase (after the warm-up, the first time)."""
        if self.warm is None:
            self.warm = warm_up(self.url, self.uploads, args.concurrency, self.label, args.warm_up)
        res = measured(
            self.url, self.uploads, args.seconds, args.concurrency, self.label, self.proc
        )
        self.phases.append(res)
        return res

    def total(self) -> Result:
        """The measured phases as one."""
        return Result.pooled(self.label, self.phases)

    def ids(self) -> tuple[list[str], list[str]]:
        """Every accepted upload's case id, and those not queued, warm-up included."""
        parts = [self.warm, *self.phases] if self.warm else self.phases
        return [i for r in parts for i in r.ids], [i for r in parts for i in r.unqueued]


def paired_rounds(args: argparse.Namespace, bare: Server, ours: Server) -> list[float]:
    """`--rounds` pairs of phases, bare and ours in turn (the order flips every round, so a
    drift of the machine's speed falls on both): each pair's ratio of accepted/s."""
    ratios = []
    for r in range(args.rounds):
        pair = (bare, ours) if r % 2 == 0 else (ours, bare)
        got = {srv.label: srv.measure(args) for srv in pair}
        ratio = got[ours.label].rate() / got[bare.label].rate()
        ratios.append(ratio)
        print(
            f"[{ours.label}] round {r + 1}: bare {got[bare.label].rate():6.1f}/s · "
            f"{ours.label} {got[ours.label].rate():6.1f}/s · {ratio:.2f}x"
        )
    return ratios


def run_backend(
    name: str,
    args: argparse.Namespace,
    photos: list[bytes],
    points: list,
    work: Path,
    bare: Server,
) -> None:
    """Load one backend set in rounds beside the bare endpoint, drain its queue, check
    nothing was lost or doubled, print."""
    home = work / name / "home"
    home.mkdir(parents=True)
    backends = make_backends(name, work / name)
    proc = state = None
    try:
        env = env_for(home, backends)
        port = free_port()
        proc = serve(env, port, args.api_workers, work / name / "serve.log")
        ours = Server(name, proc, port, Uploads(photos, points, name))
        ratios = paired_rounds(args, bare, ours)
        proc.stop()  # ingestion is over
        proc = None
        ids, unqueued = ours.ids()
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
        res = ours.total()
        print(f"[{name}] {res.line()}")
        if cpu := res.cpu_line():
            print(f"[{name}] {cpu}")
        print(
            f"[{name}] ratio to the bare endpoint: {statistics.median(ratios):.2f}x "
            f"(median of {len(ratios)} paired rounds; {min(ratios):.2f}-{max(ratios):.2f}x)"
        )
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


def start_bare(args: argparse.Namespace, photos: list[bytes], points: list, work: Path) -> Server:
    """The baseline server: the bare file-writing endpoint."""
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
        return Server("bare", proc, port, Uploads(photos, points, "bare"))
    except BaseException:
        proc.stop()
        raise


def stop_bare(bare: Server, work: Path) -> None:
    """Stop the baseline server and print what all its measured phases saw."""
    bare.proc.stop()
    if not bare.phases:
        return
    res = bare.total()
    stored = sum(1 for _ in (work / "bare").iterdir())
    print(f"[bare] {res.line()} · files written {stored} = {len(bare.ids()[0])} accepted")
    if cpu := res.cpu_line():
        print(f"[bare] {cpu}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="one measured phase")
    p.add_argument("--rounds", type=int, default=3, help="paired bare/ours phases per backend")
    p.add_argument(
        "--warm-up", type=float, default=4.0, help="seconds of warm-up per server (at least)"
    )
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
            f"ingest bench: {args.rounds} rounds of {args.seconds:.0f} s per server, "
            f"{args.concurrency} concurrent clients,"
            f" {args.api_workers} API process(es) per server, {len(photos)} real photos "
            f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({mean:.2f} MB mean), every upload distinct"
        )
        if args.profile:
            from ingest_profile import profile

            profile(photos, points, work)
        bare = start_bare(args, photos, points, work)
        try:
            for name in args.backends.split(","):
                run_backend(name.strip(), args, photos, points, work, bare)
        finally:
            stop_bare(bare, work)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
