"""Strict multipart forms: a field the route does not take, a field sent twice, or a flood of
files is a clear 422, not something FastAPI quietly drops or resolves to the last value."""

from __future__ import annotations

import contextlib
import types
import typing
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
    items = form.multi_items()
    _check_file_count(items)
    for name, count in Counter(k for k, _ in items).items():
        if name not in known and name not in ALWAYS_ALLOWED and not allow_unknown:
            raise _unknown(name, known)
        if count > 1 and name in known and not known[name]:
            raise _repeated(name, items)


def _check_file_count(items: list[tuple[str, Any]]) -> None:
    files = sum(1 for _, v in items if not isinstance(v, str))
    if files > MAX_FILES:
        raise InvalidReport(
            f"the request has {files} files; send at most {MAX_FILES} (one report's photos)",
            field="photo",
        )


def _unknown(name: str, known: typing.Iterable[str]) -> InvalidReport:
    takes = ", ".join(sorted(known))
    return InvalidReport(
        f"unknown field {_short(name)}: this endpoint takes {takes}", field=name[:40]
    )


def _repeated(name: str, items: list[tuple[str, Any]]) -> InvalidReport:
    count = sum(1 for k, _ in items if k == name)
    return InvalidReport(
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


class MalformedForm(InvalidReport):
    """A required part is missing, or a file came where text belongs (or the reverse)."""

    code = "invalid_request"


@dataclass(frozen=True)
class FormSpec:
    """A multipart form read by hand, refusing unknown and repeated fields and
    floods of files (as `form_limits` does for Open311, which also allows unknown fields).

    FastAPI resolves each declared Form()/File() parameter on every request; with the fifteen
    fields of an upload that cost ~3.5 ms of CPU, more than the upload's database work. A route
    on the hot path reads its form once with `read` instead and documents it with `openapi`,
    both from this one description."""

    text: dict[str, str]  # field -> description
    files: dict[str, tuple[bool, str]]  # field -> (may repeat, description)
    required: frozenset[str] = frozenset()
    max_repeats: dict[str, int] = field(default_factory=dict)  # documented maxItems

    def openapi(self) -> dict[str, Any]:
        """The operation's requestBody, for `openapi_extra`."""
        props: dict[str, Any] = {}
        for name, (many, text) in self.files.items():
            one = {"type": "string", "format": "binary"}
            if many:
                props[name] = {"type": "array", "items": one, "description": text}
                if name in self.max_repeats:
                    props[name]["maxItems"] = self.max_repeats[name]
            else:
                props[name] = {**one, "description": text}
        for name, text in self.text.items():
            props[name] = {"type": "string", **({"description": text} if text else {})}
        schema = {"type": "object", "properties": props, "required": sorted(self.required)}
        return {
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": schema}},
            }
        }

    @contextlib.asynccontextmanager
    async def read(
        self, request: Request
    ) -> AsyncIterator[tuple[dict[str, str], dict[str, list[UploadFile]]]]:
        """The form's text fields and files, checked; its spooled files are closed after."""
        form = await request.form()
        try:
            yield self._check(form.multi_items())
        finally:
            await form.close()

    def _check(
        self, items: list[tuple[str, Any]]
    ) -> tuple[dict[str, str], dict[str, list[UploadFile]]]:
        _check_file_count(items)
        text: dict[str, str] = {}
        files: dict[str, list[UploadFile]] = {}
        for name, value in items:
            if name in self.text:
                if name in text:
                    raise _repeated(name, items)
                if not isinstance(value, str):
                    raise MalformedForm(f"{name} is a text field, not a file", field=name)
                text[name] = value
            elif name in self.files:
                many = self.files[name][0]
                if name in files and not many:
                    raise _repeated(name, items)
                if isinstance(value, str):
                    raise MalformedForm(f"{name} must be a file upload, not text", field=name)
                files.setdefault(name, []).append(value)
            elif name not in ALWAYS_ALLOWED:
                raise _unknown(name, [*self.text, *self.files])
        for name in sorted(self.required):
            if name not in text and name not in files:
                raise MalformedForm(f"{name} is required", field=name)
        return text, files
