"""Privacy masks burned into the pixels before anything is encoded or saved.

Masks are polygons in frame fractions (config ``privacy.masks``), so one config
works at any resolution. The burn mask is dilated by a couple of pixels: H.264
blurs edges, and the dilation keeps every pixel *inside* the polygon black in
the decoded clip instead of letting the neighbour's window bleed back in.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
from numpy.typing import NDArray

from doorbell.core.config import Polygon


def polygon_mask(polygons: Sequence[Polygon], width: int, height: int, dilate_px: int = 0) -> np.ndarray | None:
    """A boolean (height, width) array that is True inside any polygon, or None for no polygons."""
    import cv2

    if not polygons:
        return None
    canvas = np.zeros((height, width), np.uint8)
    for poly in polygons:
        pts = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in poly.points], np.int32)
        cv2.fillPoly(canvas, [pts], 255)
    if dilate_px > 0:
        k = 2 * dilate_px + 1
        canvas = cast("NDArray[np.uint8]", cv2.dilate(canvas, np.ones((k, k), np.uint8)))
    return canvas.astype(bool)


class PrivacyMasker:
    """Blacks out the configured polygons in BGR frames; caches the mask per resolution."""

    def __init__(self, polygons: Sequence[Polygon]):
        self.polygons = list(polygons)
        self._cache: dict[tuple[int, int], tuple | None] = {}

    def __len__(self) -> int:
        return len(self.polygons)

    def mask_for(self, width: int, height: int) -> np.ndarray | None:
        entry = self._entry(width, height)
        return None if entry is None else entry[0]

    def _entry(self, width: int, height: int):
        key = (width, height)
        if key not in self._cache:
            mask = polygon_mask(self.polygons, width, height, dilate_px=max(2, width // 320))
            if mask is None or not mask.any():
                self._cache[key] = None
            else:
                ys, xs = np.nonzero(mask)
                box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
                self._cache[key] = (mask, box, mask[box].astype(np.uint8), {})
        return self._cache[key]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Black out masked pixels in place (H x W or H x W x C) and return the image."""
        import cv2

        entry = self._entry(image.shape[1], image.shape[0])
        if entry is None:
            return image
        _mask, box, box_mask, zeros = entry
        region = image[box]
        zero = zeros.get(region.shape)
        if zero is None:
            zero = zeros[region.shape] = np.zeros(region.shape, image.dtype)
        out = cv2.copyTo(zero, box_mask, region)  # in place into the view: ~10 us vs ~1 ms for fancy indexing
        if out is not region and not np.shares_memory(out, image):
            region[box_mask.astype(bool)] = 0  # OpenCV had to allocate (unusual strides): do it in numpy
        return image
