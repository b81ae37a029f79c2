"""Fixtures for the vision tests."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(scope="session")
def ultralytics_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """ultralytics set up offline (call before importing it); skip where it is not installed."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics (the 'train' extra) is not installed")
    from vision.train import prepare_ultralytics

    prepare_ultralytics(tmp_path_factory.mktemp("ultralytics"))
