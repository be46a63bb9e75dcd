"""Privacy masks: polygons in frame fractions, burned in place, independent of resolution."""
from __future__ import annotations

import numpy as np
import pytest

from doorbell.core.config import ConfigError, Polygon, parse_config
from firmware.masks import PrivacyMasker, polygon_mask

TRI = Polygon(points=[(0.1, 0.1), (0.6, 0.1), (0.1, 0.7)])


@pytest.mark.parametrize("shape", [(240, 320, 3), (720, 1280, 3), (240, 320)])
def test_mask_blacks_out_the_polygon_and_nothing_far_from_it(shape):
    img = np.full(shape, 200, np.uint8)
    PrivacyMasker([TRI]).apply(img)
    h, w = shape[:2]
    exact = polygon_mask([TRI], w, h)
    assert img[exact].max() == 0                         # every pixel inside the polygon is black
    far = ~polygon_mask([TRI], w, h, dilate_px=max(2, w // 320) + 2)
    assert img[far].min() == 200                         # the rest of the picture is untouched


def test_no_masks_is_a_no_op_and_two_masks_both_apply():
    img = np.full((100, 100, 3), 50, np.uint8)
    PrivacyMasker([]).apply(img)
    assert img.min() == 50
    right = Polygon(points=[(0.8, 0.8), (1.0, 0.8), (1.0, 1.0), (0.8, 1.0)])
    PrivacyMasker([TRI, right]).apply(img)
    assert img[95, 95].max() == 0 and img[20, 20].max() == 0 and img[50, 90].min() == 50


@pytest.mark.parametrize("points", [[[0, 0], [1, 0]], [[0, 0], [1.5, 0], [1, 1]], [[0, 0], [1, 0], [-0.1, 1]]])
def test_invalid_mask_polygons_are_refused(points):
    with pytest.raises(ConfigError) as err:
        parse_config({"privacy": {"masks": [{"points": points}]}}, "<test>", env={})
    assert "privacy.masks[0].points" in str(err.value)
