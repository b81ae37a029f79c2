"""Errors raised by `vision`; each is also a builtin so callers can catch either."""


class VisionError(Exception):
    """Root of every error raised by the vision library."""


class ImageRejected(VisionError, ValueError):
    """The bytes are not a usable photo (not an image, truncated, empty, too large)."""


class ModelUnavailable(VisionError, FileNotFoundError):
    """The detector weights are missing or unreadable."""


class DatasetError(VisionError, ValueError):
    """A training source is missing or malformed."""


class InvalidArgument(VisionError, ValueError):
    """A caller passed a value outside its valid range (a programming or configuration error)."""


class NotMeasurable(VisionError, ValueError):
    """One measuring method cannot give an honest answer for this outline (the next one tries)."""
