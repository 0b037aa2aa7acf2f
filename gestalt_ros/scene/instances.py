"""One occlusion layer's mask -> its object instances.

Objects of one layer do not overlap (one would hide the other, and they would be in two
layers), but they can touch, and then one connected component holds several objects. The
layer model also predicts each object's core (its inner part, away from its edge); cores of
touching objects are apart, so each core seeds one instance and a watershed on the
distance to the layer's edge gives every layer pixel to the nearest core. Components with
no core, but large enough, are instances of their own.

Instance sources that propose overlapping masks (SAM's automatic masks, clicks on the
single-pass network) make them disjoint with ``disjoint_instances``.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.measure import label
from skimage.segmentation import watershed


def split_layer(layer: np.ndarray, cores: np.ndarray, min_area: int) -> list[np.ndarray]:
    """(h, w) bool layer and cores -> disjoint (h, w) bool instances of at least ``min_area`` pixels."""
    if not layer.any():
        return []
    seeds = label(cores & layer, connectivity=1)
    sizes = np.bincount(seeds.ravel())
    small = np.flatnonzero(sizes < max(min_area // 8, 2))
    seeds[np.isin(seeds, small[small > 0])] = 0
    dist = cv2.distanceTransform(np.pad(layer, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    regions = watershed(-dist, seeds, mask=layer) if seeds.any() else np.zeros(layer.shape, np.int32)
    leftover = label(layer & (regions == 0), connectivity=1)
    instances = [regions == k for k in np.unique(regions) if k > 0]
    instances += [leftover == k for k in range(1, int(leftover.max()) + 1)]
    return [m for m in instances if m.sum() >= min_area]


def disjoint_instances(masks: list[np.ndarray], scores: list[float], min_area: float) -> list[np.ndarray]:
    """Overlapping proposals (parts and wholes) -> disjoint visible instances: the best-scored
    proposal takes its pixels first; a later one keeps what is left if that is at least half
    of it and ``min_area`` of the frame (``scene.min_area``, a fraction)."""
    if not masks:
        return []
    taken = np.zeros(masks[0].shape, bool)
    min_px = max(int(round(min_area * taken.size)), 1)
    out = []
    for k in np.argsort(scores)[::-1]:
        mask = masks[k] & ~taken
        if mask.sum() >= max(min_px, 0.5 * masks[k].sum()):
            out.append(mask)
            taken |= mask
    return out
