"""Coordinates to places: city layers, CRS handling, object location, spatial indexes."""
