"""Detection benchmark: 12 MP phone JPEGs, bare ultralytics predict vs our decode + detect.

    python bench/detect.py [--n 12] [--rounds 5] [--cache-dir DIR] [--long-side PX]

The photos are real val photos of the data directory (potholes-seg, graffiti-det) upscaled to
4000x3000 and written once to the cache dir (never committed). Baseline: the served version's
weights through `YOLO(weights).predict(file)`, one file at a time, as a script would. Ours:
the file's bytes through vision.image.decode (reduced-size JPEG decoding to the pipeline's
detect_long_side) and the served detector, for each runtime available (ONNX Runtime; OpenVINO
from the version's export, or one made in the cache dir when the train extra is installed; the
same computed in bf16 on a CPU with bf16 units, which `auto` serves there; the same quantized
to 8 bits, `openvino-int8`, served only when the settings ask for it).
Prints photos/s (wall) and CPU ms/photo for each, per-stage ms, and the ratio to the baseline.
Paired rounds: each round runs the baseline and every runtime on the n photos, in an order
reversed every other round; each number is the median of the rounds', the ratio the median of
the rounds' ratios (one pass per runtime, as before session 8, read the machine's drift: the
served runtime's ratio moved 2.0-2.6x between two runs a minute apart).
Targets (the issue): >= 2.5x the baseline and >= 15 photos/s on a 2-core machine. Numbers
are depressed when other processes share the CPUs: the ratio and CPU ms/photo hold better.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.registry import served_detector  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.train_cli import dataset_dir  # noqa: E402
from vision.detector_select import (  # noqa: E402
    load_detector,
    openvino_installed,
    resolve_backend,
)
from vision.image import decode  # noqa: E402
from vision.threads import usable_cores  # noqa: E402

SIZE = (4000, 3000)
TARGET_RATIO, TARGET_RATE = 2.5, 15.0


def make_photos(data_dir: Path, out: Path, n: int) -> list[Path]:
    """n real val photos upscaled to 12 MP JPEGs in out (made once)."""
    out.mkdir(parents=True, exist_ok=True)
    srcs = []
    for name in ("potholes-seg", "graffiti-det"):
        srcs += sorted((data_dir / name / "images" / "val").glob("*.jpg"))[: (n + 1) // 2]
    paths = []
    for i, src in enumerate(srcs[:n]):
        dst = out / f"{i:02d}-{src.stem[:24]}-12mp.jpg"
        if not dst.exists():
            big = cv2.resize(cv2.imread(str(src)), SIZE, interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(dst), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(dst)
    return paths


Stages = dict[str, float]
PhotoFn = Callable[[Path, Stages], None]


def timed(fn: PhotoFn, paths: list[Path]) -> tuple[float, float, Stages]:
    """(photos/s wall, CPU ms/photo, stage ms/photo) over one pass, after one warm-up photo."""
    fn(paths[0], {})
    stages: Stages = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for p in paths:
        fn(p, stages)
    n = len(paths)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return n / wall, cpu / n * 1000, {k: v / n * 1000 for k, v in stages.items()}


def _ours(det, long_side: int) -> PhotoFn:
    """Our path for one photo file: read, reduced-size decode, detect (stage times into st)."""

    def ours(p: Path, st: dict[str, float]) -> None:
        t0 = time.perf_counter()
        data = p.read_bytes()
        t1 = time.perf_counter()
        img = decode(data, target_long_side=long_side)
        t2 = time.perf_counter()
        det.detect(img.rgb)
        t3 = time.perf_counter()
        for k, dt in (("read", t1 - t0), ("decode", t2 - t1), ("detect", t3 - t2)):
            st[k] = st.get(k, 0.0) + dt

    return ours


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument("--long-side", type=int, help="decode size (default: detect_long_side)")
    args = ap.parse_args()
    settings = Settings()
    cache = args.cache_dir or settings.cache_dir
    assert cache is not None
    long_side = args.long_side or settings.detect_long_side
    mv = served_detector(settings.models_dir)
    photos = make_photos(settings.data_dir, cache / "bench" / "detect-12mp", args.n)
    print(f"{len(photos)} photos {SIZE[0]}x{SIZE[1]}, detector {mv.version} at {mv.imgsz} px")

    from vision.train import export_openvino, nncf_installed, prepare_ultralytics

    prepare_ultralytics(cache / "ultralytics")
    from ultralytics import YOLO

    yolo = YOLO(str(mv.weights))

    def baseline(p: Path, st: dict[str, float]) -> None:
        yolo.predict(str(p), imgsz=mv.imgsz, conf=mv.conf, device="cpu", verbose=False)

    fns: dict[str, PhotoFn] = {"baseline": baseline}
    runtimes = {"onnx": (mv.onnx, "onnx")}
    if openvino_installed():
        xml = mv.openvino
        if not xml.exists():
            xml = cache / "bench" / f"openvino-{mv.version}" / "model.xml"
            if not xml.exists():
                export_openvino(mv.weights, mv.imgsz, xml.parent)
        runtimes["openvino"] = (xml, "openvino")
        runtimes["openvino-bf16"] = (xml, "openvino-bf16")
        int8 = mv.openvino_int8
        data_yaml = dataset_dir(cache) / "data.yaml"
        if not int8.exists() and nncf_installed() and data_yaml.exists():
            int8 = cache / "bench" / f"openvino-int8-{mv.version}" / "model.xml"
            if not int8.exists():
                export_openvino(mv.weights, mv.imgsz, int8.parent, int8_data=data_yaml)
        if int8.exists():
            runtimes["openvino-int8"] = (int8, "openvino")
        else:
            print("(no 8-bit export: it needs NNCF, the train extra, and a `streetlens train` run)")
    served = settings.detector_backend
    if served != "openvino-int8":
        served = resolve_backend(mv.path, served)[0]
    for name, (model, backend) in runtimes.items():
        conf = mv.serving_conf(name)  # the 8-bit export has its own threshold
        det = load_detector(model, mv.class_names, backend=backend, conf=conf)
        if name == "openvino-bf16" and det.precision != "bf16":
            print("ours      openvino-bf16: this CPU has no bf16 units (it would run f32)")
            continue
        fns[name] = _ours(det, long_side)

    # Paired rounds: every runtime right after (or before) the baseline in each round, the
    # order reversed every other round, so the machine's drift (other tenants, clocks) falls on
    # both sides of each ratio; the ratio is the median of the rounds'.
    names = list(fns)
    rounds: dict[str, list[tuple[float, float, Stages]]] = {k: [] for k in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rounds[name].append(timed(fns[name], photos))
    base = rounds["baseline"]
    base_rate = statistics.median(x[0] for x in base)
    base_cpu = statistics.median(x[1] for x in base)
    print(
        f"baseline  ultralytics predict(file)       {base_rate:6.2f} photos/s  "
        f"{base_cpu:6.1f} CPU ms/photo  (median of {args.rounds} rounds)"
    )
    for name in names[1:]:
        got = rounds[name]
        ratios = [x[0] / b[0] for x, b in zip(got, base, strict=True)]
        rate = statistics.median(x[0] for x in got)
        cpu = statistics.median(x[1] for x in got)
        ratio = statistics.median(ratios)
        stages = {k: statistics.fmean(x[2][k] for x in got) for k in got[0][2]}
        per = "  ".join(f"{k} {v:.1f}" for k, v in stages.items())
        print(
            f"ours      decode@{long_side} + {name:<13} {rate:6.2f} photos/s  "
            f"{cpu:6.1f} CPU ms/photo  ratio {ratio:4.2f}x (wall; rounds "
            f"{' '.join(f'{x:.2f}' for x in ratios)}), {base_cpu / cpu:4.2f}x (CPU)  "
            f"[ms/photo: {per}]"
        )
        verdict = "meets" if rate >= TARGET_RATE and ratio >= TARGET_RATIO else "misses"
        note = "  (the served runtime here)" if name == served else ""
        goal = f"target >= {TARGET_RATIO}x and >= {TARGET_RATE:.0f} photos/s"
        print(f"          {goal}: {verdict}{note}")
    cores = usable_cores()
    print(f"({cores} cores; load average {os.getloadavg()[0]:.1f} while measuring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
