"""Crew-verified labels of case photos (pipeline/labels.py): what a photo really shows."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth import Principal, require
from pipeline import labels
from pipeline.context import Context

router = APIRouter(tags=["crew"])
# The people who see the thing itself (crews) and those who build training data (analysts).
LABELLERS = ("crew", "analyst", "admin")
PATH = "/api/v1/cases/{case_id}/photos/{n}/labels"


class LabelSet(BaseModel):
    """Everything the photo shows: each object from a finding (`from_finding`, optionally
    with another `class_name`), or drawn (`polygon_px` or `box_xyxy` in the photo's full-size
    upright pixels, with `class_name`). Findings left out were false alarms; an empty list
    says the photo shows no pothole or graffiti at all."""

    # Checked in pipeline/labels.py, whose messages name the object and field at fault.
    objects: list[Any] = Field(max_length=labels.MAX_OBJECTS)
    note: str = Field(default="", max_length=labels.MAX_NOTE)


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


N = Annotated[int, Path(ge=0, le=4, description="0: the report's first photo, 1-4 the extra ones")]


@router.put(PATH)
async def put_labels(
    request: Request,
    case_id: str,
    n: N,
    body: LabelSet,
    who: Annotated[Principal, Depends(require(*LABELLERS))],
) -> dict[str, Any]:
    """Say what photo n of a case shows (the newest label set counts; earlier ones are kept).
    422 naming the object at fault; 404 for a case or photo that does not exist."""
    set_ = functools.partial(
        labels.set_labels, _ctx(request), case_id, n, body.objects, by=who.actor, note=body.note
    )
    return await run_in_threadpool(set_)


@router.get(PATH, dependencies=[Depends(require(*LABELLERS))])
async def get_labels(request: Request, case_id: str, n: N) -> dict[str, Any]:
    """The newest label set of photo n, what became of each finding, and who labelled before."""
    return await run_in_threadpool(labels.get_labels, _ctx(request), case_id, n)
