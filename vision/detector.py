"""Run the segmentation detector: a small protocol, the post-processing every runtime shares,
and the ONNX Runtime implementation (OpenVINO: vision/detector_openvino.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from vision.errors import InvalidArgument, ModelUnavailable
from vision.threads import budget as thread_budget
from vision.types import Detections

PAD_VALUE = 114  # ultralytics' letterbox grey; the model was trained with it
MAX_DET = 300  # ultralytics' predict default
N_MASK_COEFFS = 32  # YOLO-seg heads emit 32 prototype coefficients per box
POLY_TOLERANCE_PX = 1.0


@runtime_checkable
class Detector(Protocol):
    """Anything that finds objects in an upright RGB image."""

    class_names: Sequence[str]

    def detect(self, rgb: np.ndarray) -> Detections:
        """Objects in rgb ((H, W, 3) uint8), in its pixel frame."""
        ...


@dataclass(frozen=True)
class _Letterbox:
    """How an image was fitted into the model input: scale per axis, then offset."""

    gain_x: float
    gain_y: float
    left: int
    top: int


class YoloSegDetector:
    """An exported ultralytics YOLO-seg model (no NMS) and the one post-processing
    every runtime shares: letterbox, confidence, class-aware NMS, boxes and mask polygons in
    image pixels. Subclasses only run the network (`_infer`)."""

    imgsz: tuple[int, int]  # (height, width) of the model input (its largest, when it varies)
    # None: the input is fixed and every photo is padded to the full imgsz square. An int: the
    # export takes any size (vision.train exports dynamic), so a photo is padded only up to a
    # multiple of this stride, as ultralytics' own predict does (rect): a 4:3 photo runs at
    # 416x320, ~20 % less work than the square, and the results match ultralytics' more closely.
    stride: int | None = None
    backend: str = ""
    precision: str = "f32"  # what the network computes in (OpenVINO may run bf16)

    def _init_common(self, class_names: Sequence[str], conf: float, iou: float) -> None:
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise InvalidArgument(f"conf and iou must be in [0, 1], got conf={conf}, iou={iou}")
        self.class_names: Sequence[str] = tuple(class_names)
        self.conf = conf
        self.iou = iou

    def _check_head(
        self,
        model_path: Path,
        shape: Sequence[object],
        channels: object,
        metadata: dict | None = None,
    ) -> None:
        """Take the input size from a fixed-size model, or from its export's metadata (imgsz,
        stride) when it takes any size; refuse a head that does not match the class names."""
        if len(shape) != 4:
            raise ModelUnavailable(
                f"{model_path} has input shape {list(shape)}; a YOLO model takes (1, 3, H, W)"
            )
        if all(isinstance(d, int) for d in shape[2:]):
            self.imgsz = (int(shape[2]), int(shape[3]))  # type: ignore[call-overload]
            self.stride = None
        else:
            self.imgsz, self.stride = _dynamic_size(model_path, metadata)
        if isinstance(channels, int) and channels - 4 - N_MASK_COEFFS != len(self.class_names):
            raise ModelUnavailable(
                f"{model_path} predicts {channels - 4 - N_MASK_COEFFS} classes but "
                f"{len(self.class_names)} class names were given ({list(self.class_names)}): "
                "use the class names from the model's meta.yaml"
            )

    def _infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1, 3, H, W) float32 in [0, 1] -> raw head (1, 4+nc+32, N) and prototypes."""
        raise NotImplementedError

    def detect(self, rgb: np.ndarray) -> Detections:
        """Objects in rgb ((H, W, 3) uint8), boxes and mask polygons in its pixel frame."""
        return self.detect_outlined(rgb)

    def detect_outlined(
        self,
        rgb: np.ndarray,
        outline: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> Detections:
        """detect(), tracing mask outlines only where outline(xyxy, class_id) says True (the
        rest get their box): evaluation at conf 0.001 needs few of its ~300 outlines."""
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3):
            got = getattr(rgb, "shape", type(rgb).__name__)
            raise InvalidArgument(f"detect needs an (H, W, 3) RGB array, got {got}")
        if rgb.dtype != np.uint8:
            raise InvalidArgument(f"detect needs uint8 pixels, got {rgb.dtype}")
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise InvalidArgument(f"detect needs a non-empty image, got shape {rgb.shape}")
        tensor, lb = _letterbox(np.ascontiguousarray(rgb), self.imgsz, self.stride)
        input_hw = (int(tensor.shape[2]), int(tensor.shape[3]))
        preds, protos = self._infer(tensor)
        boxes, scores, classes, coeffs = _decode_boxes(
            preds[0], len(self.class_names), self.conf, self.iou
        )
        if len(boxes) == 0:
            return Detections.empty(self.class_names)
        h, w = rgb.shape[:2]
        xyxy = _unletterbox(boxes, lb, w, h)
        wanted = np.ones(len(xyxy), bool) if outline is None else outline(xyxy, classes)
        polygons = [
            _mask_polygon(c, protos[0], box, lb, input_hw) if want else _box_polygon(box)
            for c, box, want in zip(coeffs, xyxy, wanted, strict=True)
        ]
        return Detections(xyxy, scores, classes, polygons, self.class_names)


class OnnxSegDetector(YoloSegDetector):
    """An exported ultralytics YOLO-seg model (opset 17, no NMS; fixed size or any) on ONNX
    Runtime."""

    backend = "onnx"

    def __init__(
        self,
        model_path: Path,
        class_names: Sequence[str],
        *,
        conf: float = 0.25,
        iou: float = 0.5,
        threads: int | None = None,
    ) -> None:
        self._init_common(class_names, conf, iou)
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelUnavailable(
                f"detector model not found at {model_path}: export one with "
                "vision.train.export_onnx or point the settings at an existing model.onnx"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or thread_budget()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot load the detector model {model_path} ({exc}): the file is not a valid "
                "ONNX model; re-export it with vision.train.export_onnx"
            ) from None
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        outputs = self._session.get_outputs()
        if len(outputs) != 2:
            raise ModelUnavailable(
                f"{model_path} has {len(outputs)} outputs; a YOLO segmentation export has 2 "
                "(boxes and mask prototypes): export a -seg model without NMS"
            )
        meta = self._session.get_modelmeta().custom_metadata_map  # ultralytics' str(value)s
        self._check_head(model_path, inp.shape, outputs[0].shape[1], meta)

    def _infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        preds, protos = self._session.run(None, {self._input_name: tensor})
        return preds, protos


def _dynamic_size(model_path: Path, metadata: dict | None) -> tuple[tuple[int, int], int]:
    """((height, width), stride) of a model that takes any input size, from the metadata its
    export wrote (ultralytics: imgsz as a list or its string, stride)."""
    import ast

    try:
        imgsz = (metadata or {})["imgsz"]
        if isinstance(imgsz, str):
            imgsz = ast.literal_eval(imgsz)
        if isinstance(imgsz, int):
            imgsz = [imgsz, imgsz]
        h, w = int(imgsz[0]), int(imgsz[1])
        stride = int((metadata or {}).get("stride", 32))
    except (KeyError, ValueError, TypeError, SyntaxError, IndexError):
        raise ModelUnavailable(
            f"{model_path} takes any input size but its export metadata gives no image size "
            "(imgsz): export it with vision.train, which records it"
        ) from None
    if h <= 0 or w <= 0 or stride <= 0 or h % stride or w % stride:
        raise ModelUnavailable(
            f"{model_path}: image size {h}x{w} is not a positive multiple of stride {stride}"
        )
    return (h, w), stride


def _letterbox(
    rgb: np.ndarray, imgsz: tuple[int, int], stride: int | None = None
) -> tuple[np.ndarray, _Letterbox]:
    """Resize keeping the aspect ratio, pad centred with grey: ultralytics' LetterBox, padded to
    the full imgsz (auto=False) or, given a stride, only up to a multiple of it (auto=True)."""
    h0, w0 = rgb.shape[:2]
    H, W = imgsz
    r = min(H / h0, W / w0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    img = rgb
    if (new_w, new_h) != (w0, h0):
        img = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = W - new_w, H - new_h
    if stride:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    # The -0.1/+0.1 split puts an odd pixel of padding at the bottom/right, as ultralytics does.
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.copyMakeBorder(
        img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    tensor = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    return tensor, _Letterbox(new_w / w0, new_h / h0, left, top)


def _decode_boxes(
    pred: np.ndarray, nc: int, conf: float, iou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(4+nc+32, N) raw head output -> kept xyxy (input frame), scores, classes, mask coeffs."""
    pred = pred.T  # (N, 4 + nc + 32)
    cls_scores = pred[:, 4 : 4 + nc]
    classes = cls_scores.argmax(1)
    scores = cls_scores[np.arange(len(pred)), classes]
    keep = scores > conf
    pred, classes, scores = pred[keep], classes[keep], scores[keep]
    if len(pred) == 0:
        empty = np.zeros((0, 4), np.float32)
        return empty, np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros((0, 32))
    cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    order = _nms(boxes, scores, classes, iou)[:MAX_DET]
    return boxes[order], scores[order], classes[order].astype(np.int64), pred[order, 4 + nc :]


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy class-aware NMS; indices of kept boxes, best first."""
    # Shifting each class to its own region keeps different classes from suppressing each other.
    shifted = boxes + (classes.astype(np.float32) * 7680.0)[:, None]
    x0, y0, x1, y1 = shifted.T
    areas = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while len(order):
        i = order[0]
        kept.append(int(i))
        rest = order[1:]
        iw = (np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest])).clip(0)
        ih = (np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])).clip(0)
        inter = iw * ih
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(kept, dtype=np.int64)


def _unletterbox(boxes: np.ndarray, lb: _Letterbox, w: int, h: int) -> np.ndarray:
    out = boxes.astype(np.float32).copy()
    out[:, [0, 2]] = ((out[:, [0, 2]] - lb.left) / lb.gain_x).clip(0, w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - lb.top) / lb.gain_y).clip(0, h)
    return out


def _mask_polygon(
    coeffs: np.ndarray,
    protos: np.ndarray,
    box: np.ndarray,
    lb: _Letterbox,
    input_hw: tuple[int, int],
) -> np.ndarray:
    """The detection's mask as its largest outer contour, in image pixels (box if empty);
    input_hw: the (height, width) the photo was letterboxed to."""
    c, mh, mw = protos.shape
    # sigmoid(logit) > 0.5 exactly when logit > 0, so the threshold needs no sigmoid.
    logits = (coeffs.astype(np.float32) @ protos.reshape(c, -1)).reshape(mh, mw)
    x0, y0, x1, y1 = (float(v) for v in box)
    ix0, iy0 = math.floor(x0), math.floor(y0)
    pw, ph = math.ceil(x1) - ix0, math.ceil(y1) - iy0
    if pw <= 0 or ph <= 0:
        return _box_polygon(box)
    # Sample the prototype grid straight at image resolution, only inside the box: an image
    # pixel centre (i + 0.5) sits at letterbox x = left + (i + 0.5) * gain, and prototype
    # cell j's centre at j + 0.5 in a grid input / mw times coarser (bilinear, as in F.interpolate).
    sx, sy = mw / input_hw[1], mh / input_hw[0]
    affine = np.array(
        [
            [lb.gain_x * sx, 0.0, (lb.left + (ix0 + 0.5) * lb.gain_x) * sx - 0.5],
            [0.0, lb.gain_y * sy, (lb.top + (iy0 + 0.5) * lb.gain_y) * sy - 0.5],
        ],
        dtype=np.float64,
    )
    patch = cv2.warpAffine(
        logits,
        affine,
        (pw, ph),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask = (patch > 0).astype(np.uint8)
    # Crop to the box with ultralytics' rule (pixel index in [x0, x1)), so outlines match its own.
    cols = ix0 + np.arange(pw)
    rows = iy0 + np.arange(ph)
    mask[:, (cols < x0) | (cols >= x1)] = 0
    mask[(rows < y0) | (rows >= y1), :] = 0
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return _box_polygon(box)
    largest = max(contours, key=cv2.contourArea)
    simple = cv2.approxPolyDP(largest, POLY_TOLERANCE_PX, True).reshape(-1, 2)
    if len(simple) < 3:
        simple = largest.reshape(-1, 2)
    # Contour points are pixel indices; +0.5 puts them at pixel centres in the same continuous
    # frame as the boxes, so scaling to another resolution is a plain multiplication.
    return simple.astype(np.float32) + np.float32([ix0 + 0.5, iy0 + 0.5])


def _box_polygon(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
