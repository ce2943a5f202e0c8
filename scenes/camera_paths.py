"""Where the dataset's cameras stand: random directions for training views, a fixed orbit for test views.

As in SRN's ShapeNet renderings used by 3DiM, training views see the object from random directions over the sphere
(here its upper part, since the objects rest on the ground), and test views lie on one orbit at constant elevation
with evenly spaced azimuths, identical for every test instance. All cameras look at the origin with z up.
"""

from __future__ import annotations

import numpy as np

from scenes.cameras import Intrinsics, look_at
from scenes.errors import InvalidInputError


def sphere_cameras(n: int, radius: float, rng: np.random.Generator,
                   elevation_range_deg: tuple[float, float] = (-10.0, 80.0)) -> np.ndarray:
    """[n, 4, 4] camera-to-world (OpenGL axes): directions uniform in area over the band of elevations."""
    low, high = np.radians(elevation_range_deg)
    if not -np.pi / 2 < low <= high < np.pi / 2:
        raise InvalidInputError("elevation_range_deg", f"{elevation_range_deg} is not an increasing range inside "
                                                       "(-90, 90)", "pass e.g. (-10, 80)")
    azimuth = rng.uniform(0.0, 2 * np.pi, size=n)
    # Uniform sin(elevation) gives a uniform density over the sphere's area (Archimedes' hat-box theorem).
    elevation = np.arcsin(rng.uniform(np.sin(low), np.sin(high), size=n))
    return _looking_at_origin(azimuth, elevation, radius)


def orbit_cameras(n: int, radius: float, elevation_deg: float) -> np.ndarray:
    """[n, 4, 4] camera-to-world on a circle at `elevation_deg`, azimuths 0, 360/n, ... degrees."""
    if not -90.0 < elevation_deg < 90.0:
        raise InvalidInputError("orbit_elevation_deg", f"{elevation_deg} is not inside (-90, 90)", "pass e.g. 25")
    azimuth = 2 * np.pi * np.arange(n) / max(n, 1)
    return _looking_at_origin(azimuth, np.full(n, np.radians(elevation_deg)), radius)


def _looking_at_origin(azimuth: np.ndarray, elevation: np.ndarray, radius: float) -> np.ndarray:
    if not radius > 0:
        raise InvalidInputError("camera_radius", f"{radius} is not positive", "pass a distance such as 2.7")
    eyes = radius * np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                              np.sin(elevation)], axis=-1)
    return np.stack([look_at(eye) for eye in eyes]) if len(eyes) else np.zeros((0, 4, 4))


def intrinsics_from_fov(fov_deg: float, image_size: int) -> Intrinsics:
    """Square pinhole intrinsics with the given full field of view, principal point at the image centre."""
    if not 0.0 < fov_deg < 180.0:
        raise InvalidInputError("fov_deg", f"{fov_deg} is not inside (0, 180)", "pass e.g. 45")
    if image_size < 1:
        raise InvalidInputError("image_size", f"{image_size} is not a positive size", "pass e.g. 64")
    focal = 0.5 * image_size / np.tan(np.radians(fov_deg) / 2)
    return Intrinsics(focal, focal, image_size / 2, image_size / 2, image_size, image_size)
