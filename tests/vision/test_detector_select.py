"""Which runtime serves a version folder: the detector_backend setting and what is exported."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision.detector_select import load_detector, openvino_installed, resolve_backend
from vision.errors import InvalidArgument, ModelUnavailable


def version_dir(tmp_path: Path, *, openvino: bool) -> Path:
    d = tmp_path / "v9"
    d.mkdir(parents=True)
    (d / "model.onnx").write_bytes(b"onnx")
    if openvino:
        (d / "openvino").mkdir()
        (d / "openvino" / "model.xml").write_text("<net/>")
        (d / "openvino" / "model.bin").write_bytes(b"")
    return d


def test_auto_prefers_openvino_when_exported_and_installed(tmp_path: Path) -> None:
    with_ov = version_dir(tmp_path / "a", openvino=True)
    without = version_dir(tmp_path / "b", openvino=False)
    expected = "onnx"
    if openvino_installed():
        from vision.detector_openvino import native_bf16

        expected = "openvino-bf16" if native_bf16() else "openvino"
    assert resolve_backend(with_ov, "auto") == (
        expected,
        with_ov / ("model.onnx" if expected == "onnx" else "openvino/model.xml"),
    )
    assert resolve_backend(with_ov, "openvino") == ("openvino", with_ov / "openvino" / "model.xml")
    assert resolve_backend(with_ov, "openvino-bf16") == (
        "openvino-bf16",
        with_ov / "openvino" / "model.xml",
    )
    assert resolve_backend(without, "auto") == ("onnx", without / "model.onnx")
    assert resolve_backend(with_ov, "onnx") == ("onnx", with_ov / "model.onnx")
    assert resolve_backend(without, "openvino") == (
        "openvino",
        without / "openvino" / "model.xml",
    )
    with pytest.raises(InvalidArgument, match="one of auto, openvino, openvino-bf16"):
        resolve_backend(with_ov, "tensorrt")


def test_eight_bits_only_when_asked(tmp_path: Path) -> None:
    d = version_dir(tmp_path, openvino=True)
    (d / "openvino-int8").mkdir()
    (d / "openvino-int8" / "model.xml").write_text("<net/>")
    assert resolve_backend(d, "auto")[1] != d / "openvino-int8" / "model.xml"
    assert resolve_backend(d, "openvino-int8") == ("openvino", d / "openvino-int8" / "model.xml")
    gone = version_dir(tmp_path / "x", openvino=True)
    with pytest.raises(ModelUnavailable, match="not found"):
        load_detector(gone, ["pothole"], backend="openvino-int8")


def test_missing_or_broken_exports_say_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    without = version_dir(tmp_path / "b", openvino=False)
    with pytest.raises(ModelUnavailable, match="not found"):
        load_detector(without, ["pothole"], backend="openvino")
    broken = version_dir(tmp_path / "c", openvino=True)
    with pytest.raises(ModelUnavailable, match="cannot read the OpenVINO model"):
        load_detector(broken, ["pothole"], backend="openvino")
    weights = without / "weights.pt"
    weights.write_bytes(b"torch")
    with pytest.raises(ModelUnavailable, match="neither an ONNX file nor an OpenVINO"):
        load_detector(weights, ["pothole"])
