"""Errors raised by `geo`; each is also a builtin so callers can catch either."""


class GeoError(Exception):
    """Root of every error raised by the geo library."""


class LayerError(GeoError, ValueError):
    """A city layer (or its entry in city.yaml) is missing, unreadable or malformed."""


class LayerNotFound(LayerError, FileNotFoundError):
    """A layer file named in city.yaml is not in the data directory."""


class CRSMismatch(GeoError, ValueError):
    """A layer's coordinates are not in the CRS that city.yaml says they are in."""


class GeoInputError(GeoError, ValueError):
    """A coordinate, distance or other argument passed to geo is not usable."""
