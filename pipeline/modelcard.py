"""Register a trained detector: weights, ONNX and OpenVINO exports, metrics, card, registry."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from pipeline.errors import ConfigError
from pipeline.frozen_split import FROZEN_FILE, check_frozen_split, frozen_sets
from pipeline.model_charts import (
    TRAINING_PNG,
    can_draw,
    read_results,
    redraw_history,
    training_chart,
)
from pipeline.registry import ModelVersion, load_registry, save_registry
from vision.dataset import Source
from vision.train import RUN_RECORD


def run_record_doc(
    init: Path | None, added: list[Source], trained_on: list[Source] | None = None
) -> str:
    """The run's record as YAML: its starting weights, added sources and source weights."""
    rows = [
        {"name": s.name, "path": str(s.path), "licence": s.licence, "attribution": s.attribution}
        for s in added
    ]
    weights = {
        s.name: {"repeat": s.repeat, "negatives_repeat": s.negatives_repeat}
        for s in trained_on or []
        if s.repeat > 1 or s.negatives_repeat > 1
    }
    doc = {"init_weights": str(init) if init else None, "added_sources": rows}
    if weights:
        doc["source_weights"] = weights
    return yaml.safe_dump(doc, sort_keys=False)


def read_run_record(run_dir: Path) -> tuple[str | None, list[Source], dict[str, dict[str, int]]]:
    """A run's starting weights (None: from scratch, or not recorded), added sources, and the
    sources it weighted (name -> repeat, negatives_repeat; a run before weights: none)."""
    path = run_dir / RUN_RECORD
    if not path.is_file():
        return None, [], {}
    doc = yaml.safe_load(path.read_text()) or {}
    added = [
        Source(
            name=r["name"],
            path=Path(r["path"]),
            class_map={},
            licence=r.get("licence", ""),
            attribution=r.get("attribution", ""),
        )
        for r in doc.get("added_sources") or []
    ]
    return doc.get("init_weights"), added, dict(doc.get("source_weights") or {})


def architecture(weights: Path, train_args: dict) -> str:
    """The network's YAML: a fine-tune's args name the weights it started from instead."""
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    model = ckpt.get("model") or ckpt.get("ema")
    yaml_file = (getattr(model, "yaml", None) or {}).get("yaml_file")
    return str(yaml_file or train_args.get("model"))


def _weighted(sources: list[Source], weights: dict[str, dict[str, int]]) -> list[Source]:
    """The sources as the run weighted them (its record, not today's manifest)."""
    return [
        dataclasses.replace(
            s,
            repeat=int(weights.get(s.name, {}).get("repeat", 1)),
            negatives_repeat=int(weights.get(s.name, {}).get("negatives_repeat", 1)),
        )
        for s in sources
    ]


def _weight_note(s: Source) -> str:
    notes = []
    if s.repeat > 1:
        notes.append(f"each train photo listed {s.repeat} times")
    if s.negatives_repeat > s.repeat:
        notes.append(f"train photos with nothing to find listed {s.negatives_repeat} times")
    return f" (weight in training: {'; '.join(notes)})" if notes else ""


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
    openvino: bool = True,
    backend: str = "auto",
    progress: bool = False,
) -> Path:
    """Export (ONNX, OpenVINO), evaluate and record one training run as
    `models/detector/<version>/`. Evaluated on the frozen split when `models/` has one, else
    on every source's val split. serve: promote it (refused when worse; PromotionRefused)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    from vision.detector_select import load_detector
    from vision.evaluate import ENGINE, EVAL_MIN_CONF, choose_threshold, collect, report, source_set
    from vision.train import export_onnx, export_openvino, nncf_installed, prepare_ultralytics

    prepare_ultralytics(cache_dir / "ultralytics")
    weights = run_dir / "weights" / "best.pt"
    if not weights.exists():
        weights = run_dir / "weights" / "last.pt"
    if not weights.exists():
        raise ConfigError(f"no weights in {run_dir / 'weights'}: is {run_dir} a training run?")
    if (models_dir / "detector" / version).exists():
        raise ConfigError(
            f"detector {version} already exists in {models_dir}: pick a new version (or "
            f"delete {models_dir / 'detector' / version} if an earlier `models add` failed)"
        )
    out = models_dir / "detector" / version
    out.mkdir(parents=True)
    dest = out / "weights.pt"
    shutil.copyfile(weights, dest)
    strip_optimizer(str(dest))  # an interrupted run's weights still carry the optimizer
    print(f"exporting {dest} to ONNX", file=sys.stderr)
    export_onnx(dest, imgsz, out / "model.onnx")
    if openvino:
        print(f"exporting {dest} to OpenVINO", file=sys.stderr)
        export_openvino(dest, imgsz, out / "openvino")
    train_args = yaml.safe_load((run_dir / "args.yaml").read_text())
    train_args["model"] = architecture(dest, train_args)
    init, added, weights = read_run_record(run_dir)
    trained_on = _weighted(sources + added, weights)
    data_yaml = calibration_set(train_args, cache_dir)
    int8 = openvino and nncf_installed() and data_yaml is not None
    if int8:
        print(f"quantizing {dest} to 8-bit OpenVINO (calibrated on {data_yaml})", file=sys.stderr)
        export_openvino(dest, imgsz, out / "openvino-int8", int8_data=data_yaml)

    frozen_path = models_dir / FROZEN_FILE
    if frozen_path.exists():
        frozen = check_frozen_split(frozen_path, sources)
        sets, split_name = frozen_sets(frozen, sources), f"frozen split {frozen.digest[:12]}"
    else:
        frozen = None
        sets = [source_set(s) for s in sources if (s.path / "images" / "val").is_dir()]
        split_name = "val splits"
    print(f"evaluating on the {split_name} ({ENGINE})", file=sys.stderr)
    det = load_detector(out, classes, backend=backend, conf=EVAL_MIN_CONF)
    stats = collect(det, sets, progress=progress)
    conf, f1 = choose_threshold(stats, len(classes))
    print(f"serving threshold {conf} (box F1 {f1:.3f} on all val photos)", file=sys.stderr)
    metrics = report(stats, classes, conf)
    metrics |= {"backend": det.backend, "version": version, "evaluated_on": split_name}
    metrics["_serving"] = {"conf": conf, "box_f1_all_val": f1}
    int8_metrics = None
    if int8:  # what 8 bits cost, on the same photos: the card says it
        print("evaluating the 8-bit export", file=sys.stderr)
        det8 = load_detector(out, classes, backend="openvino-int8", conf=EVAL_MIN_CONF)
        stats8 = collect(det8, sets, progress=progress)
        # Its scores run lower than the float model's: it gets its own threshold, chosen the
        # same way on the same photos.
        conf8, f1_8 = choose_threshold(stats8, len(classes))
        int8_metrics = report(stats8, classes, conf8)
        int8_metrics["_serving"] = {"conf": conf8, "box_f1_all_val": f1_8}
        (out / "metrics-int8.json").write_text(json.dumps(int8_metrics, indent=1))
    epochs_done = _epochs_done(run_dir)
    (out / "meta.yaml").write_text(
        yaml.safe_dump(
            {"class_names": classes, "imgsz": imgsz, "conf": conf}
            | ({"conf_int8": int8_metrics["_serving"]["conf"]} if int8_metrics else {}),
            sort_keys=False,
        )
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if frozen is not None:  # promotion reuses this evaluation instead of running it again
        from pipeline.promote import FROZEN_REPORT, model_digest
        from vision.detector_select import resolve_backend

        mv = ModelVersion(version, out, tuple(classes), imgsz, conf)
        file = resolve_backend(out, backend)[1]
        saved = metrics | {"model_digest": model_digest(mv, file), "split_digest": frozen.digest}
        (out / FROZEN_REPORT).write_text(json.dumps(saved, indent=1))
    curves = None
    if can_draw():
        curves = training_chart(run_dir, out / TRAINING_PNG, f"Detector {version}: training run")
    (out / "card.md").write_text(
        _card(
            version, classes, trained_on, metrics, train_args, epochs_done, conf, split_name, init
        )
        + _int8_section(metrics, int8_metrics)
        + (_CURVES_SECTION.format(png=TRAINING_PNG) if curves is not None else "")
    )

    reg = load_registry(models_dir)
    det_reg = reg.setdefault("detector", {})
    versions = det_reg.setdefault("versions", {})
    versions[version] = {
        "path": f"detector/{version}",
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "architecture": train_args.get("model"),
        "imgsz": imgsz,
        "conf": conf,
        "epochs": epochs_done,
        "exports": ["onnx", *(["openvino"] if openvino else []), *(["openvino-int8"] * int8)],
        "training_data": [
            {"name": s.name, "licence": s.licence}
            | ({"repeat": s.repeat} if s.repeat > 1 else {})
            | ({"negatives_repeat": s.negatives_repeat} if s.negatives_repeat > s.repeat else {})
            for s in trained_on
        ],
        "metrics": _headline(metrics),
    }
    first = "served" not in det_reg
    if first:
        det_reg["served"] = version
    save_registry(models_dir, reg)
    redraw_history(models_dir)
    print(f"registered detector {version} in {models_dir / 'registry.yaml'}", file=sys.stderr)
    if serve and not first:
        if frozen is None:
            raise ConfigError(
                f"cannot serve {version} yet: there is no frozen split to compare it on "
                "(`streetlens models freeze`), then `streetlens models promote`"
            )
        from pipeline.promote import promote

        promote(models_dir, version, sources, backend=backend, progress=progress)
    return out


_CURVES_SECTION = """
## Training curves

Validation mAP50 (ultralytics val on every source's val split) and losses per epoch of this
run; `../history.png` shows every version's headline numbers as each was evaluated when
registered.

![training curves]({png})
"""


def calibration_set(train_args: dict, cache_dir: Path) -> Path | None:
    """The data.yaml whose val photos calibrate the 8-bit export: the run's own set, or for a
    run made elsewhere (`vision.train_pack`, its set unpacked there) the one built here."""
    from pipeline.train_cli import dataset_dir

    for candidate in (Path(str(train_args.get("data", ""))), dataset_dir(cache_dir) / "data.yaml"):
        if candidate.is_file():
            return candidate
    return None


def _epochs_done(run_dir: Path) -> int:
    return len(read_results(run_dir).get("epoch", []))


def _headline(metrics: dict) -> dict[str, float]:
    head = {}
    for name, m in metrics.get("sources", {}).items():
        for key in ("mask_map50", "box_map50", "false_alarm_rate"):
            if m.get(key) is not None and (key != "false_alarm_rate" or "box_map50" not in m):
                head[f"{name}.{key}"] = round(float(m[key]), 4)
    return head


def _int8_section(metrics: dict, int8: dict | None) -> str:
    """The 8-bit export's numbers beside the float ones (`detector_backend=openvino-int8`)."""
    if int8 is None:
        return ""
    rows = []
    for (name, f), q in zip(_scopes(metrics).items(), _scopes(int8).values(), strict=True):
        rows.append(
            f"| {name} | {_n(f.get('box_map50'))} | {_n(q.get('box_map50'))} | "
            f"{_n(f.get('mask_map50'))} | {_n(q.get('mask_map50'))} | "
            f"{_n(f.get('box_map50_95'))} | {_n(q.get('box_map50_95'))} |"
        )
    nl = "\n"
    conf, conf8 = metrics["_serving"]["conf"], int8["_serving"]["conf"]
    f1_8 = int8["_serving"]["box_f1_all_val"]
    return f"""
## 8-bit export (`openvino-int8/`)

Quantized after training (NNCF, calibrated on half the val photos; the detection head stays
in float). Served only when `STREETLENS_DETECTOR_BACKEND=openvino-int8`: inference ~1.7x faster
on a 2-core AVX2 CPU (`bench/detect.py`), for what the same photos show here. Its scores run
lower than the float model's, so it is served at its own threshold, **{conf8}**, chosen the same
way (box F1 {f1_8:.3f} on all evaluation photos; float: {conf}).

| source | box mAP50 float | int8 | mask mAP50 float | int8 | box mAP50-95 float | int8 |
|---|---|---|---|---|---|---|
{nl.join(rows)}
"""


def _augment_text(train_args: dict) -> str:
    """The run's augmentations as its args.yaml records them (ultralytics' and Albumentations')."""
    keys = ("degrees", "translate", "scale", "shear", "perspective", "fliplr", "hsv_v", "mosaic")
    parts = [f"{k} {train_args[k]}" for k in keys if train_args.get(k)]
    for t in train_args.get("augmentations") or []:
        t = t.get("transform", t) if isinstance(t, dict) else {}
        if name := t.get("__class_fullname__"):
            parts.append(f"{name} p={t.get('p')}")
    return ", ".join(parts) or "none recorded"


def _epochs_text(done: int, train_args: dict) -> str:
    """How long it trained: epochs of those planned, or in the time it was given."""
    if train_args.get("time"):
        return (
            f"{done} epoch(s) in {train_args['time']} h (`--hours`: the epoch count re-planned"
            " after each epoch to fit the time)"
        )
    return f"{done} epoch(s) of {train_args.get('epochs')} planned"


def _where(train_args: dict) -> str:
    """Where it trained: `streetlens train` runs on the CPU; `vision.train_pack` on a GPU."""
    device = str(train_args.get("device") or "cpu")
    if device == "cpu":
        return "on CPU"
    return (
        f"on GPU {device} (`python -m vision.train_pack` on a `streetlens train --pack` set: "
        "the same listings, photos shrunk to the training size as WebP)"
    )


def _scopes(metrics: dict) -> dict[str, dict]:
    """Each source's numbers, then all sources together."""
    return {**metrics["sources"], "all": metrics["all"]}


def _n(v: object) -> str:
    return "—" if v is None else f"{v:.3f}"


def _card(
    version: str,
    classes: list[str],
    sources: list[Source],
    metrics: dict,
    train_args: dict,
    epochs_done: int,
    conf: float,
    split_name: str = "val splits",
    init: str | None = None,
) -> str:
    rows, cls_rows, img_rows = [], [], []
    for name, m in _scopes(metrics).items():
        fa = m.get("false_alarm_rate")
        neg = f"{fa:.1%} of {m['negative_images']}" if fa is not None else "—"
        rows.append(
            f"| {name} | {m['images']} | {m['instances']} | {_n(m.get('box_map50'))} | "
            f"{_n(m.get('box_map50_95'))} | {_n(m.get('mask_map50'))} | "
            f"{_n(m.get('mask_map50_95'))} | {neg} |"
        )
        for cls, c in m["classes"].items():
            if c["instances"]:
                cls_rows.append(
                    f"| {name} | {cls} | {c['instances']} | {_n(c.get('box_map50'))} | "
                    f"{_n(c.get('mask_map50'))} | {_n(c.get('box_precision'))} | "
                    f"{_n(c.get('box_recall'))} |"
                )
            i = c["image"]
            if i["tp"] + i["fp"] + i["fn"]:
                img_rows.append(
                    f"| {name} | {cls} | {i['tp']} | {i['fp']} | {i['fn']} | {i['tn']} | "
                    f"{_n(i['precision'])} | {_n(i['recall'])} | {_n(i['f1'])} |"
                )
    data = "\n".join(
        f"- **{s.name}** — {s.licence}. {s.attribution}{_weight_note(s)}" for s in sources
    )
    nl = "\n"
    return f"""# Detector {version}

Segmentation detector for {", ".join(classes)}: ultralytics `{train_args.get("model")}` trained
by `streetlens train` (no hub weights){f", fine-tuned from `{init}`" if init else ""},
{_epochs_text(epochs_done, train_args)}, at {train_args.get("imgsz")} px,
batch {train_args.get("batch")}, {_where(train_args)}.
Augmentations: {_augment_text(train_args)}. Served from its OpenVINO export
(`openvino/model.xml`) when OpenVINO is installed, else its ONNX export
(`model.onnx`) by ONNX Runtime: the same post-processing either way.

## Serving threshold

Detections are kept from confidence **{conf}**: where box F1 (mean over classes) peaks on all
evaluation photos together, negatives included (clamped to 0.05–0.5).

## Evaluation ({split_name}; `streetlens evaluate {version} all` recomputes it)

Engine: {metrics.get("engine", "")}. Runtime: {metrics.get("backend", "")}.
mAP uses every detection from conf 0.001; false alarms (photos with nothing to find that get
a detection) are at the serving threshold.

| source | photos | objects | box mAP50 | box mAP50-95 | mask mAP50 | mask mAP50-95 | false alarms |
|---|---|---|---|---|---|---|---|
{nl.join(rows)}

Per class (P/R at the serving threshold, box IoU 0.5):

| source | class | instances | box mAP50 | mask mAP50 | precision | recall |
|---|---|---|---|---|---|---|
{nl.join(cls_rows)}

Image level ("is there a pothole / graffiti in this photo?", at the serving threshold):

| source | class | TP | FP | FN | TN | precision | recall | F1 |
|---|---|---|---|---|---|---|---|---|
{nl.join(img_rows)}

Graffiti labels are boxes: they train as 4-point polygons, so graffiti "masks" are boxes and its
mask mAP measures box-shaped masks. Negatives (facades, crack-only roads) have no objects.

## Training data (read in place from the data directory, never copied)

{data}

The graffiti set's licence is not stated by its publisher: a city deploying this model should
clear it or retrain on its own crew-verified photos.

## Limits

Trained on a 2-core CPU; expect misses on photos unlike the training sets (night, rain,
unusual angles). Every detection is reviewed by a person (`needs_review`) before a crew is sent.
"""
