"""ultralytics weights (.pt) behind the Detector protocol: for evaluating a training run
before it is exported. Needs the `train` extra (torch); serving never uses it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vision.detector import POLY_TOLERANCE_PX, _box_polygon
from vision.errors import InvalidArgument, ModelUnavailable
from vision.types import Detections


class UltralyticsSegDetector:
    """YOLO(weights).predict on one RGB image, as Detections (mask outlines as polygons)."""

    backend = "ultralytics"

    def __init__(
        self,
        weights: Path,
        class_names: Sequence[str] | None = None,
        *,
        imgsz: int = 416,
        conf: float = 0.25,
        iou: float = 0.5,
    ) -> None:
        if not Path(weights).is_file():
            raise ModelUnavailable(f"weights not found at {weights}")
        from ultralytics import YOLO

        self._model = YOLO(str(weights))
        names = [self._model.names[i] for i in sorted(self._model.names)]
        if class_names is not None and list(class_names) != names:
            raise ModelUnavailable(f"{weights} predicts {names}, not {list(class_names)}")
        self.class_names: Sequence[str] = tuple(names)
        self.imgsz = (imgsz, imgsz)
        self.conf = conf
        self.iou = iou

    def detect(self, rgb: np.ndarray) -> Detections:
        """Objects in rgb ((H, W, 3) uint8): letterboxed to a stride multiple (rect), as the
        exports are served, mask outlines in image pixels."""
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.dtype == np.uint8):
            raise InvalidArgument("detect needs an (H, W, 3) uint8 RGB array")
        r = self._model.predict(
            np.ascontiguousarray(rgb[..., ::-1]),
            imgsz=self.imgsz[0],
            conf=self.conf,
            iou=self.iou,
            rect=True,
            device="cpu",
            verbose=False,
        )[0]
        if len(r.boxes) == 0:
            return Detections.empty(self.class_names)
        from ultralytics.utils.ops import scale_coords

        xyxy = r.boxes.xyxy.numpy().astype(np.float32)
        # Masks at input resolution (retina masks for ~300 detections at conf 0.001 would
        # take gigabytes): outlines traced there, then mapped back through the letterbox.
        masks = r.masks.data.numpy() > 0.5 if r.masks is not None else None
        polygons = []
        for i, box in enumerate(xyxy):
            outline = _outline(masks[i]) if masks is not None else None
            if outline is None:
                polygons.append(_box_polygon(box))
                continue
            mapped = scale_coords(masks.shape[1:], outline.astype(np.float64), rgb.shape[:2])
            polygons.append(np.asarray(mapped, np.float32))
        return Detections(
            xyxy,
            r.boxes.conf.numpy().astype(np.float32),
            r.boxes.cls.numpy().astype(np.int64),
            polygons,
            self.class_names,
        )


def _outline(mask: np.ndarray) -> np.ndarray | None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    simple = cv2.approxPolyDP(largest, POLY_TOLERANCE_PX, True).reshape(-1, 2)
    if len(simple) < 3:
        simple = largest.reshape(-1, 2)
    return simple.astype(np.float32) + np.float32(0.5)
