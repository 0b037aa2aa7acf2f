"""``scene.method: prompted``: a scene from the parts the prompt pipeline already has.

The visible instances come from an instance source (``scene.instances``: the layer model's
visible masks, or SAM's automatic masks, ``visible_sam.SamInstances``, on a GPU); the amodal stage (``amodal.method``) completes each as if it had been given as a mask prompt;
then each pair is ordered by whose amodal mask runs under whose visible part
(``scene/layers.py``), and the layers follow from that order.
"""

from __future__ import annotations

import numpy as np

from gestalt_ros.config import GestaltConfig
from gestalt_ros.scene.layers import occlusion_layers
from gestalt_ros.types import SceneInstance

# One object hides another where it covers at least this fraction of scene.min_area of the
# other's hidden part (fewer pixels: the two masks' edges merely graze).
HIDING_FRACTION_OF_MIN_AREA = 0.1


class PromptedScene:
    """Visible instances -> the amodal stage per instance -> pairwise occlusion order."""

    def __init__(self, instances, amodal, config: GestaltConfig) -> None:
        self.instances = instances  # anything with visible_masks(image, seed) -> list of H x W bool
        self.amodal = amodal  # an AmodalEstimator (backends)
        self.config = config

    def segment(self, image: np.ndarray, seed: int = 0, config: GestaltConfig | None = None) -> list[SceneInstance]:
        cfg = config or self.config
        visible = self.instances.visible_masks(image, seed)
        estimates = [self.amodal.estimate(image, v, cfg.completion, cfg.amodal, seed) for v in visible]
        amodal = [e.amodal_mask | v for e, v in zip(estimates, visible)]
        min_px = max(int(round(HIDING_FRACTION_OF_MIN_AREA * cfg.scene.min_area * image.shape[0] * image.shape[1])), 1)
        layers, in_front = occlusion_layers(visible, amodal, min_px)
        return [
            SceneInstance(
                amodal_mask=a,
                visible_mask=v,
                layer=layer,
                occluded_by=front,
                score=float(e.agreement[a].mean()) if a.any() else 0.0,
                completion=e.completion,
            )
            for a, v, layer, front, e in zip(amodal, visible, layers, in_front, estimates)
        ]
