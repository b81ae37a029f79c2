"""Register a trained detector: weights, ONNX export, per-source metrics, card, registry."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from vision.dataset import Source


def register_run(
    *,
    run_dir: Path,
    version: str,
    models_dir: Path,
    cache_dir: Path,
    classes: list[str],
    sources: list[Source],
    imgsz: int,
    serve: bool,
) -> Path:
    """Export, evaluate and record one training run as `models/detector/<version>/`."""
    from ultralytics.utils.torch_utils import strip_optimizer

    from vision.evaluate import evaluate_sources, serving_threshold
    from vision.train import export_onnx, prepare_ultralytics

    prepare_ultralytics(cache_dir / "ultralytics")
    weights = run_dir / "weights" / "best.pt"
    if not weights.exists():
        weights = run_dir / "weights" / "last.pt"
    out = models_dir / "detector" / version
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "weights.pt"
    shutil.copyfile(weights, dest)
    strip_optimizer(str(dest))  # an interrupted run's weights still carry the optimizer
    print(f"exporting {dest} to ONNX", file=sys.stderr)
    export_onnx(dest, imgsz, out / "model.onnx")

    print("evaluating per source (val splits)", file=sys.stderr)
    work = cache_dir / "eval" / version
    conf, f1 = serving_threshold(dest, classes, sources, work, imgsz=imgsz)
    # A young model's scores run low; never serve below 0.05 (noise) or above 0.5.
    conf = round(min(0.5, max(0.05, conf)), 3)
    print(f"serving threshold {conf} (box F1 {f1:.3f} on all val splits)", file=sys.stderr)
    metrics = evaluate_sources(dest, classes, sources, work, imgsz=imgsz, conf=conf)
    metrics["_serving"] = {"conf": conf, "box_f1_all_val": f1}
    train_args = yaml.safe_load((run_dir / "args.yaml").read_text())
    epochs_done = _epochs_done(run_dir)
    (out / "meta.yaml").write_text(
        yaml.safe_dump({"class_names": classes, "imgsz": imgsz, "conf": conf}, sort_keys=False)
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "card.md").write_text(
        _card(version, classes, sources, metrics, train_args, epochs_done, conf)
    )

    reg_path = models_dir / "registry.yaml"
    reg = yaml.safe_load(reg_path.read_text()) if reg_path.exists() else {}
    det = reg.setdefault("detector", {})
    versions = det.setdefault("versions", {})
    versions[version] = {
        "path": f"detector/{version}",
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "architecture": train_args.get("model"),
        "imgsz": imgsz,
        "conf": conf,
        "epochs": epochs_done,
        "training_data": [{"name": s.name, "licence": s.licence} for s in sources],
        "metrics": _headline(metrics),
    }
    if serve or "served" not in det:
        det["served"] = version
    reg_path.write_text(yaml.safe_dump(reg, sort_keys=False, allow_unicode=True))
    print(f"registered detector {version} in {reg_path}", file=sys.stderr)
    return out


def _epochs_done(run_dir: Path) -> int:
    results = run_dir / "results.csv"
    if not results.exists():
        return 0
    return max(0, len(results.read_text().strip().splitlines()) - 1)


def _headline(metrics: dict) -> dict[str, float]:
    head = {}
    for name, m in metrics.items():
        if name.startswith("_"):
            continue
        for key in ("mask_map50", "box_map50", "false_alarm_rate"):
            if key in m:
                head[f"{name}.{key}"] = round(float(m[key]), 4)
    return head


def _card(
    version: str,
    classes: list[str],
    sources: list[Source],
    metrics: dict,
    train_args: dict,
    epochs_done: int,
    conf: float,
) -> str:
    rows = []
    for name, m in metrics.items():
        if name.startswith("_"):
            continue
        if "false_alarm_rate" in m:
            rows.append(
                f"| {name} | {m['images']} | — | — | — | — | {m['images_with_detections']} photos "
                f"with a detection ({m['false_alarm_rate']:.1%}) |"
            )
        else:
            rows.append(
                f"| {name} | {m['images']} | {m['box_map50']:.3f} | {m['box_map50_95']:.3f} | "
                f"{m['mask_map50']:.3f} | {m['mask_map50_95']:.3f} | P {m['box_precision']:.2f} / "
                f"R {m['box_recall']:.2f} |"
            )
    data = "\n".join(f"- **{s.name}** — {s.licence}. {s.attribution}" for s in sources)
    return f"""# Detector {version}

Segmentation detector for {", ".join(classes)}: ultralytics `{train_args.get("model")}` trained
from scratch (no hub weights) by `streetlens train`, {epochs_done} epoch(s) of
{train_args.get("epochs")} planned, at {train_args.get("imgsz")} px,
batch {train_args.get("batch")},
on CPU. Served from its ONNX export (`model.onnx`) by ONNX Runtime.

## Serving threshold

Detections are kept from confidence **{conf}**: where box F1 (mean over classes) peaks on all
val splits together, negatives included (clamped to 0.05–0.5).

## Evaluation (val split of each source; negatives at the serving threshold)

| source | val photos | box mAP50 | box mAP50-95 | mask mAP50 | mask mAP50-95 | notes |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Graffiti labels are boxes: they train as 4-point polygons, so graffiti "masks" are boxes and its
mask mAP measures box-shaped masks. Negatives (facades, cracks) have no label files' objects.

## Training data (read in place from the data directory, never copied)

{data}

The graffiti set's licence is not stated by its publisher: a city deploying this model should
clear it or retrain on its own crew-verified photos.

## Limits

Trained briefly on a 2-core CPU; expect misses on photos unlike the training sets (night,
rain, unusual angles). Every detection is reviewed by a person (`needs_review`) before a crew
is sent.
"""
