"""Pick the detector runtime for a model folder or file: OpenVINO, ONNX Runtime or ultralytics."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from vision.detector import OnnxSegDetector, YoloSegDetector
from vision.errors import InvalidArgument, ModelUnavailable

Backend = Literal["auto", "openvino", "openvino-bf16", "openvino-int8", "onnx"]
BACKENDS: tuple[str, ...] = get_args(Backend)
OPENVINO_DIR = "openvino"  # a version folder's OpenVINO export: openvino/model.xml + .bin
OPENVINO_INT8_DIR = "openvino-int8"  # the same, quantized (vision.train.export_openvino)
ONNX_FILE = "model.onnx"


def openvino_installed() -> bool:
    """Whether the OpenVINO runtime can be imported here."""
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(model_dir: Path, backend: str = "auto") -> tuple[str, Path]:
    """(backend, model file) for a version folder: auto is OpenVINO when it is installed and
    the folder holds its export (computing in bf16 where the CPU has bf16 units, else f32),
    else ONNX Runtime. openvino-bf16 and openvino force the precision; the 8-bit export is
    served only when asked for (openvino-int8): faster again, for a few percent of mAP (its
    model card)."""
    if backend not in BACKENDS:
        raise InvalidArgument(
            f"detector backend must be one of {', '.join(BACKENDS)}, not {backend!r}"
        )
    if backend == "openvino-int8":
        return "openvino", model_dir / OPENVINO_INT8_DIR / "model.xml"
    ov_xml = model_dir / OPENVINO_DIR / "model.xml"
    if backend == "openvino-bf16":
        return "openvino-bf16", ov_xml
    if backend == "auto" and openvino_installed() and ov_xml.is_file():
        from vision.detector_openvino import native_bf16

        # bf16 where the CPU has bf16 units: ~1.8x faster inference, and on the frozen split
        # the same numbers to +-0.005 mAP (docs/operations.md); f32 elsewhere.
        return ("openvino-bf16" if native_bf16() else "openvino"), ov_xml
    if backend == "openvino":
        return "openvino", ov_xml
    return "onnx", model_dir / ONNX_FILE


def load_detector(
    model: Path,
    class_names: Sequence[str],
    *,
    backend: str = "auto",
    conf: float = 0.25,
    iou: float = 0.5,
    threads: int | None = None,
) -> YoloSegDetector:
    """A detector for a version folder (backend chosen as resolve_backend says), an .onnx
    file, or an OpenVINO export (.xml or its folder; computed in bf16 only when the backend
    says openvino-bf16)."""
    model = Path(model)
    if model.is_dir() and not list(model.glob("*.xml")):
        backend, model = resolve_backend(model, backend)
    precision = "bf16" if backend == "openvino-bf16" else "f32"
    if not model.exists():
        raise ModelUnavailable(f"detector model not found at {model}")
    if model.suffix == ".onnx":
        return OnnxSegDetector(model, class_names, conf=conf, iou=iou, threads=threads)
    if model.suffix == ".xml" or model.is_dir():
        from vision.detector_openvino import OpenVinoSegDetector

        return OpenVinoSegDetector(
            model, class_names, conf=conf, iou=iou, threads=threads, precision=precision
        )
    raise ModelUnavailable(
        f"{model} is neither an ONNX file nor an OpenVINO export; ultralytics weights (.pt) "
        "are served by vision.detector_torch.UltralyticsSegDetector (the train extra)"
    )
