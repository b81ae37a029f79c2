"""CityGeo: a loaded city's layers in its projected CRS, indexed for point lookups."""

from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pyproj
import shapely

from geo.crs import Projector
from geo.errors import GeoInputError, LayerError
from geo.pip import PolygonIndex
from geo.spec import CitySpec, norm_name
from geo.streets import STREET_COLUMNS, StreetMatch, describe_matches, round_m
from geo.types import Place

if TYPE_CHECKING:
    from geo.read import LoadReport

Tables = dict[str, dict[str, np.ndarray]]
DISTRICT_VOTES = 3  # the nearest coded assets that must agree before a district is named
_GEOD = pyproj.Geod(ellps="WGS84")


class CityGeo:
    """A city's boundary, parcels, streets and assets, projected and indexed."""

    def __init__(self, spec: CitySpec, tables: Tables, report: LoadReport) -> None:
        self.spec = spec
        self.slug = spec.slug
        self.crs = spec.crs
        self.report = report
        self._proj = Projector(spec.crs)
        self.boundary = tables["boundary"]["geom"][0]
        shapely.prepare(self.boundary)
        empty = {"geom": np.empty(0, dtype=object), "id": np.empty(0, dtype=object)}
        self._lots = tables.get("lots", {**empty, "address": empty["id"], "use": empty["id"]})
        self._nonlots = tables.get("nonlots", empty)
        self._streets = tables.get("streets")
        self._assets = {k.split(":", 1)[1]: t for k, t in tables.items() if k.startswith("asset:")}
        # Containment goes through the grid + numpy index (5x GEOS per pair); the trees serve
        # nearest-lot and nearest-street queries.
        self._lot_pip = PolygonIndex(self._lots["geom"])
        self._lot_ids_or_none = np.append(self._lots["id"], None).astype(object)
        self._nonlot_pip = PolygonIndex(self._nonlots["geom"])
        self._street_tree = shapely.STRtree(self._streets["geom"]) if self._streets else None
        self._asset_trees = {k: shapely.STRtree(t["geom"]) for k, t in self._assets.items()}
        self._district = None
        if (kind := spec.district_asset) is not None:
            # Only coded points vote; codes become small ints so votes compare in numpy.
            t = self._assets[kind]
            coded = np.array([v is not None for v in t["district"]], dtype=bool)
            names, code = np.unique(t["district"][coded].astype(str), return_inverse=True)
            pts = t["geom"][coded]
            self._district = (
                shapely.STRtree(pts),
                shapely.get_x(pts),
                shapely.get_y(pts),
                code,
                names.astype(object),
            )

    @cached_property
    def _lot_tree(self) -> shapely.STRtree:
        # Only nearest-lot searches need it (a point in no lot): built on the first one.
        return shapely.STRtree(self._lots["geom"])

    @property
    def missing_layers(self) -> list[str]:
        """Layers the city lacks (e.g. parcels for a boundary-only pack): lookups skip them."""
        out = [] if self.spec.parcels else ["parcels"]
        return out + ([] if self._streets is not None else ["streets"])

    def layer_tables(self) -> Tables:
        """The loaded lots, non-lots and streets (local CRS), for loading into another store."""
        out = {"lots": self._lots, "nonlots": self._nonlots}
        if self._streets is not None:
            out["streets"] = self._streets
        return out

    # ---- points in, arrays out (the vectorised core) ------------------------------------

    def _points(self, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        if lats.shape != lons.shape:
            raise GeoInputError(f"lats and lons differ in length: {lats.size} vs {lons.size}")
        ok = np.isfinite(lats) & np.isfinite(lons)
        bad = ~(ok & (np.abs(lats) <= 90) & (np.abs(lons) <= 180))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise GeoInputError(
                f"point {i} is not a WGS84 coordinate: lat={lats[i]} lon={lons[i]}; "
                "pass latitude and longitude in degrees"
            )
        return self._proj.to_local(lons, lats)

    def contains_many(self, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
        """Whether each point is inside the city boundary (on the line counts as inside)."""
        x, y = self._points(lats, lons)
        return shapely.intersects_xy(self.boundary, x, y)

    def contains(self, lat: float, lon: float) -> bool:
        """Whether the point is inside the city boundary."""
        return bool(self.contains_many(np.array([lat]), np.array([lon]))[0])

    def _lot_index(
        self, x: np.ndarray, y: np.ndarray, reach: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per point: the lot containing it (lowest index wins), else the nearest in reach."""
        n = len(x)
        idx, dist = np.full(n, -1, dtype=np.int64), np.full(n, np.nan)
        if not len(self._lots["geom"]):
            return idx, dist
        idx = self._lot_pip.containing(x, y)
        dist[idx >= 0] = 0.0
        miss = np.flatnonzero(idx < 0)
        if len(miss) and reach[miss].max() > 0:
            (i2, t2), d = self._lot_tree.query_nearest(
                shapely.points(x[miss], y[miss]),
                max_distance=float(reach[miss].max()),
                return_distance=True,
                all_matches=False,
            )
            ok = d <= reach[miss][i2]
            idx[miss[i2[ok]]], dist[miss[i2[ok]]] = t2[ok], d[ok]
        return idx, dist

    def parcel_ids(
        self, lats: np.ndarray, lons: np.ndarray, max_distance_m: float = 0.0
    ) -> np.ndarray:
        """Vectorised: each point's lot id (containing lot, else nearest within max_distance_m)."""
        x, y = self._points(lats, lons)
        return self.parcel_ids_xy(x, y, max_distance_m)

    def parcel_ids_xy(
        self, x: np.ndarray, y: np.ndarray, max_distance_m: float = 0.0
    ) -> np.ndarray:
        """parcel_ids for points already in the city's CRS (metres): no reprojection cost."""
        x = np.asarray(x, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
        if x.shape != y.shape:
            raise GeoInputError(f"x and y differ in length: {x.size} vs {y.size}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise GeoInputError(f"x and y must be finite coordinates in {self.crs} (metres)")
        if not (math.isfinite(max_distance_m) and max_distance_m >= 0):
            raise GeoInputError(f"max_distance_m must be finite and >= 0, got {max_distance_m}")
        idx, _ = self._lot_index(x, y, np.full(len(x), float(max_distance_m)))
        return self._lot_ids_or_none[idx]  # -1 (no lot) reads the trailing None

    def to_local(self, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 points (checked) as x/y metres in the city's CRS."""
        return self._points(lats, lons)

    def parcel_at(self, lat: float, lon: float) -> str | None:
        """The id of the lot containing the point (right-of-way polygons are not lots)."""
        return self.parcel_ids(np.array([lat]), np.array([lon]))[0]

    def _nonlot_ids(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.full(len(x), None, dtype=object)
        idx = self._nonlot_pip.containing(x, y)
        out[idx >= 0] = self._nonlots["id"][idx[idx >= 0]]
        return out

    def _nearest(
        self, tree: shapely.STRtree, x: np.ndarray, y: np.ndarray, reach: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        idx, dist = np.full(n, -1, dtype=np.int64), np.full(n, np.nan)
        if n and len(tree) and reach.max() > 0:
            (i, t), d = tree.query_nearest(
                shapely.points(x, y),
                max_distance=float(reach.max()),
                return_distance=True,
                all_matches=False,
            )
            ok = d <= reach[i]
            idx[i[ok]], dist[i[ok]] = t[ok], d[ok]
        return idx, dist

    def _street_matches(
        self, x: np.ndarray, y: np.ndarray, reach: np.ndarray
    ) -> list[StreetMatch | None]:
        out: list[StreetMatch | None] = [None] * len(x)
        if self._street_tree is None:
            return out
        s = self._streets
        idx, dist = self._nearest(self._street_tree, x, y, reach)
        m = np.flatnonzero(idx >= 0)
        k = idx[m]
        attrs = {c: s[c][k] for c in STREET_COLUMNS}
        for i, match in zip(
            m, describe_matches(s["geom"][k], attrs, x[m], y[m], dist[m]), strict=True
        ):
            out[i] = match
        return out

    def nearest_street(
        self, lat: float, lon: float, max_distance_m: float | None = None
    ) -> StreetMatch | None:
        """The street segment nearest the point, within max_distance_m (default: spec search_m)."""
        x, y = self._points(np.array([lat]), np.array([lon]))
        if max_distance_m is None:
            max_distance_m = self.spec.streets.search_m if self.spec.streets else 0.0
        return self._street_matches(x, y, np.array([float(max_distance_m)]))[0]

    def _districts(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A district code where the nearest coded assets agree, else None (near a border)."""
        out = np.full(len(x), None, dtype=object)
        if self._district is None:
            return out
        tree, ax, ay, code, names = self._district
        r = self.spec.district_search_m
        inp, tre = tree.query(shapely.box(x - r, y - r, x + r, y + r))
        d = np.hypot(ax[tre] - x[inp], ay[tre] - y[inp])
        near = d <= r
        inp, tre, d = inp[near], tre[near], d[near]
        order = np.lexsort((tre, d, inp))
        inp, tre = inp[order], tre[order]
        start = np.searchsorted(inp, inp)  # first row of each point's group
        top = (np.arange(len(inp)) - start) < DISTRICT_VOTES
        inp, c = inp[top], code[tre[top]]
        if not len(inp):
            return out
        head = np.r_[True, inp[1:] != inp[:-1]]
        lead = c[head][np.cumsum(head) - 1]  # each row's group's nearest code
        dissent = np.bincount(inp, weights=c != lead, minlength=len(x)) > 0
        agree = (np.bincount(inp, minlength=len(x)) >= DISTRICT_VOTES) & ~dissent
        first = np.full(len(x), -1)
        first[inp[head]] = c[head]
        out[agree] = names[first[agree]]
        return out

    # ---- the public lookups ----------------------------------------------------------------

    def place_many(
        self,
        lats: np.ndarray,
        lons: np.ndarray,
        *,
        uncertainty_m: float | np.ndarray = 10.0,
        asset_kind: str | None = None,
    ) -> list[Place]:
        """Place every point (vectorised index queries; one Place per point)."""
        x, y = self._points(lats, lons)
        n = len(x)
        unc = np.broadcast_to(np.asarray(uncertainty_m, dtype=float), (n,)).copy()
        if not np.all(np.isfinite(unc) & (unc >= 0)):
            raise GeoInputError("uncertainty_m must be finite and >= 0 metres")
        if asset_kind is not None and asset_kind not in self._assets:
            raise GeoInputError(
                f"no asset layer {asset_kind!r} in city {self.slug}; it has: "
                f"{sorted(self._assets) or 'none'} (add one under layers.assets in city.yaml)"
            )
        lat_a = np.asarray(lats, dtype=float).ravel()
        lon_a = np.asarray(lons, dtype=float).ravel()
        inside = shapely.intersects_xy(self.boundary, x, y)
        lot, lot_d = self._lot_index(
            x, y, np.maximum(unc, self.spec.parcels.search_m if self.spec.parcels else 0.0)
        )
        nonlot = self._nonlot_ids(x, y)
        street_reach = np.maximum(unc, self.spec.streets.search_m if self.spec.streets else 0.0)
        streets = self._street_matches(x, y, street_reach)
        district = self._districts(x, y)
        a_idx, a_d = np.full(n, -1), np.full(n, np.nan)
        if asset_kind is not None:
            reach = np.maximum(unc, self.spec.assets[asset_kind].search_m)
            a_idx, a_d = self._nearest(self._asset_trees[asset_kind], x, y, reach)
        L = self._lots
        out = []
        for i in range(n):
            li, st = lot[i], streets[i]
            out.append(
                Place(
                    lat=float(lat_a[i]),
                    lon=float(lon_a[i]),
                    uncertainty_m=float(unc[i]),
                    in_jurisdiction=bool(inside[i]),
                    parcel_id=L["id"][li] if li >= 0 else None,
                    address=L["address"][li] if li >= 0 else None,
                    parcel_use=L["use"][li] if li >= 0 else None,
                    parcel_distance_m=round_m(lot_d[i]) if li >= 0 else None,
                    street_id=st.street_id if st else None,
                    street_name=st.name if st else None,
                    road_class=st.road_class if st else None,
                    road_owner=st.road_owner if st else None,
                    street_distance_m=st.distance_m if st else None,
                    interpolated_address=st.interpolated_address if st else None,
                    zip_code=st.zip_code if st else None,
                    district=district[i],
                    asset_kind=asset_kind,
                    asset_id=self._assets[asset_kind]["id"][a_idx[i]] if a_idx[i] >= 0 else None,
                    asset_distance_m=round_m(a_d[i]) if a_idx[i] >= 0 else None,
                    non_lot_id=nonlot[i] if li < 0 or lot_d[i] > 0 else None,
                )
            )
        return out

    def place(
        self, lat: float, lon: float, *, uncertainty_m: float = 10.0, asset_kind: str | None = None
    ) -> Place:
        """What the city's layers say about a point: jurisdiction, lot, street, district, asset."""
        return self.place_many(
            np.array([lat]), np.array([lon]), uncertainty_m=uncertainty_m, asset_kind=asset_kind
        )[0]

    def street_names(self) -> list[str]:
        """Every street name in the centerline layer, sorted."""
        if self._streets is None:
            return []
        return sorted({n for n in self._streets["name"] if n})

    def sample_street_points(
        self, street_names: list[str], n: int, seed: int
    ) -> list[tuple[float, float, float, str]]:
        """n points (lat, lon, heading_deg, name) on the named streets' centerlines, in the city."""
        if self._streets is None:
            raise LayerError(f"city {self.slug} has no streets layer; add layers.streets")
        if n < 0:
            raise GeoInputError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        s = self._streets
        folded = np.array([norm_name(v) for v in s["name"]], dtype=object)
        pools: list[tuple[str, np.ndarray]] = []
        for name in street_names:
            parts = shapely.get_parts(
                shapely.intersection(s["geom"][folded == norm_name(name)], self.boundary)
            )
            parts = parts[np.isin(shapely.get_type_id(parts), (1, 2)) & (shapely.length(parts) > 0)]
            if not len(parts):
                raise LayerError(
                    f"no street named {name!r} inside {self.slug}; use a name from the streets "
                    f"layer (e.g. {', '.join(self.street_names()[:5])}, ...)"
                )
            label = next(v for v, f in zip(s["name"], folded, strict=True) if f == norm_name(name))
            pools.append((label, parts))
        out = []
        for i in range(n):
            label, parts = pools[i % len(pools)] if pools else ("", np.empty(0))
            if not len(parts):
                break
            lengths = shapely.length(parts)
            line = parts[rng.choice(len(parts), p=lengths / lengths.sum())]
            length = line.length
            # Keep clear of segment ends, where a cross street is as near as this one.
            pad = min(10.0, length / 4)
            d = rng.uniform(pad, length - pad)
            p, a, b = (line.interpolate(v) for v in (d, max(d - 1.0, 0), min(d + 1.0, length)))
            (lon, lon_a, lon_b), (lat, lat_a, lat_b) = self._proj.to_wgs84(
                np.array([p.x, a.x, b.x]), np.array([p.y, a.y, b.y])
            )
            heading, _, _ = _GEOD.inv(lon_a, lat_a, lon_b, lat_b)
            heading = (heading + (180.0 if rng.random() < 0.5 else 0.0)) % 360.0
            out.append((float(lat), float(lon), float(heading), label))
        return out
