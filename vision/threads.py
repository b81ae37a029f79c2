"""How many threads this process's vision libraries may use: all the cores it may run on,
unless several worker processes share them.

`streetlens worker --concurrency N` runs N processes on one machine. Left alone, each one's
torch, OpenCV, ONNX Runtime and OpenVINO start a thread per core, N x cores threads fight for
the cores and their spin-waits burn them: on 2 cores two such workers drained the ingest
bench's queue at 4 s a photo where one did 2.9 s. `share(N)` gives each process its part of the
cores (through STREETLENS_THREADS, which the processes inherit) and `apply()` hands that
budget to the libraries in each process.
"""

from __future__ import annotations

import importlib.util
import os

ENV = "STREETLENS_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (os.cpu_count() is the host's; a container or
    taskset may allow fewer)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def budget() -> int:
    """Threads for one library call here: STREETLENS_THREADS when set (at most the usable
    cores), else every usable core."""
    cores = usable_cores()
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return cores
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be a whole number of threads, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"{ENV} must be at least 1, got {n}")
    return min(n, cores)


def share(workers: int) -> int:
    """Split the usable cores between `workers` processes started after this call (unless
    STREETLENS_THREADS says otherwise already); the budget each will have."""
    if workers > 1 and not os.environ.get(ENV, "").strip():
        os.environ[ENV] = str(max(1, usable_cores() // workers))
    return budget()


def apply() -> int:
    """Give this process's budget to OpenCV and torch (ONNX Runtime and OpenVINO read it
    through `budget()` when a detector is built)."""
    import cv2

    n = budget()
    cv2.setNumThreads(n)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)
    return n
