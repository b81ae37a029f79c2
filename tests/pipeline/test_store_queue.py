"""The upload's structural photo check and the store-as-queue worker: a photo that passes the
check but fails the full decode ends `rejected` with the decoder's reason, never silently."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imagegen import jpeg_bytes
from PIL import Image

from pipeline import intake
from pipeline.context import Context
from pipeline.errors import PhotoRejected
from pipeline.settings import Settings
from pipeline.storequeue import work_one
from vision.errors import ImageRejected
from vision.image import inspect

CITY_HALL = intake.ReportForm(lat="42.36630", lon="-71.10560")


def _bogus_huffman_table(jpeg: bytes) -> bytes:
    """Every segment in place, but a Huffman table libjpeg refuses: only decoding finds it."""
    d = bytearray(jpeg)
    at = d.find(b"\xff\xc4")
    d[at + 5 : at + 21] = b"\xff" * 16
    return bytes(d)


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("cut", [1, 2, 100, 0.5])
def test_a_cut_off_jpeg_or_png_fails_the_structure_check(cut: float) -> None:
    for data in (jpeg_bytes(), _png()):
        n = int(len(data) * cut) if isinstance(cut, float) else len(data) - cut
        with pytest.raises(ImageRejected, match="truncated or corrupt"):
            inspect(data[:n])


def test_a_png_with_a_flipped_byte_fails_its_checksum() -> None:
    data = bytearray(_png())
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ImageRejected, match="checksum"):
        inspect(bytes(data))


def test_trailing_bytes_after_the_jpeg_end_are_allowed() -> None:
    # Phones append data after EOI (motion photos, depth maps): still a photo.
    assert inspect(jpeg_bytes() + b"\x00" * 64).format == "JPEG"


def test_a_photo_only_the_decoder_refuses_ends_rejected_with_its_reason(
    settings: Settings,
) -> None:
    ctx = Context(settings)
    data = _bogus_huffman_table(jpeg_bytes())
    case_id = intake.submit(ctx, data, CITY_HALL)  # the upload check passes it
    assert ctx.store.status(case_id) == "received" and ctx.store.waiting() == 1
    assert work_one(ctx, "test-worker")
    case = ctx.store.get(case_id)
    assert case.status == "rejected"
    assert case.error and "could not be decoded" in case.error
    assert [h.status for h in case.history] == ["received", "processing", "rejected"]
    assert not work_one(ctx, "test-worker")  # nothing left to claim


def test_a_truncated_upload_is_refused_and_leaves_nothing(settings: Settings) -> None:
    ctx = Context(settings)
    with pytest.raises(PhotoRejected, match="truncated"):
        intake.submit(ctx, jpeg_bytes()[:-300], CITY_HALL)
    assert ctx.store.count() == 0 and ctx.media.count() == 0


def test_one_process_sweeps_at_a_time(settings: Settings) -> None:
    from pipeline.sweeper import sweep_lock

    first, second = Context(settings), Context(settings)
    with sweep_lock(first) as leads:
        assert leads
        with sweep_lock(second) as also:
            assert not also  # another API process skips this round
    with sweep_lock(second) as leads_now:
        assert leads_now
