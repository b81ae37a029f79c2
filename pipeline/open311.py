"""Open311 GeoReport v2, the pipeline side: services, definitions, and new requests.

The HTTP layer (`api/open311.py`) parses and renders; this module answers in plain dicts shaped
like the spec's JSON, and files a new request through the same intake as the native API
(`intake.submit`), so one validation and one case store serve both. A request may come
without a photo (media is optional in the spec): it then needs a location and is routed by
its service_code; `process_case` skips the photo's steps.
Reading requests and their status history is in `pipeline/open311_query.py`.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline import intake
from pipeline.city import CityPack, Service, ServiceAttribute
from pipeline.context import Context
from pipeline.errors import InvalidReport, JurisdictionNotFound, LocationMissing, ServiceNotFound

if TYPE_CHECKING:
    from geo.geocode import Geocoder
    from geo.layers import CityGeo

SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-28T00:00:00Z"  # when this endpoint's behaviour last changed
MAX_NAME_CHARS = 100
MAX_URL_CHARS = 2048
MAX_ATTRIBUTE_CHARS = 1000
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{3,32}$")
_ATTRIBUTE_KEY = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")


def check_jurisdiction(city: CityPack, jurisdiction_id: str | None) -> None:
    """One city per server: an empty jurisdiction_id is fine, another city's is not."""
    if not jurisdiction_id:
        return
    ours = str(city.spec.get("jurisdiction_id") or city.slug)
    if jurisdiction_id.strip().lower() not in {ours.lower(), city.slug}:
        raise JurisdictionNotFound(
            f"jurisdiction_id {jurisdiction_id[:60]!r} is not served here; this server is "
            f"{ours!r} ({city.name})",
            field="jurisdiction_id",
        )


def discovery(city: CityPack, endpoint_url: str) -> dict[str, Any]:
    """The Service Discovery document for this one endpoint."""
    o311 = city.spec.get("open311") or {}
    return {
        "changeset": CHANGESET,
        "contact": o311.get("contact", f"{city.name} 311"),
        "key_service": o311.get(
            "key_service", f"API keys for client apps are issued by the {city.name} 311 office"
        ),
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": endpoint_url,
                "changeset": CHANGESET,
                "type": o311.get("type", "production"),
                "formats": ["text/xml", "application/json"],
            }
        ],
    }


def service_view(s: Service) -> dict[str, Any]:
    """One service as the spec's `service` element."""
    return {
        "service_code": s.code,
        "service_name": s.name,
        "description": s.description or None,
        "metadata": bool(s.attributes),
        # The request id is known at once: a case row is written before the answer goes back.
        "type": "realtime",
        "keywords": ", ".join(s.keywords) or None,
        "group": s.group or None,
    }


def services(city: CityPack) -> list[dict[str, Any]]:
    """The service list."""
    return [service_view(s) for s in city.services]


def find_service(city: CityPack, code: str | None) -> Service:
    """The service with this code, or ServiceNotFound naming the codes there are."""
    s = city.service(code or "")
    if s is None:
        codes = ", ".join(sv.code for sv in city.services)
        raise ServiceNotFound(
            f"no service_code {str(code)[:40]!r}; use one of: {codes}", field="service_code"
        )
    return s


def _attribute_view(a: ServiceAttribute) -> dict[str, Any]:
    out: dict[str, Any] = {
        "variable": a.variable,
        "code": a.code,
        "datatype": a.datatype,
        "required": a.required,
        "datatype_description": a.datatype_description,
        "order": a.order,
        "description": a.description,
    }
    if a.values:
        out["values"] = [{"key": k, "name": n} for k, n in a.values]
    return out


def service_definition(city: CityPack, code: str) -> dict[str, Any]:
    """A service's definition: the attributes a request for it may (or must) answer."""
    s = find_service(city, code)
    return {"service_code": s.code, "attributes": [_attribute_view(a) for a in s.attributes]}


def parse_attributes(
    service: Service, pairs: list[tuple[str, str]]
) -> dict[str, str | float | list[str]]:
    """`attribute[code]=value` form pairs checked against the service definition."""
    given: dict[str, list[str]] = {}
    for key, value in pairs:
        m = _ATTRIBUTE_KEY.match(key)
        if m is None:
            if key.startswith("attribute"):
                raise InvalidReport(
                    f"{key[:70]!r} is not an attribute field: write attribute[CODE]=VALUE",
                    field=key[:70],
                )
            continue
        given.setdefault(m.group(1), []).append(value)
    by_code = {a.code: a for a in service.attributes if a.variable}
    unknown = sorted(set(given) - set(by_code))
    if unknown:
        known = ", ".join(by_code) or "none"
        raise InvalidReport(
            f"service {service.code!r} has no attribute {unknown[0][:40]!r}; it has: {known}",
            field=f"attribute[{unknown[0][:40]}]",
        )
    out: dict[str, str | float | list[str]] = {}
    for code, a in by_code.items():
        values = [v.strip() for v in given.get(code, []) if v.strip()]
        if not values:
            if a.required:
                raise InvalidReport(
                    f"service {service.code!r} needs attribute[{code}]: {a.description}",
                    field=f"attribute[{code}]",
                )
            continue
        out[code] = _attribute_value(a, values)
    return out


def _attribute_value(a: ServiceAttribute, values: list[str]) -> str | float | list[str]:
    where = f"attribute[{a.code}]"
    if any(len(v) > MAX_ATTRIBUTE_CHARS for v in values):
        raise InvalidReport(f"{where} is over {MAX_ATTRIBUTE_CHARS} characters", field=where)
    if a.datatype != "multivaluelist" and len(values) > 1:
        raise InvalidReport(f"{where} takes one value, got {len(values)}", field=where)
    keys = [k for k, _ in a.values]
    if a.datatype in ("singlevaluelist", "multivaluelist"):
        bad = [v for v in values if v not in keys]
        if bad:
            raise InvalidReport(
                f"{where} {bad[0][:40]!r} is not one of its keys: {', '.join(keys)}", field=where
            )
        return list(dict.fromkeys(values)) if a.datatype == "multivaluelist" else values[0]
    if a.datatype == "number":
        return intake.parse_number(where, values[0], -1e9, 1e9)  # type: ignore[return-value]
    if a.datatype == "datetime":
        try:
            datetime.fromisoformat(values[0].replace("Z", "+00:00"))
        except ValueError:
            raise InvalidReport(
                f"{where} must be an ISO 8601 date-time, e.g. 2026-11-28T09:30:00-05:00",
                field=where,
            ) from None
    return values[0]


@dataclass
class NewRequest:
    """The fields of an Open311 POST requests, as they arrived (strings or None)."""

    service_code: str | None = None
    lat: str | None = None
    long: str | None = None
    address_string: str | None = None
    address_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    description: str | None = None
    media_url: str | None = None
    attributes: list[tuple[str, str]] = field(default_factory=list)


def _text(name: str, raw: str | None, limit: int) -> str | None:
    value = (raw or "").strip()
    if len(value) > limit:
        raise InvalidReport(f"{name} is {len(value)} characters; the limit is {limit}", field=name)
    if any(ord(c) < 32 for c in value):
        raise InvalidReport(f"{name} must not hold control characters", field=name)
    return value or None


def _check_contact(req: NewRequest) -> tuple[str | None, str | None, str | None]:
    email = _text("email", req.email, 254)
    if email and not _EMAIL.match(email):
        raise InvalidReport(f"email {email[:60]!r} is not an email address", field="email")
    phone = _text("phone", req.phone, 32)
    if phone and not _PHONE.match(phone):
        raise InvalidReport("phone may hold digits, spaces, + ( ) . / - only", field="phone")
    first = _text("first_name", req.first_name, MAX_NAME_CHARS)
    last = _text("last_name", req.last_name, MAX_NAME_CHARS)
    name = " ".join(p for p in (first, last) if p) or None
    return name, email, phone


def _check_media_url(raw: str | None) -> str | None:
    url = _text("media_url", raw, MAX_URL_CHARS)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidReport(
            "media_url must be an http(s) URL (it is kept as a link, never fetched)",
            field="media_url",
        )
    return url


_geocoders: weakref.WeakKeyDictionary[CityGeo, Geocoder] = weakref.WeakKeyDictionary()
_geocoders_lock = threading.Lock()


def geocoder(ctx: Context) -> Geocoder:
    """The city's geocoder, built once per loaded city (about a third of a second)."""
    from geo.geocode import Geocoder

    city = ctx.geo
    with _geocoders_lock:
        g = _geocoders.get(city)
        if g is None:
            g = _geocoders[city] = Geocoder(city)
        return g


def _locate(ctx: Context, req: NewRequest) -> tuple[str | None, str | None, str | None]:
    """lat, long (as form strings) and the address string: lat/long first, else an address."""
    address = _text("address_string", req.address_string, 500)
    address_id = _text("address_id", req.address_id, 64)
    if (req.lat or "").strip() or (req.long or "").strip():
        return req.lat, req.long, address
    if address_id:
        hit = geocoder(ctx).by_parcel_id(address_id)
        if hit is None:
            raise InvalidReport(
                f"address_id {address_id!r} is no parcel of {ctx.city.name}", field="address_id"
            )
        return repr(hit.lat), repr(hit.lon), address or hit.address
    if address:
        hit = geocoder(ctx).by_address(address)
        if hit is None:
            raise InvalidReport(
                f"address_string {address[:80]!r} was not found in {ctx.city.name}'s address "
                "layers: send lat and long, or a street address such as '795 Massachusetts Ave'",
                field="address_string",
            )
        return repr(hit.lat), repr(hit.lon), address
    return None, None, None  # the photo's EXIF GPS may still say where (intake decides)


def create_request(
    ctx: Context, req: NewRequest, photo: bytes | None, *, by: str = "open311"
) -> str:
    """File a request: check every field, then submit it through the native intake.
    `photo` None: a request without one (most Open311 clients), located by lat/long or an
    address and categorised by its service_code alone."""
    try:
        service = find_service(ctx.city, _text("service_code", req.service_code, 64))
    except ServiceNotFound as exc:  # a bad argument to POST (400), not a missing resource
        raise InvalidReport(exc.message, field="service_code") from None
    attributes = parse_attributes(service, req.attributes)
    name, email, phone = _check_contact(req)
    media_url = _check_media_url(req.media_url)
    lat, lon, address = _locate(ctx, req)
    if photo is None and lat is None:
        raise LocationMissing(
            "a request without a photo needs a location: send lat and long, address_string "
            "or address_id",
            field="lat",
        )
    form = intake.ReportForm(
        lat=lat,
        lon=lon,
        description=req.description,
        category=service.code,
        name=name,
        email=email,
        phone=phone,
        attributes=attributes or None,
        media_url=media_url,
        address_string=address,
    )
    return intake.submit(ctx, photo, form, by=by[:64])
