"""Fixtures for the fault tests: a generated toy detector (so no test depends on the committed
detector's quality) and the environment every serve and worker process of a test shares."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import build_toy_models_dir, streetlens_env
from helpers import require


@pytest.fixture(scope="session")
def toy_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir serving a detector trained 1 epoch at 64 px on generated photos."""
    require(
        importlib.util.find_spec("ultralytics") is not None,
        "the `train` extra (ultralytics) is needed to build the toy detector",
    )
    return build_toy_models_dir(tmp_path_factory.mktemp("toy-detector"))


@pytest.fixture
def fault_env(
    tmp_path: Path, data_dir: Path, shared_cache: Path, toy_models_dir: Path
) -> Callable[..., dict]:
    """Makes the environment of this test's processes: one home, the toy detector, fast
    sweeps; keyword arguments set more STREETLENS_* settings (e.g. broker_url)."""

    def make(**extra: str) -> dict:
        base = {
            "sweep_interval_s": "0.5",
            "received_grace_s": "2",
            # Far above a toy task's ~0.3 s, so only a dead worker's case is ever reclaimed.
            "processing_lease_s": "6",
            # Low-confidence toy detections give every case findings to count.
            "detector_conf": "0.001",
            # The public copy's face search (MTCNN, seconds a photo on a busy CPU) is not what
            # these tests are about: Haar cascades on a small public copy keep tasks short.
            "privacy_mtcnn": "false",
            "public_long_side": "480",
            "thumb_long_side": "160",
        }
        base.update(extra)
        return streetlens_env(tmp_path / "home", data_dir, shared_cache, toy_models_dir, **base)

    return make
