"""What a matched street segment says about a point: side, ZIP, interpolated address."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

# The street table's attribute columns, in the order the in-memory and PostGIS indexes keep them.
STREET_COLUMNS = (
    "id",
    "name",
    "cls",
    "owner",
    "zip_l",
    "zip_r",
    "l_from",
    "l_to",
    "r_from",
    "r_to",
)


@dataclass(frozen=True)
class StreetMatch:
    """The street segment nearest a point, and what its attributes say about that spot."""

    street_id: str | None
    name: str | None
    road_class: str | None
    road_owner: str | None
    distance_m: float
    side: str  # "left" or "right" of the segment's digitised direction
    zip_code: str | None
    interpolated_address: str | None


def round_m(v: float) -> float:
    """A distance as reported: to the centimetre."""
    return round(float(v), 2)


def describe_matches(
    lines: np.ndarray,
    attrs: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    dist: np.ndarray,
) -> list[StreetMatch]:
    """One StreetMatch per point (x[j], y[j]) matched to lines[j], its attributes attrs[c][j]."""
    if not len(lines):
        return []
    pts = shapely.points(x, y)
    d = shapely.line_locate_point(lines, pts)
    length = shapely.length(lines)
    a = shapely.line_interpolate_point(lines, np.clip(d - 1.0, 0, length))
    b = shapely.line_interpolate_point(lines, np.clip(d + 1.0, 0, length))
    q = shapely.line_interpolate_point(lines, d)
    tx, ty = shapely.get_x(b) - shapely.get_x(a), shapely.get_y(b) - shapely.get_y(a)
    vx, vy = x - shapely.get_x(q), y - shapely.get_y(q)
    # Address ranges are given per side of the segment's digitised direction.
    left = (tx * vy - ty * vx) > 0
    frac = np.where(length > 0, d / np.where(length > 0, length, 1), 0.0)
    out = []
    for j in range(len(lines)):
        side, other = ("left", "r") if left[j] else ("right", "l")
        s = side[0]
        out.append(
            StreetMatch(
                street_id=attrs["id"][j],
                name=attrs["name"][j],
                road_class=attrs["cls"][j],
                road_owner=attrs["owner"][j],
                distance_m=round_m(dist[j]),
                side=side,
                zip_code=attrs[f"zip_{s}"][j] or attrs[f"zip_{other}"][j],
                interpolated_address=interpolate(
                    attrs[f"{s}_from"][j], attrs[f"{s}_to"][j], frac[j], attrs["name"][j]
                ),
            )
        )
    return out


def interpolate(frm: float, to: float, frac: float, name: str | None) -> str | None:
    """A house number placed along the side's address range, with the range's parity."""
    if name is None or not (math.isfinite(frm) and math.isfinite(to)) or max(frm, to) <= 0:
        return None
    frm, to = int(frm), int(to)
    if min(frm, to) <= 0:
        frm = to = max(frm, to)  # a one-ended range: the one number it has
    num = round(frm + frac * (to - frm))
    if (num - frm) % 2:
        num += 1 if to >= frm else -1
    num = min(max(num, min(frm, to)), max(frm, to))
    return f"{num} {name}"
