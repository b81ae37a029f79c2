"""Real components for the fault tests: a toy detector, `streetlens serve` and `worker`
processes, a private redis-server and a private PostgreSQL + PostGIS, distinct real photos."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import pytest
from helpers import free_port, require
from sqlalchemy import func, select

from pipeline.store import CaseRow, FindingRow, SqlCaseStore

REPO = Path(__file__).resolve().parents[2]
# Around Harvard Square: inside Cambridge MA with a wide margin.
CAMBRIDGE = (42.3736, -71.1190)
FINAL = {"needs_review", "open", "in_progress", "closed", "rejected", "failed"}
PG_BIN = Path(os.environ.get("STREETLENS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1
) -> None:
    """Poll `check` until it holds; fail the test saying what never happened."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


# --- the toy detector ------------------------------------------------------------------------


def build_toy_models_dir(root: Path) -> Path:
    """Train a generated-data detector for one epoch at 64 px and register it as served."""
    from toydata import make_toy_source

    from pipeline.modelcard import register_run
    from vision.dataset import Source, build_dataset
    from vision.train import prepare_ultralytics, train_detector

    toy = make_toy_source(root / "toy")
    sources = [Source(name="toy", path=toy, class_map={0: 0, 1: 1}, licence="generated")]
    classes = ["pothole", "graffiti"]
    summary = build_dataset(classes, sources, root / "combined")
    prepare_ultralytics(root / "ultralytics")
    run = root / "runs" / "toy"
    train_detector(summary.yaml_path, run, epochs=1, imgsz=64, batch=4, workers=0)
    models = root / "models"
    register_run(
        run_dir=run, version="toy", models_dir=models, cache_dir=root / "cache",
        classes=classes, sources=sources, imgsz=64, serve=True,
    )  # fmt: skip
    return models


# --- photos ----------------------------------------------------------------------------------


def base_photos(data_dir: Path, n: int = 4, size: tuple[int, int] | None = None) -> list[bytes]:
    """Real street photos (potholes-seg val) as JPEG bytes, optionally resized to `size`."""
    from PIL import Image

    paths = sorted((data_dir / "potholes-seg" / "images" / "val").glob("*.jpg"))[:n]
    require(len(paths) == n, f"{data_dir}/potholes-seg/images/val has fewer than {n} photos")
    out = []
    for p in paths:
        if size is None:
            out.append(p.read_bytes())
            continue
        img = Image.open(p).convert("RGB").resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def distinct(jpeg: bytes, tag: str) -> bytes:
    """The same photo with a JPEG comment segment after SOI: same pixels, different bytes."""
    assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
    payload = f"streetlens-fault {tag}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def form(i: int) -> dict[str, str]:
    """Form fields for upload i: a point near Harvard Square, a few metres apart."""
    lat, lon = CAMBRIDGE
    return {"lat": f"{lat + (i % 20) * 0.00005:.6f}", "lon": f"{lon + (i // 20) * 0.00005:.6f}"}


# --- processes -------------------------------------------------------------------------------


class Proc:
    """A child process in its own process group, logging to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, **kw: object) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115  # closed in stop()
        self.p = subprocess.Popen(
            argv, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True, **kw
        )

    def alive(self) -> bool:
        """True while the process runs."""
        return self.p.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole group: no cleanup, no ack, like a machine losing power."""
        if self.alive():
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=10)

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM the group, SIGKILL it if it lingers."""
        if self.alive():
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._fh.close()

    def tail(self, n: int = 3000) -> str:
        """The end of its log, for failure messages."""
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def streetlens_env(home: Path, data_dir: Path, cache: Path, models: Path, **extra: str) -> dict:
    """The environment of a serve or worker process (STREETLENS_* settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETLENS_")}
    env.update(
        STREETLENS_HOME=str(home),
        STREETLENS_DATA_DIR=str(data_dir),
        STREETLENS_CACHE_DIR=str(cache),
        STREETLENS_MODELS_DIR=str(models),
        PYTHONUNBUFFERED="1",
    )
    env.update({f"STREETLENS_{k.upper()}": v for k, v in extra.items()})
    return env


def start_serve(env: dict, log: Path, *, worker: bool = False) -> tuple[Proc, str]:
    """`streetlens serve` on a free port (API and sweeper; a worker only if asked)."""
    port = free_port()
    argv = [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)]
    if not worker:
        argv.append("--no-worker")
    proc = Proc(argv, env, log, cwd=REPO)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.alive(), proc.tail()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 60, "streetlens serve to answer /healthz", every_s=0.2)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def start_worker(env: dict, log: Path) -> Proc:
    """`streetlens worker` (one solo-pool Celery worker) in its own process group."""
    return Proc([sys.executable, "-m", "pipeline.cli", "worker"], env, log, cwd=REPO)


def post(client: httpx.Client, url: str, photo: bytes, fields: dict, key: str) -> httpx.Response:
    """One upload, the way the app sends it (with an Idempotency-Key)."""
    return client.post(
        f"{url}/api/v1/reports",
        files={"photo": ("photo.jpg", photo, "image/jpeg")},
        data=fields,
        headers={"Idempotency-Key": key},
    )


# --- the store, as the test reads it ---------------------------------------------------------


def statuses(store: SqlCaseStore) -> dict[str, str]:
    """Every case id and its status."""
    with store.session() as s:
        return dict(s.execute(select(CaseRow.id, CaseRow.status)).tuples().all())


# Seconds of processing allowed per case on top of each test's own budget: a task now also
# blurs the public copy (seconds on a busy 2-core machine); a lost or doubled case still fails.
PER_CASE_S = float(os.environ.get("STREETLENS_FAULT_PER_CASE_S", "10"))


def wait_all_final(store: SqlCaseStore, n: int, timeout_s: float, logs: Iterable[Proc]) -> None:
    """Wait until n cases exist and none is left in received or processing."""
    timeout_s += n * PER_CASE_S

    def done() -> bool:
        st = statuses(store)
        return len(st) == n and all(v in FINAL for v in st.values())

    try:
        wait_until(done, timeout_s, f"{n} cases to finish processing", every_s=0.5)
    except pytest.fail.Exception:
        st = statuses(store)
        counts = {v: list(st.values()).count(v) for v in set(st.values())}
        tails = "\n---\n".join(p.tail(1500) for p in logs)
        pytest.fail(f"not all processed: {len(st)} cases, {counts}\n{tails}")


def assert_processed_once(store: SqlCaseStore, case_id: str) -> None:
    """Exactly one completion (`processing` → a final status) in the history; findings once.

    Later entries with an unchanged status are notes (e.g. "reported again as case …")."""
    case = store.get(case_id)
    hist = [h.status for h in case.history]
    assert case.status in FINAL - {"failed"}, (case.status, case.error, hist)
    assert hist[0] == "received", hist
    completions = [b for a, b in itertools.pairwise(hist) if a == "processing" != b]
    completions = [b for b in completions if b != "received"]  # a release before a retry
    assert completions == [case.status], f"case {case_id} did not finish exactly once: {hist}"
    with store.session() as s:
        idx = list(s.scalars(select(FindingRow.idx).where(FindingRow.case_id == case_id)))
    assert sorted(idx) == list(range(len(case.findings))), f"findings doubled: {idx}"


def finding_rows(store: SqlCaseStore) -> int:
    """All finding rows in the store."""
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(FindingRow)) or 0)


# --- a private redis-server ------------------------------------------------------------------


class RedisServer:
    """redis-server on a free port, no persistence: a restart loses every queued message."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        require(binary is not None, "redis-server is not installed (apt-get install redis-server)")
        assert binary is not None
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.proc: Proc | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The broker URL for STREETLENS_BROKER_URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) it on the same port and wait until it answers."""
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        self.proc = Proc(argv, dict(os.environ), self.workdir / "redis.log")

        def pong() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until(pong, 20, f"redis-server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL it: the queue and every unacked message are gone."""
        assert self.proc is not None
        self.proc.kill9()

    def stop(self) -> None:
        """Stop it if it runs."""
        if self.proc is not None:
            self.proc.stop()


# --- a private PostgreSQL + PostGIS ----------------------------------------------------------


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb as the postgres user) on a free port."""

    def __init__(self) -> None:
        require((PG_BIN / "initdb").exists(), f"PostgreSQL binaries are not in {PG_BIN}")
        share = subprocess.run(
            [str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True, text=True
        ).stdout.strip()
        require(
            (Path(share) / "extension" / "postgis.control").exists(),
            f"PostGIS is not installed for {PG_BIN}: apt-get install postgresql-15-postgis-3",
        )
        self.port = free_port()
        # Under /tmp, not pytest's 0700 tmp_path: the postgres user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="streetlens-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "pg.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            require(shutil.which("runuser") is not None, "runuser is needed to run PostgreSQL")
            shutil.chown(self.root, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres"]
        self._run([*initdb, "--auth=trust", "-E", "UTF8", "--no-sync"])

    def _run(self, argv: list[str]) -> None:
        if self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{argv}: {res.stdout[-2000:]}{res.stderr[-2000:]}"

    def url(self, database: str = "streetlens") -> str:
        """A plain postgresql:// URL (the store picks psycopg 3 itself)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """pg_ctl start on the same port and data (waits until it accepts connections)."""
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c max_connections=100"
        )
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                   "-o", opts, "-w", "-t", "60", "start"])  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` ends every session (their transactions roll back)."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def create_database(self, name: str = "streetlens") -> None:
        """A database with PostGIS in it."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self.url(name), autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    def destroy(self) -> None:
        """Stop the cluster (if up) and delete its files."""
        subprocess.run(
            (["runuser", "-u", "postgres", "--"] if self._as_root else [])
            + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


# --- a real S3 HTTP server (moto's) ----------------------------------------------------------

S3_REGION = "us-east-1"


class MotoS3:
    """moto's S3 (and IAM) HTTP server in this process, on a free port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.running = True

    def stop(self) -> None:
        """Stop serving and close the port (stop() alone leaves it listening)."""
        if self.running:
            self.server.stop()
            self.server._server.server_close()  # type: ignore[union-attr]
            self.running = False

    def settings(self, bucket: str, key: str = "admin", secret: str = "admin") -> dict:
        """The STREETLENS_* settings that put photos in `bucket` on this server."""
        return {
            "media_backend": "s3", "s3_endpoint": self.endpoint, "s3_bucket": bucket,
            "s3_access_key": key, "s3_secret_key": secret, "s3_region": S3_REGION,
        }  # fmt: skip

    def read_only_user(self) -> tuple[str, str]:
        """An IAM user that may read and list buckets but not write: its access key pair."""
        import json
        import secrets

        import boto3

        iam = boto3.client(
            "iam", endpoint_url=self.endpoint, region_name=S3_REGION,
            aws_access_key_id="admin", aws_secret_access_key="admin",
        )  # fmt: skip
        name = f"reader-{secrets.token_hex(4)}"
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                "s3:GetObject", "s3:ListBucket", "s3:GetBucketPolicy", "s3:GetBucketLocation"]}],
        }  # fmt: skip
        iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]
