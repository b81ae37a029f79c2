"""Worker processes split the cores instead of each starting a thread per core."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vision import threads


def test_budget_is_every_usable_core_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.budget() == threads.usable_cores() >= 1
    monkeypatch.setenv(threads.ENV, "1")
    assert threads.budget() == 1
    monkeypatch.setenv(threads.ENV, "4096")  # never more than the cores it may run on
    assert threads.budget() == threads.usable_cores()
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(ValueError, match=threads.ENV):
            threads.budget()


def test_share_splits_the_cores_between_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = threads.usable_cores()
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.share(1) == cores and threads.ENV not in os.environ  # one worker: all
    assert threads.share(2) == max(1, cores // 2) == int(os.environ[threads.ENV])
    monkeypatch.setenv(threads.ENV, "1")  # an operator's own setting wins
    assert threads.share(2 * cores) == 1
    monkeypatch.setenv(threads.ENV, "")
    assert threads.share(10 * cores) == 1  # more workers than cores: one thread each


def test_a_worker_process_gives_its_share_to_opencv_and_torch() -> None:
    code = (
        "import cv2, torch; from vision import threads; n = threads.apply(); "
        "print(n, cv2.getNumThreads(), torch.get_num_threads())"
    )
    env = dict(os.environ, **{threads.ENV: "1"})
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["1", "1", "1"]
