"""GestaltPipeline: prompt -> visible mask -> amodal mask (with its completion) -> label.

No ROS here: the node, the demo, the evaluation and user scripts all call this class. It
has a predictor's shape, as segment-anything's ``SamPredictor``: ``set_image`` once per
frame, then ``predict`` for each prompt on it; ``pipeline(image, prompt)`` does both.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from gestalt_ros.backends import Components, build_components
from gestalt_ros.config import ConfigError, GestaltConfig
from gestalt_ros.prompts import check_image, check_prompt
from gestalt_ros.recognition import whole_object_view
from gestalt_ros.timing import timed
from gestalt_ros.types import ObjectResult, Prompt, mask_bbox

logger = logging.getLogger(__name__)


def resolve_device(config: GestaltConfig) -> GestaltConfig:
    """``config`` on a device that exists: a missing CUDA device is a ``ConfigError``, or, with
    ``allow_cpu_fallback``, the CPU (logged as a warning)."""
    if config.device == "cpu":
        return config
    import torch

    index = int(config.device.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index < count:
        return config
    problem = f"device {config.device!r}: this machine has {count} CUDA device(s)"
    if not config.allow_cpu_fallback:
        raise ConfigError(f"{problem}; set device to cpu, or allow_cpu_fallback to true")
    logger.warning("%s; running on the CPU (allow_cpu_fallback)", problem)
    return config.with_overrides(["device=cpu"])


class GestaltPipeline:
    """Chains the configured stages; every stage is timed."""

    def __init__(self, components: Components, config: GestaltConfig | None = None) -> None:
        self.components = components
        self.config = (config or GestaltConfig()).validate()
        self._image: np.ndarray | None = None
        self._set_image_seconds = 0.0

    @classmethod
    def from_config(cls, config: GestaltConfig | None = None) -> GestaltPipeline:
        """Build each stage the config names on its device (loads weights: seconds)."""
        config = resolve_device((config or GestaltConfig()).validate())
        return cls(build_components(config), config)

    def set_image(self, image: np.ndarray) -> None:
        """The H x W x 3 uint8 RGB frame the next prompts refer to; stages that embed it do so now."""
        image = check_image(image)
        start = time.perf_counter()
        self.components.segmenter.set_image(image)
        self._image = image
        self._set_image_seconds = time.perf_counter() - start

    def predict(self, prompt: Prompt, seed: int | None = None) -> ObjectResult:
        """A prompt on the set image -> ObjectResult at the image's resolution.

        ``seed`` overrides ``completion.seed``; the same seed gives the same result on CPU.
        ``timings["set_image"]`` is the frame's embedding time on its first prediction, else 0.
        Raises ``PromptError`` for a prompt that does not fit the image.
        """
        if self._image is None:
            raise RuntimeError("call set_image(image) before predict(prompt)")
        cfg = self.config
        image = self._image
        prompt = check_prompt(prompt, *image.shape[:2])
        timings = {"set_image": self._set_image_seconds}
        self._set_image_seconds = 0.0

        with timed(timings, "visible"):
            visible = self.components.segmenter.predict(prompt)
        estimate = self.components.amodal.estimate(
            image, visible, cfg.completion, cfg.amodal, cfg.completion.seed if seed is None else seed
        )
        timings.update(estimate.timings)
        amodal = estimate.amodal_mask
        with timed(timings, "recognition"):
            if cfg.recognition.view == "completion":
                view = estimate.completion_crop
            else:
                view = whole_object_view(image, visible, amodal, estimate.completion)
            top_k = self.components.recognizer([view])[0]

        amodal_area = int(amodal.sum())
        return ObjectResult(
            visible_mask=visible,
            amodal_mask=amodal,
            agreement=estimate.agreement,
            completion=estimate.completion,
            completion_crop=estimate.completion_crop,
            completions=estimate.completions,
            sample_masks=estimate.sample_masks,
            label=top_k[0][0],
            score=top_k[0][1],
            top_k=top_k,
            visible_bbox=mask_bbox(visible),
            amodal_bbox=mask_bbox(amodal) if amodal_area else mask_bbox(visible),
            crop_box=estimate.crop_box,
            occlusion_ratio=max(0.0, 1.0 - float(visible.sum()) / amodal_area) if amodal_area else 0.0,
            timings=timings,
        )

    def __call__(self, image: np.ndarray, prompt: Prompt, seed: int | None = None) -> ObjectResult:
        """``set_image(image)`` then ``predict(prompt, seed)``."""
        self.set_image(image)
        return self.predict(prompt, seed)
