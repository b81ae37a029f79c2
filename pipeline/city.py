"""City packs: services and routing rules from `datasets/cities/<slug>/city.yaml`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.types import Routing, Severity

PRIORITY = {"high": 2, "medium": 3, "low": 4, None: 3}


ATTRIBUTE_TYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")


@dataclass(frozen=True)
class ServiceAttribute:
    """A question a service asks (an Open311 service-definition attribute)."""

    code: str
    datatype: str
    description: str
    required: bool = False
    variable: bool = True  # False: an informational note, never answered
    order: int | None = None
    datatype_description: str | None = None
    values: tuple[tuple[str, str], ...] = ()  # (key, name) for the list types


@dataclass(frozen=True)
class Service:
    """One kind of request a resident can make (an Open311 service)."""

    code: str
    name: str
    group: str = ""
    description: str = ""
    keywords: tuple[str, ...] = ()
    detector_class: str | None = None
    attributes: tuple[ServiceAttribute, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A routing rule: the first whose `when` matches decides the department."""

    when: dict[str, Any]
    department: str
    sla_hours: float
    external: bool = False

    def matches(self, facts: dict[str, Any]) -> bool:
        """True when every condition equals the fact of the same name."""
        return all(facts.get(k) == v for k, v in self.when.items())


@dataclass
class CityPack:
    """A city's description: CRS, layer manifest, services and routing rules."""

    slug: str
    name: str
    crs: str
    spec: dict[str, Any]
    services: list[Service]
    rules: list[Rule]
    path: Path
    demo_streets: list[str] = field(default_factory=list)

    def service(self, code: str) -> Service | None:
        """The service with this code, or None."""
        return next((s for s in self.services if s.code == code), None)

    def service_for_class(self, class_name: str) -> str | None:
        """The service code that a detector class reports as."""
        return next((s.code for s in self.services if s.detector_class == class_name), None)

    def route(
        self,
        *,
        category: str | None,
        severity: Severity | None,
        road_owner: str | None,
        in_jurisdiction: bool,
        now: datetime,
    ) -> Routing:
        """Apply the first matching rule to the case's facts."""
        facts = {
            "category": category,
            "severity": severity,
            "road_owner": road_owner,
            "in_jurisdiction": in_jurisdiction,
        }
        for rule in self.rules:
            if rule.matches(facts):
                return Routing(
                    department=rule.department,
                    external=rule.external,
                    sla_hours=rule.sla_hours,
                    due_at=now + timedelta(hours=rule.sla_hours) if rule.sla_hours else None,
                    priority=PRIORITY.get(severity, 3),
                )
        raise ConfigError(f"city {self.slug}: no routing rule matches {facts}; add a catch-all")


def load_city_pack(city_dir: Path) -> CityPack:
    """Read and check a city pack; errors name the file and the key to fix."""
    path = city_dir / "city.yaml"
    if not path.exists():
        raise ConfigError(
            f"no city pack at {path}: set STREETLENS_CITY to a folder in {city_dir.parent}"
        )
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    for key in ("slug", "name", "crs", "layers", "services", "routing"):
        if key not in spec:
            raise ConfigError(f"{path}: missing key {key!r}")
    services = [
        Service(
            code=s["code"],
            name=s["name"],
            group=s.get("group", ""),
            description=s.get("description", ""),
            keywords=tuple(s.get("keywords", ())),
            detector_class=s.get("detector_class"),
            attributes=_attributes(path, s),
        )
        for s in spec["services"]
    ]
    codes = [s.code for s in services]
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{path}: service codes must be unique, got {codes}")
    rules = [
        Rule(
            when=dict(r.get("when") or {}),
            department=r["department"],
            sla_hours=float(r.get("sla_hours", 0)),
            external=bool(r.get("external", False)),
        )
        for r in spec["routing"]
    ]
    if not rules or rules[-1].when:
        raise ConfigError(f"{path}: the last routing rule must be a catch-all (`when: {{}}`)")
    return CityPack(
        slug=spec["slug"],
        name=spec["name"],
        crs=spec["crs"],
        spec=spec,
        services=services,
        rules=rules,
        path=path,
        demo_streets=list(spec.get("demo_streets", [])),
    )


def _attributes(path: Path, service: dict[str, Any]) -> tuple[ServiceAttribute, ...]:
    """A service's `attributes:` list, checked (unique codes, known types, lists with values)."""
    where = f"{path}: service {service.get('code')!r}"
    out = []
    for i, a in enumerate(service.get("attributes") or ()):
        code, datatype = a.get("code"), a.get("datatype")
        if not code or not a.get("description"):
            raise ConfigError(f"{where}: attribute {i + 1} needs a code and a description")
        if datatype not in ATTRIBUTE_TYPES:
            raise ConfigError(
                f"{where}: attribute {code!r} datatype must be one of {ATTRIBUTE_TYPES}"
            )
        values = tuple((str(v["key"]), str(v["name"])) for v in a.get("values") or ())
        if datatype.endswith("valuelist") != bool(values):
            raise ConfigError(
                f"{where}: attribute {code!r}: list types (and only they) need values"
            )
        out.append(
            ServiceAttribute(
                code=str(code),
                datatype=datatype,
                description=str(a["description"]),
                required=bool(a.get("required", False)),
                variable=bool(a.get("variable", True)),
                order=a.get("order", i + 1),
                datatype_description=a.get("datatype_description"),
                values=values,
            )
        )
    codes = [a.code for a in out]
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{where}: attribute codes must be unique, got {codes}")
    return tuple(out)
