"""`streetlens train` and `streetlens models`: build the training set, train, register."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.settings import REPO_ROOT, Settings

SOURCES_MANIFEST = REPO_ROOT / "datasets" / "sources" / "detector.yaml"


def _cache(settings: Settings) -> Path:
    assert settings.cache_dir is not None
    return settings.cache_dir


def cmd_train(args: argparse.Namespace) -> int:
    """Build the combined dataset from the data directory and train (or resume)."""
    from vision.dataset import build_dataset, load_sources
    from vision.train import prepare_ultralytics, train_detector

    settings = Settings()
    cache = _cache(settings)
    classes, sources = load_sources(args.sources, settings.data_dir)
    summary = build_dataset(classes, sources, cache / "datasets" / "detector")
    for name, counts in summary.images.items():
        inst = summary.instances[name]
        print(f"{name:<24} images {counts}  instances {inst}", file=sys.stderr)
    prepare_ultralytics(cache / "ultralytics")
    run_dir = args.run_dir or cache / "runs" / "detector"
    best = train_detector(
        summary.yaml_path,
        run_dir,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        init_weights=args.init,
        resume=args.resume,
    )
    print(f"trained: {best}\nregister it with: streetlens models add {run_dir} --version vN")
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    """Export a training run to ONNX and register it as a version (optionally served)."""
    from pipeline.modelcard import register_run
    from vision.dataset import load_sources

    settings = Settings()
    classes, sources = load_sources(args.sources, settings.data_dir)
    register_run(
        run_dir=args.run_dir,
        version=args.version,
        models_dir=settings.models_dir,
        cache_dir=_cache(settings),
        classes=classes,
        sources=sources,
        imgsz=args.imgsz,
        serve=args.serve,
    )
    return 0


def cmd_models_list(_: argparse.Namespace) -> int:
    """Print the registered detector versions."""
    import yaml

    reg_path = Settings().models_dir / "registry.yaml"
    reg = yaml.safe_load(reg_path.read_text()) if reg_path.exists() else {}
    det = reg.get("detector") or {}
    for version, entry in (det.get("versions") or {}).items():
        mark = "*" if version == det.get("served") else " "
        metrics = entry.get("metrics", {})
        shown = "  ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{mark} {version:<6} {entry.get('created', '')}  {shown}")
    return 0


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Attach `train` and `models` to the CLI."""
    t = sub.add_parser("train", help="train the detector on the data directory's photo sets")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--imgsz", type=int, default=416)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--sources", type=Path, default=SOURCES_MANIFEST)
    t.add_argument("--run-dir", type=Path)
    t.add_argument("--init", type=Path, help="fine-tune from these weights")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("models", help="the model registry")
    msub = m.add_subparsers(dest="models_command", required=True)
    ml = msub.add_parser("list")
    ml.set_defaults(func=cmd_models_list)
    ma = msub.add_parser("add", help="export and register a training run")
    ma.add_argument("run_dir", type=Path)
    ma.add_argument("--version", required=True)
    ma.add_argument("--imgsz", type=int, default=416)
    ma.add_argument("--sources", type=Path, default=SOURCES_MANIFEST)
    ma.add_argument("--serve", action="store_true", help="make it the served version")
    ma.set_defaults(func=cmd_models_add)
