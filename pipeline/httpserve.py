"""Serve an ASGI app from several processes that share the connections fairly.

Uvicorn's own multi-process mode listens on one socket from every process, and each process's
event loop accepts every connection waiting when it wakes: a burst of connections (a phone
app's pool, a proxy's keep-alive pool, a load test) all lands in one process while the others
idle. Measured with 8 keep-alive clients on 2 processes: 8/0 or 7/1 in five tries out of five,
so one core did the uploads' Python work and the other waited.

Here each process listens on its own socket bound to the same port with SO_REUSEPORT, and the
kernel spreads new connections over the sockets by their address hash. The parent holds the
port (bound, not listening: the kernel sends it nothing), starts the processes, restarts one
that dies, and stops them all on SIGINT/SIGTERM. Where SO_REUSEPORT does not exist (not Linux
or BSD) it falls back to uvicorn's own mode.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from typing import Any

log = logging.getLogger("streetlens.serve")

STARTUP_FAILURE = 3  # uvicorn's exit code when the app cannot start: restarting will not help
CHECK_S = 0.5
STOP_GRACE_S = 15.0
QUICK_DEATH_S, QUICK_DEATHS = 10.0, 3
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _child(app: str, host: str, port: int, kwargs: dict[str, Any]) -> None:
    import uvicorn

    sock = reuseport_socket(host, port)
    config = uvicorn.Config(app, host=host, port=port, **kwargs)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve(app: str, *, host: str, port: int, workers: int, **kwargs: Any) -> int:
    """Run `app` (an import string) in `workers` processes on host:port; the exit status."""
    import uvicorn

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(app, host=host, port=port, workers=workers, **kwargs)
        return 0
    try:
        guard = reuseport_socket(host, port)  # holds the port; port 0 picks one for all
    except OSError as exc:
        log.error("cannot bind %s:%s: %s", host, port, exc)
        return STARTUP_FAILURE
    port = guard.getsockname()[1]
    spawn = multiprocessing.get_context("spawn")

    def start() -> multiprocessing.process.BaseProcess:
        p = spawn.Process(target=_child, args=(app, host, port, kwargs), daemon=False)
        p.start()
        return p

    stop: list[int] = []
    previous = {s: signal.signal(s, lambda sig, _f: stop.append(sig)) for s in _SIGNALS}
    procs = [start() for _ in range(workers)]
    started = [time.monotonic()] * workers
    quick_deaths = 0  # in a row: an app that cannot start would otherwise restart forever
    log.info("serving on http://%s:%s from %d processes (SO_REUSEPORT)", host, port, workers)
    status = 0
    try:
        while not stop:
            time.sleep(CHECK_S)
            for i, p in enumerate(procs):
                if p.is_alive() or stop:
                    continue
                quick = time.monotonic() - started[i] < QUICK_DEATH_S
                quick_deaths = quick_deaths + 1 if quick else 0
                if p.exitcode == STARTUP_FAILURE or quick_deaths >= QUICK_DEATHS:
                    log.error("API process %s could not start the app: stopping", p.pid)
                    stop.append(0)
                    status = STARTUP_FAILURE
                    break
                log.warning("API process %s died (exit %s): starting another", p.pid, p.exitcode)
                procs[i], started[i] = start(), time.monotonic()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_GRACE_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        guard.close()
        for s, h in previous.items():
            signal.signal(s, h)
    return status
