"""Fixtures: the real Cambridge layers in ../shared/data (read in place), PostGIS databases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from geo.layers import CityGeo, load_city

REPO = Path(__file__).resolve().parents[2]

DATA_DIR = Path(os.environ.get("STREETLENS_DATA_DIR", REPO.parent / "shared" / "data"))
CITY_YAML = REPO / "datasets" / "cities" / "cambridge-ma" / "city.yaml"
CAMBRIDGE = DATA_DIR / "gis" / "cambridge-ma"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (CAMBRIDGE / "parcels.geojson").exists():
        pytest.skip(f"the Cambridge GIS layers are not in {CAMBRIDGE}; set STREETLENS_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def spec() -> dict:
    return yaml.safe_load(CITY_YAML.read_text())


@pytest.fixture(scope="session")
def geo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("geo-cache")


@pytest.fixture(scope="session")
def city(spec: dict, data_dir: Path, geo_cache: Path) -> CityGeo:
    """Cambridge, loaded cold from the source files (this also writes the cache)."""
    return load_city(spec, data_dir, geo_cache)
