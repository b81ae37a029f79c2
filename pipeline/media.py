"""Photo storage, content-addressed by sha256 so a retried upload stores nothing twice.

A local folder by default; any S3-compatible store (MinIO, AWS S3, Ceph RGW) through the
`minio` SDK when a city runs several machines. Both raise StoreUnavailable when they cannot
store or serve a photo, which the API answers with 503.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from pipeline.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from pipeline.settings import Settings


def sha256_hex(data: bytes) -> str:
    """The content address of a photo."""
    return hashlib.sha256(data).hexdigest()


class MediaStore(Protocol):
    """Where photos live: a local folder by default, any S3-compatible store at scale."""

    def put(self, data: bytes, content_type: str, *, sha256: str | None = None) -> str: ...
    def get(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def delete(self, sha256: str) -> None: ...
    def count(self) -> int: ...
    # Public variants: blurred, metadata-free copies (pipeline/public_media.py).
    def put_public(self, name: str, data: bytes, content_type: str) -> None: ...
    def get_public(self, name: str) -> bytes | None: ...
    def delete_public(self, name: str) -> None: ...
    def original_url(self, sha256: str, expires_s: int) -> str | None: ...


class LocalMediaStore:
    """Photos in a folder tree `ab/cd/<sha256>`; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes, content_type: str, *, sha256: str | None = None) -> str:
        """Store the bytes (once) and return their sha256 (`sha256`: already computed)."""
        digest = sha256 or sha256_hex(data)
        path = self._path(digest)
        if path.is_file():
            return digest
        # On disk before the case row that points at it commits: a crash must not leave a
        # case whose photo is an empty file.
        self._write(path, data, durable=True)
        return digest

    def _write(self, path: Path, data: bytes, *, durable: bool) -> None:
        """Write atomically (temp file + rename); `durable`: fsync the file and its folder."""
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
            if durable:
                _fsync_dir(path.parent)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise StoreUnavailable(f"photo store at {self.root} refused the write: {exc}") from exc

    def get(self, sha256: str) -> bytes:
        """The photo's bytes."""
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise StoreUnavailable(f"photo {sha256} is missing from {self.root}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"photo store at {self.root} cannot be read: {exc}") from exc

    def exists(self, sha256: str) -> bool:
        """True when the photo is stored."""
        return self._path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        """Remove the photo if present."""
        try:
            self._path(sha256).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"photo store at {self.root} refused a delete: {exc}") from exc

    def count(self) -> int:
        """How many photos are stored (originals: public variants are not counted)."""
        return sum(
            1
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".") and not p.is_relative_to(self._public)
        )

    # Public variants (pipeline/public_media.py): blurred, metadata-free copies anyone may see,
    # kept apart from the originals under `public/`.
    @property
    def _public(self) -> Path:
        return self.root / "public"

    def _public_path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"not a public variant name: {name!r}")
        return self._public / name[:2] / name

    def put_public(self, name: str, data: bytes, content_type: str) -> None:
        """Store (or replace) a public variant under `name`, atomically."""
        self._write(self._public_path(name), data, durable=False)  # remade if lost

    def get_public(self, name: str) -> bytes | None:
        """A public variant's bytes, or None when it is not stored."""
        try:
            return self._public_path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"photo store at {self.root} cannot be read: {exc}") from exc

    def delete_public(self, name: str) -> None:
        """Remove a public variant if present."""
        try:
            self._public_path(name).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"photo store at {self.root} refused a delete: {exc}") from exc

    def original_url(self, sha256: str, expires_s: int) -> str | None:
        """A presigned link to the original: a folder has none (the app signs its own links)."""
        return None


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; some filesystems cannot open a folder, so best effort.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# S3 error codes that mean "not there", as opposed to "cannot ask".
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}


class S3MediaStore:
    """Photos in a private S3-compatible bucket as `originals/<sha256>` (bucket made if missing)."""

    prefix = "originals/"

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = True,
        region: str | None = None,
        timeout_s: float = 30.0,
        public_bucket: str = "",
    ) -> None:
        import certifi
        import urllib3
        from minio import Minio
        from minio.helpers import check_bucket_name

        parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        if not parts.netloc or parts.path.strip("/") or parts.scheme not in ("", "http", "https"):
            raise ConfigError(
                f"S3 endpoint {endpoint!r} must be host:port or http(s)://host:port, no path"
            )
        if parts.scheme:
            secure = parts.scheme == "https"
        for name in (bucket, public_bucket) if public_bucket else (bucket,):
            try:
                check_bucket_name(name, strict=True)
            except ValueError as exc:
                raise ConfigError(f"S3 bucket name {name!r} is invalid: {exc}") from None
        self.endpoint = parts.netloc
        self.bucket = bucket
        self._where = f"{'https' if secure else 'http'}://{self.endpoint}/{bucket}"
        # minio's default client retries for ~6 s and waits 5 min for a reply; an upload must
        # fail fast enough for the resident's app to retry.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self._client = Minio(
            self.endpoint,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=secure,
            region=region or None,
            http_client=http,
        )
        self._ready = False
        self._lock = threading.Lock()
        # Public variants: in their own bucket when one is named (a city may serve it from a
        # CDN), else beside the originals under `public/` (served through the API).
        self.public_bucket = public_bucket or bucket
        self._public_ready = False

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}{sha256}"

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn the SDK's and the network's errors into StoreUnavailable that say what failed."""
        from minio.error import MinioException, S3Error
        from urllib3.exceptions import HTTPError

        try:
            yield
        except StoreUnavailable:
            raise  # already says what went wrong (and is an OSError: keep it from below)
        except S3Error as exc:
            raise StoreUnavailable(
                f"photo store {self._where} refused to {doing}: {exc.code}: {exc.message}"
            ) from exc
        except (MinioException, HTTPError, OSError) as exc:
            raise StoreUnavailable(
                f"photo store {self._where} could not {doing} ({type(exc).__name__}: {exc}); "
                "check STREETLENS_S3_ENDPOINT and that the server is up"
            ) from exc

    def _ensure_bucket(self) -> None:
        if self._ready:
            return
        from minio.error import S3Error

        with self._lock:
            if self._ready:
                return
            if not self._client.bucket_exists(self.bucket):
                try:
                    # No policy: a new bucket is private, and originals must stay so.
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._refuse_public_bucket()
            self._ready = True

    def _refuse_public_bucket(self) -> None:
        # Originals show faces and plates before blurring; a world-readable bucket is a leak.
        from minio.error import S3Error

        try:
            policy = json.loads(self._client.get_bucket_policy(self.bucket))
        except S3Error:
            return  # no policy, or not ours to read: nothing says it is public
        except ValueError:
            return
        for st in _as_list(policy.get("Statement")):
            principal = st.get("Principal")
            anyone = principal == "*" or (
                isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))
            )
            actions = {a.lower() for a in _as_list(st.get("Action"))}
            readable = actions & {"s3:getobject", "s3:*", "*"}
            if st.get("Effect") == "Allow" and anyone and readable:
                raise ConfigError(
                    f"bucket {self._where} lets anyone read it; originals must stay private: "
                    "remove its public policy or set STREETLENS_S3_BUCKET to a private bucket"
                )

    def _stat(self, sha256: str) -> bool:
        from minio.error import S3Error

        try:
            self._client.stat_object(self.bucket, self._key(sha256))
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise
        return True

    def put(self, data: bytes, content_type: str, *, sha256: str | None = None) -> str:
        """Store the bytes (once: an existing object is left alone) and return their sha256
        (`sha256`: already computed by the caller)."""
        digest = sha256 or sha256_hex(data)
        with self._errors(f"store photo {digest}"):
            self._ensure_bucket()
            if not self._stat(digest):
                self._client.put_object(
                    self.bucket,
                    self._key(digest),
                    io.BytesIO(data),
                    len(data),
                    content_type=content_type,
                )
        return digest

    def get(self, sha256: str) -> bytes:
        """The photo's bytes."""
        with self._errors(f"read photo {sha256}"):
            data = self._read_object(self.bucket, self._key(sha256))
        if data is None:
            raise StoreUnavailable(f"photo {sha256} is missing from {self._where}")
        return data

    def _read_object(self, bucket: str, key: str) -> bytes | None:
        """An object's bytes, or None when it is not there (other S3 errors raise)."""
        from minio.error import S3Error

        try:
            resp = self._client.get_object(bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, sha256: str) -> bool:
        """True when the photo is stored."""
        with self._errors(f"look up photo {sha256}"):
            return self._stat(sha256)

    def delete(self, sha256: str) -> None:
        """Remove the photo if present."""
        from minio.error import S3Error

        with self._errors(f"delete photo {sha256}"):
            try:
                self._client.remove_object(self.bucket, self._key(sha256))
            except S3Error as exc:
                if exc.code not in _MISSING:
                    raise

    def count(self) -> int:
        """How many photos are stored (lists the bucket: for tests and small stores)."""
        from minio.error import S3Error

        with self._errors("list photos"):
            try:
                objs = self._client.list_objects(self.bucket, prefix=self.prefix, recursive=True)
                return sum(1 for _ in objs)
            except S3Error as exc:
                if exc.code in _MISSING:
                    return 0
                raise

    # Public variants (pipeline/public_media.py).
    public_prefix = "public/"

    def _ensure_public_bucket(self) -> None:
        self._ensure_bucket()
        if self._public_ready or self.public_bucket == self.bucket:
            return
        from minio.error import S3Error

        with self._lock:
            if not self._client.bucket_exists(self.public_bucket):
                try:
                    self._client.make_bucket(self.public_bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._public_ready = True

    def put_public(self, name: str, data: bytes, content_type: str) -> None:
        """Store (or replace) a public variant under `name`."""
        with self._errors(f"store public photo {name}"):
            self._ensure_public_bucket()
            self._client.put_object(
                self.public_bucket,
                self.public_prefix + name,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
            )

    def get_public(self, name: str) -> bytes | None:
        """A public variant's bytes, or None when it is not stored."""
        with self._errors(f"read public photo {name}"):
            return self._read_object(self.public_bucket, self.public_prefix + name)

    def delete_public(self, name: str) -> None:
        """Remove a public variant if present."""
        from minio.error import S3Error

        with self._errors(f"delete public photo {name}"):
            try:
                self._client.remove_object(self.public_bucket, self.public_prefix + name)
            except S3Error as exc:
                if exc.code not in _MISSING:
                    raise

    def original_url(self, sha256: str, expires_s: int) -> str | None:
        """A presigned GET of the original that expires after `expires_s` seconds."""
        from datetime import timedelta

        with self._errors(f"sign a link to photo {sha256}"):
            return self._client.presigned_get_object(
                self.bucket, self._key(sha256), expires=timedelta(seconds=expires_s)
            )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def media_store(settings: Settings) -> MediaStore:
    """The photo store the settings ask for (`media_backend`: local or s3)."""
    if settings.media_backend == "s3":
        if not settings.s3_endpoint:
            raise ConfigError(
                "STREETLENS_MEDIA_BACKEND=s3 needs STREETLENS_S3_ENDPOINT (host:port or a URL), "
                "STREETLENS_S3_ACCESS_KEY and STREETLENS_S3_SECRET_KEY"
            )
        return S3MediaStore(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key.get_secret_value(),
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
            public_bucket=settings.s3_public_bucket,
        )
    if settings.media_dir is None:
        raise ConfigError("STREETLENS_MEDIA_DIR is not set")
    return LocalMediaStore(settings.media_dir)
