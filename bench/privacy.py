"""Privacy benchmark: how many faces and plates the public photo variants blur.

    python bench/privacy.py [--seed 0] [--plate-repeats 2] [--clean 20] [--data-dir DIR]

The labelled set is made here (vision/privacy_synth.py): three face photos that ship inside
installed packages with clear licences (public domain / CC0; see FACE_SOURCES) composited at
5 widths (20-110 px) and 3 tilts (-20, 0, +20 deg) onto real facade and wall photos, and
rendered plates in 4 styles (EU, UK rear, US, dark) at 5 widths (36-140 px), perspective-warped
on a bumper, composited onto real road photos; every photo is JPEG-compressed like a phone's.

A face or plate counts as PROTECTED when at least 80% of its labelled polygon lies inside the
blurred area. False blur: the share of each clean photo (no composite; real street photos, which
may themselves hold a few real people or cars) that gets blurred.

Each finder runs once per photo and its boxes are kept, so every combination below is scored on
the same detections; CPU seconds are process time (one thread), the cost that contention on a
shared machine does not inflate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.settings import Settings  # noqa: E402
from vision import privacy as P  # noqa: E402
from vision.privacy_synth import FACE_SOURCES, Sample, build_set, covered_fraction  # noqa: E402

PROTECTED_COVER = 0.8

COMBOS = {
    # name: (face finders, plate finders)
    "opencv baseline (frontal face + plate cascade)": (("haar_frontal",), ("cascade_ru",)),
    "torch-free default": (
        tuple(n for n in P.DEFAULT_FACE_FINDERS if n != "mtcnn"),
        P.DEFAULT_PLATE_FINDERS,
    ),
    "default with MTCNN": (P.DEFAULT_FACE_FINDERS, P.DEFAULT_PLATE_FINDERS),
    "MTCNN alone (faces)": (("mtcnn",), ()),
    "all finders": (tuple(P.FACE_FINDERS), P.DEFAULT_PLATE_FINDERS),
}


def _run_finders(
    samples: list[Sample], face_finders: tuple[str, ...]
) -> tuple[list[dict], dict[str, float]]:
    import cv2

    cv2.setNumThreads(1)
    boxes: list[dict] = []
    cpu: dict[str, float] = {}
    faces = face_finders
    for smp in samples:
        found = {}
        for name in faces:
            t = time.process_time()
            found[name] = P.find_faces(smp.rgb, finders=(name,))[0]
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - t
        for name in P.PLATE_FINDERS:
            t = time.process_time()
            found[name] = P.find_plates(smp.rgb, finders=(name,))
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - t
        boxes.append(found)
    return boxes, {k: v / max(1, len(samples)) for k, v in cpu.items()}


def _regions(found: dict, faces: tuple[str, ...], plates: tuple[str, ...]) -> P.PrivateRegions:
    f = [found[n] for n in faces if n in found]
    p = [found[n] for n in plates]
    return P.PrivateRegions(
        faces_xyxy=np.concatenate(f) if f else np.zeros((0, 4)),
        plates_xyxy=np.concatenate(p) if p else np.zeros((0, 4)),
        face_method="+".join(faces),
    )


def _score(samples, boxes, clean, clean_boxes, faces, plates) -> dict:
    hits: dict[str, list[tuple[str, bool]]] = {"face": [], "plate": []}
    for smp, found in zip(samples, boxes, strict=True):
        mask = _regions(found, faces, plates).mask(smp.rgb.shape)
        for poly in smp.faces:
            hits["face"].append((smp.name, covered_fraction(mask, poly) >= PROTECTED_COVER))
        for poly in smp.plates:
            hits["plate"].append((smp.name, covered_fraction(mask, poly) >= PROTECTED_COVER))
    false_area = [
        float(_regions(found, faces, plates).mask(smp.rgb.shape).mean())
        for smp, found in zip(clean, clean_boxes, strict=True)
    ]
    return {"hits": hits, "false_area": np.array(false_area)}


def _recall(hits: list[tuple[str, bool]], key: str = "") -> str:
    sel = [ok for name, ok in hits if key in name]
    return f"{np.mean(sel):.0%} ({sum(sel)}/{len(sel)})" if sel else "n/a"


def main() -> None:
    """Build the set, run every finder once, print recall and false blur per combination."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plate-repeats", type=int, default=2)
    ap.add_argument("--clean", type=int, default=20)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--no-mtcnn", action="store_true", help="skip MTCNN even when installed")
    ap.add_argument(
        "--all-finders", action="store_true", help="also the alt2 and tilted face cascades"
    )
    args = ap.parse_args()
    data_dir = args.data_dir or Settings().data_dir
    samples, clean = build_set(
        data_dir, seed=args.seed, plate_repeats=args.plate_repeats, n_clean=args.clean
    )
    use_mtcnn = not args.no_mtcnn and P.mtcnn_available()
    print(
        f"set: {sum(len(s.faces) for s in samples)} faces, {sum(len(s.plates) for s in samples)}"
        f" plates, {len(clean)} clean photos (seed {args.seed}); protected = >= "
        f"{PROTECTED_COVER:.0%} of the labelled polygon blurred; MTCNN: {use_mtcnn}"
    )
    print("face sources: " + "; ".join(f"{s.name}: {s.licence}" for s in FACE_SOURCES))
    t0 = time.perf_counter()
    face_finders = tuple(P.FACE_FINDERS if args.all_finders else P.DEFAULT_FACE_FINDERS)
    face_finders = tuple(n for n in face_finders if use_mtcnn or n != "mtcnn")
    boxes, cpu = _run_finders(samples, face_finders)
    clean_boxes, _ = _run_finders(clean, face_finders)
    wall = time.perf_counter() - t0
    print(f"finders ran on {len(samples) + len(clean)} photos in {wall:.0f} s wall")
    print("CPU s per photo by finder: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    for name, (faces, plates) in COMBOS.items():
        if not set(faces) <= set(face_finders):
            print(f"\n== {name}: skipped (finders not run: MTCNN missing or no --all-finders)")
            continue
        r = _score(samples, boxes, clean, clean_boxes, faces, plates)
        fa = r["false_area"]
        cost = sum(cpu[n] for n in (*faces, *plates))
        print(
            f"\n== {name}  [{'+'.join(faces)} | {'+'.join(plates) or '-'}]  {cost:.2f} CPU s/photo"
        )
        print(
            f"faces recall {_recall(r['hits']['face'])}; by width: "
            + ", ".join(
                f"{w}px {_recall(r['hits']['face'], f'-{w}px-')}" for w in (20, 32, 48, 72, 110)
            )
            + "; by source: "
            + ", ".join(f"{s.name} {_recall(r['hits']['face'], s.name)}" for s in FACE_SOURCES)
        )
        if plates:
            print(
                f"plates recall {_recall(r['hits']['plate'])}; by width: "
                + ", ".join(
                    f"{w}px {_recall(r['hits']['plate'], f'-{w}px-')}"
                    for w in (36, 50, 70, 100, 140)
                )
                + "; by style: "
                + ", ".join(
                    f"{s} {_recall(r['hits']['plate'], f'plate-{s}-')}"
                    for s in ("eu", "uk_rear", "us", "dark")
                )
            )
        print(
            f"false blur on clean photos: mean {fa.mean():.1%} of the area, "
            f"median {np.median(fa):.1%}, p90 {np.quantile(fa, 0.9):.1%}"
        )
    base = sum(cpu[n] for n in ("haar_frontal", "cascade_ru"))
    full = sum(
        v for k, v in cpu.items() if k in (*P.DEFAULT_FACE_FINDERS, *P.DEFAULT_PLATE_FINDERS)
    )
    print(f"\ncost ratio default / opencv baseline: {full / base:.1f}x CPU")


if __name__ == "__main__":
    main()
