"""`streetlens evaluate MODEL DATASET`: mAP, P/R and image-level numbers, table and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.settings import Settings

HELP = """Evaluate a detector on labelled photos or on folders of negatives.

MODEL: a registered version (v1), a version folder, ultralytics weights (.pt, needs the train
extra), an ONNX file or an OpenVINO export (.xml or its folder).
DATASET: a source name of the sources manifest, `all` (every source's val split), `frozen`
(models/frozen-split.yaml, checked for drift), a YOLO dataset folder (images/[split]/ and
labels/, classes matched by name through its data.yaml) or a plain folder of photos (no
labels: every detection is a false alarm).

Numbers: box and mask mAP50 and mAP50-95, precision/recall at the serving threshold, per class
and per source, and image-level "is there a pothole/graffiti" precision/recall/F1.
Engine: StreetLens's own numpy scorer (vision/eval_metrics.py) on the model's own detections
(the served runtime: OpenVINO or ONNX Runtime, or ultralytics predict for a .pt) at conf >=
0.001 with the serving NMS; COCO 101-point AP at IoU 0.50:0.95 with ultralytics' matching
rules (tested against ultralytics' own functions), masks compared as polygons on a 160 px
grid. It needs no torch. `yolo val` differs by its rect batches, NMS IoU 0.7 and full masks.
"""


def _meta_near(path: Path) -> dict[str, Any]:
    # Our meta.yaml (names, size, serving threshold) before ultralytics' metadata.yaml.
    for name in ("meta.yaml", "metadata.yaml"):
        for folder in (path if path.is_dir() else path.parent, path.parent, path.parent.parent):
            f = folder / name
            if f.exists():
                meta = yaml.safe_load(f.read_text()) or {}
                if "class_names" not in meta and isinstance(meta.get("names"), dict):
                    meta["class_names"] = [meta["names"][k] for k in sorted(meta["names"])]
                if isinstance(meta.get("imgsz"), list):
                    meta["imgsz"] = meta["imgsz"][0]
                return meta
    return {}


def load_model(
    model: str, settings: Settings, classes: list[str], imgsz: int | None, min_conf: float
) -> tuple[Any, str, float]:
    """(detector at min_conf, description, serving threshold) for a version or a path."""
    from pipeline.registry import load_registry, model_version
    from vision.detector_select import load_detector

    versions = (load_registry(settings.models_dir).get("detector") or {}).get("versions") or {}
    backend = settings.detector_backend
    if model in versions:
        mv = model_version(settings.models_dir, model)
        det = load_detector(mv.path, mv.class_names, backend=backend, conf=min_conf)
        return det, f"{model} ({det.backend})", mv.serving_conf(backend)
    path = Path(model)
    if not path.exists():
        known = ", ".join(versions) or "none"
        raise ConfigError(f"{model} is neither a registered version ({known}) nor a file")
    meta = _meta_near(path)
    names = list(meta.get("class_names") or classes)
    conf = float(meta.get("conf", 0.25))
    if path.suffix == ".pt":
        from vision.detector_torch import UltralyticsSegDetector
        from vision.train import prepare_ultralytics

        assert settings.cache_dir is not None
        prepare_ultralytics(settings.cache_dir / "ultralytics")
        size = imgsz or int(meta.get("imgsz", 416))
        det = UltralyticsSegDetector(path, None, imgsz=size, conf=min_conf)
        return det, f"{path} (ultralytics)", conf
    det = load_detector(path, names, backend=backend, conf=min_conf)
    return det, f"{path} ({det.backend})", conf


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation and print the table (and write JSON)."""
    from vision.dataset import load_sources
    from vision.errors import VisionError
    from vision.evaluate import EVAL_MIN_CONF, collect, folder_set, format_table, report, source_set

    settings = Settings()
    try:
        classes, sources = load_sources(args.sources, settings.data_dir)
        by_name = {s.name: s for s in sources}
        if args.dataset == "all":
            sets = [source_set(s, args.split) for s in sources]
        elif args.dataset == "frozen":
            from pipeline.frozen_split import FROZEN_FILE, check_frozen_split, frozen_sets

            frozen = check_frozen_split(settings.models_dir / FROZEN_FILE, sources)
            sets = frozen_sets(frozen, sources)
        elif args.dataset in by_name:
            sets = [source_set(by_name[args.dataset], args.split)]
        else:
            sets = [folder_set(Path(args.dataset), classes, args.split)]
        det, described, conf = load_model(args.model, settings, classes, args.imgsz, EVAL_MIN_CONF)
        if args.conf is not None:
            conf = args.conf
        stats = collect(det, sets, progress=not args.quiet)
    except VisionError as exc:
        raise ConfigError(str(exc)) from exc
    result = report(stats, det.class_names, conf)
    result |= {"model": described, "dataset": args.dataset}
    print(f"model {described} on {args.dataset}\n{result['engine']}\n")
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {args.json}")
    return 0


def add_evaluate_command(sub: argparse._SubParsersAction, sources_manifest: Path) -> None:
    """Attach `evaluate` to the CLI."""
    e = sub.add_parser(
        "evaluate",
        help="mAP, P/R and image-level numbers of a model on photo sets or negatives",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("model", help="registered version, .pt, .onnx or OpenVINO export")
    e.add_argument("dataset", help="source name, all, frozen, YOLO folder or folder of photos")
    e.add_argument("--json", type=Path, help="also write the full numbers as JSON here")
    e.add_argument("--split", default="val", help="split of sources and YOLO folders (val)")
    e.add_argument("--conf", type=float, help="threshold for P/R (default: the model's own)")
    e.add_argument("--imgsz", type=int, help="input size for .pt weights (default: 416)")
    e.add_argument("--sources", type=Path, default=sources_manifest)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)
