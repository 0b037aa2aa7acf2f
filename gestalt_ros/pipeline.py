"""GestaltPipeline: prompt -> visible mask -> completion -> amodal mask -> label.

No ROS here: the node, the demo, the evaluation and user scripts all call this class.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch

from gestalt_ros.amodal import closest_sample, completion_in_frame, foreground_masks, to_frame, vote
from gestalt_ros.backends import Components, build_components
from gestalt_ros.config import GestaltConfig
from gestalt_ros.prompts import check_image
from gestalt_ros.recognition import whole_object_view
from gestalt_ros.types import ObjectResult, Prompt, mask_bbox


class GestaltPipeline:
    """Chains the stage components of a backend; every stage is timed."""

    def __init__(self, components: Components, config: GestaltConfig | None = None) -> None:
        self.components = components
        self.config = (config or GestaltConfig()).validate()

    @classmethod
    def from_config(cls, config: GestaltConfig | None = None) -> GestaltPipeline:
        """Build the configured backend's components (loads weights: seconds)."""
        config = (config or GestaltConfig()).validate()
        return cls(build_components(config), config)

    def __call__(self, image: np.ndarray, prompt: Prompt, seed: int | None = None) -> ObjectResult:
        """H x W x 3 uint8 RGB image + prompt -> ObjectResult at the image's resolution.

        ``seed`` overrides ``completion.seed``; the same seed gives the same result on CPU.
        Raises ``PromptError`` for a prompt that does not fit the image.
        """
        cfg = self.config
        image = check_image(image)
        height, width = image.shape[:2]
        timings: dict[str, float] = {}

        with _timed(timings, "visible"):
            visible = self.components.segmenter(image, prompt)

        completer = self.components.completer
        with _timed(timings, "completion"):
            window = completer.window_around(visible)
            crop = window.crop_image(image, completer.resolution)
            crop_visible = window.crop_mask(visible, completer.resolution)
            generator = torch.Generator().manual_seed(cfg.completion.seed if seed is None else seed)
            completions = completer(
                crop,
                crop_visible,
                num_samples=cfg.completion.num_samples,
                num_inference_steps=cfg.completion.num_inference_steps,
                guidance_scale=cfg.completion.guidance_scale,
                eta=cfg.completion.eta,
                generator=generator,
                strength=cfg.completion.strength,
                mirror=cfg.completion.mirror_samples,
            )

        with _timed(timings, "amodal"):
            masks = foreground_masks(completions, cfg.amodal)
            completions = completions[..., :3]  # alpha, if any, is now in the masks
            voted, agreement = vote(masks, cfg.amodal.vote_threshold)
            best = closest_sample(masks, voted)
            amodal = to_frame(agreement, cfg.amodal.vote_threshold, crop_visible, visible, window, cfg.amodal)
            full_agreement = window.paste(agreement, height, width, linear=cfg.amodal.smooth_paste)
            completion = completion_in_frame(completions[best], amodal, window)

        with _timed(timings, "recognition"):
            view = whole_object_view(image, visible, amodal, completion)
            top_k = self.components.recognizer([view])[0]

        amodal_area = int(amodal.sum())
        return ObjectResult(
            visible_mask=visible,
            amodal_mask=amodal,
            agreement=full_agreement,
            completion=completion,
            completion_crop=completions[best],
            completions=completions,
            sample_masks=masks,
            label=top_k[0][0],
            score=top_k[0][1],
            top_k=top_k,
            visible_bbox=mask_bbox(visible),
            amodal_bbox=mask_bbox(amodal) if amodal_area else mask_bbox(visible),
            crop_box=window.box,
            occlusion_ratio=max(0.0, 1.0 - float(visible.sum()) / amodal_area) if amodal_area else 0.0,
            timings=timings,
        )


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
