"""A city's parcels and streets in PostGIS (local-CRS geometry, GiST) and the same lookups there."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pyproj
import shapely
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from geo.crs import Projector, same_crs
from geo.errors import CRSMismatch, GeoError, GeoInputError, LayerError
from geo.index import CityGeo
from geo.streets import STREET_COLUMNS, StreetMatch, describe_matches

META = "geo_cities"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,40}$")


class PostgisUnavailable(GeoError, RuntimeError):
    """The database cannot be reached, or has no PostGIS."""


def engine_for(db: str | Engine) -> Engine:
    """An engine for a URL (plain postgresql:// gets psycopg 3) or the engine itself."""
    if isinstance(db, Engine):
        return db
    url = str(db)
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url[len(plain) :]
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def table_names(slug: str) -> dict[str, str]:
    """The city's tables: geo_<slug>_lots, _nonlots, _streets (dashes become underscores)."""
    if not _SLUG.match(slug):
        raise GeoInputError(f"city slug {slug!r} must be lower-case letters, digits and dashes")
    base = "geo_" + slug.replace("-", "_")
    return {t: f"{base}_{t}" for t in ("lots", "nonlots", "streets")}


def _srid(crs: str) -> int:
    code = pyproj.CRS.from_user_input(crs).to_epsg()
    if code is None:
        raise CRSMismatch(
            f"{crs} has no EPSG code, and PostGIS needs one (an SRID); set the city's `crs:` to "
            "an EPSG code"
        )
    return int(code)


def _ewkb_hex(geoms: np.ndarray, srid: int) -> list[str]:
    return list(shapely.to_wkb(shapely.set_srid(geoms, srid), hex=True, include_srid=True))


def _copy(conn: Any, table: str, cols: list[str], rows: list[tuple]) -> None:
    # COPY, not INSERT: a county's million parcels load in seconds, not minutes.
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def load_postgis(city: CityGeo, db: str | Engine) -> dict[str, int]:
    """Load (replace) the city's lots, non-lots and streets; GiST-indexed, in its local CRS."""
    srid = _srid(city.crs)
    names = table_names(city.slug)
    t = city.layer_tables()
    engine = engine_for(db)
    try:
        with engine.begin() as c:
            if not c.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")).first():
                raise PostgisUnavailable(
                    f"{engine.url.render_as_string()} has no PostGIS; run CREATE EXTENSION postgis"
                )
            if not c.execute(
                text("SELECT 1 FROM spatial_ref_sys WHERE srid = :s"), {"s": srid}
            ).first():
                raise CRSMismatch(f"PostGIS does not know SRID {srid} ({city.crs})")
            geom = f"geometry(Geometry, {srid}) NOT NULL"
            ddl = {
                "lots": f"ord integer PRIMARY KEY, parcel_id text NOT NULL, address text, "
                f"land_use text, geom {geom}",
                "nonlots": f"ord integer PRIMARY KEY, kind text NOT NULL, geom {geom}",
                "streets": "ord integer PRIMARY KEY, street_id text, name text, cls text, "
                "owner text, zip_l text, zip_r text, l_from float8, l_to float8, r_from float8, "
                f"r_to float8, geom {geom}",
            }
            for key, table in names.items():
                c.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
                c.exec_driver_sql(f"CREATE TABLE {table} ({ddl[key]})")
            raw = c.connection.driver_connection
            lots = t["lots"]
            _copy(raw, names["lots"], ["ord", "parcel_id", "address", "land_use", "geom"], list(
                zip(range(len(lots["id"])), lots["id"], lots["address"], lots["use"],
                    _ewkb_hex(lots["geom"], srid), strict=True)
            ))  # fmt: skip
            non = t["nonlots"]
            _copy(raw, names["nonlots"], ["ord", "kind", "geom"], list(
                zip(range(len(non["id"])), non["id"], _ewkb_hex(non["geom"], srid), strict=True)
            ))  # fmt: skip
            s = t.get("streets")
            if s is not None:
                cols = [s[k] for k in STREET_COLUMNS]
                rows = [
                    (i, *(v[i] for v in cols[:6]), *(_num(v[i]) for v in cols[6:]), g)
                    for i, g in enumerate(_ewkb_hex(s["geom"], srid))
                ]
                sql_cols = ["ord", "street_id", *STREET_COLUMNS[1:], "geom"]
                _copy(raw, names["streets"], sql_cols, rows)
            for table in names.values():
                c.exec_driver_sql(f"CREATE INDEX {table}_geom ON {table} USING GIST (geom)")
                c.exec_driver_sql(f"ANALYZE {table}")
            c.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {META} (slug text PRIMARY KEY, crs text NOT NULL, "
                "srid integer NOT NULL, parcel_search_m float8, street_search_m float8, "
                "lots integer, nonlots integer, streets integer, loaded_at timestamptz NOT NULL "
                "DEFAULT now())"
            )
            counts = {
                "lots": len(lots["id"]),
                "nonlots": len(non["id"]),
                "streets": 0 if s is None else len(s["id"]),
            }
            spec = city.spec
            c.execute(
                text(
                    f"INSERT INTO {META} (slug, crs, srid, parcel_search_m, street_search_m, "
                    "lots, nonlots, streets) VALUES (:slug, :crs, :srid, :ps, :ss, :lots, "
                    ":nonlots, :streets) ON CONFLICT (slug) DO UPDATE SET crs = EXCLUDED.crs, "
                    "srid = EXCLUDED.srid, parcel_search_m = EXCLUDED.parcel_search_m, "
                    "street_search_m = EXCLUDED.street_search_m, lots = EXCLUDED.lots, "
                    "nonlots = EXCLUDED.nonlots, streets = EXCLUDED.streets, loaded_at = now()"
                ),
                {
                    "slug": city.slug, "crs": city.crs, "srid": srid,
                    "ps": spec.parcels.search_m if spec.parcels else None,
                    "ss": spec.streets.search_m if spec.streets else None, **counts,
                },
            )  # fmt: skip
    except SQLAlchemyError as exc:
        raise PostgisUnavailable(f"loading {city.slug} into PostGIS failed: {exc}") from exc
    return counts


_POINTS = (
    "q AS (SELECT x, y, i, ST_SetSRID(ST_MakePoint(x, y), {srid}) AS pt "
    "FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[])) WITH ORDINALITY AS u(x, y, i))"
)


class PostgisPlaces:
    """Parcel and street lookups answered by PostGIS, the same answers as the in-memory CityGeo."""

    def __init__(self, db: str | Engine, slug: str, crs: str | None = None) -> None:
        self.engine = engine_for(db)
        self.slug = slug
        self.tables = table_names(slug)
        try:
            with self.engine.connect() as c:
                row = c.execute(
                    text(f"SELECT crs, srid, parcel_search_m, street_search_m, streets FROM {META} "
                         "WHERE slug = :s"), {"s": slug},
                ).first()  # fmt: skip
        except SQLAlchemyError as exc:
            if "does not exist" in str(exc):
                row = None
            else:
                raise PostgisUnavailable(f"PostGIS is not reachable: {exc}") from exc
        if row is None:
            raise LayerError(f"city {slug} is not loaded into this database; run load_postgis")
        self.crs, self.srid = str(row.crs), int(row.srid)
        if crs is not None and not same_crs(pyproj.CRS(crs), pyproj.CRS(self.crs)):
            raise CRSMismatch(
                f"city {slug} was loaded into PostGIS in {self.crs}, not {crs}; reload it with "
                "load_postgis from the current city.yaml"
            )
        self.parcel_search_m = float(row.parcel_search_m or 0.0)
        self.street_search_m = float(row.street_search_m or 0.0)
        self.has_streets = bool(row.streets)
        self._proj = Projector(self.crs)

    def _xy(self, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        if lats.shape != lons.shape:
            raise GeoInputError(f"lats and lons differ in length: {lats.size} vs {lons.size}")
        ok = np.isfinite(lats) & np.isfinite(lons) & (np.abs(lats) <= 90) & (np.abs(lons) <= 180)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise GeoInputError(f"point {i} is not a WGS84 coordinate: {lats[i]}, {lons[i]}")
        # pyproj, as the in-memory index: both then answer from the very same coordinates
        # (PostGIS's own PROJ may pick another NAD83/WGS84 operation).
        return self._proj.to_local(lons, lats)

    def _run(self, sql: str, x: np.ndarray, y: np.ndarray, **params: Any) -> list[Any]:
        try:
            with self.engine.connect() as c:
                return list(c.execute(text(sql), {"xs": list(x), "ys": list(y), **params}))
        except SQLAlchemyError as exc:
            raise PostgisUnavailable(f"PostGIS lookup failed: {exc}") from exc

    def parcel_ids(
        self, lats: np.ndarray, lons: np.ndarray, max_distance_m: float = 0.0
    ) -> np.ndarray:
        """Each point's lot id: the containing lot (lowest ord), else nearest within reach."""
        if not (math.isfinite(max_distance_m) and max_distance_m >= 0):
            raise GeoInputError(f"max_distance_m must be finite and >= 0, got {max_distance_m}")
        x, y = self._xy(lats, lons)
        lots = self.tables["lots"]
        near = ""
        pick = "a.parcel_id"
        if max_distance_m > 0:
            near = (
                f"LEFT JOIN LATERAL (SELECT parcel_id FROM {lots} WHERE a.parcel_id IS NULL AND "
                "ST_DWithin(geom, q.pt, :r) ORDER BY geom <-> q.pt, ord LIMIT 1) b ON true"
            )
            pick = "COALESCE(a.parcel_id, b.parcel_id)"
        sql = (
            f"WITH {_POINTS.format(srid=self.srid)} SELECT q.i, {pick} AS id FROM q "
            f"LEFT JOIN LATERAL (SELECT parcel_id FROM {lots} WHERE ST_Intersects(geom, q.pt) "
            f"ORDER BY ord LIMIT 1) a ON true {near} ORDER BY q.i"
        )
        out = np.full(len(x), None, dtype=object)
        for r in self._run(sql, x, y, r=float(max_distance_m)):
            out[r.i - 1] = r.id
        return out

    def parcel_at(self, lat: float, lon: float) -> str | None:
        """The id of the lot containing the point."""
        return self.parcel_ids(np.array([lat]), np.array([lon]))[0]

    def nearest_streets(
        self, lats: np.ndarray, lons: np.ndarray, max_distance_m: float | None = None
    ) -> list[StreetMatch | None]:
        """Each point's nearest street segment within max_distance_m (default: the spec's)."""
        reach = self.street_search_m if max_distance_m is None else float(max_distance_m)
        if not (math.isfinite(reach) and reach >= 0):
            raise GeoInputError(f"max_distance_m must be finite and >= 0, got {max_distance_m}")
        x, y = self._xy(lats, lons)
        out: list[StreetMatch | None] = [None] * len(x)
        if not self.has_streets or reach <= 0 or not len(x):
            return out
        cols = ", ".join(f"s.{c}" for c in ("street_id", *STREET_COLUMNS[1:]))
        sql = (
            f"WITH {_POINTS.format(srid=self.srid)} SELECT q.i, {cols}, s.d, "
            "ST_AsBinary(s.geom) AS wkb FROM q JOIN LATERAL (SELECT *, ST_Distance(geom, q.pt) "
            f"AS d FROM {self.tables['streets']} WHERE ST_DWithin(geom, q.pt, :r) "
            "ORDER BY geom <-> q.pt, ord LIMIT 1) s ON true ORDER BY q.i"
        )
        rows = self._run(sql, x, y, r=reach)
        if not rows:
            return out
        i = np.array([r.i - 1 for r in rows])
        attrs: dict[str, np.ndarray] = {
            c: np.array([r[k + 1] for r in rows], dtype=object)
            for k, c in enumerate(STREET_COLUMNS)
        }
        for c in ("l_from", "l_to", "r_from", "r_to"):
            attrs[c] = np.array([np.nan if v is None else v for v in attrs[c]], dtype=float)
        lines = shapely.from_wkb([bytes(r.wkb) for r in rows])
        dist = np.array([r.d for r in rows], dtype=float)
        for j, m in zip(i, describe_matches(lines, attrs, x[i], y[i], dist), strict=True):
            out[j] = m
        return out

    def nearest_street(
        self, lat: float, lon: float, max_distance_m: float | None = None
    ) -> StreetMatch | None:
        """The street segment nearest the point, within max_distance_m (default: the spec's)."""
        return self.nearest_streets(np.array([lat]), np.array([lon]), max_distance_m)[0]
