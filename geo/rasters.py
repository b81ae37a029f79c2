"""Rasters for people: case-density heatmaps (GeoTIFF) and orthophoto crops around a point."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyproj
import rasterio
import rasterio.crs
import rasterio.features
import rasterio.warp
import rasterio.windows
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError

from geo.crs import WGS84, Projector, check_local_crs, parse_crs
from geo.errors import CRSMismatch, GeoInputError, LayerError, LayerNotFound

NODATA = -9999.0
MAX_CELLS = 25_000_000  # a 5000 x 5000 grid; past this the cell is too small for the area
MIN_OVERVIEW_PX = 64
_GEOD = pyproj.Geod(ellps="WGS84")


@dataclass(frozen=True)
class Heatmap:
    """Case density on a grid in the city's CRS: cases per km², NODATA outside the mask."""

    density: np.ndarray  # float32, (rows, cols), north up
    transform: Affine
    crs: str
    cell_m: float
    bandwidth_m: float
    points: int  # points that fell on the grid

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the city's CRS."""
        rows, cols = self.density.shape
        xmin, ymax = self.transform.c, self.transform.f
        return xmin, ymax - rows * self.cell_m, xmin + cols * self.cell_m, ymax


def _check_points(lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lats = np.asarray(lats, dtype=float).ravel()
    lons = np.asarray(lons, dtype=float).ravel()
    if lats.shape != lons.shape:
        raise GeoInputError(f"lats and lons differ in length: {lats.size} vs {lons.size}")
    ok = np.isfinite(lats) & np.isfinite(lons) & (np.abs(lats) <= 90) & (np.abs(lons) <= 180)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise GeoInputError(
            f"point {i} is not a WGS84 coordinate: lat={lats[i]} lon={lons[i]}; pass degrees"
        )
    return lats, lons


def _gaussian_1d(sigma_cells: float) -> np.ndarray:
    if sigma_cells <= 0:
        return np.ones(1)
    r = max(1, math.ceil(3 * sigma_cells))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_cells) ** 2)
    return k / k.sum()  # sums to one: smoothing moves cases, never adds or loses them


def _smooth(grid: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable convolution with zero padding, through the FFT: any bandwidth costs the same."""
    r = len(k) // 2
    if r == 0:
        return grid
    for axis in (0, 1):
        n = grid.shape[axis]
        size = n + 2 * r  # the whole linear convolution: no wrap-around
        spec = np.fft.rfft(grid, n=size, axis=axis)
        kern = np.fft.rfft(k, n=size)
        spec *= kern[:, None] if axis == 0 else kern[None, :]
        full = np.fft.irfft(spec, n=size, axis=axis)
        grid = full[r : r + n] if axis == 0 else full[:, r : r + n]
    # FFT round-off leaves ±1e-17 where the kernel never reached: those cells hold no case.
    grid[grid < grid.max() * 1e-12] = 0.0
    return grid


def density_grid(
    lats: np.ndarray,
    lons: np.ndarray,
    *,
    crs: str,
    cell_m: float,
    bandwidth_m: float,
    bounds: tuple[float, float, float, float] | None = None,
    mask: shapely.Geometry | None = None,
    weights: np.ndarray | None = None,
) -> Heatmap:
    """Kernel density of points (WGS84) on a grid of cell_m metres in the city's CRS."""
    check_local_crs(parse_crs(crs, "crs"), "heatmap")
    if not (math.isfinite(cell_m) and cell_m > 0):
        raise GeoInputError(f"cell_m must be a positive number of metres, got {cell_m}")
    if not (math.isfinite(bandwidth_m) and bandwidth_m >= 0):
        raise GeoInputError(f"bandwidth_m must be finite and >= 0 metres, got {bandwidth_m}")
    lats, lons = _check_points(lats, lons)
    w = np.ones(len(lats)) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != lats.shape or not np.isfinite(w).all():
        raise GeoInputError("weights must be one finite number per point")
    x, y = Projector(crs).to_local(lons, lats)
    if bounds is None:
        if mask is not None:
            bounds = tuple(shapely.bounds(mask))  # type: ignore[assignment]
        elif len(x):
            bounds = (x.min(), y.min(), x.max(), y.max())
        else:
            raise GeoInputError("no points and no bounds or mask: nothing says where the grid is")
        pad = 3 * bandwidth_m + cell_m  # room for the kernel's tails, so no case is cut off
        bounds = (bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad)
    xmin = math.floor(bounds[0] / cell_m) * cell_m
    ymax = math.ceil(bounds[3] / cell_m) * cell_m
    cols = max(1, math.ceil((bounds[2] - xmin) / cell_m))
    rows = max(1, math.ceil((ymax - bounds[1]) / cell_m))
    if rows * cols > MAX_CELLS:
        raise GeoInputError(
            f"a {cols} x {rows} grid is too large ({rows * cols:,} cells); use a larger cell_m "
            f"or smaller bounds"
        )
    c = np.floor((x - xmin) / cell_m).astype(np.int64)
    r = np.floor((ymax - y) / cell_m).astype(np.int64)
    on = (c >= 0) & (c < cols) & (r >= 0) & (r < rows)
    counts = np.bincount(r[on] * cols + c[on], weights=w[on], minlength=rows * cols)
    grid = _smooth(counts.reshape(rows, cols), _gaussian_1d(bandwidth_m / cell_m))
    density = (grid / (cell_m * cell_m / 1e6)).astype(np.float32)
    transform = Affine(cell_m, 0.0, xmin, 0.0, -cell_m, ymax)
    if mask is not None:
        inside = rasterio.features.geometry_mask(
            [shapely.geometry.mapping(mask)], (rows, cols), transform, invert=True, all_touched=True
        )
        density[~inside] = NODATA
    return Heatmap(density, transform, crs, float(cell_m), float(bandwidth_m), int(on.sum()))


def write_heatmap(h: Heatmap, path: Path, *, overviews: bool = True) -> Path:
    """Write a heatmap as a tiled, compressed GeoTIFF with CRS, nodata and (optional) overviews."""
    rows, cols = h.density.shape
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 1,
        "dtype": "float32",
        "crs": rasterio.crs.CRS.from_user_input(h.crs),
        "transform": h.transform,
        "nodata": NODATA,
        "compress": "deflate",
        "predictor": 3,  # floating-point predictor: smooth surfaces compress well
    }
    if rows >= 256 and cols >= 256:
        profile |= {"tiled": True, "blockxsize": 256, "blockysize": 256}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(h.density, 1)
        dst.set_band_description(1, "case density (cases per km²)")
        dst.update_tags(
            units="cases per km2", kernel="gaussian", bandwidth_m=h.bandwidth_m,
            cell_m=h.cell_m, points=h.points,
        )  # fmt: skip
        if overviews:
            factors = []
            f = 2
            while min(rows, cols) // f >= MIN_OVERVIEW_PX:
                factors.append(f)
                f *= 2
            if factors:
                dst.build_overviews(factors, Resampling.average)
                dst.update_tags(ns="rio_overview", resampling="average")
    return path


def _to_uint8(data: np.ndarray, nodata: float | None) -> np.ndarray:
    if data.dtype == np.uint8:
        return data
    out = np.zeros(data.shape, dtype=np.uint8)
    for b in range(data.shape[0]):
        band = data[b].astype(float)
        valid = np.isfinite(band) if nodata is None else (band != nodata) & np.isfinite(band)
        if valid.any():
            lo, hi = np.percentile(band[valid], (2, 98))
            out[b] = np.clip((band - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
    return out


def crop_orthophoto(
    path: Path,
    lat: float,
    lon: float,
    radius_m: float,
    *,
    fmt: Literal["png", "tiff"] = "png",
    max_px: int = 1024,
    marker: bool = True,
) -> bytes:
    """A square crop of an orthophoto centred on (lat, lon), radius_m metres each way."""
    (lat,), (lon,) = _check_points(np.array([lat]), np.array([lon]))
    if not (math.isfinite(radius_m) and 0 < radius_m <= 5000):
        raise GeoInputError(f"radius_m must be between 0 and 5000 metres, got {radius_m}")
    if fmt not in ("png", "tiff"):
        raise GeoInputError(f"fmt must be 'png' or 'tiff', got {fmt!r}")
    path = Path(path)
    if not path.exists():
        raise LayerNotFound(f"orthophoto {path} does not exist; check its path")
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise LayerError(f"orthophoto {path} is not a raster GDAL reads ({exc})") from exc
    with src:
        if src.crs is None:
            raise CRSMismatch(
                f"orthophoto {path} declares no CRS, so no point can be found on it; assign its "
                "CRS (gdal_edit.py -a_srs EPSG:<code>) or reproject it"
            )
        to_src = pyproj.Transformer.from_crs(WGS84, src.crs.to_wkt(), always_xy=True)
        # Metres on the ground, measured geodesically, so feet and degree rasters crop right too.
        lons, lats, _ = _GEOD.fwd([lon] * 4, [lat] * 4, [0, 90, 180, 270], [radius_m] * 4)
        xs, ys = to_src.transform(np.r_[lons, lon], np.r_[lats, lat])
        cx, cy = xs[-1], ys[-1]
        b = src.bounds
        if not (b.left <= cx <= b.right and b.bottom <= cy <= b.top):
            w, s, e, n = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *b)
            raise GeoInputError(
                f"({lat}, {lon}) is outside the orthophoto {path.name}, which covers lat "
                f"{s:.5f}..{n:.5f}, lon {w:.5f}..{e:.5f}"
            )
        inv = ~src.transform
        cols, rows = zip(*(inv @ (x, y) for x, y in zip(xs[:4], ys[:4], strict=True)), strict=True)
        col0, row0 = math.floor(min(cols)), math.floor(min(rows))
        width = max(1, math.ceil(max(cols)) - col0)
        height = max(1, math.ceil(max(rows)) - row0)
        win = rasterio.windows.Window(col0, row0, width, height)
        scale = min(1.0, max_px / max(width, height))
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        bands = list(range(1, min(src.count, 4) + 1))
        fill = src.nodata if src.nodata is not None else 0
        data = src.read(
            bands, window=win, out_shape=(len(bands), out_h, out_w), boundless=True,
            fill_value=fill, resampling=Resampling.average if scale < 1 else Resampling.nearest,
        )  # fmt: skip
        transform = src.window_transform(win) @ Affine.scale(width / out_w, height / out_h)
        if fmt == "tiff":
            return _geotiff_bytes(data, transform, src.crs, src.nodata)
        px, py = ~transform @ (cx, cy)
        return _png_bytes(_to_uint8(data, src.nodata), (px, py) if marker else None)


def _geotiff_bytes(data: np.ndarray, transform: Affine, crs: object, nodata: float | None) -> bytes:
    profile = {
        "driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
        "count": data.shape[0], "dtype": data.dtype.name, "crs": crs, "transform": transform,
        "nodata": nodata, "compress": "deflate",
    }  # fmt: skip
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        return mem.read()


def _png_bytes(data: np.ndarray, mark: tuple[float, float] | None) -> bytes:
    from PIL import Image

    img = np.moveaxis(data, 0, -1)
    if mark is not None:
        img = img.copy()
        h, w, n = img.shape
        x, y = int(mark[0]), int(mark[1])
        arm = max(3, min(h, w) // 12)
        colour = [255, 0, 0, 255][:n] if n >= 3 else [255] * n
        # A crosshair with a gap in the middle, so the crew still sees what is at the point.
        for d in range(arm // 3, arm):
            for xx, yy in ((x - d, y), (x + d, y), (x, y - d), (x, y + d)):
                if 0 <= xx < w and 0 <= yy < h:
                    img[yy, xx] = colour
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(buf, format="PNG")
    return buf.getvalue()
