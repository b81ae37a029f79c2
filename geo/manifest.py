"""A city pack's layer manifest (sizes, sha256, counts, licences) and re-validating a pack."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geo.errors import GeoError
from geo.layers import load_city
from geo.read import LoadReport, source_info

SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


def source_files(path: Path) -> list[Path]:
    """Every file a layer is read from: a shapefile's sidecars, a File Geodatabase's folder."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    out = [path]
    if path.suffix.lower() == ".shp":
        want = {s: s for s in SHAPEFILE_SIDECARS} | {".shp.xml": ".shp.xml"}
        for p in sorted(path.parent.glob(f"{path.stem}.*")):
            rest = p.name[len(path.stem) :].lower()
            if p != path and rest in want and p.is_file():
                out.append(p)
    return out


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def layer_entries(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(report name, city.yaml entry) of each layer: boundary, parcels, ..., assets.<kind>."""
    layers = spec.get("layers") or {}
    out = [(k, layers[k]) for k in ("boundary", "parcels", "addresses", "streets") if layers.get(k)]
    out += [(f"assets.{k}", d) for k, d in (layers.get("assets") or {}).items()]
    return out


def _rel(p: Path, data_dir: Path) -> str:
    try:
        return Path(os.path.abspath(p)).relative_to(os.path.abspath(data_dir)).as_posix()
    except ValueError:
        return str(p)


def file_entries(path: Path, data_dir: Path) -> list[dict[str, Any]]:
    """Path (relative to the data directory), size and sha256 of each of a layer's files."""
    return [
        {"path": _rel(p, data_dir), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in source_files(path)
    ]


def build_manifest(spec: dict[str, Any], data_dir: Path, report: LoadReport) -> dict[str, Any]:
    """The manifest of a loaded pack: where each layer is, what it holds, what loading found."""
    layers: dict[str, Any] = {}
    for name, d in layer_entries(spec):
        path = data_dir / str(d["path"])
        info = source_info(path, d.get("layer"))
        rep = report.layers.get(name)
        layers[name] = {
            "path": str(d["path"]),
            "layer": d.get("layer"),
            "driver": info.get("driver"),
            "crs": d.get("crs") or info.get("crs"),
            "geometry_type": info.get("geometry_type"),
            "features": int(info.get("features", -1)),
            "loaded": rep.loaded if rep else None,
            "repaired": rep.repaired if rep else None,
            "dropped": dict(sorted(rep.dropped.items())) if rep else {},
            "duplicate_ids": rep.duplicate_ids if rep else 0,
            "files": file_entries(path, data_dir),
        }
    return {
        "slug": spec.get("slug"),
        "crs": spec.get("crs"),
        "paths_relative_to": "the data directory (STREETLENS_DATA_DIR)",
        "layers": layers,
        "sources": list(spec.get("sources") or []),
        "load_notes": [n for n in report.notes if not n.startswith("cache")],
    }


@dataclass
class PackCheck:
    """What re-validating a pack found: problems fail it, warnings do not."""

    slug: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: LoadReport | None = None

    @property
    def ok(self) -> bool:
        """True when nothing must be fixed."""
        return not self.problems


def check_pack(spec: dict[str, Any], manifest: dict[str, Any] | None, data_dir: Path) -> PackCheck:
    """Re-validate a pack: files present and unchanged since the manifest, layers load cleanly."""
    out = PackCheck(slug=str(spec.get("slug")))
    listed = (manifest or {}).get("layers") or {}
    absent = False
    if manifest is None:
        out.warnings.append(
            "no manifest.yaml: file sizes and checksums are not checked; write one with "
            "`streetlens city check SLUG --write-manifest`"
        )
    for name, d in layer_entries(spec):
        path = data_dir / str(d.get("path"))
        if not path.exists():
            absent = True
            out.problems.append(
                f"layer {name}: {path} is missing; put the file in the data directory "
                "(STREETLENS_DATA_DIR) or fix its path in city.yaml"
            )
            continue
        if manifest is None:
            continue
        if name not in listed:
            out.warnings.append(f"layer {name} is not in the manifest (--write-manifest adds it)")

            continue
        if listed[name].get("path") != str(d.get("path")):
            out.problems.append(
                f"layer {name}: city.yaml reads {d.get('path')} but the manifest lists "
                f"{listed[name].get('path')}; re-run `streetlens city import`"
            )
        was = {f["path"]: f for f in listed[name].get("files") or []}
        for f in source_files(path):
            rel = _rel(f, data_dir)
            old = was.pop(rel, None)
            if old is None:
                out.warnings.append(f"layer {name}: {rel} is not in the manifest")
            elif old.get("bytes") != f.stat().st_size or old.get("sha256") != sha256_file(f):
                out.problems.append(
                    f"layer {name}: {rel} changed since the manifest was written (size or "
                    "sha256 differs); re-run `streetlens city import`, or `streetlens city check "
                    "SLUG --write-manifest` if the new file is the one to keep"
                )
        for rel in was:
            out.problems.append(f"layer {name}: {rel} (in the manifest) is missing")
    for extra in sorted(set(listed) - {n for n, _ in layer_entries(spec)}):
        out.warnings.append(f"the manifest lists layer {extra}, which city.yaml no longer has")
    if absent:
        return out  # loading would only stop at the first missing file
    try:
        out.report = load_city(spec, data_dir, None).report
    except GeoError as exc:
        out.problems.append(str(exc))
        return out
    for name, rep in out.report.layers.items():
        if rep.duplicate_ids:
            ex = ", ".join(f"{k} ×{v}" for k, v in rep.duplicates.items())
            out.warnings.append(
                f"layer {name}: {rep.duplicate_ids} ids are on more than one feature (e.g. {ex})"
            )
        old = listed.get(name) or {}
        if old.get("loaded") is not None and old["loaded"] != rep.loaded:
            out.problems.append(
                f"layer {name}: {rep.loaded} features load now, {old['loaded']} did when the "
                "manifest was written; re-run `streetlens city import`"
            )
    if not spec.get("sources"):
        out.warnings.append("city.yaml lists no `sources:` (publisher, licence) for its layers")
    for s in spec.get("sources") or []:
        if isinstance(s, dict) and not s.get("licence"):
            out.warnings.append(f"source {s.get('name')!r} states no licence")
    return out
