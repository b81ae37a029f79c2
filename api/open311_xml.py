"""Open311 answers as the spec's XML (schemaless, no namespace) or JSON, from the same dicts."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from fastapi.responses import Response

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
# A list field's element name for each of its items (the spec's XML, e.g. <values><value>).
ITEM_TAGS = {
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}
# Characters XML 1.0 cannot carry at all; a resident's text may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(el: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _fill(ET.SubElement(el, k), v)
    elif isinstance(value, list):
        tag = ITEM_TAGS.get(el.tag, "item")
        for v in value:
            _fill(ET.SubElement(el, tag), v)
    elif value is not None:  # None: an empty element, as the spec's examples show
        el.text = _text(value)


def to_xml(root: str, data: Any, item: str | None = None) -> bytes:
    """`data` (a dict, or a list of dicts each wrapped in <item>) as an XML document."""
    el = ET.Element(root)
    if isinstance(data, list):
        for d in data:
            _fill(ET.SubElement(el, item or "item"), d)
    else:
        _fill(el, data)
    return DECLARATION + ET.tostring(el, encoding="utf-8", xml_declaration=False)


def answer(
    fmt: str, data: Any, root: str, item: str | None = None, status_code: int = 200
) -> Response:
    """The response in the format the path's suffix asked for."""
    if fmt == "xml":
        return Response(to_xml(root, data, item), status_code=status_code, media_type=XML_TYPE)
    body = json.dumps(data, ensure_ascii=False, allow_nan=False).encode()
    return Response(body, status_code=status_code, media_type=JSON_TYPE)


def error_answer(fmt: str, status_code: int, description: str) -> Response:
    """The spec's error document: a list of {code, description}."""
    data = [{"code": status_code, "description": description}]
    return answer(fmt, data, "errors", "error", status_code=status_code)
