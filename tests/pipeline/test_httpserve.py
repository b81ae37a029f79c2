"""`streetlens serve --workers N`: the processes share a burst of kept-alive connections (each
listens on its own SO_REUSEPORT socket), one that dies is replaced, an app that cannot start
stops the server instead of restarting forever, and SIGTERM leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONNECTIONS = 16  # all on one of 2 processes by chance: 2 * 2**-16


def _start(app: str, port: int, workers: int, log: Path) -> subprocess.Popen:
    code = (
        f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(REPO)!r}]; "
        "from pipeline.httpserve import serve; "
        f"sys.exit(serve({app!r}, host='127.0.0.1', port={port}, workers={workers}, "
        "log_level='info'))"
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def _children(proc: subprocess.Popen) -> set[int]:
    """The server's API processes (multiprocessing's helper is not one: it runs no app)."""
    found = set()
    for k in psutil.Process(proc.pid).children():
        try:
            if "resource_tracker" not in " ".join(k.cmdline()):
                found.add(k.pid)
        except psutil.Error:  # a killed one, not yet reaped
            continue
    return found


def _listening(pid: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN for c in psutil.Process(pid).net_connections())
    except psutil.Error:
        return False


def _wait_up(url: str, proc: subprocess.Popen, log: Path, workers: int) -> None:
    """Until `workers` API processes each listen on their own socket."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        kids = _children(proc)
        if len(kids) == workers and all(_listening(k) for k in kids):
            assert httpx.get(url, timeout=5).status_code == 200
            return
        time.sleep(0.2)
    pytest.fail("server did not come up:\n" + log.read_text()[-2000:])


async def _burst(url: str, n: int) -> list[int]:
    """n requests at once on n kept-alive connections: which process answered each."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        rs = await asyncio.gather(*[client.get(url) for _ in range(n)])
        return [int(r.text) for r in rs]


@pytest.fixture
def server(tmp_path: Path):
    port, log = free_port(), tmp_path / "serve.log"
    proc = _start("pid_app:app", port, 2, log)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_up(url, proc, log, 2)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_burst_of_connections_is_shared_by_the_processes(server) -> None:
    proc, url, _ = server
    pids = asyncio.run(_burst(url, CONNECTIONS))
    assert set(pids) == _children(proc)  # both processes answered, and only they


def test_a_killed_process_is_replaced_and_sigterm_stops_all(server) -> None:
    proc, url, log = server
    victim = next(iter(_children(proc)))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kids = _children(proc)
        if victim not in kids and len(kids) == 2:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no replacement process:\n" + log.read_text()[-2000:])
    _wait_up(url, proc, log, 2)
    assert set(asyncio.run(_burst(url, CONNECTIONS))) == kids
    assert "died" in log.read_text()
    everyone = [psutil.Process(p) for p in kids]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(everyone, timeout=10)
    assert not alive, f"left behind: {alive}"


def test_an_app_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc = _start("pid_app:no_such_app", free_port(), 2, log)
    try:
        assert proc.wait(timeout=60) == 3, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "could not start the app" in log.read_text()


def test_a_taken_port_is_a_clear_failure(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        log = tmp_path / "serve.log"
        proc = _start("pid_app:app", taken.getsockname()[1], 2, log)
        assert proc.wait(timeout=30) == 3
    assert "cannot bind" in log.read_text()
