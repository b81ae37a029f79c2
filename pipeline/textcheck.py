"""Free-text fields as residents type them, and nothing a terminal, a database or a reader's
eye can be tricked by: no control characters (NUL breaks PostgreSQL text), no bidi overrides
(text that reads differently from what it says), no invalid UTF-8, and a length limit per field.
Languages, accents and emoji all pass."""

from __future__ import annotations

import re

from pipeline.errors import InvalidReport

# Longest value of each one-line field (the description's limit is a setting).
MAX_CHARS = {
    "name": 200,
    "email": 254,  # RFC 5321's longest address
    "phone": 40,
    "category": 64,
    "address_string": 500,
    "media_url": 2000,
}
# C0/C1 controls but tab and newlines; bidi embeddings, overrides and isolates (the "Trojan
# Source" characters); surrogates (a lone one is not text); U+FFFD, what a decoder put in
# place of invalid UTF-8; and the noncharacters U+FFFE/U+FFFF.
_BAD_MULTILINE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffd\ufffe\uffff]"
)
_BAD_ONE_LINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffd\ufffe\uffff]"
)
_WHY = {"\ufffd": "invalid UTF-8 (or a lone surrogate)", "\x00": "a NUL character"}


def check_text(field: str, value: str | None, max_chars: int, *, multiline: bool = False) -> None:
    """Raise InvalidReport unless `value` is None or clean text of at most max_chars."""
    if value is None:
        return
    if len(value) > max_chars:
        raise InvalidReport(
            f"{field} is {len(value)} characters; the limit is {max_chars}", field=field
        )
    bad = (_BAD_MULTILINE if multiline else _BAD_ONE_LINE).search(value)
    if bad is not None:
        ch = bad.group()
        what = _WHY.get(ch) or (
            "a bidirectional override" if "\u202a" <= ch <= "\u2069" else "a control character"
        )
        raise InvalidReport(
            f"{field} contains {what} (U+{ord(ch):04X} at character {bad.start()}): "
            "send plain text",
            field=field,
        )


def check_report_text(form: object, max_description_chars: int) -> None:
    """Check the free-text fields of an intake.ReportForm (those it has)."""
    check_text(
        "description", getattr(form, "description", None), max_description_chars, multiline=True
    )
    for field, limit in MAX_CHARS.items():
        value = getattr(form, field, None)
        if isinstance(value, str):
            check_text(field, value, limit)
