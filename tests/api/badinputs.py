"""A corpus of hostile and broken uploads, generated from a real photo (nothing is committed).

Every case is one HTTP request that must get a clear 4xx with a JSON body saying what was wrong,
and leave nothing stored. Photos come from `../shared/data`; the broken ones are cut, patched
or wrapped here, and the valid ones are encoded with Pillow and pillow-heif (as vision/ reads
them). `multipart()` writes request bodies by hand, so a case can send what no well-behaved
client would: raw invalid UTF-8, repeated fields, a thousand files, a missing boundary.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

import vision.image  # noqa: F401  (registers the HEIF plugin, as the app does)

CITY_HALL = (("lat", "42.36630"), ("lon", "-71.10560"))  # 795 Massachusetts Ave, Cambridge
BOUNDARY = "streetlens-corpus-7f3a"
Part = tuple[str, bytes | str, str | None, str | None]  # name, value, filename, content type


@dataclass(frozen=True)
class Bad:
    """One bad request and what the answer must say."""

    id: str
    parts: tuple[Part, ...] = ()  # multipart parts, in order (repeats allowed)
    body: bytes | Callable[[], Iterator[bytes]] | None = None  # raw body instead of parts
    content_type: str | None = None  # None: multipart with BOUNDARY when parts are given
    method: str = "POST"
    path: str = "/api/v1/reports"
    status: frozenset[int] = frozenset({422})
    words: str = ""  # must appear in the message (case-insensitive)
    error: str | None = None  # the error code, where one is certain
    headers: dict[str, str] = field(default_factory=dict)

    def request(self) -> tuple[bytes | Callable[[], Iterator[bytes]], dict[str, str]]:
        """The body and headers to send."""
        headers = dict(self.headers)
        body = self.body if self.body is not None else multipart(self.parts)
        ctype = self.content_type
        if ctype is None and self.body is None:
            ctype = f"multipart/form-data; boundary={BOUNDARY}"
        if ctype:
            headers["content-type"] = ctype
        return body, headers


def multipart(parts: tuple[Part, ...] | list[Part], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body, byte for byte as given (no escaping, no re-encoding)."""
    out = io.BytesIO()
    for name, value, filename, ctype in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out.write(disp.encode() + b"\r\n")
        if ctype:
            out.write(f"Content-Type: {ctype}\r\n".encode())
        out.write(b"\r\n")
        out.write(value.encode() if isinstance(value, str) else value)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def photo_part(data: bytes, name: str = "photo.jpg", ctype: str = "image/jpeg") -> Part:
    """The photo file part."""
    return ("photo", data, name, ctype)


def fields(*pairs: tuple[str, str | bytes]) -> tuple[Part, ...]:
    """Plain form fields."""
    return tuple((k, v, None, None) for k, v in pairs)


# --- valid photos in the formats phones send ---------------------------------------------------


def real_photo(data_dir: Path) -> Path:
    """A real 640x640 road photo from the shared data (the first pothole val photo)."""
    return sorted((data_dir / "potholes-seg" / "images" / "val").glob("*.jpg"))[0]


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    """Encode with Pillow (HEIF through pillow-heif, registered by vision.image)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def valid_photos(path: Path, side: int = 320) -> dict[str, bytes]:
    """The real photo as JPEG (as shot), PNG, lossy and lossless WebP, HEIC, AVIF, `side` px."""
    img = Image.open(path).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    return {
        "jpeg": encode(img, "JPEG", quality=90),
        "png": encode(img, "PNG"),
        "webp": encode(img, "WEBP", quality=80),
        "webp-lossless": encode(img, "WEBP", lossless=True),
        "heic": encode(img, "HEIF", quality=50),
        "avif": encode(img, "AVIF", quality=50),
    }


# --- builders of broken files ------------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_header_only(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A structurally valid greyscale PNG whose header claims width x height (tiny IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = idat if idat is not None else zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png_bomb(side: int) -> bytes:
    """A real, fully decodable black PNG of side x side: a few KB that inflate to side^2 bytes."""
    row = b"\x00" + b"\x00" * side
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return png_header_only(side, side, idat)


def png_ztxt_bomb(png: bytes, inflated: int = 50_000_000) -> bytes:
    """A PNG with a zTXt chunk that inflates to `inflated` bytes of text."""
    text = b"Comment\x00\x00" + zlib.compress(b"A" * inflated, 9)
    return png[:33] + _chunk(b"zTXt", text) + png[33:]


def webp_canvas_bomb(small_lossless_webp: bytes, width: int, height: int) -> bytes:
    """A WebP whose VP8X header claims a width x height canvas around a tiny VP8L image."""
    vp8l = small_lossless_webp[12:]  # the VP8L chunk of a simple lossless file
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    payload = b"WEBP" + vp8x + vp8l
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) patched to claim width x height."""
    data = bytearray(jpeg)
    for sof in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(sof)
        if i > 0:
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise ValueError("no SOF0/SOF2 in this JPEG")


def heic_with_size(heic: bytes, width: int, height: int) -> bytes:
    """The HEIC with its `ispe` (image spatial extent) property patched to width x height."""
    data = bytearray(heic)
    i = data.find(b"ispe")
    data[i + 8 : i + 16] = struct.pack(">II", width, height)
    return bytes(data)


def heic_payload_zeroed(heic: bytes) -> bytes:
    """Boxes intact, the coded image (mdat) all zeros: only decoding can tell."""
    i = heic.find(b"mdat")
    return heic[: i + 4] + bytes(len(heic) - i - 4)


def heic_decoder_config_zeroed(heic: bytes) -> bytes:
    """The HEVC decoder configuration (hvcC) wiped: parameter sets gone."""
    data = bytearray(heic)
    i = data.find(b"hvcC")
    data[i + 4 : i + 40] = bytes(36)
    return bytes(data)


def jpeg_with_app1(jpeg: bytes, exif: bytes) -> bytes:
    """Insert a raw APP1 Exif segment right after SOI."""
    seg = b"Exif\x00\x00" + exif
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + jpeg[2:]


def _ifd(
    entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0, count: int | None = None
) -> bytes:
    out = struct.pack("<H", len(entries) if count is None else count)
    for tag, typ, n, value in entries:
        out += struct.pack("<HHI", tag, typ, n) + value.ljust(4, b"\x00")[:4]
    return out + struct.pack("<I", next_ifd)


def broken_exifs() -> dict[str, bytes]:
    """Hostile TIFF/EXIF blobs: huge counts, loops, offsets past the end, zero denominators."""
    hdr = b"II*\x00" + struct.pack("<I", 8)
    gps_ptr = lambda off: (0x8825, 4, 1, struct.pack("<I", off))  # noqa: E731
    rational = lambda off: struct.pack("<I", off)  # noqa: E731
    # A GPS IFD whose latitude is 0/0 degrees, in a well-formed file otherwise.
    gps_at = 8 + 2 + 12 + 4
    lat_at = gps_at + 2 + 4 * 12 + 4
    gps = _ifd([
        (1, 2, 2, b"N\x00"), (2, 5, 3, rational(lat_at)),
        (3, 2, 2, b"W\x00"), (4, 5, 3, rational(lat_at)),
    ])  # fmt: skip
    zero_den = hdr + _ifd([gps_ptr(gps_at)]) + gps + struct.pack("<6I", 0, 0, 0, 0, 0, 0)
    return {
        "exif-ifd-count-65535": hdr + _ifd([], count=65535),
        "exif-ifd-loop": hdr + _ifd([(0x010F, 2, 4, b"Acme")], next_ifd=8),
        "exif-gps-ifd-loop": hdr + _ifd([gps_ptr(8)]),
        "exif-gps-offset-past-end": hdr + _ifd([gps_ptr(0x7FFF_FFF0)]),
        "exif-tag-count-2-31": hdr + _ifd([(0x010F, 2, 0x8000_0000, struct.pack("<I", 64))]),
        "exif-gps-zero-denominator": zero_den,
        "exif-truncated-header": b"MM\x00*\x00\x00",
    }


def trailing(photo: bytes, extra: bytes) -> bytes:
    """The photo with bytes appended after its end marker (how polyglots are made)."""
    return photo + extra


def zip_archive(name: str = "payload.class", content: bytes = b"\xca\xfe\xba\xbe" * 64) -> bytes:
    """A small ZIP (a JAR is one) built with the standard library."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nMain-Class: payload\r\n")
        z.writestr(name, content)
    return buf.getvalue()


def jpeg_with_comment(jpeg: bytes, text: bytes) -> bytes:
    """A JPEG with a COM segment right after SOI (an HTML/JS polyglot hides its page here)."""
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


SVG_PLAIN = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480">'
    b'<rect width="640" height="480" fill="grey"/></svg>'
)
SVG_SCRIPT = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
    b'<script>fetch("/api/v1/reports")</script></svg>'
)
HTML_JS = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


# --- the corpus ---------------------------------------------------------------------------------


def _photo_cases(p: dict[str, bytes], big: bytes) -> list[Bad]:
    """Broken, hostile and unaccepted files in the photo part, with a valid location."""
    jpeg, png, webp, heic = p["jpeg"], p["png"], p["webp"], p["heic"]
    rnd = random.Random(7)
    files: dict[str, tuple[bytes, str]] = {
        # zero-byte and truncated
        "zero-byte": (b"", "empty"),
        "jpeg-truncated-half": (jpeg[: len(jpeg) // 2], "truncated"),
        "jpeg-truncated-header": (jpeg[:600], ""),
        "jpeg-no-eoi": (jpeg[:-2], "truncated"),
        "jpeg-soi-only": (b"\xff\xd8\xff", ""),
        "png-truncated-half": (png[: len(png) // 2], "truncated"),
        "png-no-iend": (png[:-12], "truncated"),
        "png-bad-crc": (png[:29] + bytes([png[29] ^ 0xFF]) + png[30:], ""),
        "webp-truncated-half": (webp[: len(webp) // 2], ""),
        "webp-lossless-truncated": (p["webp-lossless"][: len(p["webp-lossless"]) // 2], ""),
        "heic-truncated-half": (heic[: len(heic) // 2], "truncated"),
        "heic-ftyp-only": (heic[:40], ""),
        "avif-truncated-half": (p["avif"][: len(p["avif"]) // 2], ""),
        # broken HEIC payloads: boxes fine, coded image broken
        "heic-payload-zeroed": (heic_payload_zeroed(heic), ""),
        "heic-decoder-config-zeroed": (heic_decoder_config_zeroed(heic), ""),
        "heic-random-boxes": (heic[:32] + rnd.randbytes(4000), ""),
        # polyglots
        "polyglot-jpeg-zip": (trailing(jpeg, zip_archive()), ""),
        "polyglot-jpeg-html-trailer": (trailing(jpeg, HTML_JS), ""),
        "polyglot-jpeg-html-comment": (jpeg_with_comment(jpeg, HTML_JS), ""),
        "polyglot-png-zip": (trailing(png, zip_archive()), ""),
        "polyglot-gifar": (encode(Image.open(io.BytesIO(jpeg)), "GIF") + zip_archive(), "GIF"),
        "polyglot-html-then-jpeg": (HTML_JS + jpeg, ""),
        # not photos at all
        "svg-plain": (SVG_PLAIN, ""),
        "svg-script": (SVG_SCRIPT, ""),
        "html-page": (HTML_JS, ""),
        "pdf": (b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "PDF"),
        "gif": (encode(Image.open(io.BytesIO(jpeg)), "GIF"), "GIF"),
        "tiff": (encode(Image.open(io.BytesIO(jpeg)), "TIFF"), "TIFF"),
        "bmp": (encode(Image.open(io.BytesIO(jpeg)), "BMP"), "BMP"),
        "elf-binary": (b"\x7fELF\x02\x01\x01" + bytes(200), ""),
        "random-bytes": (rnd.randbytes(5000), ""),
        # decompression bombs and 200 MP headers
        "png-bomb-real-51mp": (png_bomb(7200), "megapixels"),
        "png-header-10-gigapixel": (png_header_only(100_000, 100_000), ""),
        "png-header-200mp": (png_header_only(20_000, 10_000), ""),
        "png-ztxt-bomb": (png_ztxt_bomb(png), ""),
        "webp-canvas-268mp": (webp_canvas_bomb(p["webp-tiny-lossless"], 16383, 16383), ""),
        "jpeg-header-200mp": (jpeg_with_size(jpeg, 20_000, 10_000), ""),
        "jpeg-header-65535-square": (jpeg_with_size(jpeg, 65_535, 65_535), ""),
        "heic-ispe-200mp": (heic_with_size(heic, 20_000, 10_000), ""),
        "tiny-16px": (encode(Image.new("RGB", (16, 16)), "PNG"), "px"),
    }
    cases = [
        Bad(f"photo-{k}", parts=(photo_part(v), *fields(*CITY_HALL)), words=w)
        for k, (v, w) in files.items()
    ]
    cases.append(
        Bad(
            "photo-over-size-limit-chunked",
            body=lambda: _chunked_oversize(big),
            content_type=f"multipart/form-data; boundary={BOUNDARY}",
            status=frozenset({413}),
            error="photo_too_large",
        )
    )
    # Broken EXIF cannot place a report: with no lat/lon in the form it must be location_missing.
    for k, blob in broken_exifs().items():
        cases.append(
            Bad(
                f"photo-{k}-no-location",
                parts=(photo_part(jpeg_with_app1(jpeg, blob)),),
                words="lat",
                error="location_missing",
            )
        )
    return cases


def _chunked_oversize(big: bytes) -> Iterator[bytes]:
    """A 31 MB photo sent chunked (no Content-Length for the size check to see)."""
    head = multipart((photo_part(b"PLACEHOLDER"), *fields(*CITY_HALL)))
    before, after = head.split(b"PLACEHOLDER")
    yield before
    for i in range(0, len(big), 1 << 20):
        yield big[i : i + (1 << 20)]
    yield after


def _field_cases(jpeg: bytes) -> list[Bad]:
    """A valid photo with bad fields: numbers, text, unicode."""
    ok = photo_part(jpeg)

    def with_fields(*pairs: tuple[str, str | bytes], base: tuple = CITY_HALL) -> tuple[Part, ...]:
        names = {k for k, _ in pairs}
        return (ok, *fields(*[kv for kv in base if kv[0] not in names], *pairs))

    numbers = {
        "lat-nan": (("lat", "NaN"),),
        "lat-infinity": (("lat", "Infinity"),),
        "lon-minus-inf": (("lon", "-inf"),),
        "lat-1e309": (("lat", "1e309"),),
        "lat-huge-digits": (("lat", "9" * 5000),),
        "lat-91": (("lat", "91"),),
        "lon-minus-181": (("lon", "-181"),),
        "lat-hex": (("lat", "0x2A"),),
        "lat-with-nul": (("lat", "42.3663\x00"),),
        "lat-only": (("lon", ""),),
        "heading-nan": (("heading", "nan"),),
        "heading-infinity": (("heading", "Infinity"),),
        "heading-minus-1": (("heading", "-1"),),
        "heading-1e400": (("heading", "1e400"),),
        "accuracy-negative": (("accuracy_m", "-5"),),
        "pitch-nan": (("pitch_deg", "nan"),),
        "camera-height-1e9": (("camera_height_m", "1e9"),),
        "height-sigma-alone": (("camera_height_sigma_m", "0.03"),),
        "height-sigma-zero": (("camera_height_m", "1.5"), ("camera_height_sigma_m", "0")),
        "tilt-sigma-alone": (("tilt_sigma_deg", "1"),),
        "tilt-sigma-90": (("pitch_deg", "40"), ("tilt_sigma_deg", "90")),
        "anonymous-maybe": (("anonymous", "maybe"),),
    }
    cases = [
        Bad(f"field-{k}", parts=with_fields(*v), error="invalid_report") for k, v in numbers.items()
    ]
    emoji_10kb = "\U0001f573\ufe0f" * 1400  # 🕳️: 8.4 KB of UTF-8 ... times two below
    texts = {
        "description-over-limit": ("description", "x" * 4001),
        "description-1mb": ("description", "y" * 1_100_000),
        "name-10kb": ("name", "n" * 10_000),
        "email-10kb": ("email", "e" * 10_000 + "@example.org"),
        "category-10kb": ("category", "c" * 10_000),
        "idempotency-key-10kb": ("idempotency_key", "k" * 10_000),
        "description-nul": ("description", "deep hole\x00DROP TABLE cases"),
        "name-nul": ("name", "Ann\x00"),
        "description-rtl-override": ("description", "pothole \u202egnp.exe"),
        "name-rtl-override": ("name", "\u202eevil"),
        "description-bell-escape": ("description", "hole \x1b[2J\x07"),
        "description-lone-surrogate": ("description", b"hole \xed\xa0\x80 here"),
        # Starlette reads undecodable bytes as Latin-1: invalid UTF-8 arrives as C1 controls.
        "description-invalid-utf8": ("description", b"hole \xc3\x28 \x80\x9f"),
        "name-10kb-emoji": ("name", emoji_10kb * 2),
        "category-emoji": ("category", emoji_10kb),
        "description-emoji-over-limit": ("description", "\U0001f468\u200d\U0001f469" * 1500),
    }
    for k, (name, value) in texts.items():
        status = frozenset({400, 413, 422}) if k == "description-1mb" else frozenset({422})
        cases.append(Bad(f"field-{k}", parts=with_fields((name, value)), status=status))
    return cases


def _request_cases(jpeg: bytes, tiny: bytes) -> list[Bad]:
    """Wrong content types, malformed multipart, repeats and floods, methods and routes."""
    ok = (photo_part(jpeg), *fields(*CITY_HALL))
    body_ok = multipart(ok)
    any4 = frozenset({400, 413, 415, 422})
    return [
        Bad("ct-json", body=b'{"lat": 42.3663, "lon": -71.1056, "photo": "aGVsbG8="}',
            content_type="application/json"),
        Bad("ct-text-plain", body=b"lat=42.3663&lon=-71.1056", content_type="text/plain"),
        Bad("ct-urlencoded", body=b"lat=42.3663&lon=-71.1056&photo=abc",
            content_type="application/x-www-form-urlencoded"),
        Bad("ct-none", body=body_ok, content_type=""),
        Bad("multipart-missing-boundary", body=body_ok, content_type="multipart/form-data",
            status=frozenset({400}), words="boundary"),
        Bad("multipart-wrong-boundary", body=body_ok,
            content_type="multipart/form-data; boundary=not-the-one", status=any4),
        Bad("multipart-garbage", body=b"--x\r\n\x00\x01garbage",
            content_type="multipart/form-data; boundary=x", status=any4),
        Bad("multipart-unterminated", body=body_ok[:-40], status=any4),
        Bad("photo-as-text-field", parts=(("photo", jpeg[:200].hex(), None, None),
                                          *fields(*CITY_HALL))),
        Bad("photo-missing", parts=fields(*CITY_HALL), words="photo"),
        Bad("photo-twice", parts=(photo_part(jpeg), photo_part(tiny), *fields(*CITY_HALL)),
            status=any4),
        Bad("files-1000", parts=tuple(photo_part(tiny, f"p{i}.jpg") for i in range(1000))
            + fields(*CITY_HALL), status=any4),
        Bad("files-1001-other-names", parts=(photo_part(jpeg),
            *(("extra", b"x", f"x{i}.bin", "application/octet-stream") for i in range(1001)),
            *fields(*CITY_HALL)), status=any4),
        Bad("fields-1001", parts=(photo_part(jpeg), *fields(*CITY_HALL),
            *fields(*[(f"f{i}", "v") for i in range(1001)])), status=any4),
        Bad("fields-unknown-200", parts=(photo_part(jpeg), *fields(*CITY_HALL),
            *fields(*[(f"extra{i}", "v") for i in range(200)])), status=any4),
        Bad("field-duplicate-lat", parts=(photo_part(jpeg), *fields(*CITY_HALL,
            ("lat", "42.3664"))), words="2 times"),
        Bad("field-duplicate-description", parts=(*ok, *fields(("description", "a"),
            ("description", "b")))),
        Bad("form-field-name-with-nul", parts=(*ok, ("desc\x00ription", "x", None, None)),
            status=any4),
        Bad("method-put", method="PUT", parts=ok, status=frozenset({405}),
            error="method_not_allowed"),
        Bad("method-delete-case", method="DELETE", path="/api/v1/reports/x",
            status=frozenset({404, 405})),
        Bad("method-patch-services", method="PATCH", path="/api/v1/services",
            status=frozenset({404, 405})),
        Bad("route-typo", path="/api/v1/report", parts=ok, status=frozenset({404}),
            error="not_found"),
        Bad("route-traversal", path="/api/v1/reports/..%2f..%2fetc%2fpasswd", method="GET",
            status=frozenset({404, 422})),
        Bad("route-case-id-nul", path="/api/v1/reports/%00", method="GET",
            status=frozenset({404, 422})),
        Bad("route-case-id-10kb", path="/api/v1/reports/" + "a" * 10_000, method="GET",
            status=frozenset({404, 414, 422})),
    ]  # fmt: skip


def corpus(photo: Path) -> list[Bad]:
    """Every bad request, built from one real photo (a couple of seconds to build)."""
    p = valid_photos(photo)
    p["webp-tiny-lossless"] = encode(
        Image.new("RGB", (64, 64), (90, 90, 90)), "WEBP", lossless=True
    )
    tiny = encode(Image.open(io.BytesIO(p["jpeg"])).resize((40, 40)), "JPEG", quality=60)
    big = p["jpeg"] + bytes(31_000_000)  # over the 30 MB upload limit
    return [*_photo_cases(p, big), *_field_cases(p["jpeg"]), *_request_cases(p["jpeg"], tiny)]
