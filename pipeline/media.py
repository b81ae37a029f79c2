"""Photo storage, content-addressed by sha256 so a retried upload stores nothing twice."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from pipeline.errors import StoreUnavailable


def sha256_hex(data: bytes) -> str:
    """The content address of a photo."""
    return hashlib.sha256(data).hexdigest()


class MediaStore(Protocol):
    """Where photos live: a local folder by default, any S3-compatible store at scale."""

    def put(self, data: bytes, content_type: str) -> str: ...
    def get(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def delete(self, sha256: str) -> None: ...


class LocalMediaStore:
    """Photos in a folder tree `ab/cd/<sha256>`; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes, content_type: str) -> str:
        """Store the bytes (once) and return their sha256."""
        digest = sha256_hex(data)
        path = self._path(digest)
        if path.exists():
            return digest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StoreUnavailable(f"photo store at {self.root} refused the write: {exc}") from exc
        return digest

    def get(self, sha256: str) -> bytes:
        """The photo's bytes."""
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise StoreUnavailable(f"photo {sha256} is missing from {self.root}") from exc

    def exists(self, sha256: str) -> bool:
        """True when the photo is stored."""
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        """Remove the photo if present."""
        self._path(sha256).unlink(missing_ok=True)

    def count(self) -> int:
        """How many photos are stored."""
        return sum(1 for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))
