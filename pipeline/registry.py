"""The model registry in `models/`: which detector version is served, and its metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ModelVersion:
    """One registered detector version."""

    version: str
    path: Path
    class_names: tuple[str, ...]
    imgsz: int
    conf: float

    @property
    def onnx(self) -> Path:
        """The ONNX export the pipeline serves."""
        return self.path / "model.onnx"

    @property
    def weights(self) -> Path:
        """The ultralytics weights (training, fine-tuning, parity tests)."""
        return self.path / "weights.pt"


def served_detector(models_dir: Path) -> ModelVersion:
    """The detector version that `models/registry.yaml` marks as served."""
    reg_path = models_dir / "registry.yaml"
    if not reg_path.exists():
        raise ConfigError(f"no model registry at {reg_path}: train one with `streetlens train`")
    reg = yaml.safe_load(reg_path.read_text())
    det = reg.get("detector") or {}
    version = det.get("served")
    entry = (det.get("versions") or {}).get(version)
    if not entry:
        raise ConfigError(f"{reg_path}: served detector version {version!r} is not registered")
    path = models_dir / entry["path"]
    meta_path = path / "meta.yaml"
    if not meta_path.exists():
        raise ConfigError(f"detector {version}: {meta_path} is missing")
    meta = yaml.safe_load(meta_path.read_text())
    return ModelVersion(
        version=str(version),
        path=path,
        class_names=tuple(meta["class_names"]),
        imgsz=int(meta["imgsz"]),
        conf=float(meta.get("conf", 0.25)),
    )
