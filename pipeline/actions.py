"""Crew actions on a case: acknowledge, start, resolve, reject, mark duplicate.

Each action moves the case from the statuses it allows to its next status, atomically, and is
recorded in the case's history with who did it and the crew's note (DESIGN.md: every
transition says who, when, why). An action the current status does not allow (closing a case
twice, starting a rejected one) raises InvalidTransition and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import update

from pipeline.db import CaseRow, HistoryRow, utcnow
from pipeline.errors import CaseNotFound, InvalidReport, InvalidTransition
from pipeline.store import SqlCaseStore
from pipeline.types import Case, Status

Action = Literal["acknowledge", "start", "resolve", "reject", "duplicate"]
ACTIONS: tuple[Action, ...] = get_args(Action)
CrewResolution = Literal["fixed", "no_action", "not_city_responsibility"]
MAX_NOTE = 2000


@dataclass(frozen=True)
class Rule:
    """Where an action may start, where it leads, and whether the crew must say why."""

    allowed: tuple[Status, ...]
    to: Status
    note_required: bool
    says: str


RULES: dict[Action, Rule] = {
    "acknowledge": Rule(("needs_review",), "open", False, "acknowledged"),
    "start": Rule(("needs_review", "open"), "in_progress", False, "work started"),
    "resolve": Rule(("needs_review", "open", "in_progress"), "closed", True, "resolved"),
    "reject": Rule(("needs_review", "open", "in_progress", "failed"), "rejected", True, "rejected"),
    "duplicate": Rule(("needs_review", "open", "in_progress"), "closed", False, "duplicate of"),
}


def transition_from(
    store: SqlCaseStore,
    case_id: str,
    allowed: Iterable[Status],
    status: Status,
    *,
    by: str,
    why: str = "",
    **fields: Any,
) -> bool:
    """Like `store.transition`, but only from one of the `allowed` statuses, in one conditional
    UPDATE (two crews acting at once cannot both win): False when the case is in another."""
    now = utcnow()
    with store.session() as s:
        res = s.execute(
            update(CaseRow)
            .where(CaseRow.id == case_id, CaseRow.status.in_(list(allowed)))
            .values(status=status, updated_at=now, **fields)
        )
        if res.rowcount == 1:
            s.add(HistoryRow(case_id=case_id, status=status, at=now, by=by, why=why))
            return True
        if s.get(CaseRow, case_id) is None:
            raise CaseNotFound(f"no case with id {case_id!r}")
        return False


def _root(store: SqlCaseStore, case_id: str, target: str) -> str:
    """The case a duplicate should point at: the target, or the case it duplicates in turn."""
    seen = {case_id}
    while True:
        if target in seen:
            raise InvalidReport(
                "a case cannot be a duplicate of itself (directly or through another case)",
                field="duplicate_of",
            )
        seen.add(target)
        try:
            nxt = store.get(target).duplicate_of
        except CaseNotFound:
            raise InvalidReport(f"no case with id {target[:40]!r}", field="duplicate_of") from None
        if nxt is None:
            return target
        target = nxt


def act(
    store: SqlCaseStore,
    case_id: str,
    action: str,
    *,
    by: str,
    note: str = "",
    resolution: str | None = None,
    duplicate_of: str | None = None,
) -> Case:
    """Apply a crew action to a case and return the case as it is now."""
    if action not in RULES:
        raise InvalidReport(f"action must be one of {', '.join(ACTIONS)}", field="action")
    rule = RULES[action]  # type: ignore[index]
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise InvalidReport(f"the note is over {MAX_NOTE} characters", field="note")
    if rule.note_required and not note:
        raise InvalidReport(f"say why in a note to {action} a case", field="note")
    fields: dict[str, object] = {}
    why = rule.says
    if action == "resolve":
        res = resolution or "fixed"
        if res not in get_args(CrewResolution):
            raise InvalidReport(
                f"resolution must be one of {', '.join(get_args(CrewResolution))}",
                field="resolution",
            )
        fields["resolution"] = res
        why = f"resolved: {res}"
    elif resolution is not None:
        raise InvalidReport("a resolution goes with the resolve action only", field="resolution")
    if action == "duplicate":
        if not duplicate_of:
            raise InvalidReport("say which case this duplicates", field="duplicate_of")
        root = _root(store, case_id, duplicate_of)
        fields.update(resolution="duplicate", duplicate_of=root)
        why = f"duplicate of {root}"
    elif duplicate_of is not None:
        raise InvalidReport(
            "duplicate_of goes with the duplicate action only", field="duplicate_of"
        )
    if note:
        why = f"{why}: {note}"
    if not transition_from(store, case_id, rule.allowed, rule.to, by=by, why=why, **fields):
        now = store.status(case_id)
        raise InvalidTransition(
            f"cannot {action} a case that is {now}; {action} works on a case that is "
            + " or ".join(rule.allowed)
        )
    return store.get(case_id)
