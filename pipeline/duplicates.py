"""Is this report a problem the city already has a case for?"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duplicate:
    """The open case a new report repeats, and why we think so."""

    case_id: str
    distance_m: float
    inliers: int | None
    why: str


def find_duplicate(
    ctx: Context, case_id: str, category: str, lat: float, lon: float, photo: bytes | None
) -> Duplicate | None:
    """An open case of the same category nearby that is the same spot or looks the same.

    Within `duplicate_same_spot_m` (about a phone's GPS error) two reports of one category are
    taken as one problem; further out, up to `duplicate_radius_m`, only when the photos share
    a plane's worth of features (the same pothole or tag seen again, from any angle or time).
    """
    s = ctx.settings
    near = ctx.store.cases_near(
        lat, lon, s.duplicate_radius_m, category=category, exclude_id=case_id, limit=10
    )
    if not near:
        return None
    rgb_new = _rgb(ctx, photo) if photo is not None else None
    for cand in near:
        root = root_case(ctx, cand.id)
        inliers = None
        other = ctx.store.get(root) if rgb_new is not None else None
        if other is not None and other.report.photo_sha256 is not None:  # both have photos
            try:
                rgb_old = _rgb(ctx, ctx.media.get(other.report.photo_sha256))
            except Exception:  # the original's photo is gone: judge by distance alone
                rgb_old = None
            if rgb_old is not None:
                from vision.similarity import match_inliers

                inliers = match_inliers(rgb_new, rgb_old)
        if inliers is not None and inliers >= s.duplicate_min_inliers:
            why = (
                f"{cand.distance_m:.0f} m from case {root} and its photo matches ({inliers} points)"
            )
            return Duplicate(root, cand.distance_m, inliers, why)
        if cand.distance_m <= s.duplicate_same_spot_m:
            why = f"{cand.distance_m:.0f} m from open {category} case {root}: the same spot"
            return Duplicate(root, cand.distance_m, inliers, why)
    return None


def root_case(ctx: Context, case_id: str) -> str:
    """The case a duplicate chain ends at: the one the crew works on (its own id when it
    duplicates none). Chains are short; capped anyway."""
    for _ in range(10):
        dup_of = ctx.store.get(case_id).duplicate_of
        if not dup_of:
            return case_id
        case_id = dup_of
    return case_id


def _rgb(ctx: Context, data: bytes):
    from vision.image import decode

    return decode(data, max_pixels=ctx.settings.max_pixels, target_long_side=640).rgb
