"""Train on a pack (`streetlens train --pack DIR`) on another machine, e.g. one with a GPU:

    python -m vision.train_pack PACK --init models/detector/v9/weights.pt --hours 0.2 \\
        --device 0 --out RUN_DIR

It needs only ultralytics, albumentations and this folder (vision/), not the rest of the
project or the data directory. Bring RUN_DIR back and register it as any run:
`streetlens models add RUN_DIR --version vN --serve`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from vision.pack import unpack
from vision.train import RUN_RECORD, prepare_ultralytics, train_detector


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vision.train_pack", description=__doc__)
    ap.add_argument("pack", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="the run's folder (weights, curves)")
    ap.add_argument("--init", type=Path, help="fine-tune from these weights")
    ap.add_argument("--hours", type=float, help="train this long (else --epochs)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--device", default="0", help="ultralytics' device: a GPU index, or cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--fraction", type=float, default=1.0, help="train on a share (a trial run)")
    ap.add_argument("--work", type=Path, help="where to unpack (default: a temporary folder)")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="streetlens-pack-"))
    data_yaml, imgsz = unpack(a.pack, work / "dataset")
    prepare_ultralytics(work / "ultralytics")
    plots = _polars_or_csv()
    run_dir = a.out.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if (a.pack / RUN_RECORD).is_file():
        shutil.copyfile(a.pack / RUN_RECORD, run_dir / RUN_RECORD)
    best = train_detector(
        data_yaml,
        run_dir,
        epochs=a.epochs,
        imgsz=imgsz,
        batch=a.batch,
        init_weights=a.init,
        workers=a.workers,
        fraction=a.fraction,
        hours=a.hours,
        device=a.device,
        cache=a.device != "cpu",
        plots=plots,
    )
    print(f"trained: {best}\nregister it with: streetlens models add {run_dir} --version vN")
    return 0


def _polars_or_csv() -> bool:
    """Whether ultralytics may draw its plots. It reads its own results.csv with polars (a
    large wheel an accelerator's image may lack) to store the curves in each checkpoint, and
    draws its plots with it; without polars the checkpoint's copy is read with the csv module
    and the plots are left out (`streetlens models add` draws the run's chart itself)."""
    try:
        import polars  # noqa: F401

        return True
    except ImportError:
        pass
    import csv

    from ultralytics.engine.trainer import BaseTrainer

    def read_results_csv(self) -> dict:
        try:
            with open(self.csv, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            return {}
        return {k: [float(r[k]) for r in rows] for k in rows[0]} if rows else {}

    BaseTrainer.read_results_csv = read_results_csv
    return False


if __name__ == "__main__":
    sys.exit(main())
