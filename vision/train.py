"""Train, resume and export the segmentation detector with ultralytics, fully offline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from vision.errors import ModelUnavailable

# Written by `streetlens train` into its run (and carried by a pack to `vision.train_pack`'s):
# what ultralytics does not record there, the weights it was fine-tuned from (`--init`) and the
# sets it trained on beside the manifest's (`--add-source`, e.g. the city's crew-verified
# photos) and their weights, so that the card (pipeline/modelcard.py) says them.
RUN_RECORD = "streetlens-run.yaml"


def prepare_ultralytics(config_dir: Path, threads: int | None = None) -> None:
    """Make ultralytics work offline: no hub, no auto-install, a local font; use all cores."""
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    font = font_dir / "Arial.ttf"
    if not font.exists():
        # matplotlib (an ultralytics dependency) ships DejaVu Sans; any TTF serves the plots.
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copyfile(ttf, font)
    import torch
    import ultralytics.utils.torch_utils as tu

    from vision.threads import budget

    # ultralytics resets torch to cpu_count - 1 threads in select_device (one thread on a
    # 2-core machine); both cores train ~1.6x faster.
    n = threads or budget()
    tu.NUM_THREADS = n
    torch.set_num_threads(n)


# Augmentations for phone photos: tilted horizons, any distance, dusk and glare (ultralytics'
# own), and the blur, compression and noise of phone_pixel_augmentations().
PHONE_AUGMENT: dict[str, Any] = {
    "degrees": 10.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 2.0,
    "perspective": 0.0005,
    "fliplr": 0.5,
    "hsv_h": 0.015,
    "hsv_s": 0.6,
    "hsv_v": 0.5,
    "mosaic": 1.0,
    "close_mosaic": 3,
}


def phone_pixel_augmentations() -> list[Any]:
    """What a resident's phone does to a photo, as Albumentations transforms for ultralytics'
    hook (pixel-level only, so masks and boxes stay as they are): a shaking hand (motion blur),
    a missed focus, a messaging app's JPEG recompression, a dark street's sensor noise, and the
    rare grey photo. Each on a few photos in ten; ultralytics' own defaults (p=0.01 each) would
    barely show, and without albumentations installed it drops them silently: so it is needed."""
    try:
        import albumentations as A
    except ImportError:
        raise ModelUnavailable(
            "training needs albumentations (the train extra: scripts/setup.sh train) for its "
            "phone-photo augmentations"
        ) from None
    return [
        A.MotionBlur(blur_limit=(3, 9), p=0.15),
        A.GaussianBlur(blur_limit=(3, 7), p=0.05),
        A.ImageCompression(quality_range=(30, 90), p=0.2),
        A.GaussNoise(std_range=(0.02, 0.08), p=0.1),
        A.ToGray(p=0.02),
    ]


# Learning rate of a fine-tune (AdamW, decaying linearly to 1 % of it over the run).
FINE_TUNE_LR0 = 0.001


def train_detector(
    data_yaml: Path,
    run_dir: Path,
    *,
    epochs: int,
    imgsz: int = 416,
    batch: int = 16,
    model_yaml: str = "yolo11n-seg.yaml",
    init_weights: Path | None = None,
    resume: bool = False,
    workers: int = 2,
    fraction: float = 1.0,
    seed: int = 0,
    plots: bool = True,
    hours: float | None = None,
    device: str = "cpu",
    cache: bool = False,
) -> Path:
    """Train (or resume, or fine-tune) and return the best weights' path.

    `device` is ultralytics' ("cpu", or a GPU's index, "0"); training stays in float32 on a
    GPU too (ultralytics' mixed-precision check downloads a model, which an offline machine
    cannot). `cache` keeps the decoded photos in memory (worth it where the GPU outruns the
    loaders)."""
    from ultralytics import YOLO

    # Ultralytics files a relative `project` under its own runs/<task>/ folder: make it absolute.
    run_dir = Path(run_dir).resolve()
    last = run_dir / "weights" / "last.pt"
    if resume:
        if not last.exists():
            raise ModelUnavailable(f"nothing to resume: {last} does not exist")
        model = YOLO(str(last))
        model.train(resume=True, device=device, amp=False, workers=workers)
    else:
        if init_weights is not None:
            if not init_weights.exists():
                raise ModelUnavailable(f"weights to fine-tune from not found: {init_weights}")
            # Built from the checkpoint itself, not `YOLO(yaml).load(weights)`: the YAML's model
            # has 80 classes, so the class head's last layers (6 of 561 tensors) did not fit and
            # every fine-tune until v9 started them from random.
            model = YOLO(str(init_weights), task="segment")
        else:
            model = YOLO(model_yaml, task="segment")
        # A fine-tune continues trained weights: no warm-up ramp (ultralytics' three epochs, or
        # session 6's one, rebuilt from zero what the last run had reached, ~6 epochs of v5's 10),
        # and AdamW at 0.6x the rate ultralytics' `auto` picks for a run from scratch (0.00167).
        fine_tune = (
            {"warmup_epochs": 0.0, "optimizer": "AdamW", "lr0": FINE_TUNE_LR0}
            if init_weights is not None
            else {}
        )
        # Ultralytics' time mode re-estimates the epoch count after every epoch from their mean
        # duration and stops when the time is up (mid-epoch if need be, keeping the last save).
        timed = {"time": hours} if hours else {}
        model.train(
            data=str(data_yaml),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            amp=False,
            workers=workers,
            cache=cache,
            project=str(run_dir.parent),
            name=run_dir.name,
            exist_ok=True,
            fraction=fraction,
            seed=seed,
            plots=plots,
            verbose=False,
            **PHONE_AUGMENT,
            augmentations=phone_pixel_augmentations(),
            **fine_tune,
            **timed,
        )
    best = run_dir / "weights" / "best.pt"
    return best if best.exists() else last


# ~260 of the 526 val photos: NNCF suggests ~300 calibration samples.
INT8_CALIBRATION_FRACTION = 0.5


def nncf_installed() -> bool:
    """Whether NNCF (8-bit quantization for OpenVINO; the train extra) can be imported here."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def export_onnx(weights: Path, imgsz: int, out: Path) -> Path:
    """Export trained weights to ONNX (any input size up to imgsz, no NMS inside) at `out`.

    Dynamic, so that a photo runs at its letterbox's own shape (416x320 for 4:3) as in
    ultralytics' predict, not padded to the square; imgsz and stride go in its metadata.
    """
    from ultralytics import YOLO

    model = YOLO(str(weights))
    path = Path(model.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False, opset=17))
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, out)
    return out


def export_openvino(
    weights: Path,
    imgsz: int,
    out_dir: Path,
    *,
    fp16: bool = True,
    int8_data: Path | None = None,
    int8_fraction: float = INT8_CALIBRATION_FRACTION,
) -> Path:
    """Export trained weights to OpenVINO IR (any input size, no NMS) as out_dir/model.xml,
    with metadata.yaml (imgsz, stride) beside it: the detector compiles it for each letterbox
    shape it meets.

    fp16 stores the weights at half precision (half the size on disk); OpenVINO computes in
    f32 on the CPU all the same (vision.detector_openvino asks for it). With `int8_data` (a
    data.yaml) the model is quantized to 8-bit integers instead (NNCF post-training, as
    ultralytics does it: the detection head stays in float), calibrated on that fraction
    of its val photos.
    """
    from ultralytics import YOLO

    # ultralytics writes its export beside the weights: work on a copy in the output's parent
    # so that a read-only or committed weights folder is never touched.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = out_dir.parent / f".{out_dir.name}-export"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    src = work / "model.pt"
    shutil.copyfile(weights, src)
    model = YOLO(str(src))
    if int8_data is not None:
        precision = {"quantize": 8, "data": str(int8_data), "fraction": int8_fraction}
    else:
        precision = {"quantize": 16 if fp16 else 32}
    exported = Path(model.export(format="openvino", imgsz=imgsz, dynamic=True, **precision))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    xml = next(exported.glob("*.xml"))
    # The IR names its weights file by the .xml's stem: rename both together.
    shutil.move(xml, out_dir / "model.xml")
    shutil.move(xml.with_suffix(".bin"), out_dir / "model.bin")
    meta = exported / "metadata.yaml"
    if meta.exists():
        shutil.move(meta, out_dir / "metadata.yaml")
    shutil.rmtree(work, ignore_errors=True)
    return out_dir / "model.xml"
