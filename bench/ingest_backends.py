"""The ingest benchmark's servers: child processes, a private PostgreSQL + PostGIS, and the
backend sets (`default`: nothing to start; `scaled`: PostGIS, redis-server, moto's S3)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("STREETLENS_PG_BIN", "/usr/lib/postgresql/15/bin"))


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_cpu_s(pgid: int) -> float | None:
    """CPU seconds used so far by the live processes of a process group (Linux /proc)."""
    proc = Path("/proc")
    if not (proc / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU jiffies of the whole machine so far (Linux /proc/stat)."""
    try:
        cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)  # idle + iowait
    return float(sum(cpu) - idle), float(sum(cpu))


class Proc:
    """A child process in its own process group, logging to a file."""

    def __init__(self, argv: list[str], env: dict, log: Path) -> None:
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115  # closed in stop()
        self.p = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the group's live processes have used; None off Linux."""
        return group_cpu_s(self.p.pid)

    def stop(self) -> None:
        """SIGTERM the group; SIGKILL it if it lingers."""
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self._fh.close()

    def wait_http(self, url: str, timeout_s: float = 90) -> None:
        """Wait until GET url answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                sys.exit(f"{self.log} ended early:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        sys.exit(f"{url} did not come up; see {self.log}")


class Postgres:
    """A throwaway PostgreSQL + PostGIS cluster (initdb as the postgres user) on a free port."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            sys.exit(f"PostgreSQL binaries are not in {PG_BIN} (set STREETLENS_PG_BIN)")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="streetlens-bench-pg-"))
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.root / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "pg.log"),
            "-o",
            opts,
            "-w",
            "start",
        )
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute('CREATE DATABASE "streetlens"')
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    def _run(self, *argv: str) -> None:
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(argv)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def url(self, db: str = "streetlens") -> str:
        """The database URL."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        """Stop the cluster and delete it."""
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Backends:
    """The STREETLENS_* settings of one backend set, and what to close afterwards."""

    name: str
    settings: dict[str, str]
    closers: list

    def close(self) -> None:
        """Stop the private servers."""
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()


def make_backends(name: str, work: Path) -> Backends:
    """Start what a backend set needs: nothing for `default`; PostGIS, Redis, S3 for `scaled`."""
    if name == "default":
        return Backends(name, {}, [])
    if name != "scaled":
        sys.exit(f"unknown backend set {name!r}: use default or scaled")
    closers: list = []
    pg = Postgres()
    closers.append(pg.close)
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        sys.exit("redis-server is not installed")
    rport = free_port()
    redis = Proc(
        [
            redis_bin,
            "--port",
            str(rport),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        dict(os.environ),
        work / "redis.log",
    )
    closers.append(redis.stop)
    # moto in its own process: in this one it would share the load generator's GIL.
    mport = free_port()
    moto = Proc(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(mport)],
        dict(os.environ),
        work / "moto.log",
    )
    closers.append(moto.stop)
    moto.wait_http(f"http://127.0.0.1:{mport}/moto-api/")
    host = "127.0.0.1"
    settings = {
        "database_url": pg.url(),
        "broker_url": f"redis://127.0.0.1:{rport}/0",
        "media_backend": "s3",
        "s3_endpoint": f"http://{host}:{mport}",
        "s3_access_key": "bench",
        "s3_secret_key": "bench",
        "s3_region": "us-east-1",
        "s3_bucket": f"bench-{secrets.token_hex(4)}",
    }
    return Backends(name, settings, closers)


def env_for(home: Path, backends: Backends) -> dict:
    """The environment of this run's serve and worker processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETLENS_")}
    keep = ("STREETLENS_DATA_DIR", "STREETLENS_MODELS_DIR", "STREETLENS_CITY")
    env.update({k: os.environ[k] for k in keep if k in os.environ})
    env["STREETLENS_HOME"] = str(home)
    # Every upload comes from one address here: a per-IP limit would measure the limiter.
    env["STREETLENS_RATELIMIT_ENABLED"] = "false"
    env.update({f"STREETLENS_{k.upper()}": v for k, v in backends.settings.items()})
    return env
