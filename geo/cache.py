"""A compact on-disk cache of a loaded city: plain numpy arrays (no pickle), keyed by sources."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import shapely

CACHE_VERSION = 2  # 2: duplicate ids and owner fields in the report
Tables = dict[str, dict[str, np.ndarray]]


def _canon(obj: Any) -> Any:
    # YAML allows a null key (class_names), which json cannot sort against strings.
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canon(v) for v in obj]
    return obj


def source_files(paths: list[Path]) -> list[Path]:
    """The files a layer is read from, sidecars included (a shapefile's .dbf, .prj, ...)."""
    out: set[Path] = set()
    for p in paths:
        out.add(p)
        if p.parent.is_dir():
            out.update(q for q in p.parent.glob(f"{p.stem}.*") if q.is_file())
    return sorted(out)


def cache_key(spec_part: dict[str, Any], paths: list[Path]) -> str:
    """A digest of the spec and of each source file's path, size and mtime."""
    files = []
    for p in source_files(paths):
        st = p.stat()
        files.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps(
        {"v": CACHE_VERSION, "spec": _canon(spec_part), "files": files}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def save(path: Path, tables: Tables, meta: dict[str, Any]) -> None:
    """Write the tables atomically (a reader never sees half a file)."""
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for t, cols in tables.items():
        for c, a in cols.items():
            k = f"{t}/{c}"
            if c == "geom":
                blobs = shapely.to_wkb(a)
                sizes = np.array([len(b) for b in blobs], dtype=np.int64)
                arrays[k + ".off"] = np.concatenate([[0], np.cumsum(sizes)])
                arrays[k + ".wkb"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
            elif a.dtype == object:
                none = np.array([v is None for v in a], dtype=bool)
                arrays[k + ".none"] = none
                arrays[k + ".str"] = np.array(["" if v is None else str(v) for v in a], dtype=str)
            else:
                arrays[k] = a
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other service users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> tuple[Tables, dict[str, Any]]:
    """Read what `save` wrote; raises OSError/ValueError/KeyError when it is damaged."""
    tables: Tables = {}
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("cache_version") != CACHE_VERSION:
            raise ValueError("cache written by another version")
        for k in z.files:
            if k == "meta":
                continue
            t, rest = k.split("/", 1)
            c, _, kind = rest.partition(".")
            cols = tables.setdefault(t, {})
            if kind == "wkb":
                buf = z[k].tobytes()
                off = z[f"{t}/{c}.off"]
                cols[c] = shapely.from_wkb([buf[a:b] for a, b in itertools.pairwise(off)])
            elif kind == "str":
                a = z[k].astype(object)
                a[z[f"{t}/{c}.none"]] = None
                cols[c] = a
            elif kind == "":
                cols[c] = z[k]
    return tables, meta
