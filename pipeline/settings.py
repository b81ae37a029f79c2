"""One Settings object (environment variables STREETLENS_*), built lazily and passed in."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


def _default_data_dir() -> Path:
    # The project's machines keep the shared real data beside the checkout.
    for candidate in (REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "data"):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data"


class Settings(BaseSettings):
    """Everything configurable; defaults are the embedded, no-server backends."""

    model_config = SettingsConfigDict(env_prefix="STREETLENS_", extra="ignore")

    home: Path = Field(default=Path(".streetlens"), description="state: cases, photos, caches")
    data_dir: Path = Field(default_factory=_default_data_dir, description="real data, read-only")
    cities_dir: Path = REPO_ROOT / "datasets" / "cities"
    models_dir: Path = REPO_ROOT / "models"
    city: str = "cambridge-ma"
    database_url: str = ""  # default: SQLite file in home; or postgresql://… with PostGIS
    broker_url: str = ""  # default: kombu's SQLAlchemy transport on a SQLite file in home
    media_dir: Path | None = None
    media_backend: Literal["local", "s3"] = "local"  # s3: any S3-compatible store (MinIO, AWS)
    s3_endpoint: str = ""  # host:port, or http(s)://host:port (the scheme then sets s3_secure)
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "streetlens-originals"  # private: originals hold unblurred faces and plates
    s3_secure: bool = True
    s3_region: str | None = None
    cache_dir: Path | None = None
    max_upload_bytes: int = 30_000_000
    max_pixels: int = 50_000_000
    max_description_chars: int = 4000
    detect_long_side: int = 1024  # photos are decoded at this size for detection
    detector_conf: float | None = None  # None: the threshold in the model's own card
    duplicate_radius_m: float = 50.0  # look this far for an open case of the same category
    duplicate_same_spot_m: float = 8.0  # closer than this is the same problem
    duplicate_min_inliers: int = 20  # photo matches that say "the same thing, seen again"
    processing_lease_s: float = 120.0  # a `processing` case older than this lost its worker
    received_grace_s: float = 60.0  # a `received` case older than this lost its message
    worker_metrics_port: int = 0  # a worker serves /metrics on this port (0: off)
    sweep_interval_s: float = 30.0  # how often `serve` looks for such cases (0: never)
    task_always_eager: bool = False  # run tasks in the caller (tests, CLI); never in production

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'cases.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.home / 'broker.db'}"
        if self.media_dir is None:
            self.media_dir = self.home / "media"
        if self.cache_dir is None:
            self.cache_dir = self.home / "cache"
        return self

    @property
    def city_dir(self) -> Path:
        """The folder of the active city pack."""
        return self.cities_dir / self.city


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
