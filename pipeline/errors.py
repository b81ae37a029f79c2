"""Errors of the pipeline: the one root the API maps to HTTP answers.

`vision` and `geo` sit below the pipeline and may not import it, so they have roots of their
own (`VisionError`, `GeoError`); the pipeline turns theirs into these at its boundary, the way
httpx wraps its transport's errors.
"""

from __future__ import annotations


class StreetLensError(Exception):
    """Root of every error the pipeline raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidReport(StreetLensError, ValueError):
    """A report field is missing, malformed or out of range."""

    code = "invalid_report"


class PhotoRejected(StreetLensError, ValueError):
    """The upload is not a usable photo (not an image, truncated, empty, too large)."""

    code = "photo_rejected"


class PhotoTooLarge(PhotoRejected):
    """The upload is larger than the configured limit."""

    code = "photo_too_large"


class OutsideJurisdiction(StreetLensError, ValueError):
    """The report's location is outside the city's boundary."""

    code = "outside_jurisdiction"


class LocationMissing(StreetLensError, ValueError):
    """Neither the form nor the photo's EXIF says where the problem is."""

    code = "location_missing"


class CaseNotFound(StreetLensError, LookupError):
    """No case has that id."""

    code = "not_found"


class IdempotencyConflict(StreetLensError, ValueError):
    """An idempotency key was reused for a different upload."""

    code = "idempotency_conflict"


class InvalidTransition(StreetLensError, ValueError):
    """A crew action that the case's current status does not allow (e.g. closing it twice)."""

    code = "invalid_transition"


class StoreUnavailable(StreetLensError, ConnectionError):
    """The case store, photo store or queue cannot be reached right now."""

    code = "unavailable"


class ConfigError(StreetLensError, RuntimeError):
    """A setting, city pack or model file is missing or wrong."""

    code = "config_error"


class ServiceNotFound(StreetLensError, LookupError):
    """No service (Open311 service_code) has that code in the city pack."""

    code = "not_found"


class JurisdictionNotFound(StreetLensError, LookupError):
    """An Open311 jurisdiction_id that this server does not serve."""

    code = "not_found"


class SubscriptionNotFound(StreetLensError, LookupError):
    """No webhook subscription has that id (or it is not the caller's)."""

    code = "not_found"


class InvalidWebhook(StreetLensError, ValueError):
    """A webhook subscription's URL or filters are not usable."""

    code = "invalid_webhook"


class Unauthorized(StreetLensError, PermissionError):
    """No credentials, or credentials that are not valid (unknown, revoked or expired)."""

    code = "unauthorized"


class Forbidden(StreetLensError, PermissionError):
    """Valid credentials whose role does not allow this."""

    code = "forbidden"


class RateLimited(StreetLensError):
    """Too many requests from one key or client; `retry_after_s` says when to come back."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, field: str | None = None):
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class PromotionRefused(StreetLensError, ValueError):
    """A detector version is worse than the served one on the frozen split."""

    code = "promotion_refused"
