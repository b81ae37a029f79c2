"""The frozen evaluation split: which val photos every model version is compared on.

`models/frozen-split.yaml` lists, per source, each val photo's file name with the sha256 of
the photo and of its label file: metadata only, never the photos. A check says whether the
data directory still holds exactly those bytes (promotion refuses to compare otherwise).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import ConfigError
from vision.dataset import IMAGE_SUFFIXES, Source
from vision.evaluate import EvalSet, source_set

FROZEN_FILE = "frozen-split.yaml"
NO_LABEL = "-"


@dataclass(frozen=True)
class FrozenSplit:
    """The frozen photos per source: name -> (photo sha256, label sha256 or '-')."""

    split: str
    files: dict[str, dict[str, tuple[str, str]]]
    digest: str  # sha256 of the listing: names the split a metric was computed on


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else NO_LABEL


def _listing(src: Source, split: str) -> dict[str, tuple[str, str]]:
    img_dir = src.path / "images" / split
    if not img_dir.is_dir():
        return {}
    out = {}
    for p in sorted(img_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            out[p.name] = (_sha256(p), _sha256(src.path / "labels" / split / f"{p.stem}.txt"))
    return out


def _digest(split: str, files: dict[str, dict[str, tuple[str, str]]]) -> str:
    h = hashlib.sha256(split.encode())
    for src in sorted(files):
        for name, (img, lbl) in sorted(files[src].items()):
            h.update(f"{src}/{name} {img} {lbl}\n".encode())
    return h.hexdigest()


def write_frozen_split(path: Path, sources: list[Source], split: str = "val") -> FrozenSplit:
    """Freeze every source's `split` as it is now in the data directory."""
    files = {s.name: _listing(s, split) for s in sources}
    digest = _digest(split, files)
    doc = {
        "split": split,
        "digest": digest,
        "sources": {
            name: [f"{n} {img} {lbl}" for n, (img, lbl) in sorted(listing.items())]
            for name, listing in files.items()
        },
    }
    header = (
        "# The frozen evaluation split (written by `streetlens models freeze`): every model\n"
        "# version is compared on exactly these val photos. `name photo-sha256 label-sha256`,\n"
        "# read in place from the data directory; photos are never copied here.\n"
    )
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=200))
    return FrozenSplit(split, files, digest)


def load_frozen_split(path: Path) -> FrozenSplit:
    """Read a frozen split file."""
    if not path.exists():
        raise ConfigError(
            f"no frozen evaluation split at {path}: create it with `streetlens models freeze`"
        )
    doc = yaml.safe_load(path.read_text()) or {}
    files: dict[str, dict[str, tuple[str, str]]] = {}
    for src, rows in (doc.get("sources") or {}).items():
        files[src] = {}
        for row in rows or []:
            name, img, lbl = row.rsplit(" ", 2)
            files[src][name] = (img, lbl)
    split = str(doc.get("split", "val"))
    digest = _digest(split, files)
    if doc.get("digest") not in (None, digest):
        raise ConfigError(f"{path} was edited by hand (its digest does not match its listing)")
    return FrozenSplit(split, files, digest)


def drift(frozen: FrozenSplit, sources: list[Source]) -> list[str]:
    """What differs between the frozen split and the data directory (empty: no drift)."""
    by_name = {s.name: s for s in sources}
    problems = []
    for src_name, listing in frozen.files.items():
        src = by_name.get(src_name)
        if src is None:
            problems.append(f"{src_name}: no longer in the sources manifest")
            continue
        now = _listing(src, frozen.split)
        for name, (img, lbl) in listing.items():
            if name not in now:
                problems.append(f"{src_name}/{name}: missing")
            elif now[name][0] != img:
                problems.append(f"{src_name}/{name}: the photo changed")
            elif now[name][1] != lbl:
                problems.append(f"{src_name}/{name}: its labels changed")
        added = sorted(set(now) - set(listing))
        if added:
            problems.append(f"{src_name}: {len(added)} val photo(s) not in the frozen split")
    for s in sources:
        if s.name not in frozen.files and _listing(s, frozen.split):
            problems.append(f"{s.name}: a source with val photos that is not frozen")
    return problems


def check_frozen_split(path: Path, sources: list[Source]) -> FrozenSplit:
    """The frozen split, after making sure the data directory still matches it."""
    frozen = load_frozen_split(path)
    problems = drift(frozen, sources)
    if problems:
        more = f"; and {len(problems) - 5} more" if problems[5:] else ""
        shown = "; ".join(problems[:5]) + more
        raise ConfigError(
            f"the data directory no longer matches the frozen split {path} ({shown}): restore "
            "the photos, or re-freeze with `streetlens models freeze --force` (old comparisons "
            "then no longer apply)"
        )
    return frozen


def frozen_sets(frozen: FrozenSplit, sources: list[Source]) -> list[EvalSet]:
    """The evaluation sets of the frozen split (only its photos, per source)."""
    by_name = {s.name: s for s in sources}
    return [
        source_set(by_name[name], frozen.split, only=list(listing))
        for name, listing in frozen.files.items()
        if listing and name in by_name
    ]
