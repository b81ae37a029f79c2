"""`streetlens train` and `streetlens models`: build the training set, train, register."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.settings import REPO_ROOT, Settings
from vision.errors import DatasetError

SOURCES_MANIFEST = REPO_ROOT / "datasets" / "sources" / "detector.yaml"


def _cache(settings: Settings) -> Path:
    assert settings.cache_dir is not None
    return settings.cache_dir


def dataset_dir(cache: Path) -> Path:
    """Where `streetlens train` writes the combined dataset (its data.yaml included)."""
    return cache / "datasets" / "detector"


def cmd_train(args: argparse.Namespace) -> int:
    """Build the combined dataset from the data directory and train (or resume)."""
    from pipeline.modelcard import RUN_RECORD, run_record_doc
    from vision.dataset import build_dataset, load_added_source, load_sources
    from vision.train import prepare_ultralytics, train_detector

    settings = Settings()
    cache = _cache(settings)
    classes, sources = load_sources(args.sources, settings.data_dir)
    added = [load_added_source(d, classes) for d in args.add_source or []]
    taken = {s.name for s in sources}
    for a in added:
        if a.name in taken:
            raise DatasetError(f"two sources are named {a.name!r}: rename one in its source.yaml")
        taken.add(a.name)
    summary = build_dataset(classes, sources + added, dataset_dir(cache))
    for name, counts in summary.images.items():
        inst = summary.instances[name]
        extra = summary.extra_listings.get(name)
        weight = f"  (+{extra} repeated train listings)" if extra else ""
        print(f"{name:<24} images {counts}  instances {inst}{weight}", file=sys.stderr)
    if args.pack:
        return _pack(args, summary.yaml_path, run_record_doc(args.init, added, sources + added))
    prepare_ultralytics(cache / "ultralytics")
    run_dir = args.run_dir or cache / "runs" / "detector"
    if not args.resume:  # for the card (`models add`): what ultralytics does not record
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_RECORD).write_text(run_record_doc(args.init, added, sources + added))
    best = train_detector(
        summary.yaml_path,
        run_dir,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        init_weights=args.init,
        resume=args.resume,
        hours=args.hours,
    )
    print(f"trained: {best}\nregister it with: streetlens models add {run_dir} --version vN")
    return 0


def _pack(args: argparse.Namespace, data_yaml: Path, record: str) -> int:
    """`streetlens train --pack DIR`: the built set, small, for training on another machine."""
    from pipeline.modelcard import RUN_RECORD
    from vision.pack import pack_dataset

    s = pack_dataset(data_yaml, args.pack, imgsz=args.imgsz, progress=True)
    (args.pack / RUN_RECORD).write_text(record)
    listed = ", ".join(f"{k} {v}" for k, v in s.listings.items())
    print(f"packed {s.photos} photos ({listed} listings), {s.bytes / 2**20:.1f} MiB in {args.pack}")
    init = f" --init {args.init}" if args.init else ""
    print(f"train there: python -m vision.train_pack {args.pack}{init} --hours H --out RUN")
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    """Export a training run (ONNX, OpenVINO), evaluate it, register it; --serve promotes it."""
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
        openvino=not args.no_openvino,
        backend=settings.detector_backend,
        progress=True,
    )
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    """Serve a registered version if it is not worse than the served one on the frozen split."""
    from pipeline.promote import promote
    from vision.dataset import load_sources

    settings = Settings()
    _, sources = load_sources(args.sources, settings.data_dir)
    record = promote(
        settings.models_dir,
        args.version,
        sources,
        force=args.force,
        reason=args.reason or "",
        backend=settings.detector_backend,
    )
    if record:
        print(_comparison(record))
        print(f"{record['decision']}: detector {args.version} is now served")
    return 0


def _comparison(record: dict) -> str:
    cand, base = record["candidate_metrics"], record.get("served_metrics") or {}
    lines = [f"{'metric (frozen split)':<34}{record['candidate']:>10}{record['served'] or '-':>10}"]
    for k, v in cand.items():
        b = base.get(k)
        lines.append(
            f"{k:<34}{'—' if v is None else f'{v:.3f}':>10}{'—' if b is None else f'{b:.3f}':>10}"
        )
    return "\n".join(lines)


def cmd_models_freeze(args: argparse.Namespace) -> int:
    """Write (or check) the frozen evaluation split in models/frozen-split.yaml."""
    from pipeline.errors import ConfigError
    from pipeline.frozen_split import FROZEN_FILE, check_frozen_split, write_frozen_split
    from vision.dataset import load_sources

    settings = Settings()
    _, sources = load_sources(args.sources, settings.data_dir)
    path = settings.models_dir / FROZEN_FILE
    if args.check or (path.exists() and not args.force):
        if not path.exists():
            raise ConfigError(
                f"no frozen split at {path}: write one with `streetlens models freeze`"
            )
        frozen = check_frozen_split(path, sources)
        n = sum(len(v) for v in frozen.files.values())
        print(f"{path}: {n} photos, no drift (digest {frozen.digest[:12]})")
        return 0
    frozen = write_frozen_split(path, sources)
    n = sum(len(v) for v in frozen.files.values())
    print(f"froze {n} val photos of {len(frozen.files)} sources in {path}")
    return 0


def cmd_models_list(_: argparse.Namespace) -> int:
    """Print the registered detector versions, their frozen-split numbers and promotions."""
    from pipeline.registry import load_registry

    models_dir = Settings().models_dir
    det = load_registry(models_dir).get("detector") or {}
    for version, entry in (det.get("versions") or {}).items():
        mark = "*" if version == det.get("served") else " "
        here = (models_dir / entry["path"] / "model.onnx").exists()
        frozen = entry.get("frozen_metrics") or {}
        shown = "  ".join(f"{k}={v:.3f}" for k, v in frozen.items() if v is not None)
        if not shown:
            metrics = entry.get("metrics", {})
            shown = "  ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        files = "" if here else "  (weights not here: only the served version's are kept)"
        print(f"{mark} {version:<6} {entry.get('created', '')}  conf {entry.get('conf')}{files}")
        print(f"         {shown}")
    for p in (det.get("promotions") or [])[-5:]:
        why = f" — {p['reason']}" if p.get("reason") else ""
        worse = f" (worse: {'; '.join(p['regressions'])})" if p.get("regressions") else ""
        print(f"  {p['date']}  {p['candidate']} vs {p['served']}: {p['decision']}{worse}{why}")
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    """Write the city's crew-verified photos as a YOLO dataset (pipeline/labels_export.py)."""
    from pipeline.context import Context
    from pipeline.labels_export import export_verified

    ctx = Context(Settings())
    s = export_verified(ctx, args.out, val_fraction=args.val_fraction, progress=True)
    for split in ("train", "val"):
        print(f"{split:<6} {s.images[split]} photos ({s.negatives[split]} with nothing in them)")
    print("objects " + ", ".join(f"{k} {v}" for k, v in s.objects.items()))
    for why in s.skipped:
        print(f"skipped: {why}", file=sys.stderr)
    print(f"train on it with: streetlens train --add-source {args.out} --init <served weights>")
    return 0


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Attach `train`, `evaluate` and `models` to the CLI."""
    t = sub.add_parser("train", help="train the detector on the data directory's photo sets")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--imgsz", type=int, default=416)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--sources", type=Path, default=SOURCES_MANIFEST)
    t.add_argument("--run-dir", type=Path)
    t.add_argument("--init", type=Path, help="fine-tune from these weights")
    t.add_argument(
        "--hours",
        type=float,
        help="train for this long instead of --epochs: the epoch count (and the learning-rate"
        " schedule, mosaic's end) is re-planned after each epoch to fit",
    )
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    t.add_argument(
        "--pack",
        type=Path,
        metavar="DIR",
        help="only build the set and pack it into DIR (each photo once, shrunk to --imgsz) for "
        "training on another machine: python -m vision.train_pack (docs/operations.md)",
    )
    t.add_argument(
        "--add-source",
        type=Path,
        action="append",
        metavar="DIR",
        help="also train on this labelled set (its source.yaml gives name, classes, licence), "
        "e.g. `streetlens dataset export-verified`'s; repeatable",
    )
    t.set_defaults(func=cmd_train)

    ds = sub.add_parser("dataset", help="training data from the city's own photos")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)
    de = dsub.add_parser(
        "export-verified",
        help="write every crew-labelled photo (blurred public copy) and its labels as a YOLO set",
    )
    de.add_argument("out", type=Path, help="a new folder, or one an earlier export wrote")
    de.add_argument("--val-fraction", type=float, default=0.2)
    de.set_defaults(func=cmd_dataset_export)

    from pipeline.evaluate_cli import add_evaluate_command

    add_evaluate_command(sub, SOURCES_MANIFEST)

    m = sub.add_parser("models", help="the model registry")
    msub = m.add_subparsers(dest="models_command", required=True)
    ml = msub.add_parser("list", help="versions, frozen-split numbers, promotions")
    ml.set_defaults(func=cmd_models_list)
    ma = msub.add_parser(
        "add", help="export (ONNX, OpenVINO), evaluate and register a training run"
    )
    ma.add_argument("run_dir", type=Path)
    ma.add_argument("--version", required=True)
    ma.add_argument("--imgsz", type=int, default=416)
    ma.add_argument("--sources", type=Path, default=SOURCES_MANIFEST)
    ma.add_argument(
        "--serve", action="store_true", help="then promote it (refused when worse than served)"
    )
    ma.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO export")
    ma.set_defaults(func=cmd_models_add)
    mp = msub.add_parser(
        "promote",
        help="serve VERSION; refused (exit 2) when it is worse than the served version on the "
        "frozen split; the comparison is recorded in the registry",
    )
    mp.add_argument("version")
    mp.add_argument("--force", action="store_true", help="serve it even if worse (needs --reason)")
    mp.add_argument("--reason", help="why (recorded in the registry)")
    mp.add_argument("--sources", type=Path, default=SOURCES_MANIFEST)
    mp.set_defaults(func=cmd_models_promote)
    mf = msub.add_parser(
        "freeze", help="write models/frozen-split.yaml (val photos + sha256), or check it"
    )
    mf.add_argument("--check", action="store_true", help="only check that nothing drifted")
    mf.add_argument("--force", action="store_true", help="re-freeze an existing split")
    mf.add_argument("--sources", type=Path, default=SOURCES_MANIFEST)
    mf.set_defaults(func=cmd_models_freeze)
