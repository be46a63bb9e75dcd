"""Area matching: a lat/lon bounding box for the index, then the exact haversine distance."""
from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lon, max_lon) that contains the circle; generous near the poles."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = math.cos(math.radians(lat))
    dlon = 180.0 if coslat < 1e-6 else min(180.0, math.degrees(radius_m / (EARTH_RADIUS_M * coslat)))
    # A small margin absorbs float rounding; haversine makes the exact decision.
    dlat *= 1.001
    dlon *= 1.001
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon
