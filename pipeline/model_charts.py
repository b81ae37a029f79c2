"""Charts of the model registry, for the analyst who retrains: a run's curves, every version.

`training_chart` draws a training run's validation mAP50 and losses per epoch (ultralytics'
results.csv) beside the version's card; `history_chart` draws every registered version's
headline numbers on the split it was registered with, with the targets and the served version
marked, as models/detector/history.png. Both are written by `streetlens models add` and
`models promote` (matplotlib comes with the train extra, as ultralytics needs it).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

HISTORY_PNG = "history.png"
TRAINING_PNG = "training.png"
# (registry headline key, label, target or None): what the issue asks of a detector.
HISTORY_SERIES = (
    ("potholes-seg.mask_map50", "potholes-seg mask mAP50", 0.60),
    ("graffiti-det.box_map50", "graffiti-det box mAP50", 0.45),
    ("stereo-potholes-uk.mask_map50", "stereo-potholes-uk mask mAP50", None),
    ("cracks-potholes-brazil.mask_map50", "cracks-potholes-brazil mask mAP50", None),
    ("facades-negatives-spb.false_alarm_rate", "false alarms on facades", None),
)
# results.csv columns: (column, label) for the two panels of a run's chart.
CURVES = (
    ("metrics/mAP50(M)", "mask mAP50"),
    ("metrics/mAP50(B)", "box mAP50"),
    ("metrics/mAP50-95(M)", "mask mAP50-95"),
)
LOSSES = (
    ("train/seg_loss", "train seg loss"),
    ("val/seg_loss", "val seg loss"),
    ("train/box_loss", "train box loss"),
    ("val/box_loss", "val box loss"),
)


def read_results(run_dir: Path) -> dict[str, list[float]]:
    """A run's results.csv as columns of floats (ultralytics pads the names with spaces)."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = [{k.strip(): v for k, v in r.items() if k} for r in csv.DictReader(f)]
    cols: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            try:
                cols.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                cols.setdefault(k, []).append(float("nan"))
    return cols


def _version_key(v: str) -> tuple[int, str]:
    m = re.fullmatch(r"v(\d+)", v)
    return (int(m.group(1)), v) if m else (10**9, v)


def series_keys(registry: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """(headline key, label, target) to draw: one line a source, the issue's own numbers for
    ours (HISTORY_SERIES), else its mask mAP50, box mAP50 or false-alarm rate (a city's own
    sources are named as it names them)."""
    versions = (registry.get("detector") or {}).get("versions") or {}
    present = {k for v in versions.values() for k in (v.get("metrics") or {})}
    labels = {
        "mask_map50": "mask mAP50",
        "box_map50": "box mAP50",
        "false_alarm_rate": "false alarms",
    }
    out = [(k, label, target) for k, label, target in HISTORY_SERIES if k in present]
    drawn = {k.rsplit(".", 1)[0] for k, _, _ in out}
    for source in sorted({k.rsplit(".", 1)[0] for k in present} - drawn):
        for metric, label in labels.items():
            key = f"{source}.{metric}"
            if key in present:
                out.append((key, f"{source} {label}", None))
                break
    return out


def history_series(
    registry: dict[str, Any], keys: list[tuple[str, str, float | None]] | None = None
) -> dict[str, list[tuple[str, float]]]:
    """Per drawn headline key (`keys`, default series_keys): (version, value) in version
    order, versions lacking it left out."""
    versions = (registry.get("detector") or {}).get("versions") or {}
    series: dict[str, list[tuple[str, float]]] = {}
    for key, _, _ in series_keys(registry) if keys is None else keys:
        series[key] = [
            (v, float(versions[v]["metrics"][key]))
            for v in sorted(versions, key=_version_key)
            if (versions[v].get("metrics") or {}).get(key) is not None
        ]
    return series


def can_draw() -> bool:
    """Whether matplotlib is installed (the train extra); the charts are skipped without it."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def redraw_history(models_dir: Path) -> Path | None:
    """models/detector/history.png from the registry as it now is (skipped without matplotlib)."""
    from pipeline.registry import load_registry

    if not can_draw():
        return None
    return history_chart(load_registry(models_dir), Path(models_dir) / "detector" / HISTORY_PNG)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_chart(run_dir: Path, out: Path, title: str) -> Path | None:
    """The run's per-epoch validation mAP50 and losses as a PNG; None without a results.csv."""
    cols = read_results(run_dir)
    if not cols.get("epoch"):
        return None
    plt = _pyplot()
    epochs = cols["epoch"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for col, label in CURVES:
        if col in cols:
            left.plot(epochs, cols[col], marker="o", ms=3, label=label)
    left.set(xlabel="epoch", ylabel="on the val splits (ultralytics val)", ylim=(0, None))
    left.set_title("validation mAP")
    for col, label in LOSSES:
        if col in cols:
            right.plot(epochs, cols[col], ls="-" if col.startswith("train") else "--", label=label)
    right.set(xlabel="epoch", ylabel="loss")
    right.set_title("losses")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def history_chart(registry: dict[str, Any], out: Path) -> Path | None:
    """Every version's headline numbers (as each was registered), targets dashed, the served
    version marked; None when no version has numbers."""
    keys = series_keys(registry)
    series = history_series(registry, keys)
    if not series:
        return None
    plt = _pyplot()
    served = (registry.get("detector") or {}).get("served")
    order = sorted(
        {v for pts in series.values() for v, _ in pts}, key=_version_key
    )  # every version with a number, in order
    x = {v: i for i, v in enumerate(order)}
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    for key, label, target in keys:
        pts = series[key]
        (line,) = ax.plot([x[v] for v, _ in pts], [y for _, y in pts], marker="o", label=label)
        if target is not None:
            ax.axhline(target, color=line.get_color(), ls="--", lw=1, alpha=0.7)
            ax.annotate(
                f"target {target:g}", (0, target), textcoords="offset points",
                xytext=(0, 3), ha="left", fontsize=8, color=line.get_color(),
            )  # fmt: skip
    if served in x:
        ax.axvline(x[served], color="grey", lw=6, alpha=0.15)
        ax.annotate("served", (x[served], 1.0), ha="center", va="top", fontsize=8)
    ax.set_xticks(range(len(order)), order)
    ax.set(ylim=(0, 1.02), xlabel="version", ylabel="as evaluated when registered")
    ax.set_title("Detector versions (models/registry.yaml)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
