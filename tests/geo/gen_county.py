"""Generated Miami-Dade-shaped exports (folio parcels, street centerlines) in EPSG:2236 feet."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import pyproj
import shapely

COUNTY_CRS = "EPSG:2236"  # NAD83 / Florida East, US survey feet: the county's own
FT = 1200 / 3937  # metres per US survey foot
# Inside Coral Gables, ~1 km from its boundary (near Biltmore Way).
CENTER = (25.7465, -80.2680)
TO_FT = pyproj.Transformer.from_crs("EPSG:4326", COUNTY_CRS, always_xy=True)
TO_WGS = pyproj.Transformer.from_crs(COUNTY_CRS, "EPSG:4326", always_xy=True)
REAL_BOUNDARY = "gis/coral-gables-fl/boundary.geojson"
LOT_W, LOT_D = 100.0, 150.0  # feet: frontage and depth


@dataclass
class Lot:
    """One generated lot: folio, address, use, and a point inside it (WGS84)."""

    folio: str
    address: str
    use: str
    box_ft: tuple[float, float, float, float]

    def center(self) -> tuple[float, float]:
        """(lat, lon) of the lot's middle."""
        x0, y0, x1, y1 = self.box_ft
        lon, lat = TO_WGS.transform((x0 + x1) / 2, (y0 + y1) / 2)
        return lat, lon

    def south_of(self, feet: float) -> tuple[float, float]:
        """(lat, lon) `feet` south of the lot's south edge, mid-frontage."""
        x0, y0, x1, _ = self.box_ft
        lon, lat = TO_WGS.transform((x0 + x1) / 2, y0 - feet)
        return lat, lon


@dataclass
class County:
    """What was generated: the lots, and the special cases the import must report."""

    lots: list[Lot] = field(default_factory=list)
    condo_folio: str = ""
    bowtie_folio: str = ""
    origin_ft: tuple[float, float] = (0.0, 0.0)


def make_county() -> tuple[County, dict, dict]:
    """Six lots in a 3x2 block, plus a condo's second polygon, a bowtie and one without folio."""
    x0, y0 = TO_FT.transform(CENTER[1], CENTER[0])
    county = County(origin_ft=(x0, y0))
    geoms, folios, addrs, uses = [], [], [], []
    for r in range(2):
        for c in range(3):
            box = (x0 + c * LOT_W, y0 + r * LOT_D, x0 + (c + 1) * LOT_W, y0 + (r + 1) * LOT_D)
            lot = Lot(
                folio=f"034117005{r}{c:03d}",  # 13 digits, Coral Gables's municipality 03
                address=f"{400 + 2 * c + 100 * r} BILTMORE WAY",
                use="RESIDENTIAL - SINGLE FAMILY : 1 UNIT" if c else "OFFICE BUILDING",
                box_ft=box,
            )
            county.lots.append(lot)
            geoms.append(shapely.box(*box))
            folios.append(lot.folio)
            addrs.append(lot.address)
            uses.append(lot.use)
    # A condo's parking lot across the block: the same folio on a second polygon.
    county.condo_folio = county.lots[0].folio
    geoms.append(shapely.box(x0 + 400, y0, x0 + 450, y0 + 60))
    folios.append(county.condo_folio)
    addrs.append(county.lots[0].address)
    uses.append(county.lots[0].use)
    # A self-intersecting (bowtie) lot, as real exports hold: repaired, not dropped.
    county.bowtie_folio = "0341170060001"
    bx, by = x0, y0 + 400
    geoms.append(shapely.Polygon([(bx, by), (bx + 80, by + 80), (bx + 80, by), (bx, by + 80)]))
    folios.append(county.bowtie_folio)
    addrs.append("1 BOWTIE CT")
    uses.append("VACANT")
    # A polygon with no folio at all: dropped and reported.
    geoms.append(shapely.box(x0 + 400, y0 + 200, x0 + 450, y0 + 260))
    folios.append(None)
    addrs.append(None)
    uses.append(None)
    parcels = {
        "geoms": np.array(geoms, dtype=object),
        "FOLIO": np.array(folios, dtype=object),
        "TRUE_SITE_ADDR": np.array(addrs, dtype=object),
        "TRUE_SITE_CITY": np.array(["CORAL GABLES"] * len(geoms), dtype=object),
        "DOR_DESC": np.array(uses, dtype=object),
    }
    streets = {
        "geoms": np.array(
            [
                shapely.LineString([(x0 - 60, y0 - 30), (x0 + 360, y0 - 30)]),
                shapely.LineString([(x0 - 60, y0 - 100), (x0 - 60, y0 + 600)]),
                shapely.LineString([(x0 - 60, y0 + 520), (x0 + 360, y0 + 520)]),
            ],
            dtype=object,
        ),
        "SEG_ID": np.array(["5001", "5002", "5003"], dtype=object),
        "ST_NAME": np.array(["BILTMORE WAY", "LE JEUNE RD", "ALHAMBRA CIR"], dtype=object),
        "ROAD_CLASS": np.array(["4", "2", "3"], dtype=object),
        "MAINT": np.array(["CITY", "STATE", "COUNTY"], dtype=object),
        "L_ADD_FROM": np.array([400, 0, 0]),
        "L_ADD_TO": np.array([498, 0, 0]),
        "R_ADD_FROM": np.array([401, 0, 0]),
        "R_ADD_TO": np.array([499, 0, 0]),
        "L_ZIP": np.array(["33134", "33134", "33134"], dtype=object),
        "R_ZIP": np.array(["33134", "33134", "33134"], dtype=object),
    }
    return county, parcels, streets


def write_layer(
    path: Path,
    table: dict,
    *,
    driver: str = "GPKG",
    crs: str | None = COUNTY_CRS,
    layer: str | None = None,
    numeric_folio: bool = False,
) -> Path:
    """Write a generated table in any of the formats a county exports."""
    geoms = table["geoms"]
    cols = {k: v for k, v in table.items() if k != "geoms"}
    if numeric_folio:  # what a spreadsheet round trip does to a folio
        cols["FOLIO"] = np.array([int(v) if v else 0 for v in cols["FOLIO"]], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if driver == "GeoParquet":
        _write_geoparquet(path, geoms, cols, crs)
        return path
    kinds = {shapely.get_type_id(g) for g in geoms}
    gtype = "LineString" if kinds == {1} else "Polygon"
    pyogrio.raw.write(
        path,
        shapely.to_wkb(geoms),
        list(cols.values()),
        list(cols),
        geometry_type=gtype,
        crs=crs,
        driver=driver,
        layer=layer,
        **({"append": True} if layer and path.exists() else {}),
    )
    return path


def _write_geoparquet(path: Path, geoms: np.ndarray, cols: dict, crs: str | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {k: pa.array(list(v)) for k, v in cols.items()}
    arrays["geometry"] = pa.array(list(shapely.to_wkb(geoms)), type=pa.binary())
    types = sorted({g.geom_type for g in geoms})
    col = {"encoding": "WKB", "geometry_types": types}
    if crs is not None:
        col["crs"] = pyproj.CRS(crs).to_json_dict()
    meta = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}}
    table = pa.table(arrays).replace_schema_metadata({"geo": json.dumps(meta)})
    pq.write_table(table, path)


def county_data_dir(root: Path, real_data: Path) -> Path:
    """A data directory holding the real Coral Gables boundary (a link, not a copy)."""
    link = root / REAL_BOUNDARY
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        os.symlink(real_data / REAL_BOUNDARY, link)
    return root
