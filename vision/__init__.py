"""Pixels to findings: decoding, EXIF camera data, detection, measurement, training."""
