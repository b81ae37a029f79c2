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
    # store: workers claim `received` cases from the case store (no broker; the default when
    # broker_url is unset); celery: Celery on broker_url (Redis/RabbitMQ for scale-out).
    task_queue: Literal["store", "celery"] | None = None
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
    # auto: OpenVINO when it is installed and the version has its export (bf16 on a CPU with
    # bf16 units, else f32), else ONNX Runtime; the others force one (vision/detector_select).
    detector_backend: Literal["auto", "openvino", "openvino-bf16", "openvino-int8", "onnx"] = "auto"
    duplicate_radius_m: float = 50.0  # look this far for an open case of the same category
    duplicate_same_spot_m: float = 8.0  # closer than this is the same problem
    duplicate_min_inliers: int = 20  # photo matches that say "the same thing, seen again"
    processing_lease_s: float = 120.0  # a `processing` case older than this lost its worker
    received_grace_s: float = 60.0  # a `received` case older than this lost its message
    worker_metrics_port: int = 0  # a worker serves /metrics on this port (0: off)
    sweep_interval_s: float = 30.0  # how often `serve` looks for such cases (0: never)
    task_always_eager: bool = False  # run tasks in the caller (tests, CLI); never in production
    # Auth and rate limits (api/auth.py, pipeline/accounts.py, docs/api.md).
    auth_token_ttl_s: float = 12 * 3600.0  # a bearer token from POST /api/v1/auth/token
    password_scrypt_log2_n: int = 15  # scrypt cost N = 2**this (32 MiB, r=8); tests lower it
    ratelimit_enabled: bool = True
    ratelimit_redis_url: str = ""  # redis://…: buckets shared by all API processes
    ratelimit_ip_per_min: float = 120.0  # callers without credentials, per client IP
    ratelimit_ip_burst: int = 60
    # Never limited per address: loopback is a local tool, or a proxy that does not forward the
    # client's address (limiting it would throttle every resident as one).
    ratelimit_exempt_ips: str = "127.0.0.1,::1"
    ratelimit_key_per_min: float = 600.0  # per API key (a client app)
    ratelimit_key_burst: int = 200
    ratelimit_account_per_min: float = 300.0  # per signed-in account
    ratelimit_account_burst: int = 100
    ratelimit_login_per_min: float = 10.0  # sign-in attempts per client IP
    ratelimit_login_burst: int = 10
    # Notifications (pipeline/notify.py, docs/notifications.md).
    notify_interval_s: float = 1.0  # how often a worker fans out and delivers (0: never)
    notify_gap_grace_s: float = 10.0  # wait this long for a history row committed out of order
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 8  # then the delivery is marked failed
    webhook_backoff_s: float = 10.0  # first retry after ~this, doubling, with jitter
    webhook_backoff_cap_s: float = 3600.0
    webhook_allow_private: bool = False  # allow URLs on loopback/private networks (tests, LAN)
    sse_poll_s: float = 1.0
    sse_heartbeat_s: float = 15.0
    sse_max_s: float = 300.0  # a stream ends after this; EventSource resumes by Last-Event-ID
    public_case_url: str = "http://127.0.0.1:8000/api/v1/reports/{case_id}"
    notify_statuses: str = "needs_review,open,in_progress,closed,rejected"  # reporter messages
    email_sender: Literal["file", "smtp", "none"] = "file"  # file: home/outbox/messages.jsonl
    sms_sender: Literal["file", "none"] = "file"
    sender_factory: str = ""  # "module:callable" (settings -> Sender) replaces both
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_from: str = "StreetLens <noreply@localhost>"
    # Privacy (pipeline/public_media.py, docs/privacy.md): public photos are blurred copies.
    public_long_side: int = 1600  # a public photo's long side at most (px)
    thumb_long_side: int = 320
    public_jpeg_quality: int = 85
    privacy_mtcnn: bool | None = None  # None: MTCNN when torch + facenet-pytorch are installed
    s3_public_bucket: str = ""  # "": public variants in s3_bucket under public/ (served by us)
    original_link_ttl_s: int = 300  # a crew member's link to an original expires after this
    link_secret: SecretStr = SecretStr("")  # signs original links; "": a key kept in home

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'cases.db'}"
        if self.task_queue is None:  # no broker named: the case store is the queue
            self.task_queue = "celery" if self.broker_url else "store"
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
