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
    """An ultralytics YOLO-seg model exported to OpenVINO IR (fixed size, no NMS), on the CPU."""

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
        self._check_head(xml, shape, ch.get_length() if ch.is_static else None)
        config = {
            # Both cores for one photo at a time (the serving pattern). f32 (the default) so
            # results match ultralytics and ONNX Runtime, which OpenVINO would not give on a
            # CPU with bf16 units unless told; bf16 when asked (backend openvino-bf16).
            "INFERENCE_NUM_THREADS": threads or thread_budget(),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": precision,
        }
        try:
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelUnavailable(f"OpenVINO cannot compile {xml} for the CPU ({exc})") from None
        self._request = self._compiled.create_infer_request()
        self.model_path = xml
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

    def _infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One request per detector: callers share a detector across threads only under a lock
        # (pipeline.context builds it once per process, workers are processes).
        self._request.infer({0: tensor})
        preds = self._request.get_output_tensor(self._head_idx).data
        protos = self._request.get_output_tensor(self._proto_idx).data
        # The request reuses its output buffers on the next call: keep copies.
        return np.array(preds, copy=True), np.array(protos, copy=True)


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), as OpenVINO reports
    (asked once a process: the answer needs a new OpenVINO Core)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
