"""ScenePipeline: an image -> every object in it, amodal, in occlusion order, labelled.

No ROS here: the node's scene mode, ``gestalt-ros eval --mode scene``, the demo and user
scripts call this class. The scene method (``scene.method``) is chosen on the registry
like every other stage (``backends``); the recognizer is the prompt pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gestalt_ros.backends import RECOGNIZERS, SCENE_METHODS
from gestalt_ros.config import GestaltConfig
from gestalt_ros.prompts import check_image
from gestalt_ros.recognition import whole_object_view
from gestalt_ros.timing import timed
from gestalt_ros.types import SceneInstance, mask_bbox


@dataclass
class SceneObjectResult:
    """One object of a scene: its instance (masks, layer, score) plus its id and labels.

    ``id`` is 1-based within the scene; ``occluded_by`` holds the ids of the objects in front.
    """

    id: int
    instance: SceneInstance
    occluded_by: list[int]
    label: str
    label_score: float
    top_k: list[tuple[str, float]]

    @property
    def amodal_mask(self) -> np.ndarray:
        return self.instance.amodal_mask

    @property
    def visible_mask(self) -> np.ndarray:
        return self.instance.visible_mask

    @property
    def layer(self) -> int:
        return self.instance.layer

    def summary(self) -> dict:
        """JSON-ready: the result fields of an ``objects`` entry, with ``layer`` and ``occluded_by``."""
        visible, amodal = self.visible_mask, self.amodal_mask
        amodal_area = int(amodal.sum())
        amodal_box = list(mask_bbox(amodal))
        return {
            "label": self.label,
            "score": round(float(self.label_score), 4),
            "top_k": [[name, round(float(s), 4)] for name, s in self.top_k],
            "visible_bbox": list(mask_bbox(visible)),
            "amodal_bbox": amodal_box,
            "crop_box": amodal_box,
            "occlusion_ratio": round(max(0.0, 1.0 - float(visible.sum()) / amodal_area), 4),
            "agreement": round(float(self.instance.score), 4),
            "visible_area": int(visible.sum()),
            "amodal_area": amodal_area,
            "layer": self.layer,
            "occluded_by": list(self.occluded_by),
        }


@dataclass
class SceneResult:
    """The objects of one image, front layer first, and the stages' times (seconds)."""

    objects: list[SceneObjectResult]
    height: int
    width: int
    timings: dict[str, float] = field(default_factory=dict)

    def visible_ids(self) -> np.ndarray:
        """H x W uint16: at each pixel the id of the object seen there, 0 for none."""
        ids = np.zeros((self.height, self.width), np.uint16)
        for obj in sorted(self.objects, key=lambda o: -o.layer):  # front layers painted last
            ids[obj.visible_mask] = obj.id
        return ids


def scene_view(image: np.ndarray, instance: SceneInstance) -> np.ndarray:
    """What the recognizer sees: the object's amodal box, the hidden part painted with its
    completion where there is one, else white (the completions' background)."""
    if instance.completion is not None:
        return whole_object_view(image, instance.visible_mask, instance.amodal_mask, instance.completion)
    white = np.full_like(image, 255)
    return whole_object_view(image, instance.visible_mask, instance.amodal_mask, white)


class ScenePipeline:
    """The configured scene method, then the recognizer over all its objects in one batch."""

    def __init__(self, method, recognizer, config: GestaltConfig | None = None) -> None:
        self.method = method
        self.recognizer = recognizer
        self.config = (config or GestaltConfig()).validate()

    @classmethod
    def from_config(cls, config: GestaltConfig | None = None, recognizer=None) -> ScenePipeline:
        """Build ``scene.method`` (loads weights: seconds); ``recognizer`` shares a prompt
        pipeline's instead of building another."""
        from gestalt_ros.pipeline import resolve_device

        config = resolve_device((config or GestaltConfig()).validate())
        return cls(SCENE_METHODS.build(config), recognizer or RECOGNIZERS.build(config), config)

    def __call__(self, image: np.ndarray, seed: int | None = None) -> SceneResult:
        image = check_image(image)
        timings: dict[str, float] = {}
        with timed(timings, "scene"):
            instances = self.method.segment(image, self.config.completion.seed if seed is None else seed, self.config)
        with timed(timings, "recognition"):
            top_k = self.recognizer([scene_view(image, o) for o in instances]) if instances else []
        objects = [
            SceneObjectResult(
                id=k + 1,
                instance=o,
                occluded_by=[i + 1 for i in o.occluded_by],
                label=labels[0][0],
                label_score=labels[0][1],
                top_k=labels,
            )
            for k, (o, labels) in enumerate(zip(instances, top_k))
        ]
        return SceneResult(objects, image.shape[0], image.shape[1], timings)
