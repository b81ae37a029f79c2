"""Measuring benchmark: area error per method on the rendered ground-truth set.

    python bench/measure.py [--n 60] [--seed 0] [--samples 256] [--cache-dir DIR]

Cases come from vision.groundtruth (real road and facade textures under known cameras). For
each method it prints the median and p90 of |area error| and how often the 5-95% interval
holds the truth, with the true outline; then the same with the served detector's outline
when models/registry.yaml serves one (skipped with a note otherwise), and with a loose box
refined by GrabCut (the self-tag path). Every method gets the photo with the pose, as the app
sends both: the ground plane fuses the pose with a hand-held height prior and with the tilt
read off the road's texture (vision/measure_tilt.py). Targets (the issue):
marker <= 3% median; exact pose <= 5% median; with pose noise of 5 deg and 0.2 m, coverage
>= 80% and median <= 15%.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.errors import ConfigError  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from vision.groundtruth import TruthCase, generate  # noqa: E402
from vision.image import decode  # noqa: E402
from vision.marker import find_marker  # noqa: E402
from vision.measure import Pose  # noqa: E402
from vision.measure_best import measure_best  # noqa: E402
from vision.measure_outline import refine_box  # noqa: E402
from vision.measure_scale import ScaleBar  # noqa: E402
from vision.types import Measurement  # noqa: E402

POSE_NOISE_DEG, HEIGHT_NOISE_M, CLICK_NOISE_PX = 5.0, 0.2, 2.0
TARGETS = {
    "marker": "median <= 3%",
    "ground-plane, exact pose": "median <= 5%",
    "ground-plane, pose noise": "median <= 15%, coverage >= 80%",
}


def exact_pose(c: TruthCase) -> Pose:
    """The true pose with no uncertainty."""
    p = c.pose
    return Pose(p["camera_height_m"], p["pitch_deg"], p["roll_deg"], 0.0, 0.0, 0.0, "truth")


def noisy_pose(c: TruthCase, rng: np.random.Generator) -> Pose:
    """The pose as a phone might report it: 5 deg and 0.2 m off (1 sigma), and saying so."""
    p = c.pose
    return Pose(
        float(np.clip(p["camera_height_m"] + rng.normal(0, HEIGHT_NOISE_M), 0.3, 5.0)),
        float(np.clip(p["pitch_deg"] + rng.normal(0, POSE_NOISE_DEG), -89.0, 89.0)),
        float(p["roll_deg"] + rng.normal(0, POSE_NOISE_DEG)),
        HEIGHT_NOISE_M,
        POSE_NOISE_DEG,
        POSE_NOISE_DEG,
        "device",
    )


def runs(c: TruthCase, poly: np.ndarray, rng: np.random.Generator, samples: int):
    """(row name, Measurement) for every method this case can test, on the given outline."""
    img = decode(c.jpeg)
    cap, surface = img.capture, c.surface
    # The photo goes with the pose, as the app sends both: the ground plane reads the tilt off it.
    common = {"surface": surface, "samples": samples, "rgb": img.rgb}
    if c.marker:
        sighting = find_marker(img.rgb)
        m = (
            measure_best(poly, cap, marker=sighting, pose=noisy_pose(c, rng), **common)
            if sighting is not None
            else Measurement("pixels-only", 0.0, assumptions="marker not found")
        )
        yield "marker", m
    noisy = noisy_pose(c, rng)
    if surface == "ground":
        yield "ground-plane, exact pose", measure_best(poly, cap, pose=exact_pose(c), **common)
        yield "ground-plane, pose noise", measure_best(poly, cap, pose=noisy, **common)
    else:
        yield "wall-distance, default 4+-2 m", measure_best(poly, cap, pose=noisy, **common)
        # The true distance: what is left is the wall's turn and the camera's tilt.
        yield (
            "wall-distance, true distance +-25%",
            measure_best(poly, cap, pose=noisy, wall_distance_m=c.wall_distance_m, **common),
        )
    ends = c.scale_points_px + rng.normal(0, CLICK_NOISE_PX, (2, 2))
    bar = ScaleBar(tuple(ends[0]), tuple(ends[1]), c.scale_length_m, click_sigma_px=3.0)
    yield (
        f"user-scale ({surface}), pose noise",
        measure_best(poly, cap, pose=noisy, scale=bar, **common),
    )


def detector_outline(detector, c: TruthCase) -> np.ndarray | None:
    """The served detector's outline that overlaps the true one most (None if none does)."""
    import cv2

    img = decode(c.jpeg)
    dets = detector.detect(img.rgb)
    truth = np.zeros(img.rgb.shape[:2], np.uint8)
    cv2.fillPoly(truth, [np.round(c.polygon_px - 0.5).astype(np.int32)], 1)
    best, best_iou = None, 0.0
    for poly in dets.polygons:
        m = np.zeros_like(truth)
        cv2.fillPoly(m, [np.round(np.asarray(poly) - 0.5).astype(np.int32)], 1)
        iou = (m & truth).sum() / max(1, (m | truth).sum())
        if iou > best_iou:
            best, best_iou = np.asarray(poly, float), iou
    return best if best_iou > 0.1 else None


def table(title: str, rows: dict[str, list[tuple[float | None, bool]]]) -> None:
    """Print median/p90 |area error| and interval coverage per method."""
    print(f"\n{title}")
    print(
        f"{'method':38s} {'n':>4s} {'measured':>8s} {'median':>7s} {'p90':>7s} {'cover':>6s}"
        "  target"
    )
    for name, res in rows.items():
        errs = np.array([e for e, _ in res if e is not None])
        cover = np.mean([c for e, c in res if e is not None]) if len(errs) else float("nan")
        med = np.median(errs) if len(errs) else float("nan")
        p90 = np.percentile(errs, 90) if len(errs) else float("nan")
        print(
            f"{name:38s} {len(res):4d} {len(errs):8d} {med:7.1%} {p90:7.1%} {cover:6.0%}  "
            f"{TARGETS.get(name, '')}"
        )


def score(c: TruthCase, m: Measurement, want: str) -> tuple[float | None, bool]:
    """(|relative area error|, truth inside the interval), or (None, False) if not measured."""
    if m.area_m2 is None or m.area_m2_interval is None or not m.method.startswith(want):
        return None, False
    lo, hi = m.area_m2_interval
    return abs(m.area_m2 / c.area_m2 - 1.0), lo <= c.area_m2 <= hi


def main() -> None:
    """Generate (or load) the set, measure it every way, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    s = Settings()
    cache = args.cache_dir or (s.cache_dir or s.home / "cache") / "bench-measure"
    t0 = time.perf_counter()
    cases = generate(s.data_dir, args.n, seed=args.seed, cache_dir=cache)
    print(f"{len(cases)} ground-truth cases (seed {args.seed}) in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list] = {}
    for c in cases:
        for name, m in runs(c, c.polygon_px, rng, args.samples):
            want = name.split(" ")[0].split(",")[0]
            rows.setdefault(name, []).append(score(c, m, want))
    table("with the true outline (|area error|; cover = truth inside the 5-95% interval)", rows)

    rows = {}
    rng = np.random.default_rng(args.seed)  # the same pose noise as above: comparable rows
    for c in cases:
        img = decode(c.jpeg)
        lo, hi = c.polygon_px.min(0) - 10, c.polygon_px.max(0) + 10  # a loosely drawn box
        box = np.clip(np.r_[lo, hi], 0, [*img.rgb.shape[1::-1]] * 2)
        poly = refine_box(img.rgb, box)
        for name, m in runs(c, poly, rng, args.samples):
            want = name.split(" ")[0].split(",")[0]
            rows.setdefault(name, []).append(score(c, m, want))
    table("with a box drawn 10 px loose, refined by GrabCut (the self-tag path)", rows)

    try:
        from pipeline.context import Context

        detector = Context(s).detector
    except (ConfigError, FileNotFoundError) as exc:
        print(f"\nwith the detector's outline: skipped, no served model ({exc})")
        return
    rows = {}
    rng = np.random.default_rng(args.seed)
    for c in cases:
        poly = detector_outline(detector, c)
        for name, m in runs(c, c.polygon_px if poly is None else poly, rng, args.samples):
            want = name.split(" ")[0].split(",")[0]
            rows.setdefault(name, []).append(
                score(c, m, want) if poly is not None else (None, False)
            )
    table("with the served detector's outline (unmatched cases count as not measured)", rows)


if __name__ == "__main__":
    main()
