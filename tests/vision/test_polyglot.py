"""The fast markup scan finds exactly what the plain regex search finds."""

from __future__ import annotations

import random

import pytest

from vision.polyglot import _MARKUP, _markup_at, embedded_payload

PAGES = [
    b"<script>",
    b"<SCRIPT src=x>",
    b"<html>",
    b"<HtMl ",
    b"<body/",
    b"<iframe src=",
    b"<OBJECT data=",
    b"<embed\t",
    b"<svg xmlns=",
    b"<!DOCTYPE html>",
    b"<!doctype   HTML>",
    b"<?php ",
]
NEAR_MISSES = [b"<scrip>", b"<htmlx>", b"<svgx", b"<!doctype xml>", b"<?ph ", b"< script>", b"<sc"]


@pytest.mark.parametrize("tag", PAGES)
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_finds_each_tag_anywhere(tag: bytes, where: str) -> None:
    noise = random.Random(7).randbytes(50_000)
    data = {
        "start": tag + noise,
        "middle": noise[:20_000] + tag + noise[20_000:],
        "end": noise + tag,
    }[where]
    assert _markup_at(data)
    assert embedded_payload(data) == "an HTML or script page"


@pytest.mark.parametrize("near", NEAR_MISSES)
def test_near_misses_are_not_pages(near: bytes) -> None:
    data = random.Random(3).randbytes(10_000).replace(b"<", b"(") + near
    assert not _markup_at(data)
    assert _MARKUP.search(data) is None


def test_agrees_with_the_regex_on_random_bytes() -> None:
    """Random data salted with "<" + likely letters: the two scans agree on every sample."""
    rng = random.Random(11)
    salts = [b"<s", b"<S", b"<sc", b"<h", b"<!", b"<?", b"<e", b"<o", b"<i", b"<b", b"<"]
    found = 0
    for _ in range(300):
        parts = [rng.randbytes(rng.randrange(0, 300)) for _ in range(20)]
        for i in range(len(parts)):
            if rng.random() < 0.5:
                parts[i] += rng.choice(salts + PAGES + NEAR_MISSES)
        data = b"".join(parts)
        expected = _MARKUP.search(data) is not None
        assert _markup_at(data) == expected
        found += expected
    assert 0 < found < 300  # both answers were exercised


@pytest.mark.parametrize("data", [b"", b"<", b"<s", b"<sv", b"<svg"])
def test_tiny_inputs(data: bytes) -> None:
    assert _markup_at(data) is False
