"""Strict multipart forms: a field the route does not take, a field sent twice, or a flood of
files is a clear 422, not something FastAPI quietly drops or resolves to the last value."""

from __future__ import annotations

import types
import typing
from collections import Counter
from typing import Any

from fastapi import Request, UploadFile
from fastapi.dependencies.models import Dependant

from pipeline.errors import InvalidReport, PhotoTooLarge

CHUNK = 1 << 20
MAX_FILES = 10  # photos in one request; a report route takes fewer
# Credentials may come as a form field (api/auth.py reads them elsewhere).
ALWAYS_ALLOWED = frozenset({"api_key"})


def _fields(dependant: Dependant) -> dict[str, bool]:
    """The route's form/file fields (and its dependencies'): name -> may it repeat."""
    out: dict[str, bool] = {}
    for f in dependant.body_params:
        out[f.alias] = _is_list(f.field_info.annotation)
    for sub in dependant.dependencies:
        out.update(_fields(sub))
    return out


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (list, tuple, set, frozenset)


def _short(name: str) -> str:
    return repr(name[:40])


async def strict_form(request: Request) -> None:
    """Refuse unknown, repeated and too many form fields (a route dependency)."""
    await _check_form(request, allow_unknown=False)


async def form_limits(request: Request) -> None:
    """Refuse repeated fields and too many files, but let unknown fields pass (Open311 clients
    send fields of their own, and `attribute[CODE]` ones)."""
    await _check_form(request, allow_unknown=True)


async def _check_form(request: Request, *, allow_unknown: bool) -> None:
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return  # FastAPI's own validation answers other bodies
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _fields(dependant)
    form = await request.form()  # parsed once already for the route: this is the cached copy
    names = [k for k, _ in form.multi_items()]
    files = sum(1 for _, v in form.multi_items() if not isinstance(v, str))
    if files > MAX_FILES:
        raise InvalidReport(
            f"the request has {files} files; send at most {MAX_FILES} (one report's photos)",
            field="photo",
        )
    for name, count in Counter(names).items():
        if name not in known and name not in ALWAYS_ALLOWED and not allow_unknown:
            takes = ", ".join(sorted(known))
            raise InvalidReport(
                f"unknown field {_short(name)}: this endpoint takes {takes}", field=name[:40]
            )
        if count > 1 and name in known and not known[name]:
            raise InvalidReport(
                f"field {_short(name)} was sent {count} times: send it once", field=name[:40]
            )


async def read_upload(upload: UploadFile, limit: int, field: str) -> bytes:
    """An uploaded file's bytes, refused as soon as it passes `limit` (never read whole first)."""
    chunks, size = [], 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PhotoTooLarge(f"the photo is over the {limit}-byte limit", field=field)
        chunks.append(chunk)
    return b"".join(chunks)
