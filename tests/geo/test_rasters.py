"""Heatmap GeoTIFFs and orthophoto crops, on rasters and points the tests generate."""

from __future__ import annotations

import io
import math

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from PIL import Image

from geo.errors import CRSMismatch, GeoInputError
from geo.layers import load_city
from geo.rasters import NODATA, crop_orthophoto, density_grid, write_heatmap

CRS = "EPSG:26958"  # NAD83 / Florida East, metres: Coral Gables's pack
A = (25.7465, -80.2680)  # a cluster of cases
B = (25.7215, -80.2684)  # a smaller one, 2.8 km south
TO_M = pyproj.Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
TO_WGS = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
GEOD = pyproj.Geod(ellps="WGS84")


def _scatter(center: tuple[float, float], n: int, sd_m: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0, y0 = TO_M.transform(center[1], center[0])
    lon, lat = TO_WGS.transform(x0 + rng.normal(0, sd_m, n), y0 + rng.normal(0, sd_m, n))
    return np.column_stack([lat, lon])


@pytest.fixture(scope="module")
def gables(data_dir):
    spec = {"slug": "coral-gables-fl", "crs": CRS,
            "layers": {"boundary": {"path": "gis/coral-gables-fl/boundary.geojson"}}}  # fmt: skip
    return load_city(spec, data_dir)


def test_heatmap_geotiff_opens_with_crs_transform_nodata_and_overviews(gables, tmp_path):
    pts = np.vstack([_scatter(A, 200, 5.0, 1), _scatter(B, 50, 5.0, 2)])
    h = density_grid(
        pts[:, 0], pts[:, 1], crs=CRS, cell_m=25.0, bandwidth_m=50.0, mask=gables.boundary
    )
    path = write_heatmap(h, tmp_path / "cases.tif")
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 26958
        assert (src.transform.a, src.transform.e) == (25.0, -25.0)
        assert src.nodata == NODATA and src.dtypes[0] == "float32"
        assert src.overviews(1)[:2] == [2, 4]
        assert src.tags()["units"] == "cases per km2"
        d = src.read(1)
        inside = d != NODATA
        # Cases are moved by the kernel, never created or lost (both clusters are well inside).
        cell_km2 = 25.0 * 25.0 / 1e6
        assert d[inside].sum() * cell_km2 == pytest.approx(250, rel=0.01)
        # The densest cell is A's, and B is a local peak of about a quarter of A's height.
        r, c = np.unravel_index(np.argmax(np.where(inside, d, -1)), d.shape)
        x, y = src.transform @ (c + 0.5, r + 0.5)
        lon, lat = TO_WGS.transform(x, y)
        assert GEOD.inv(lon, lat, A[1], A[0])[2] < 25.0
        xb, yb = TO_M.transform(B[1], B[0])
        cb, rb = ~src.transform @ (xb, yb)
        peak_b = d[int(rb) - 2 : int(rb) + 3, int(cb) - 2 : int(cb) + 3].max()
        assert 0.15 < peak_b / d[r, c] < 0.35
        # Outside the city: nodata; inside, away from cases: zero.
        assert d[0, 0] == NODATA
        x0, y0 = TO_M.transform(-80.2617, 25.6830)
        c0, r0 = ~src.transform @ (x0, y0)
        assert d[int(r0), int(c0)] == 0.0


def test_heatmap_without_mask_covers_the_points(tmp_path):
    pts = _scatter(A, 30, 20.0, 3)
    h = density_grid(pts[:, 0], pts[:, 1], crs=CRS, cell_m=10.0, bandwidth_m=0.0)
    assert h.density.sum() * 1e-4 == pytest.approx(30)  # no kernel: plain counts per cell
    assert (h.density >= 0).all() and h.points == 30
    write_heatmap(h, tmp_path / "small.tif", overviews=False)


def test_heatmap_arguments_are_checked():
    lat, lon = np.array([A[0]]), np.array([A[1]])
    with pytest.raises(CRSMismatch, match="metres"):
        density_grid(lat, lon, crs="EPSG:4326", cell_m=10, bandwidth_m=10)
    with pytest.raises(GeoInputError, match="cell_m"):
        density_grid(lat, lon, crs=CRS, cell_m=0, bandwidth_m=10)
    with pytest.raises(GeoInputError, match="too large"):
        density_grid(lat, lon, crs=CRS, cell_m=0.001, bandwidth_m=10)
    with pytest.raises(GeoInputError, match="WGS84"):
        density_grid(np.array([95.0]), lon, crs=CRS, cell_m=10, bandwidth_m=10)


def _orthophoto(path, crs: str, center: tuple[float, float], size: int, px: float) -> None:
    """A grey gradient with a red 3 m square on `center`; px is the pixel size in CRS units."""
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        center[1], center[0]
    )
    left, top = x0 - size * px * 0.37, y0 + size * px * 0.41  # the point is off-centre
    t = Affine(px, 0, left, 0, -px, top)
    img = np.zeros((3, size, size), dtype=np.uint8)
    img[:] = (np.add.outer(np.arange(size), np.arange(size)) % 200).astype(np.uint8)
    c, r = ~t @ (x0, y0)
    # 3 m wide, whatever the units: metres per unit from a 1-unit step east of the point.
    lon_b, lat_b = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
        x0 + px, y0
    )
    px_m = GEOD.inv(center[1], center[0], lon_b, lat_b)[2]
    half = max(1, round(1.5 / px_m))
    img[:, int(r) - half : int(r) + half, int(c) - half : int(c) + half] = [[[255]], [[0]], [[0]]]
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=crs,
        transform=t,
    ) as dst:  # fmt: skip
        dst.write(img)


@pytest.mark.parametrize(
    ("crs", "px", "px_m"),
    [("EPSG:2236", 1.0, 0.3048), ("EPSG:26958", 0.3, 0.3), ("EPSG:4326", 3e-6, 0.3)],
)
def test_crop_is_centred_on_the_point_whatever_the_raster_crs(tmp_path, crs, px, px_m):
    path = tmp_path / "ortho.tif"
    _orthophoto(path, crs, A, 1500, px)
    png = crop_orthophoto(path, *A, radius_m=10.0, marker=False)
    img = np.asarray(Image.open(io.BytesIO(png)))
    h, w, _ = img.shape
    expect = 20.0 / px_m  # 10 m each way
    assert abs(w - expect) <= 0.1 * expect + 2 and abs(h - expect) <= 0.1 * expect + 2
    red = (img[..., 0] == 255) & (img[..., 1] == 0)
    ry, rx = np.argwhere(red).mean(axis=0)
    assert abs(rx - w / 2) <= 3 and abs(ry - h / 2) <= 3
    assert not red[0, 0] and not red[-1, -1]
    # The GeoTIFF crop keeps the raster's CRS and a transform that puts the point in its middle.
    tif = crop_orthophoto(path, *A, radius_m=10.0, fmt="tiff")
    with rasterio.MemoryFile(tif) as mem, mem.open() as src:
        assert src.crs == rasterio.crs.CRS.from_user_input(crs)
        x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(A[1], A[0])
        c, r = ~src.transform @ (x, y)
        assert abs(c - src.width / 2) <= 1.5 and abs(r - src.height / 2) <= 1.5
        assert math.isclose(src.transform.a, px, rel_tol=1e-9)


def test_crop_marks_the_point_and_limits_its_size(tmp_path):
    path = tmp_path / "ortho.tif"
    _orthophoto(path, "EPSG:2236", A, 1500, 1.0)
    img = np.asarray(Image.open(io.BytesIO(crop_orthophoto(path, *A, radius_m=100.0, max_px=256))))
    assert max(img.shape[:2]) == 256  # 656 px downsampled
    # A point near the raster's edge: the part beyond it is filled, not an error.
    lon, lat, _ = GEOD.fwd(A[1], A[0], 270, 150.0)  # the raster ends 169 m west of A
    edge = np.asarray(Image.open(io.BytesIO(crop_orthophoto(path, lat, lon, radius_m=60.0))))
    assert (edge[:, 0] == 0).all()


def test_crop_errors_say_what_is_wrong(tmp_path):
    path = tmp_path / "ortho.tif"
    _orthophoto(path, "EPSG:2236", A, 300, 1.0)
    with pytest.raises(GeoInputError, match="outside the orthophoto"):
        crop_orthophoto(path, *B, radius_m=10.0)
    bare = tmp_path / "nocrs.tif"
    with rasterio.open(bare, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as d:
        d.write(np.zeros((1, 8, 8), dtype=np.uint8))
    with pytest.raises(CRSMismatch, match="declares no CRS"):
        crop_orthophoto(bare, *A, radius_m=10.0)
    with pytest.raises(GeoInputError, match="radius_m"):
        crop_orthophoto(path, *A, radius_m=-1.0)
