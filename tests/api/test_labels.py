"""Crew-verified labels: a crew member says what a case's photo really shows."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from labelkit import POTHOLE, UPRIGHT, finding, processed_case

from pipeline import accounts, intake


def _as(client: TestClient, role: str) -> tuple[dict[str, str], accounts.Account]:
    store = client.ctx.store  # type: ignore[attr-defined]
    acct = accounts.create_account(store, f"{role}@city.test", "pw-" + "x" * 12, role, log2_n=4)
    token, _ = accounts.issue_token(store, acct, 600)
    return {"Authorization": f"Bearer {token}"}, acct


def _put(client: TestClient, case_id: str, headers: dict, n: int = 0, **body: Any):
    return client.put(f"/api/v1/cases/{case_id}/photos/{n}/labels", json=body, headers=headers)


def _get(client: TestClient, case_id: str, headers: dict, n: int = 0):
    return client.get(f"/api/v1/cases/{case_id}/photos/{n}/labels", headers=headers)


def test_a_crew_member_confirms_draws_and_drops_and_the_newest_set_counts(
    client: TestClient,
) -> None:
    crew, acct = _as(client, "crew")
    cid = processed_case(client.ctx, 1)  # type: ignore[attr-defined]
    missed = [[10, 10], [60, 10], [60, 50], [10, 50]]
    r = _put(
        client,
        cid,
        crew,
        objects=[{"from_finding": 0}, {"class_name": "graffiti", "polygon_px": missed}],
        note="the tag on the wall was not the one it found",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["size_px"] == list(UPRIGHT)  # EXIF orientation applied: upright pixels
    assert body["findings"] == {"0": "confirmed", "1": "false alarm"}
    assert body["by"] == f"crew:{acct.id}"
    assert body["objects"][0] == {
        "class_name": "pothole",
        "polygon_px": [list(p) for p in POTHOLE],
        "from_finding": 0,
    }
    assert body["objects"][1]["polygon_px"] == [[float(x), float(y)] for x, y in missed]
    assert _get(client, cid, crew).json() == body | {"earlier": []}
    # Reclassified, then a second opinion: nothing there at all. The newest set counts and
    # the earlier one is kept, with who said it.
    r = _put(client, cid, crew, objects=[{"from_finding": 1, "class_name": "pothole"}])
    assert r.json()["findings"] == {"0": "false alarm", "1": "is a pothole"}
    analyst, _ = _as(client, "analyst")
    assert _put(client, cid, analyst, objects=[], note="shadow, not a pothole").status_code == 200
    got = _get(client, cid, crew).json()
    assert got["objects"] == [] and got["note"] == "shadow, not a pothole"
    assert got["findings"] == {"0": "false alarm", "1": "false alarm"}
    assert [e["objects"] for e in got["earlier"]] == [2, 1]


def test_a_box_becomes_an_outline(client: TestClient) -> None:
    crew, _ = _as(client, "crew")
    # A finding whose mask came out as a sliver keeps its box when confirmed.
    thin = finding("pothole", [(10.0, 10.0), (50.0, 10.0), (90.0, 10.0)])
    thin = thin.model_copy(update={"bbox_xyxy": (10.0, 8.0, 90.0, 12.0)})
    cid = processed_case(client.ctx, 2, findings=[thin])  # type: ignore[attr-defined]
    r = _put(
        client,
        cid,
        crew,
        objects=[{"class_name": "graffiti", "box_xyxy": [5, 6, 105, 66]}, {"from_finding": 0}],
    )
    assert r.status_code == 200, r.text
    assert r.json()["objects"][0]["polygon_px"] == [[5, 6], [105, 6], [105, 66], [5, 66]]
    assert r.json()["objects"][1]["polygon_px"] == [[10, 8], [90, 8], [90, 12], [10, 12]]
    assert r.json()["findings"] == {"0": "confirmed"}


BAD: list[tuple[str, list[Any], str]] = [
    # 300 px is inside the photo as stored (320 wide) but not upright (240 wide).
    ("outside", [{"class_name": "pothole", "polygon_px": [[0, 0], [300, 0], [0, 50]]}],
     "objects[0].polygon_px"),
    ("two points", [{"class_name": "pothole", "polygon_px": [[0, 0], [10, 0]]}],
     "objects[0].polygon_px"),
    ("in a line", [{"class_name": "pothole", "polygon_px": [[0, 0], [10, 10], [20, 20]]}],
     "objects[0].polygon_px"),
    ("not numbers", [{"class_name": "pothole", "polygon_px": [[0, 0], ["a", 1], [5, 9]]}],
     "objects[0].polygon_px"),
    ("unknown class", [{"class_name": "streetlight", "polygon_px": [[0, 0], [9, 0], [0, 9]]}],
     "objects[0].class_name"),
    ("no class", [{"polygon_px": [[0, 0], [9, 0], [0, 9]]}], "objects[0].class_name"),
    ("two outlines", [{"from_finding": 0, "box_xyxy": [0, 0, 9, 9]}], "objects[0]"),
    ("no outline", [{"class_name": "pothole"}], "objects[0]"),
    ("no such finding", [{"from_finding": 0}, {"from_finding": 7}], "objects[1].from_finding"),
    ("finding as text", [{"from_finding": "0"}], "objects[0].from_finding"),
    ("inverted box", [{"class_name": "graffiti", "box_xyxy": [50, 5, 10, 60]}],
     "objects[0].box_xyxy"),
    ("unknown field", [{"from_finding": 0, "score": 1}], "objects[0]"),
    ("not an object", ["pothole"], "objects[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("why", "objects", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_labels_are_a_422_naming_the_field_and_store_nothing(
    client: TestClient, why: str, objects: list[Any], field: str
) -> None:
    crew, _ = _as(client, "crew")
    cid = processed_case(client.ctx, 3)  # type: ignore[attr-defined]
    r = _put(client, cid, crew, objects=objects)
    assert r.status_code == 422, (why, r.text)
    assert r.json()["field"] == field, (why, r.json())
    assert r.json()["message"]
    assert _get(client, cid, crew).status_code == 404  # nothing was recorded


def test_malformed_bodies_and_missing_photos(client: TestClient) -> None:
    crew, _ = _as(client, "crew")
    ctx = client.ctx  # type: ignore[attr-defined]
    cid = processed_case(ctx, 4)
    assert _put(client, cid, crew, objects="pothole").status_code == 422
    assert _put(client, cid, crew, objects=[], note="x" * 2001).status_code == 422
    many = [{"from_finding": 0}] * 51
    assert _put(client, cid, crew, objects=many).status_code == 422
    r = _put(client, "no-such-case", crew, objects=[])
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = _put(client, cid, crew, n=3, objects=[])  # the report has one photo
    assert r.status_code == 404 and r.json()["field"] == "n"
    assert _put(client, cid, crew, n=9, objects=[]).status_code == 422
    photoless = intake.submit(
        ctx, None, intake.ReportForm(lat=42.3663, lon=-71.1056, category="pothole")
    )
    r = _put(client, photoless, crew, objects=[])
    assert r.status_code == 404 and "no photo" in r.json()["message"]
    assert _get(client, cid, crew).status_code == 404


def test_only_crews_analysts_and_admins_label(client: TestClient) -> None:
    cid = processed_case(client.ctx, 5)  # type: ignore[attr-defined]
    resident, _ = _as(client, "resident")
    assert _put(client, cid, {}, objects=[]).status_code == 401
    assert _put(client, cid, resident, objects=[]).status_code == 403
    assert _get(client, cid, resident).status_code == 403
    admin, _ = _as(client, "admin")
    assert _put(client, cid, admin, objects=[{"from_finding": 0}]).status_code == 200
