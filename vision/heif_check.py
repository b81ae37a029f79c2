"""Check a HEIC file's coded image without decoding it: the HEVC decoder configuration (hvcC)
holds its parameter sets, and each coded item's bytes (found through `iloc`) are a whole run of
length-prefixed NAL units. The box-level structure check cannot see a zeroed or garbled
payload, and a full decode of a 12 MP HEIC costs ~0.5 s of CPU; this costs microseconds."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from vision.errors import ImageRejected

_VPS, _SPS, _PPS = 32, 33, 34
_MAX_ITEMS = 4096  # an iPhone photo has ~50 (a 48-tile grid, thumbnail, Exif)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise _broken(f"its {kind!r} box runs past its parent")
        yield kind, pos + header, pos + size
        pos += size


def _broken(why: str) -> ImageRejected:
    return ImageRejected(
        f"the HEIC photo's coded image is broken ({why}): send the original photo again"
    )


def _uint(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos : pos + size], "big") if size else 0


def check_heic_payload(data: bytes) -> None:
    """Raise ImageRejected unless every HEVC item has parameter sets and whole NAL units."""
    try:
        _check(data)
    except ImageRejected:
        raise
    except (IndexError, ValueError, struct.error) as exc:  # a field that points nowhere
        raise _broken(f"unreadable boxes: {exc}") from None


def _check(data: bytes) -> None:
    meta = next((b for b in _boxes(data, 0, len(data)) if b[0] == b"meta"), None)
    if meta is None:
        raise _broken("no meta box")
    children = {k: (s, e) for k, s, e in _boxes(data, meta[1] + 4, meta[2])}
    hevc_items = _hevc_items(data, children.get(b"iinf"))
    if not hevc_items:
        return  # no HEVC items (AVIF, or something libheif will judge when decoding)
    length_size = _check_configs(data, children.get(b"iprp"))
    if b"iloc" not in children:
        raise _broken("no item locations")
    for item, extents in _locations(data, *children[b"iloc"]):
        if item in hevc_items:
            if any(o + n > len(data) for o, n in extents):
                raise ImageRejected(
                    "the HEIC photo is truncated (its image data runs past the end of the "
                    "file): the upload may have been cut off, send it again"
                )
            # The item's data is its extents end to end (a NAL unit may span two).
            _check_nal_units(b"".join(data[o : o + n] for o, n in extents), length_size)


def _hevc_items(data: bytes, iinf: tuple[int, int] | None) -> set[int]:
    if iinf is None:
        raise _broken("no item information")
    start, end = iinf
    version = data[start]
    first = start + 4 + (2 if version == 0 else 4)
    items = set()
    for kind, s, _ in _boxes(data, first, end):
        if kind != b"infe" or data[s] < 2:
            continue
        id_size = 2 if data[s] == 2 else 4
        item_id = _uint(data, s + 4, id_size)
        if data[s + 4 + id_size + 2 : s + 4 + id_size + 6] == b"hvc1":
            items.add(item_id)
    return items


def _check_configs(data: bytes, iprp: tuple[int, int] | None) -> int:
    """Check every hvcC; return the NAL length-prefix size they declare."""
    ipco = iprp and next((b for b in _boxes(data, *iprp) if b[0] == b"ipco"), None)
    configs = [(s, e) for k, s, e in _boxes(data, ipco[1], ipco[2]) if k == b"hvcC"] if ipco else []
    if not configs:
        raise _broken("no HEVC decoder configuration")
    length_size = 4
    for s, e in configs:
        if e - s < 23 or data[s] != 1:
            raise _broken("its HEVC decoder configuration is not version 1")
        length_size = (data[s + 21] & 3) + 1
        pos, found = s + 23, set()
        for _ in range(data[s + 22]):
            if pos + 3 > e:
                raise _broken("its HEVC decoder configuration is cut short")
            nal_type, count = data[pos] & 0x3F, _uint(data, pos + 1, 2)
            pos += 3
            for _ in range(count):
                n = _uint(data, pos, 2)
                if n == 0 or pos + 2 + n > e:
                    raise _broken("a parameter set in its decoder configuration is empty or cut")
                pos += 2 + n
            if count:
                found.add(nal_type)
        if not {_VPS, _SPS, _PPS} <= found:
            raise _broken("its HEVC decoder configuration lacks parameter sets")
    return length_size


def _locations(data: bytes, start: int, end: int) -> Iterator[tuple[int, list[tuple[int, int]]]]:
    """(item id, [(file offset, length)]) for items stored in the file (construction 0)."""
    version = data[start]
    pos = start + 4
    offset_size, length_size = data[pos] >> 4, data[pos] & 15
    base_size, index_size = data[pos + 1] >> 4, (data[pos + 1] & 15 if version else 0)
    pos += 2
    id_size = 4 if version == 2 else 2
    count = _uint(data, pos, id_size)
    pos += id_size
    if count > _MAX_ITEMS:
        raise _broken(f"{count} items")
    for _ in range(count):
        item = _uint(data, pos, id_size)
        pos += id_size
        method = _uint(data, pos, 2) & 15 if version else 0
        pos += (2 if version else 0) + 2  # construction method, data reference index
        base = _uint(data, pos, base_size)
        pos += base_size
        n = _uint(data, pos, 2)
        pos += 2
        extents = []
        for _ in range(n):
            pos += index_size
            off, length = _uint(data, pos, offset_size), _uint(data, pos + offset_size, length_size)
            pos += offset_size + length_size
            extents.append((base + off, length))
        if pos > end:
            raise _broken("its item locations run past their box")
        if method == 0:
            yield item, extents


def _check_nal_units(item: bytes, size: int) -> None:
    if not item:
        raise _broken("an image item is empty")
    pos, end = 0, len(item)
    while pos < end:
        n = _uint(item, pos, size)
        if n < 2 or pos + size + n > end or item[pos + size] & 0x80:
            raise _broken(f"a NAL unit at item byte {pos} has length {n} or a bad header")
        pos += size + n
