"""The ingest benchmark's load: concurrent clients uploading back to back over real HTTP, and
what one load phase measured (accepted/s, latencies, where the machine's CPU went)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from typing import Protocol

import httpx
from ingest_backends import Proc, machine_busy
from tqdm import tqdm

BOUNDARY = "streetlens-bench-7d1f"


class Bodies(Protocol):
    """An endless supply of request bodies (ingest.Uploads)."""

    def next(self) -> bytes: ...


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

    @classmethod
    def pooled(cls, label: str, parts: list[Result]) -> Result:
        """Several phases of one server as one: their uploads, latencies, seconds and CPU."""
        out = cls(label, sum(r.seconds for r in parts), [], {}, [], [])
        for r in parts:
            out.latencies_s += r.latencies_s
            out.ids += r.ids
            out.unqueued += r.unqueued
            for code, n in r.codes.items():
                out.codes[code] = out.codes.get(code, 0) + n
        if all(r.server_cpu_s is not None and r.client_cpu_s is not None for r in parts):
            out.server_cpu_s = sum(r.server_cpu_s or 0.0 for r in parts)
            out.client_cpu_s = sum(r.client_cpu_s or 0.0 for r in parts)
        if all(r.busy is not None for r in parts):
            out.busy = sum((r.busy or 0.0) * r.seconds for r in parts) / out.seconds
        return out

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
    url: str, uploads: Bodies, seconds: float, concurrency: int, label: str, keepalive: bool = True
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


def measured(
    url: str, uploads: Bodies, seconds: float, concurrency: int, label: str, server: Proc
) -> Result:
    """One measured phase, with the CPU each side used in it. It starts with nothing left to
    write back from the phase before (the bare endpoint leaves ~1 GB of unsynced files, which
    the next server's fsyncs would wait on)."""
    os.sync()
    s0, c0, m0 = server.cpu_s(), time.process_time(), machine_busy()
    res = asyncio.run(_load(url, uploads, seconds, concurrency, label))
    s1, c1, m1 = server.cpu_s(), time.process_time(), machine_busy()
    if s0 is not None and s1 is not None:
        res.server_cpu_s, res.client_cpu_s = s1 - s0, c1 - c0
    if m0 and m1 and m1[1] > m0[1]:
        res.busy = (m1[0] - m0[0]) / (m1[1] - m0[1])
    return res


def warm_up(
    url: str, uploads: Bodies, concurrency: int, label: str, seconds: float = 4.0
) -> Result:
    """Uploads until the server answers fast; what it accepted meanwhile still counts."""
    # A new connection per warm-up request reaches every API process, so each has loaded the
    # city's layers (seconds, on its first upload) before the clock starts.
    # On a busy machine that takes longer than one round: warm up until uploads answer fast.
    os.sync()
    warm = asyncio.run(
        _load(url, uploads, seconds, concurrency, f"{label} warm-up", keepalive=False)
    )
    for _ in range(15):
        if warm.latencies_s and statistics.median(warm.latencies_s) < 1.0:
            break
        more = asyncio.run(_load(url, uploads, seconds, concurrency, f"{label} warm-up", False))
        warm.latencies_s, warm.ids, warm.unqueued = (
            more.latencies_s,
            warm.ids + more.ids,
            warm.unqueued + more.unqueued,
        )
        for code, n in more.codes.items():
            warm.codes[code] = warm.codes.get(code, 0) + n
    return warm
