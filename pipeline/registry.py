"""The model registry in `models/`: which detector version is served, and its metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

REGISTRY_FILE = "registry.yaml"
# A version's weight files: committed only while it is served (models/.gitignore says so).
WEIGHT_FILES = ("weights.pt", "model.onnx", "openvino/", "openvino-int8/")


@dataclass(frozen=True)
class ModelVersion:
    """One registered detector version."""

    version: str
    path: Path
    class_names: tuple[str, ...]
    imgsz: int
    conf: float
    conf_int8: float | None = None  # the 8-bit export's own threshold: its scores run lower

    def serving_conf(self, backend: str) -> float:
        """The threshold for the runtime the settings ask for (the 8-bit export has its own)."""
        if backend == "openvino-int8" and self.conf_int8 is not None:
            return self.conf_int8
        return self.conf

    @property
    def onnx(self) -> Path:
        """The ONNX export (ONNX Runtime)."""
        return self.path / "model.onnx"

    @property
    def openvino(self) -> Path:
        """The OpenVINO export (IR .xml beside its .bin)."""
        return self.path / "openvino" / "model.xml"

    @property
    def openvino_int8(self) -> Path:
        """The OpenVINO export quantized to 8-bit integers (when made; see vision.train)."""
        return self.path / "openvino-int8" / "model.xml"

    @property
    def weights(self) -> Path:
        """The ultralytics weights (training, fine-tuning, parity tests)."""
        return self.path / "weights.pt"


def load_registry(models_dir: Path) -> dict[str, Any]:
    """The registry file as a dict ({} when there is none yet)."""
    reg_path = models_dir / REGISTRY_FILE
    return (yaml.safe_load(reg_path.read_text()) or {}) if reg_path.exists() else {}


def save_registry(models_dir: Path, reg: dict[str, Any]) -> None:
    """Write the registry and the weight-file policy that follows from it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(reg, sort_keys=False, allow_unicode=True, width=100)
    (models_dir / REGISTRY_FILE).write_text(text)
    write_weights_policy(models_dir, reg)


def write_weights_policy(models_dir: Path, reg: dict[str, Any]) -> Path:
    """models/.gitignore: every version's weight files are ignored except the served one's,
    so only the served weights are committed (older versions keep entry, card and metrics)."""
    det = reg.get("detector") or {}
    served = det.get("served")
    lines = [
        "# Written by `streetlens models add/promote` (pipeline/registry.py); do not edit.",
        "# Only the served version's weight files are committed; every other version keeps its",
        "# registry entry, card.md, meta.yaml and metrics here. After a promotion, untrack the",
        "# old weights: git rm --cached -r models/detector/<old>/{weights.pt,model.onnx,openvino*}",
        *(f"detector/*/{f}" for f in WEIGHT_FILES),
    ]
    if served:
        lines += [f"!detector/{served}/{f}" for f in WEIGHT_FILES]
    path = models_dir / ".gitignore"
    path.write_text("\n".join(lines) + "\n")
    return path


def model_version(models_dir: Path, version: str) -> ModelVersion:
    """A registered version (its folder must hold meta.yaml)."""
    det = load_registry(models_dir).get("detector") or {}
    entry = (det.get("versions") or {}).get(version)
    if not entry:
        known = ", ".join(det.get("versions") or {}) or "none"
        raise ConfigError(f"detector version {version!r} is not registered (registered: {known})")
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
        conf_int8=None if meta.get("conf_int8") is None else float(meta["conf_int8"]),
    )


def served_detector(models_dir: Path) -> ModelVersion:
    """The detector version that `models/registry.yaml` marks as served."""
    reg_path = models_dir / REGISTRY_FILE
    if not reg_path.exists():
        raise ConfigError(f"no model registry at {reg_path}: train one with `streetlens train`")
    det = load_registry(models_dir).get("detector") or {}
    version = det.get("served")
    if not (det.get("versions") or {}).get(version):
        raise ConfigError(f"{reg_path}: served detector version {version!r} is not registered")
    return model_version(models_dir, str(version))
