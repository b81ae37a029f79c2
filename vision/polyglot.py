"""Find a second file hidden in a photo (a polyglot): a ZIP/JAR archive or an HTML/script page.

A photo that is also an archive or a web page is an attack on whoever later opens the stored
original (a browser that sniffs it as HTML, a tool that unpacks it as a JAR); no camera writes
one. The markers are long and specific, so a compressed image stream matches them by chance
about once in 2^50 bytes. Phones' own trailers after the image (a Motion Photo's MP4, Samsung's
SEF block) contain neither, and are left alone.
"""

from __future__ import annotations

import re
import struct

import numpy as np

# An HTML/JS/PHP page or an SVG document: the tags a browser or interpreter acts on.
_TAGS = (
    rb"script", rb"html", rb"body", rb"iframe", rb"object", rb"embed", rb"svg",
    rb"!doctype\s+html", rb"\?php",
)  # fmt: skip
_MARKUP = re.compile(rb"<(?i:" + b"|".join(_TAGS) + rb")[\s>/]")


def _pair_table() -> np.ndarray:
    """The two bytes after "<" that can begin a tag, in either case, as a 64 K lookup."""
    table = np.zeros(1 << 16, dtype=bool)
    for tag in (t.replace(b"\\", b"") for t in _TAGS):
        for a in {tag[0:1].lower(), tag[0:1].upper()}:
            for b in {tag[1:2].lower(), tag[1:2].upper()}:
                table[(a[0] << 8) | b[0]] = True
    return table


_PAIRS = _pair_table()
_ZIP_EOCD = b"PK\x05\x06"
_ZIP_EOCD_MIN = 22
_ZIP_COMMENT_MAX = 0xFFFF


def embedded_payload(data: bytes) -> str | None:
    """Name the hidden file in `data` ('a ZIP/JAR archive', 'an HTML or script page'), or None."""
    if _zip_end_record(data):
        return "a ZIP/JAR archive"
    if _markup_at(data):
        return "an HTML or script page"
    return None


def _markup_at(data: bytes) -> bool:
    """`_MARKUP.search(data)`, faster: a compressed stream has a "<" every 256 bytes or so,
    and the regex engine tries the whole alternation at each (~1.2 ms a MB, holding the
    GIL the upload's other threads need). Here numpy finds every "<" whose next two bytes
    can begin a tag (~0.4 ms a MB), and only those few are tried."""
    arr = np.frombuffer(data, dtype=np.uint8)
    if len(arr) < 4:
        return False
    lt = np.flatnonzero(arr[:-2] == 0x3C)
    pair = (arr[lt + 1].astype(np.uint16) << 8) | arr[lt + 2]
    return any(_MARKUP.match(data, int(p)) for p in lt[_PAIRS[pair]])


def _zip_end_record(data: bytes) -> bool:
    # ZIP readers (and the JVM, for a GIFAR) look for the end-of-central-directory record in
    # the last 64 KiB; a real one says where the central directory is and how long its comment
    # is, so the record ends exactly at the end of the file.
    start = max(0, len(data) - _ZIP_EOCD_MIN - _ZIP_COMMENT_MAX)
    pos = data.rfind(_ZIP_EOCD, start)
    while pos >= 0:
        if pos + _ZIP_EOCD_MIN <= len(data):
            (comment_len,) = struct.unpack_from("<H", data, pos + 20)
            if pos + _ZIP_EOCD_MIN + comment_len == len(data):
                return True
        pos = data.rfind(_ZIP_EOCD, start, pos)
    return False
