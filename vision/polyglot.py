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

# An HTML/JS/PHP page or an SVG document: the tags a browser or interpreter acts on. The
# literal "<" first lets the regex engine skip ahead by memchr: ~1 ms of CPU per MB.
_MARKUP = re.compile(rb"<(?i:script|html|body|iframe|object|embed|svg|!doctype\s+html|\?php)[\s>/]")
_ZIP_EOCD = b"PK\x05\x06"
_ZIP_EOCD_MIN = 22
_ZIP_COMMENT_MAX = 0xFFFF


def embedded_payload(data: bytes) -> str | None:
    """Name the hidden file in `data` ('a ZIP/JAR archive', 'an HTML or script page'), or None."""
    if _zip_end_record(data):
        return "a ZIP/JAR archive"
    if _MARKUP.search(data):
        return "an HTML or script page"
    return None


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
