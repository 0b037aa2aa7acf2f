"""Visible mask -> amodal mask, by synthesis (``amodal.method: synthesis``).

pix2gestalt synthesizes the whole object on white, so its extent is wherever a sample is
not white. A model that also synthesizes alpha (RGBA) states the extent directly, and its
alpha is thresholded instead. Several samples vote per pixel, which removes the speckles of
any one sample. ``SynthesisAmodal`` chains these steps around any completer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import cv2
import numpy as np

from gestalt_ros.config import AmodalConfig, CompletionConfig
from gestalt_ros.prompts import CropWindow
from gestalt_ros.timing import timed
from gestalt_ros.types import AmodalEstimate

if TYPE_CHECKING:
    from gestalt_ros.backends import Completer


def foreground_masks(completions: np.ndarray, cfg: AmodalConfig) -> np.ndarray:
    """(N, h, w, 3 or 4) uint8 -> (N, h, w) bool: each sample's object pixels.

    RGBA: alpha >= ``cfg.alpha_threshold``. RGB: grey level <= ``cfg.white_threshold``.
    """
    if completions.ndim != 4 or completions.shape[-1] not in (3, 4):
        raise ValueError(f"completions must be N x h x w x 3 (or 4 with alpha), got {completions.shape}")
    if completions.shape[-1] == 4:
        return completions[..., 3] >= cfg.alpha_threshold
    grey = completions.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return grey <= cfg.white_threshold


def vote(masks: np.ndarray, vote_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel vote over N sample masks (``amodal.vote_threshold`` holds the default).

    Returns the voted mask (agreement strictly above ``vote_threshold``, so a 2-2 tie at 0.5
    is background) and the agreement, the fraction of samples that saw object.
    """
    agreement = masks.mean(axis=0, dtype=np.float32)
    return agreement > vote_threshold, agreement


def closest_sample(masks: np.ndarray, voted: np.ndarray) -> int:
    """Index of the sample whose mask has the highest IoU with the vote (the one to show)."""
    inter = (masks & voted).sum(axis=(1, 2))
    union = (masks | voted).sum(axis=(1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return int(np.argmax(iou))


def attached_to(voted: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The parts of ``voted`` connected to the visible part (8-connectivity, one pixel of slack).

    A whole object contains its visible part, so a blob of the vote that touches nothing
    visible is a hallucination of the sampler, not hidden object.
    """
    _, labels = cv2.connectedComponents(voted.astype(np.uint8), connectivity=8)
    near_visible = cv2.dilate(visible.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    touching = np.unique(labels[near_visible])
    return np.isin(labels, touching[touching > 0])


def to_frame(
    evidence: np.ndarray,
    threshold: float,
    crop_visible: np.ndarray,
    visible: np.ndarray,
    window: CropWindow,
    cfg: AmodalConfig,
) -> np.ndarray:
    """A crop-resolution evidence map -> the frame's H x W amodal mask, post-processed as ``cfg`` says.

    ``evidence`` is the vote's agreement, or one sample's mask (best-of-N in evaluation); the
    object is where it exceeds ``threshold``. Detached blobs are dropped at crop resolution.
    With ``cfg.smooth_paste`` the evidence is interpolated to the frame and thresholded there,
    so a crop pixel that spans many camera pixels leaves a straight edge, not a staircase;
    otherwise the thresholded mask is pasted with nearest neighbour. The visible part is added.
    """
    evidence = evidence.astype(np.float32)
    crop_mask = evidence > threshold
    if cfg.keep_attached:
        evidence = np.where(crop_mask & ~attached_to(crop_mask, crop_visible), np.float32(0), evidence)
    height, width = visible.shape
    if cfg.smooth_paste:
        mask = window.paste(evidence, height, width, linear=True) > threshold
    else:
        mask = window.paste(evidence > threshold, height, width)
    return mask | visible if cfg.union_visible else mask


def completion_in_frame(crop: np.ndarray, amodal: np.ndarray, window: CropWindow) -> np.ndarray:
    """The chosen completion crop placed in the camera frame: H x W x 3, white outside ``amodal``.

    Pixel-aligned with the camera image (a planner reads the completion at the same (u, v)
    as the image); crop pixels are pasted with nearest neighbour, inventing no detail.
    """
    height, width = amodal.shape
    frame = np.full((height, width, 3), 255, dtype=np.uint8)
    frame[amodal] = window.paste(crop[..., :3], height, width)[amodal]
    return frame


class SynthesisAmodal:
    """The amodal stage by synthesis: sample whole objects around the visible part, threshold, vote."""

    def __init__(self, completer: Completer) -> None:
        self.completer = completer

    def estimate(
        self,
        image: np.ndarray,
        visible: np.ndarray,
        completion: CompletionConfig,
        amodal: AmodalConfig,
        seed: int,
    ) -> AmodalEstimate:
        height, width = visible.shape
        timings: dict[str, float] = {}
        with timed(timings, "completion"):
            resolution = self.completer.resolution
            window = self.completer.window_around(visible)
            crop = window.crop_image(image, resolution)
            crop_visible = window.crop_mask(visible, resolution)
            samples = self.completer.complete(crop, crop_visible, completion, seed)
        with timed(timings, "amodal"):
            masks = foreground_masks(samples, amodal)
            samples = samples[..., :3]  # alpha, if any, is now in the masks
            voted, agreement = vote(masks, amodal.vote_threshold)
            best = closest_sample(masks, voted)
            amodal_mask = to_frame(agreement, amodal.vote_threshold, crop_visible, visible, window, amodal)
            return AmodalEstimate(
                amodal_mask=amodal_mask,
                agreement=window.paste(agreement, height, width, linear=amodal.smooth_paste),
                completion=completion_in_frame(samples[best], amodal_mask, window),
                completion_crop=samples[best],
                completions=samples,
                sample_masks=masks,
                crop_box=window.box,
                timings=timings,
            )


class RefinedSynthesisAmodal:
    """``amodal.method: both``: the synthesis vote where its samples agree, another estimator's
    mask (the single-pass network's) where they disagree.

    A pixel is object when more than ``vote_threshold`` of the samples see object there, and
    background when fewer than ``1 - vote_threshold`` do; in between, ``refiner`` decides. The
    completion is still the synthesized sample, placed in the refined mask.
    """

    def __init__(self, synthesis: SynthesisAmodal, refiner) -> None:
        self.synthesis = synthesis
        self.refiner = refiner

    def estimate(
        self,
        image: np.ndarray,
        visible: np.ndarray,
        completion: CompletionConfig,
        amodal: AmodalConfig,
        seed: int,
    ) -> AmodalEstimate:
        voted = self.synthesis.estimate(image, visible, completion, amodal, seed)
        refined = self.refiner.estimate(image, visible, completion, amodal, seed)
        start = time.perf_counter()
        agreement = voted.agreement
        undecided = (agreement <= amodal.vote_threshold) & (agreement >= 1.0 - amodal.vote_threshold)
        mask = np.where(undecided, refined.amodal_mask, agreement > amodal.vote_threshold)
        if amodal.keep_attached:
            mask = attached_to(mask, visible)
        if amodal.union_visible:
            mask |= visible
        window = CropWindow.from_box(voted.crop_box)
        # One "amodal" stage time: the vote, the network and combining them.
        voted.timings["amodal"] += refined.timings["amodal"] + time.perf_counter() - start
        return AmodalEstimate(
            amodal_mask=mask,
            agreement=np.where(undecided, refined.agreement, agreement),
            completion=completion_in_frame(voted.completion_crop, mask, window),
            completion_crop=voted.completion_crop,
            completions=voted.completions,
            sample_masks=voted.sample_masks,
            crop_box=voted.crop_box,
            timings=voted.timings,
        )
