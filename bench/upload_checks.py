"""What the upload-time photo checks cost: the polyglot scan against the structure check it
rides on, and what a full HEIC decode would add for iPhone photos.

    python bench/upload_checks.py [--n 4] [--rounds 5]

Photos: real val photos of the data directory upscaled to 12 MP (4032x3024, an iPhone's size),
as JPEG (quality 92) and HEIC (quality 60), made in memory. For each format it prints CPU
ms/photo and ms/MB of: `vision.polyglot.embedded_payload` alone, `vision.image.inspect` (the
upload check, polyglot scan included), and `vision.image.decode` at 64 px (the old upload
check: a decode), and the ratios scan/inspect and decode/inspect. CPU time (process_time)
holds up under contention better than wall time; other processes still slow it through the
shared caches.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from pipeline.settings import Settings  # noqa: E402
from vision.image import decode, inspect  # noqa: E402
from vision.polyglot import embedded_payload  # noqa: E402

SIZE = (4032, 3024)


def photos(data_dir: Path, n: int, fmt: str, **options: object) -> list[bytes]:
    """n real val photos at 12 MP, encoded as fmt."""
    paths = sorted((data_dir / "potholes-seg" / "images" / "val").glob("*.jpg"))[:n]
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format=fmt, **options)
        out.append(buf.getvalue())
    return out


def cpu_ms(fn: Callable[[bytes], object], data: list[bytes], rounds: int) -> float:
    """CPU milliseconds per call, best of `rounds` passes over data."""
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for d in data:
            fn(d)
        best = min(best, (time.process_time() - t) / len(data))
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data_dir = Settings().data_dir
    sets = {
        "JPEG": photos(data_dir, args.n, "JPEG", quality=92),
        "HEIC": photos(data_dir, args.n, "HEIF", quality=60),
    }
    for fmt, data in sets.items():
        mb = sum(map(len, data)) / len(data) / 1e6
        scan = cpu_ms(embedded_payload, data, args.rounds)
        check = cpu_ms(inspect, data, args.rounds)
        dec = cpu_ms(lambda d: decode(d, target_long_side=64), data, max(1, args.rounds // 2))
        print(
            f"{fmt} 12 MP ({mb:.1f} MB): polyglot scan {scan:.2f} ms ({scan / mb:.2f} ms/MB), "
            f"inspect {check:.2f} ms, decode@64px {dec:.1f} ms | scan/inspect {scan / check:.2f}, "
            f"decode/inspect {dec / check:.1f}x"
        )


if __name__ == "__main__":
    main()
