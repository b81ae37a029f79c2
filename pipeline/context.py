"""The components one process needs, built lazily from Settings (nothing connects at import)."""

from __future__ import annotations

import gc
import threading
from functools import cached_property
from typing import TYPE_CHECKING

from pipeline.city import CityPack, load_city_pack
from pipeline.errors import ConfigError
from pipeline.media import MediaStore, media_store
from pipeline.registry import ModelVersion, served_detector
from pipeline.settings import Settings
from pipeline.store import SqlCaseStore

if TYPE_CHECKING:
    from celery import Celery

    from geo.layers import CityGeo
    from vision.detector import Detector


class Context:
    """Settings plus the stores, city and detector built from them on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        # Until this time.monotonic() uploads skip the broker (see tasks.enqueue).
        self.broker_down_until = 0.0
        # Photos of refused uploads that the store could not say were unused (the sweeper
        # deletes them once it can).
        self.orphan_suspects: set[str] = set()

    @cached_property
    def store(self) -> SqlCaseStore:
        """The case store."""
        return SqlCaseStore(self.settings.database_url)

    @cached_property
    def media(self) -> MediaStore:
        """The photo store: a local folder, or an S3-compatible bucket (`media_backend`)."""
        return media_store(self.settings)

    @cached_property
    def celery(self) -> Celery:
        """A Celery app on this context's broker, for sending tasks."""
        from pipeline.tasks import make_celery

        return make_celery(self.settings)

    @cached_property
    def city(self) -> CityPack:
        """The active city pack."""
        return load_city_pack(self.settings.city_dir)

    @cached_property
    def geo(self) -> CityGeo:
        """The city's layers, indexed (a compact cache is kept in cache_dir)."""
        from geo.errors import GeoError
        from geo.layers import load_city

        with self._lock:
            try:
                geo = load_city(self.city.spec, self.settings.data_dir, self.settings.cache_dir)
            except GeoError as exc:
                raise ConfigError(
                    f"city {self.city.slug}: its layers could not be loaded from "
                    f"{self.settings.data_dir} ({exc}); set STREETLENS_DATA_DIR"
                ) from exc
            # The layers are ~180,000 objects that live as long as the process: a full
            # garbage collection walked them all (~140 ms, every request in the process
            # stopped; the upload bench's p99). Frozen, the collector skips them (collected
            # first, so that no garbage is frozen with them).
            gc.collect()
            gc.freeze()
            return geo

    @cached_property
    def model(self) -> ModelVersion:
        """The served detector version."""
        return served_detector(self.settings.models_dir)

    @cached_property
    def detector(self) -> Detector:
        """The served detector, from its OpenVINO or ONNX export (`detector_backend`)."""
        from vision.detector_select import load_detector
        from vision.errors import ModelUnavailable

        m = self.model
        with self._lock:
            try:
                return load_detector(
                    m.path,
                    m.class_names,
                    backend=self.settings.detector_backend,
                    conf=m.serving_conf(self.settings.detector_backend)
                    if self.settings.detector_conf is None
                    else self.settings.detector_conf,
                )
            except ModelUnavailable as exc:
                raise ConfigError(f"detector {m.version}: {exc}") from exc
