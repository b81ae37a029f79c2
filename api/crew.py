"""Staff case views (with the reporter's contact details) and crew actions on cases."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth import Principal, require
from pipeline import accounts, actions
from pipeline.context import Context
from pipeline.types import Case, Status

router = APIRouter(tags=["crew"])
# Contact details are for the people who act on a case; analysts work from the public views.
CREW = ("crew", "admin")


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


class CaseAction(BaseModel):
    """One crew action; `note` is required to resolve or reject."""

    action: actions.Action
    note: str = Field(default="", max_length=actions.MAX_NOTE)
    resolution: actions.CrewResolution | None = Field(
        default=None, description="resolve only (default fixed)"
    )
    duplicate_of: str | None = Field(
        default=None, max_length=64, description="duplicate only: the case this one repeats"
    )


def staff_view(case: Case, owner: str | None) -> dict[str, Any]:
    """A case as crews see it: everything, contact details and the reporter's account too."""
    body = case.model_dump(mode="json")
    body["reporter_account_id"] = owner
    return body


def _staff_case(ctx: Context, case_id: str) -> dict[str, Any]:
    return staff_view(ctx.store.get(case_id), accounts.report_owner(ctx.store, case_id))


@router.get("/api/v1/cases", dependencies=[Depends(require(*CREW))])
async def list_cases(
    request: Request,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The crew queue: cases (newest first), optionally of one status, in the staff view."""
    ctx = _ctx(request)

    def load() -> list[dict[str, Any]]:
        return [_staff_case(ctx, i) for i in ctx.store.ids(status, limit)]

    return {"cases": await run_in_threadpool(load), "limit": limit}


@router.get("/api/v1/cases/{case_id}", dependencies=[Depends(require(*CREW))])
async def get_case(request: Request, case_id: str) -> dict[str, Any]:
    """One case in the staff view."""
    return await run_in_threadpool(_staff_case, _ctx(request), case_id)


@router.post("/api/v1/cases/{case_id}/actions")
async def case_action(
    request: Request,
    case_id: str,
    body: CaseAction,
    who: Annotated[Principal, Depends(require(*CREW))],
) -> dict[str, Any]:
    """Acknowledge, start, resolve (with a note), reject (with a note) or mark a duplicate;
    recorded in the case's history with who did it. 409 when the status does not allow it."""
    ctx = _ctx(request)
    act = functools.partial(
        actions.act,
        ctx.store,
        case_id,
        body.action,
        by=who.actor,
        note=body.note,
        resolution=body.resolution,
        duplicate_of=body.duplicate_of,
    )
    case = await run_in_threadpool(act)
    owner = await run_in_threadpool(accounts.report_owner, ctx.store, case_id)
    return staff_view(case, owner)
