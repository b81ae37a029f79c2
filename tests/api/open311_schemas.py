"""Checking Open311 answers: JSON against the published GeoReport v2 schemas (read in place from
the shared data folder, never copied), XML converted by those same schemas and checked alike.

The published set covers services, a service definition and requests. For the other answers
(discovery, the POST answer, tokens, servicerequestupdates, errors) the schemas below are ours,
written from the spec's text (wiki.open311.org/GeoReport_v2, Service Discovery) and the
servicerequestupdates extension as FixMyStreet serves it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import jsonschema
from helpers import require
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from pipeline.settings import Settings

PUBLISHED = ("services", "service", "service-definition", "requests", "request")
_NULLABLE_STR = {"anyOf": [{"type": "string"}, {"type": "null"}]}
OURS: dict[str, dict[str, Any]] = {
    "discovery": {
        "type": "object",
        "required": ["changeset", "contact", "endpoints"],
        "properties": {
            "changeset": {"type": "string", "format": "date-time"},
            "contact": {"type": "string"},
            "key_service": _NULLABLE_STR,
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["specification", "url", "changeset", "type", "formats"],
                    "properties": {
                        "specification": {"type": "string", "format": "uri"},
                        "url": {"type": "string", "format": "uri"},
                        "changeset": {"type": "string", "format": "date-time"},
                        "type": {"enum": ["production", "test"]},
                        "formats": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"enum": ["text/xml", "application/json"]},
                        },
                    },
                },
            },
        },
    },
    "post-response": {
        "type": "array",
        "minItems": 1,
        "maxItems": 1,
        "items": {
            "type": "object",
            "anyOf": [{"required": ["service_request_id"]}, {"required": ["token"]}],
            "properties": {
                "service_request_id": {"type": "string"},
                "token": {"type": "string"},
                "service_notice": _NULLABLE_STR,
                "account_id": _NULLABLE_STR,
            },
        },
    },
    "tokens": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["token"],
            "properties": {"service_request_id": _NULLABLE_STR, "token": {"type": "string"}},
        },
    },
    "updates": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["update_id", "service_request_id", "status", "updated_datetime"],
            "properties": {
                "update_id": {"type": "string"},
                "service_request_id": {"type": "string"},
                "status": {"enum": ["open", "closed"]},
                "updated_datetime": {"type": "string", "format": "date-time"},
                "description": _NULLABLE_STR,
                "media_url": {"anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}]},
                "external_status_code": _NULLABLE_STR,
            },
        },
    },
    "errors": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["code", "description"],
            "properties": {
                "code": {"type": "integer", "minimum": 400, "maximum": 599},
                "description": {"type": "string", "minLength": 1},
            },
        },
    },
}
# XML: the root element, and the element of each item of a list (the spec's examples).
XML_ROOTS = {
    "services": ("services", "service"),
    "service-definition": ("service_definition", None),
    "requests": ("service_requests", "request"),
    "discovery": ("discovery", None),
    "post-response": ("service_requests", "request"),
    "tokens": ("service_requests", "request"),
    "updates": ("service_request_updates", "request_update"),
    "errors": ("errors", "error"),
}
ITEM_TAGS = {"attributes": "attribute", "values": "value", "endpoints": "endpoint"}
ITEM_TAGS["formats"] = "format"


def schemas_dir() -> Path:
    """The published schemas: `open311-schemas` beside the data directory."""
    d = Settings().data_dir.parent / "open311-schemas"
    require((d / "request.json").is_file(), f"Open311 schemas are missing at {d}")
    return d


class Schemas:
    """The published schemas (by file name, as their $refs name them) plus ours."""

    def __init__(self, folder: Path) -> None:
        self.docs = {n: json.loads((folder / f"{n}.json").read_text()) for n in PUBLISHED}
        self.docs.update(OURS)
        self.registry = Registry().with_resources(
            (f"{n}.json", Resource.from_contents(d, default_specification=DRAFT7))
            for n, d in self.docs.items()
        )
        self.format_checker = jsonschema.Draft7Validator.FORMAT_CHECKER

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A schema with its $ref followed."""
        while "$ref" in schema:
            schema = self.registry.contents(schema["$ref"])
        return schema

    def validate(self, name: str, instance: Any) -> None:
        """Raise jsonschema.ValidationError unless `instance` conforms (formats checked)."""
        jsonschema.Draft7Validator(
            self.docs[name], registry=self.registry, format_checker=self.format_checker
        ).validate(instance)

    def validate_xml(self, name: str, body: bytes) -> Any:
        """Parse (defusedxml), check the element names, convert by the schema and validate;
        returns the converted instance."""
        assert body.startswith(b"<?xml"), body[:60]
        root = SafeET.fromstring(body)
        root_tag, item_tag = XML_ROOTS[name]
        assert root.tag == root_tag, f"root <{root.tag}>, expected <{root_tag}>"
        instance = self._convert(root, self.docs[name], item_tag)
        self.validate(name, instance)
        return instance

    def _convert(self, el: Element, schema: dict[str, Any], item_tag: str | None = None) -> Any:
        schema = self.resolve(schema)
        types = _types(schema)
        if "array" in types:
            item_tag = item_tag or ITEM_TAGS.get(el.tag)
            out = []
            for child in el:
                assert child.tag == item_tag, f"<{el.tag}> holds <{child.tag}>, not <{item_tag}>"
                out.append(self._convert(child, schema.get("items", {})))
            return out
        if "object" in types or "properties" in schema:
            out = {}
            for child in el:
                assert child.tag not in out, f"<{el.tag}> repeats <{child.tag}>"
                prop = schema.get("properties", {}).get(child.tag, {"type": "string"})
                out[child.tag] = self._convert(child, prop)
            return out
        assert len(el) == 0, f"<{el.tag}> should be text, holds elements"
        return _leaf(el.text, types)


def _types(schema: dict[str, Any]) -> set[str]:
    if "type" in schema:
        t = schema["type"]
        return set(t) if isinstance(t, list) else {t}
    if "anyOf" in schema:
        return set().union(*(_types(s) for s in schema["anyOf"]))
    if "properties" in schema or "required" in schema:
        return {"object"}
    if "enum" in schema:
        return {"string"}
    return {"string"}


def _leaf(text: str | None, types: set[str]) -> Any:
    if not text:
        return None if "null" in types else ""
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    if "integer" in types and text.lstrip("-").isdigit():
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            return text  # left a string: validation then fails, as it should
    return text
