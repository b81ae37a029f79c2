"""The demo city's sample photos: real photos, placed with GPS at real street locations."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.context import Context
from pipeline.errors import ConfigError

# (source set, licence, attribution) of the photos the demo borrows, read in place.
DEMO_SOURCES = [
    (
        "potholes-seg",
        "pothole",
        "CC BY 4.0",
        'Roboflow Universe "farzad / pothole_segmentation_yolov8" '
        "(via GitHub Srikanta1122/Image_Segmentation_By_YOLOv8)",
    ),
    (
        "graffiti-det",
        "graffiti",
        "not stated by its publisher (believed CC BY 4.0, STORM graffiti, Zenodo 3238357)",
        "GitHub minhphan6624/COS40007, Portfolios/Portfolio06/data",
    ),
]


@dataclass(frozen=True)
class DemoPhoto:
    """A demo photo and where it was 'taken'."""

    path: Path
    source: str
    lat: float
    lon: float
    heading_deg: float
    street: str


def prepare_demo(
    ctx: Context, out_dir: Path, per_source: int = 4, seed: int = 7
) -> list[DemoPhoto]:
    """Copy validation photos with GPS + heading written into EXIF at Cambridge street points."""
    from vision.exif import write_exif

    data_dir = ctx.settings.data_dir
    picks: list[tuple[Path, str, str, str, str]] = []
    for name, kind, licence, attribution in DEMO_SOURCES:
        folder = data_dir / name / "images" / "val"
        if not folder.is_dir():
            raise ConfigError(
                f"demo photos come from {folder}, which is missing: set STREETLENS_DATA_DIR"
            )
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"})
        step = max(1, len(photos) // per_source)
        picks += [(p, name, kind, licence, attribution) for p in photos[::step][:per_source]]
    points = ctx.geo.sample_street_points(ctx.city.demo_streets, len(picks), seed)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    demo, credits = [], []
    for i, (
        (src, name, kind, licence, attribution),
        (lat, lon, street_heading, street),
    ) in enumerate(zip(picks, points, strict=True)):
        # Potholes are shot looking along the street; graffiti facing the wall beside it.
        heading = street_heading if kind == "pothole" else (street_heading + 90.0) % 360.0
        dest = out_dir / f"{i:02d}-{kind}-{src.stem[:24]}.jpg"
        dest.write_bytes(
            write_exif(src.read_bytes(), lat=lat, lon=lon, heading_deg=heading, accuracy_m=5.0)
        )
        demo.append(DemoPhoto(dest, name, lat, lon, heading, street))
        credits.append(
            {
                "file": dest.name,
                "source": f"{name}/images/val/{src.name}",
                "licence": licence,
                "attribution": attribution,
                "placed_at": {"lat": lat, "lon": lon, "street": street},
            }
        )
    (out_dir / "ATTRIBUTION.yaml").write_text(
        "# Demo photos: real photos from the data directory with GPS/heading written into EXIF\n"
        "# at points on real Cambridge, MA street centerlines (PDDL 1.0). The places are\n"
        "# invented; the photos keep their licences.\n" + yaml.safe_dump(credits, sort_keys=False)
    )
    return demo
