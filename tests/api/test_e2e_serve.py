"""End to end: `streetlens serve` (API + Celery worker on the embedded broker) in a real
process; a real photo goes up over HTTP and comes back as a measured, located case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import free_port

from pipeline.context import Context
from pipeline.settings import Settings


@pytest.fixture
def server(tmp_path: Path, data_dir: Path, shared_cache: Path):
    port = free_port()
    env = dict(
        os.environ,
        STREETLENS_HOME=str(tmp_path / "home"),
        STREETLENS_DATA_DIR=str(data_dir),
        STREETLENS_CACHE_DIR=str(shared_cache),
    )
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("server did not come up:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        yield url, tmp_path / "serve.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _photo_the_detector_sees(data_dir: Path, ctx: Context) -> Path:
    from vision.image import decode

    for path in sorted((data_dir / "potholes-seg" / "images" / "val").glob("*.jpg")):
        img = decode(path.read_bytes(), target_long_side=ctx.settings.detect_long_side)
        dets = ctx.detector.detect(img.rgb)
        if any(dets.class_name(i) == "pothole" for i in range(len(dets))):
            return path
    pytest.fail("the served detector finds no pothole in any potholes-seg val photo")


@pytest.mark.slow
def test_photo_over_http_becomes_measured_located_case(
    server: tuple[str, Path], settings: Settings, data_dir: Path
) -> None:
    url, log = server
    ctx = Context(settings)
    photo = _photo_the_detector_sees(data_dir, ctx)
    [(lat, lon, heading, street)] = ctx.geo.sample_street_points(["Massachusetts Ave"], 1, 11)

    r = httpx.post(
        f"{url}/api/v1/reports",
        files={"photo": (photo.name, photo.read_bytes(), "image/jpeg")},
        data={"lat": str(lat), "lon": str(lon), "heading": str(heading), "accuracy_m": "4"},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    case_url = r.json()["url"]

    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        case = httpx.get(case_url, timeout=10).json()
        if not seen or seen[-1] != case["status"]:
            seen.append(case["status"])
        if case["status"] in {"needs_review", "rejected", "failed"}:
            break
        time.sleep(0.25)
    assert case["status"] == "needs_review", (case, log.read_text()[-3000:])
    assert [h["status"] for h in case["history"]] == ["received", "processing", "needs_review"]

    pothole = next(f for f in case["findings"] if f["class_name"] == "pothole")
    m = pothole["measurement"]
    assert m["area_m2"] > 0
    lo, hi = m["area_m2_interval"]
    assert lo <= m["area_m2"] <= hi
    assert m["method"] in {"ground-plane", "marker", "user-scale"}

    place = case["place"]
    assert place["in_jurisdiction"] is True
    assert place["parcel_id"] and place["address"]
    # The object is placed a few metres ahead of the camera along the street it stood on.
    assert place["street_name"] and place["street_distance_m"] < 15, (street, place)
    assert case["category"] == "pothole"
    assert "Public Works" in case["routing"]["department"]
