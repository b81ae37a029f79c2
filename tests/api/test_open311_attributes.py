"""Service attributes: city-pack checks, answers parsed by datatype, and XML that stays XML."""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest
import yaml

from api.open311_xml import to_xml
from pipeline.city import Service, ServiceAttribute, load_city_pack
from pipeline.errors import ConfigError, InvalidReport
from pipeline.open311 import parse_attributes

VALUE = {"key": "1", "name": "a"}
CITIES = Path(__file__).resolve().parents[2] / "datasets" / "cities"
TREE = Service(
    code="tree",
    name="Fallen tree",
    attributes=(
        ServiceAttribute(
            code="blocking",
            datatype="multivaluelist",
            description="What does it block?",
            values=(("road", "The road"), ("sidewalk", "The sidewalk"), ("wires", "Wires")),
        ),
        ServiceAttribute(code="fell_at", datatype="datetime", description="When did it fall?"),
        ServiceAttribute(code="girth_cm", datatype="number", description="Trunk girth"),
        ServiceAttribute(
            code="notice", datatype="text", description="Call 911 if wires are down", variable=False
        ),
    ),
)


def test_answers_are_typed_by_their_datatype() -> None:
    got = parse_attributes(
        TREE,
        [
            ("attribute[blocking][]", "road"),
            ("attribute[blocking][]", "wires"),
            ("attribute[blocking][]", "road"),
            ("attribute[fell_at]", "2026-11-28T07:15:00-05:00"),
            ("attribute[girth_cm]", "120"),
            ("description", "ignored here"),
        ],
    )
    assert got == {
        "blocking": ["road", "wires"],
        "fell_at": "2026-11-28T07:15:00-05:00",
        "girth_cm": 120.0,
    }


@pytest.mark.parametrize(
    ("pairs", "words"),
    [
        ([("attribute[blocking]", "river")], "not one of its keys"),
        ([("attribute[fell_at]", "last night")], "ISO 8601"),
        ([("attribute[girth_cm]", "thick")], "must be a number"),
        ([("attribute[girth_cm]", "inf")], "finite"),
        ([("attribute[girth_cm]", "1"), ("attribute[girth_cm]", "2")], "one value"),
        ([("attribute[notice]", "ok")], "no attribute 'notice'"),  # not variable: not answered
        ([("attribute[fell_at]", "x" * 1001)], "over 1000"),
        ([("attribute[a][b]", "1")], "not an attribute field"),
    ],
)
def test_bad_answers_are_refused(pairs: list, words: str) -> None:
    with pytest.raises(InvalidReport, match=words.replace("(", r"\(")):
        parse_attributes(TREE, pairs)


@pytest.mark.parametrize(
    ("attribute", "words"),
    [
        ({"code": "x", "datatype": "colour", "description": "d"}, "datatype must be"),
        ({"code": "x", "datatype": "singlevaluelist", "description": "d"}, "need values"),
        ({"code": "x", "datatype": "string", "description": "d", "values": [VALUE]}, "need values"),
        ({"code": "x", "datatype": "string"}, "needs a code and a description"),
    ],
)  # fmt: skip
def test_city_pack_attributes_are_checked(tmp_path: Path, attribute: dict, words: str) -> None:
    spec = yaml.safe_load((CITIES / "cambridge-ma" / "city.yaml").read_text())
    spec["services"][0]["attributes"] = [attribute]
    (tmp_path / "city.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=words):
        load_city_pack(tmp_path)


def test_shipped_packs_define_their_attributes() -> None:
    for slug in ("cambridge-ma", "coral-gables-fl"):
        pack = load_city_pack(CITIES / slug)
        graffiti = pack.service("graffiti")
        assert graffiti is not None
        assert [a.code for a in graffiti.attributes if a.required] == ["surface"]
        assert pack.service("pothole").attributes[0].datatype == "number"  # type: ignore[union-attr]


def test_xml_carries_any_resident_text() -> None:
    text = "bell \x07, nul \x00, emoji 🕳️ & <tags>"
    root = SafeET.fromstring(to_xml("service_requests", [{"description": text}], "request"))
    got = root.find("request/description").text  # type: ignore[union-attr]
    assert got == "bell \ufffd, nul \ufffd, emoji 🕳️ & <tags>"
