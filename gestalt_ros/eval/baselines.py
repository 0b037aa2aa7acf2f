"""Answers that need no model: what a completion model has to beat."""

from __future__ import annotations

import cv2
import numpy as np


def modal(visible: np.ndarray) -> np.ndarray:
    """The visible mask itself (what a modal segmenter such as SAM alone gives)."""
    return visible.copy()


def convex_hull(visible: np.ndarray) -> np.ndarray:
    """The filled convex hull of every visible pixel."""
    points = cv2.findNonZero(visible.astype(np.uint8))
    out = np.zeros(visible.shape, np.uint8)
    if points is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    return out.astype(bool) | visible


BASELINES = {"modal": modal, "convex_hull": convex_hull}
