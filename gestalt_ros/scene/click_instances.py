"""``scene.instances: clicks``: every object's visible part from clicks on the single-pass network.

The layer model says where the objects are (the union of its masks, the foreground) but
splits them poorly: it puts most objects of a scene in its first layer, and neighbours
merge. The single-pass network finds one object from one click well. So the foreground is
clicked on a grid (``scene.click_points_per_side`` a side over the frame), innermost points
first, skipping points already inside a found mask; each click runs the click protocol of
the prompt path (``single_pass.*``), batched; the proposals are made disjoint by predicted
IoU, as SAM's automatic masks are.
"""

from __future__ import annotations

import cv2
import numpy as np

from gestalt_ros.scene.instances import disjoint_instances
from gestalt_ros.single_pass.predictor import SinglePassPredictor
from gestalt_ros.types import PointPrompt

# Clicks run through the network this many at a time; points inside their masks are skipped after each batch.
BATCH = 8


def grid_clicks(foreground: np.ndarray, points_per_side: int) -> list[PointPrompt]:
    """The grid points (cell centres) on ``foreground``, farthest from its edge first."""
    height, width = foreground.shape
    xs = ((np.arange(points_per_side) + 0.5) * width / points_per_side).astype(int)
    ys = ((np.arange(points_per_side) + 0.5) * height / points_per_side).astype(int)
    depth = cv2.distanceTransform(np.pad(foreground, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    points = [(depth[y, x], x, y) for y in ys for x in xs if foreground[y, x]]
    return [PointPrompt(float(x), float(y)) for _, x, y in sorted(points, key=lambda p: -p[0])]


class ClickInstances:
    """Foreground from the layer model, objects from clicks on it."""

    def __init__(
        self, predictor: SinglePassPredictor, layers, points_per_side: int, min_area: float, grabcut: bool = False
    ) -> None:
        self.predictor = predictor
        self.layers = layers  # anything with segment(image, seed) -> objects with amodal_mask
        self.points_per_side = points_per_side
        self.min_area = min_area
        self.grabcut = grabcut  # the prompt path's GrabCut refinement of each click's mask

    def visible_masks(self, image: np.ndarray, seed: int = 0) -> list[np.ndarray]:
        height, width = image.shape[:2]
        foreground = np.zeros((height, width), bool)
        for obj in self.layers.segment(image, seed):
            foreground |= obj.amodal_mask
        pending = grid_clicks(foreground, self.points_per_side)
        covered = np.zeros((height, width), bool)
        masks, scores = [], []
        while pending:
            batch, pending = pending[:BATCH], pending[BATCH:]
            # A missed part is clicked again; every refinement runs (skipping one cost validation recall).
            results = self.predictor.predict_clicks(image, batch, fallback=False, skip_alike=False)
            for click, result in zip(batch, results):
                mask = self.predictor.visible_in_frame(result, click, height, width, image if self.grabcut else None)
                masks.append(mask)
                scores.append(result.visible_iou)
                covered |= mask
            pending = [c for c in pending if not covered[int(c.y), int(c.x)]]
        return disjoint_instances(masks, scores, self.min_area)
