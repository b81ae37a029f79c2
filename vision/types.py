"""The validated types `vision` hands on: Capture, Detections, Measurement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Capture:
    """What the photo says about its camera and where it was taken (EXIF), orientation applied."""

    width_px: int
    height_px: int
    # EXIF orientation tag as stored (1..8); width/height are after applying it
    orientation: int = 1
    make: str | None = None
    model: str | None = None
    focal_length_mm: float | None = None
    focal_length_35mm: float | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_accuracy_m: float | None = None
    gps_heading_deg: float | None = None
    taken_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError(f"image size must be positive, got {self.width_px}x{self.height_px}")
        if not 1 <= self.orientation <= 8:
            raise ValueError(f"EXIF orientation must be 1..8, got {self.orientation}")
        if (self.gps_lat is None) != (self.gps_lon is None):
            raise ValueError("EXIF GPS needs both latitude and longitude")


MeasureMethod = Literal["marker", "ground-plane", "wall-distance", "user-scale", "pixels-only"]


@dataclass(frozen=True)
class Measurement:
    """An object's size; metric numbers only with an interval, else `pixels-only`."""

    method: MeasureMethod
    area_px: float
    area_m2: float | None = None
    area_m2_interval: tuple[float, float] | None = None
    length_m: float | None = None
    length_m_interval: tuple[float, float] | None = None
    width_m: float | None = None
    width_m_interval: tuple[float, float] | None = None
    # Where the object lies relative to the camera: ground distance and the horizontal angle
    # from the optical axis (positive = right of centre). Used by geo to place the object.
    distance_m: float | None = None
    distance_m_interval: tuple[float, float] | None = None
    bearing_offset_deg: float | None = None
    assumptions: str = ""

    def __post_init__(self) -> None:
        if self.method == "pixels-only":
            if self.area_m2 is not None:
                raise ValueError("a pixels-only measurement has no metric area")
        elif self.area_m2 is not None and self.area_m2_interval is None:
            raise ValueError("a metric area needs its uncertainty interval")
        if self.area_m2_interval is not None:
            lo, hi = self.area_m2_interval
            if not lo <= hi:
                raise ValueError(f"interval out of order: {self.area_m2_interval}")


@dataclass
class Detections:
    """Objects found in one image, in its (oriented) pixel frame; filter by indexing."""

    xyxy: np.ndarray  # (N, 4) float32, pixels
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int64
    polygons: list[np.ndarray] = field(default_factory=list)  # N arrays (K, 2), pixels
    class_names: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if not self.polygons:
            self.polygons = [_box_polygon(b) for b in self.xyxy]
        self.polygons = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in self.polygons]
        if not (len(self.confidence) == len(self.class_id) == len(self.polygons) == n):
            raise ValueError("xyxy, confidence, class_id and polygons must have the same length")

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), [], class_names)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | list) -> Detections:
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Detections(
            self.xyxy[idx],
            self.confidence[idx],
            self.class_id[idx],
            [self.polygons[i] for i in idx],
            self.class_names,
        )

    def class_name(self, i: int) -> str:
        """The name of detection i's class."""
        cid = int(self.class_id[i])
        return self.class_names[cid] if cid < len(self.class_names) else str(cid)


def _box_polygon(b: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in b)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
