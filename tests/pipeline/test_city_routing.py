"""City packs: Cambridge routes by category and road owner; bad packs fail clearly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from pipeline.city import load_city_pack
from pipeline.errors import ConfigError
from pipeline.settings import Settings

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def city():
    return load_city_pack(Settings().cities_dir / "cambridge-ma")


def test_pothole_on_city_street_goes_to_public_works(city) -> None:
    r = city.route(
        category="pothole", severity="high", road_owner="city", in_jurisdiction=True, now=NOW
    )
    assert "Public Works" in r.department and not r.external
    assert r.due_at == NOW + timedelta(hours=r.sla_hours)
    assert (
        r.priority
        < city.route(
            category="pothole", severity="low", road_owner="city", in_jurisdiction=True, now=NOW
        ).priority
    )


def test_pothole_on_state_parkway_goes_to_the_state(city) -> None:
    r = city.route(
        category="pothole", severity="medium", road_owner="state-dcr", in_jurisdiction=True, now=NOW
    )
    assert r.external and "DCR" in r.department


def test_graffiti_on_state_road_stays_with_the_city(city) -> None:
    r = city.route(
        category="graffiti", severity=None, road_owner="state-dcr", in_jurisdiction=True, now=NOW
    )
    assert "Graffiti" in r.department


def test_outside_jurisdiction_and_catch_all(city) -> None:
    out = city.route(
        category="pothole", severity=None, road_owner=None, in_jurisdiction=False, now=NOW
    )
    assert out.department == "outside-jurisdiction"
    other = city.route(
        category="other", severity=None, road_owner=None, in_jurisdiction=True, now=NOW
    )
    assert "Triage" in other.department


def test_services_map_detector_classes(city) -> None:
    assert city.service_for_class("pothole") == "pothole"
    assert city.service_for_class("graffiti") == "graffiti"
    assert city.service_for_class("unicorn") is None


def _write(tmp_path: Path, spec: dict) -> Path:
    d = tmp_path / "x"
    d.mkdir()
    (d / "city.yaml").write_text(yaml.safe_dump(spec))
    return d


def test_bad_packs_fail_with_the_key_to_fix(tmp_path: Path, city) -> None:
    with pytest.raises(ConfigError, match="no city pack"):
        load_city_pack(tmp_path / "nowhere")
    spec = dict(city.spec)
    spec.pop("crs")
    with pytest.raises(ConfigError, match="'crs'"):
        load_city_pack(_write(tmp_path, spec))
    spec = dict(city.spec, routing=[{"when": {"category": "pothole"}, "department": "X"}])
    (tmp_path / "x" / "city.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="catch-all"):
        load_city_pack(tmp_path / "x")
