"""POST /api/v1/measure: a drawn outline in, a Measurement out; bad input a 422, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline.settings import Settings
from vision.groundtruth import TruthCase, generate

CITY_HALL = {"lat": "42.36630", "lon": "-71.10560"}


@pytest.fixture(scope="module")
def case(data_dir: Path) -> TruthCase:
    """A rendered road photo with a pothole and the crew card beside it."""
    c = generate(data_dir, 1, seed=3)[0]
    assert c.marker and c.surface == "ground"
    return c


@pytest.fixture
def client(settings: Settings) -> TestClient:
    with TestClient(create_app(settings)) as c:
        yield c


def post(client: TestClient, photo: bytes | None, **fields: object):
    files = {"photo": ("p.jpg", photo, "image/jpeg")} if photo is not None else None
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return client.post("/api/v1/measure", files=files, data=data)


def pose(c: TruthCase) -> dict[str, str]:
    return {
        "pitch_deg": f"{c.pose['pitch_deg']:.3f}",
        "roll_deg": f"{c.pose['roll_deg']:.3f}",
        "camera_height_m": f"{c.pose['camera_height_m']:.3f}",
    }


def test_polygon_with_the_card_in_view_is_measured_by_the_marker(client, case) -> None:
    r = post(client, case.jpeg, polygon=case.polygon_px.tolist())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "marker"
    assert body["area_m2"] == pytest.approx(case.area_m2, rel=0.05)
    lo, hi = body["area_m2_interval"]
    assert lo <= body["area_m2"] <= hi
    assert len(body["marker_corners_px"]) == 4 and body["image_size"] == [1600, 1200]


def test_box_is_refined_to_the_outline_then_measured_from_the_pose(client, case) -> None:
    x0, y0 = case.polygon_px.min(0) - 15
    x1, y1 = case.polygon_px.max(0) + 15
    r = post(client, case.jpeg, box=[x0, y0, x1, y1], marker="false", **pose(case))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "ground-plane"
    assert len(body["polygon_px"]) > 4  # an outline, not the box
    assert body["area_m2"] == pytest.approx(case.area_m2, rel=0.25)


def test_scale_points_give_user_scale(client, case) -> None:
    r = post(
        client,
        case.jpeg,
        polygon=case.polygon_px.tolist(),
        marker="no",
        scale_points=case.scale_points_px.tolist(),
        scale_length_m=str(case.scale_length_m),
        **pose(case),
    )
    assert r.status_code == 200, r.text
    assert r.json()["method"] == "user-scale"
    assert r.json()["area_m2"] == pytest.approx(case.area_m2, rel=0.1)


def test_a_stored_reports_photo_can_be_measured_by_case_id(client, case) -> None:
    r = client.post(
        "/api/v1/reports", files={"photo": ("p.jpg", case.jpeg, "image/jpeg")}, data=CITY_HALL
    )
    assert r.status_code == 202, r.text
    m = post(client, None, case_id=r.json()["id"], polygon=case.polygon_px.tolist())
    assert m.status_code == 200, m.text
    assert m.json()["method"] == "marker"
    assert post(client, None, case_id="nope", polygon=[[0, 0], [1, 0], [1, 1]]).status_code == 404


def test_an_app_that_measured_its_height_gets_a_narrower_interval(client, case) -> None:
    """camera_height_sigma_m: a height from an AR ground plane (a few cm) instead of the
    stature guess (0.2 m): the same outline, a tighter honest interval around the truth."""
    tri = case.polygon_px.tolist()

    def width(**extra: str) -> tuple[float, dict]:
        r = post(client, case.jpeg, polygon=tri, marker="false", **pose(case), **extra)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["method"] == "ground-plane"
        lo, hi = body["area_m2_interval"]
        return hi / lo, body

    guessed, _ = width()
    measured, body = width(camera_height_sigma_m="0.03", tilt_sigma_deg="1")
    assert measured < 0.6 * guessed
    lo, hi = body["area_m2_interval"]
    assert lo <= case.area_m2 <= hi


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "polygon"),
        ({"polygon": "not json"}, "polygon"),
        ({"polygon": [[0, 0], [1, 1]]}, "polygon"),
        ({"polygon": [[0, 0], [9000, 0], [9000, 10]]}, "polygon"),
        ({"box": [10, 10, 5, 5]}, "box"),
        ({"box": [10, 10, 50]}, "box"),
        ({"polygon": [[0, 0], [10, 0], [10, 10]], "surface": "ceiling"}, "surface"),
        ({"polygon": [[0, 0], [10, 0], [10, 10]], "pitch_deg": "steep"}, "pitch_deg"),
        (
            {"polygon": [[0, 0], [10, 0], [10, 10]], "camera_height_sigma_m": "0.03"},
            "camera_height_sigma_m",
        ),
        ({"polygon": [[0, 0], [10, 0], [10, 10]], "tilt_sigma_deg": "1"}, "tilt_sigma_deg"),
        ({"polygon": [[0, 0], [10, 0], [10, 10]], "scale_length_m": "1"}, "scale_points"),
        (
            {"polygon": [[0, 0], [10, 0], [10, 10]], "scale_points": [[0, 0]], "scale_length_m": 1},
            "scale_points",
        ),
    ],
)
def test_bad_fields_are_422_with_the_field(client, case, fields, field) -> None:
    r = post(client, case.jpeg, **fields)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_bad_photo_or_none_is_422(client) -> None:
    tri = [[0, 0], [10, 0], [10, 10]]
    r = post(client, b"not a photo", polygon=tri)
    assert r.status_code == 422 and r.json()["error"] == "photo_rejected"
    r = post(client, None, polygon=tri)
    assert r.status_code == 422 and r.json()["field"] == "photo"


def test_zero_area_outline_is_pixels_only_not_an_error(client, case) -> None:
    r = post(client, case.jpeg, polygon=[[10, 10], [20, 20], [30, 30]])
    assert r.status_code == 200
    assert r.json()["method"] == "pixels-only" and "no area" in r.json()["assumptions"]
    assert np.isfinite(r.json()["area_px"])
