"""What is really in a case's photo, as a crew member or analyst says: the detector's
training data from the city's own photos.

A label set is a person's complete statement about one photo of a case: every pothole and
graffiti in it, each an outline in the photo's full-size upright pixels (the frame findings
use). Built from the detector's findings or drawn anew: `from_finding` keeps a finding's outline
(confirmed; with another `class_name`, reclassified), a `polygon_px` or `box_xyxy` is drawn by
the person (a corrected outline, or an object the detector missed), and a finding left out was a
false alarm. An empty set says the photo shows neither: a hard negative, the most useful kind.

Label sets are kept, never overwritten (who said what, when): the newest for a photo counts.
`streetlens dataset export-verified` (pipeline/labels_export.py) writes them out as a YOLO
dataset that `streetlens train --add-source` trains on. Migration 0008 builds the table.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db import Base, aware, utcnow
from pipeline.errors import CaseNotFound, InvalidReport, PhotoRejected
from pipeline.settings import REPO_ROOT

if TYPE_CHECKING:
    from pipeline.context import Context
    from pipeline.types import Case

MAX_OBJECTS = 50
MAX_POINTS = 1000
MAX_NOTE = 2000
EDGE_PX = 2.0  # an outline may reach this far past the photo's edge (a drawn box's slop)
DETECTOR_MANIFEST = REPO_ROOT / "datasets" / "sources" / "detector.yaml"


class PhotoLabelRow(Base):
    """One label set: a person's complete statement of what one photo of a case shows."""

    __tablename__ = "photo_labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    photo: Mapped[int] = mapped_column(Integer)  # 0 the first photo, 1-4 the extra ones
    sha256: Mapped[str] = mapped_column(ForeignKey("photos.sha256"), index=True)
    width_px: Mapped[int] = mapped_column(Integer)  # full-size, upright
    height_px: Mapped[int] = mapped_column(Integer)
    objects: Mapped[list] = mapped_column(JSON)  # [{class_name, polygon_px, from_finding}]
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


@functools.cache
def detector_classes() -> tuple[str, ...]:
    """The classes the detector learns (datasets/sources/detector.yaml): what a label may be."""
    return tuple(yaml.safe_load(DETECTOR_MANIFEST.read_text())["classes"])


def photo_sha256(ctx: Context, case: Case, n: int) -> str:
    """The stored photo behind photo n of a case; CaseNotFound (404) when there is none."""
    from pipeline import case_photos

    case_id = case.id
    if n < 0 or n > case_photos.MAX_EXTRA:
        raise CaseNotFound(f"a case's photos are numbered 0-{case_photos.MAX_EXTRA}", field="n")
    if n == 0:
        if case.report.photo_sha256 is None:
            raise CaseNotFound("this report has no photo", field="n")
        return case.report.photo_sha256
    return case_photos.extra_sha256(ctx.store, case_id, n)


def _upright_size(ctx: Context, sha256: str) -> tuple[int, int]:
    """The photo's full-size upright (EXIF orientation applied) width and height."""
    from vision.errors import ImageRejected
    from vision.image import inspect

    try:
        info = inspect(
            ctx.media.get(sha256),
            max_pixels=ctx.settings.max_pixels,
            max_bytes=ctx.settings.max_upload_bytes,
        )
    except ImageRejected as exc:  # stored before a stricter check; cannot be labelled
        raise PhotoRejected(f"the stored photo cannot be read: {exc}") from exc
    return info.capture.width_px, info.capture.height_px


def _points(raw: Any, field: str, size: tuple[int, int]) -> list[list[float]]:
    """A polygon's points as [[x, y], ...], checked: 3-MAX_POINTS finite points inside the
    photo (give or take EDGE_PX), enclosing some area."""
    if not isinstance(raw, list) or not 3 <= len(raw) <= MAX_POINTS:
        raise InvalidReport(f"an outline is a list of 3 to {MAX_POINTS} [x, y] points", field=field)
    w, h = size
    pts = []
    for p in raw:
        if (
            not isinstance(p, list | tuple)
            or len(p) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
            or not all(math.isfinite(float(v)) for v in p)
        ):
            raise InvalidReport("each point is [x, y], two finite numbers", field=field)
        x, y = float(p[0]), float(p[1])
        if not (-EDGE_PX <= x <= w + EDGE_PX and -EDGE_PX <= y <= h + EDGE_PX):
            raise InvalidReport(
                f"point [{x:g}, {y:g}] is outside the photo ({w}x{h} px, full size, upright)",
                field=field,
            )
        pts.append([round(min(max(x, 0.0), w), 1), round(min(max(y, 0.0), h), 1)])
    area = 0.5 * abs(
        sum(pts[i][0] * pts[i - 1][1] - pts[i - 1][0] * pts[i][1] for i in range(len(pts)))
    )
    if area < 1.0:
        raise InvalidReport("the outline encloses no area (its points are in a line)", field=field)
    return pts


def _box(raw: Any, field: str, size: tuple[int, int]) -> list[list[float]]:
    if not isinstance(raw, list | tuple) or len(raw) != 4:
        raise InvalidReport("box_xyxy is [x0, y0, x1, y1]", field=field)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        raise InvalidReport("box_xyxy is four numbers", field=field)
    x0, y0, x1, y1 = (float(v) for v in raw)
    if not (x1 > x0 and y1 > y0):
        raise InvalidReport("box_xyxy needs x0 < x1 and y0 < y1", field=field)
    return _points([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], field, size)


def check_objects(
    raw: Any, findings: list, photo: int, size: tuple[int, int]
) -> list[dict[str, Any]]:
    """The label set's objects, each {class_name, polygon_px, from_finding}, or InvalidReport
    naming the field (`objects[2].polygon_px`)."""
    classes = detector_classes()
    if not isinstance(raw, list):
        raise InvalidReport("objects is a list (empty: the photo shows none)", field="objects")
    if len(raw) > MAX_OBJECTS:
        raise InvalidReport(f"at most {MAX_OBJECTS} objects a photo", field="objects")
    out = []
    for i, obj in enumerate(raw):
        at = f"objects[{i}]"
        if not isinstance(obj, dict):
            raise InvalidReport("each object is a JSON object", field=at)
        unknown = set(obj) - {"class_name", "polygon_px", "box_xyxy", "from_finding"}
        if unknown:
            raise InvalidReport(f"unknown field(s): {', '.join(sorted(unknown))}", field=at)
        given = [k for k in ("polygon_px", "box_xyxy", "from_finding") if obj.get(k) is not None]
        if len(given) != 1:
            raise InvalidReport(
                "give exactly one of polygon_px, box_xyxy or from_finding", field=at
            )
        cls = obj.get("class_name")
        if cls is not None and cls not in classes:
            raise InvalidReport(
                f"class_name must be one of {', '.join(classes)}", field=f"{at}.class_name"
            )
        src: int | None = None
        if given[0] == "from_finding":
            src = obj["from_finding"]
            ours = [k for k, f in enumerate(findings) if f.photo == photo]
            if isinstance(src, bool) or not isinstance(src, int) or src not in ours:
                raise InvalidReport(
                    f"from_finding is the index of one of this photo's findings ({ours or 'none'})",
                    field=f"{at}.from_finding",
                )
            finding = findings[src]
            cls = cls or finding.class_name
            if cls not in classes:
                raise InvalidReport(
                    f"finding {src} is a {finding.class_name!r}: give a class_name "
                    f"({', '.join(classes)})",
                    field=f"{at}.class_name",
                )
            pts = [[float(x), float(y)] for x, y in finding.polygon_px]
            try:
                pts = _points(pts, f"{at}.from_finding", size)
            except InvalidReport:  # an outline too thin to keep: the finding's box instead
                pts = _box(list(finding.bbox_xyxy), f"{at}.from_finding", size)
        elif cls is None:
            raise InvalidReport("say what it is: class_name", field=f"{at}.class_name")
        elif given[0] == "polygon_px":
            pts = _points(obj["polygon_px"], f"{at}.polygon_px", size)
        else:
            pts = _box(obj["box_xyxy"], f"{at}.box_xyxy", size)
        out.append({"class_name": cls, "polygon_px": pts, "from_finding": src})
    return out


def set_labels(
    ctx: Context, case_id: str, photo: int, objects: Any, *, by: str, note: str = ""
) -> dict[str, Any]:
    """Record a label set for photo n of a case (the newest counts); returns it as stored."""
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise InvalidReport(f"the note is over {MAX_NOTE} characters", field="note")
    case = ctx.store.get(case_id)
    sha = photo_sha256(ctx, case, photo)
    size = _upright_size(ctx, sha)
    checked = check_objects(objects, case.findings, photo, size)
    row = PhotoLabelRow(
        case_id=case_id,
        photo=photo,
        sha256=sha,
        width_px=size[0],
        height_px=size[1],
        objects=checked,
        by=by,
        at=utcnow(),
        note=note,
    )
    with ctx.store.session() as s:
        s.add(row)
        s.flush()
        return as_dict(row, case.findings)


def get_labels(ctx: Context, case_id: str, photo: int) -> dict[str, Any]:
    """The newest label set of photo n of a case, with how many came before; CaseNotFound
    when the photo has none yet."""
    case = ctx.store.get(case_id)
    photo_sha256(ctx, case, photo)  # 404 for a case or photo that does not exist
    with ctx.store.session() as s:
        rows = list(
            s.scalars(
                select(PhotoLabelRow)
                .where(PhotoLabelRow.case_id == case_id, PhotoLabelRow.photo == photo)
                .order_by(PhotoLabelRow.id)
            )
        )
    if not rows:
        raise CaseNotFound(f"photo {photo} of case {case_id[:40]} has no labels yet", field="n")
    body = as_dict(rows[-1], case.findings)
    body["earlier"] = [
        {"by": r.by, "at": aware(r.at).isoformat(), "objects": len(r.objects)} for r in rows[:-1]
    ]
    return body


def as_dict(row: PhotoLabelRow, findings: list) -> dict[str, Any]:
    """A label set as the API shows it, with what became of each of the photo's findings."""
    kept = {
        o["from_finding"]: o["class_name"] for o in row.objects if o["from_finding"] is not None
    }
    verdicts = {}
    for k, f in enumerate(findings):
        if f.photo != row.photo:
            continue
        if k not in kept:
            verdicts[str(k)] = "false alarm"
        else:
            verdicts[str(k)] = "confirmed" if kept[k] == f.class_name else f"is a {kept[k]}"
    return {
        "case_id": row.case_id,
        "photo": row.photo,
        "size_px": [row.width_px, row.height_px],
        "objects": row.objects,
        "findings": verdicts,
        "by": row.by,
        "at": aware(row.at).isoformat(),
        "note": row.note,
    }
