"""The segmentation detector on OpenVINO (CPU), with the post-processing of vision.detector."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vision.detector import YoloSegDetector
from vision.errors import InvalidArgument, ModelUnavailable
from vision.threads import budget as thread_budget

log = logging.getLogger(__name__)


def openvino_xml(path: Path) -> Path:
    """The IR file (.xml) of an OpenVINO export: the file itself or the one inside a folder."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ModelUnavailable(
                f"{path} holds {len(xmls)} .xml files; an OpenVINO export holds exactly one "
                "(export with vision.train.export_openvino)"
            )
        return xmls[0]
    return path


class OpenVinoSegDetector(YoloSegDetector):
    """An ultralytics YOLO-seg model exported to OpenVINO IR (no NMS; fixed size or any), on the
    CPU."""

    backend = "openvino"

    def __init__(
        self,
        model_path: Path,
        class_names: Sequence[str],
        *,
        conf: float = 0.25,
        iou: float = 0.5,
        threads: int | None = None,
        precision: str = "f32",
    ) -> None:
        if precision not in ("f32", "bf16"):
            raise InvalidArgument(f"OpenVINO precision must be f32 or bf16, not {precision!r}")
        self._init_common(class_names, conf, iou)
        try:
            import openvino as ov
        except ImportError:
            raise ModelUnavailable(
                "the OpenVINO runtime is not installed: `pip install openvino` or set "
                "STREETLENS_DETECTOR_BACKEND=onnx"
            ) from None
        xml = openvino_xml(Path(model_path))
        if not xml.is_file() or not xml.with_suffix(".bin").is_file():
            raise ModelUnavailable(
                f"OpenVINO model not found at {xml} (+ .bin): export one with "
                "vision.train.export_openvino or set STREETLENS_DETECTOR_BACKEND=onnx"
            )
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot read the OpenVINO model {xml} ({exc}): re-export it with "
                "vision.train.export_openvino"
            ) from None
        inputs, outputs = model.inputs, model.outputs
        if len(inputs) != 1 or len(outputs) != 2:
            raise ModelUnavailable(
                f"{xml} has {len(inputs)} inputs and {len(outputs)} outputs; a YOLO "
                "segmentation export has 1 and 2 (boxes and mask prototypes)"
            )
        pshape = inputs[0].get_partial_shape()
        shape = [d.get_length() if d.is_static else None for d in pshape]
        # The head is the 3-D output, the prototypes the 4-D one, whatever their order.
        ranks = [o.get_partial_shape().rank.get_length() for o in outputs]
        if sorted(ranks) != [3, 4]:
            raise ModelUnavailable(f"{xml}: outputs of rank {ranks}, expected a 3-D and a 4-D")
        self._head_idx = ranks.index(3)
        self._proto_idx = ranks.index(4)
        ch = outputs[self._head_idx].get_partial_shape()[1]
        self._check_head(xml, shape, ch.get_length() if ch.is_static else None, _metadata(xml))
        self._config = {
            # Both cores for one photo at a time (the serving pattern). f32 (the default) so
            # results match ultralytics and ONNX Runtime, which OpenVINO would not give on a
            # CPU with bf16 units unless told; bf16 when asked (backend openvino-bf16).
            "INFERENCE_NUM_THREADS": threads or thread_budget(),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": precision,
        }
        self._core, self._model, self.model_path = core, model, xml
        # A model that takes any size is compiled once for each letterbox shape it meets (a
        # few: landscape, portrait, square; ~0.2 s each), static shapes being what the CPU
        # plugin runs fastest. Compiling the largest now checks the model and sets precision.
        self._requests: dict[tuple[int, int], object] = {}
        self._compiled = self._compile(self.imgsz)
        # What the CPU really runs. A bf16 hint on a CPU without bf16 units runs f32 where it
        # has AVX2 only, and bf16 emulated where it has AVX-512 (measured on a 2-core Xeon
        # without AVX512-BF16: 106 ms a photo against f32's 41; `auto` never asks for it there).
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if self.precision == "bf16":
            self.backend = "openvino-bf16"
            if not native_bf16():
                log.warning(
                    "bf16 inference is emulated on this CPU (no AVX512-BF16 or AMX), slower "
                    "than f32: STREETLENS_DETECTOR_BACKEND=auto picks f32 here"
                )

    def _compile(self, hw: tuple[int, int]):
        """The model compiled for input (1, 3, *hw) (as exported, when its size is fixed)."""
        if self.stride is not None:
            self._model.reshape({0: [1, 3, *hw]})
        try:
            compiled = self._core.compile_model(self._model, "CPU", self._config)
        except Exception as exc:
            raise ModelUnavailable(
                f"OpenVINO cannot compile {self.model_path} for the CPU at {hw} ({exc})"
            ) from None
        self._requests[hw] = compiled.create_infer_request()
        return compiled

    def _infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One request per detector and shape: callers share a detector across threads only
        # under a lock (pipeline.context builds it once per process, workers are processes).
        hw = (int(tensor.shape[2]), int(tensor.shape[3]))
        if hw not in self._requests:
            self._compile(hw)
        request = self._requests[hw]
        request.infer({0: tensor})  # type: ignore[attr-defined]
        preds = request.get_output_tensor(self._head_idx).data  # type: ignore[attr-defined]
        protos = request.get_output_tensor(self._proto_idx).data  # type: ignore[attr-defined]
        # The request reuses its output buffers on the next call: keep copies.
        return np.array(preds, copy=True), np.array(protos, copy=True)


def _metadata(xml: Path) -> dict | None:
    """The export's metadata.yaml beside the IR (ultralytics writes imgsz and stride there)."""
    meta = xml.parent / "metadata.yaml"
    if not meta.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(meta.read_text())
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), as OpenVINO reports
    (asked once a process: the answer needs a new OpenVINO Core)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
