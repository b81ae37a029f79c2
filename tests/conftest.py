"""Shared fixtures: the real data directory, the served model, a fresh Settings per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require

from pipeline.registry import served_detector
from pipeline.settings import Settings


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory (../shared/data or STREETLENS_DATA_DIR)."""
    d = Settings().data_dir
    require(d.is_dir(), f"real data directory {d} is missing (set STREETLENS_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def served_model() -> Path:
    """The served detector's folder: weights.pt, model.onnx, meta.yaml."""
    m = served_detector(Settings().models_dir)
    assert m.onnx.exists() and m.weights.exists(), f"served model files missing in {m.path}"
    return m.path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One derived-data cache (city layer index) for the whole session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def settings(tmp_path: Path, data_dir: Path, shared_cache: Path) -> Settings:
    """Settings on the embedded backends in a fresh home folder."""
    return Settings(home=tmp_path / "home", data_dir=data_dir, cache_dir=shared_cache)
