"""Prompt -> visible mask.

The embedded segmenter is OpenCV's GrabCut, seeded by the prompt: a box initialises it
directly; a click marks a small disc as certain object inside a window of probable
object; a mask prompt is the answer already. GrabCut runs on a region around the prompt
only, so its cost does not grow with the camera resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from gestalt_ros.config import VisibleConfig
from gestalt_ros.prompts import check_prompt
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt, Prompt


class GrabCutSegmenter:
    """Classical visible-part segmentation; needs no weights."""

    def __init__(self, config: VisibleConfig | None = None) -> None:
        self.config = config or VisibleConfig()
        self._image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """GrabCut has no image embedding: the frame is kept for the prompts on it."""
        self._image = image

    def predict(self, prompt: Prompt) -> np.ndarray:
        """A prompt on the set image -> H x W bool visible mask (never empty)."""
        if self._image is None:
            raise RuntimeError("call set_image(image) before predict(prompt)")
        image = self._image
        h, w = image.shape[:2]
        prompt = check_prompt(prompt, h, w)
        if isinstance(prompt, MaskPrompt):
            return prompt.mask
        if isinstance(prompt, BoxPrompt):
            x0, y0 = int(np.floor(prompt.x0)), int(np.floor(prompt.y0))
            x1, y1 = int(np.ceil(prompt.x1)), int(np.ceil(prompt.y1))
            seed = np.full((h, w), cv2.GC_BGD, np.uint8)
            seed[y0:y1, x0:x1] = cv2.GC_PR_FGD
            margin = max(x1 - x0, y1 - y0) // 4 + 4
            roi = (x0 - margin, y0 - margin, x1 + margin, y1 + margin)
            mask = self._grabcut(image, seed, roi)
            return mask if mask.any() else box_region(prompt, h, w)
        assert isinstance(prompt, PointPrompt)
        cx, cy = int(prompt.x), int(prompt.y)
        half = max(int(self.config.click_window * min(h, w) / 2), 4)
        # Outside the window is only probably background: the object may extend past it.
        seed = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        seed[max(cy - half, 0) : cy + half, max(cx - half, 0) : cx + half] = cv2.GC_PR_FGD
        cv2.circle(seed, (cx, cy), max(half // 6, 1), int(cv2.GC_FGD), -1)
        roi = (cx - 3 * half, cy - 3 * half, cx + 3 * half, cy + 3 * half)
        # The certain disc stays object in GrabCut, so the component at the click is never empty.
        return _component_at(self._grabcut(image, seed, roi), cx, cy)

    def _grabcut(self, image: np.ndarray, seed: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
        return grabcut(image, seed, roi, self.config.iterations)


def grabcut(
    image: np.ndarray, seed: np.ndarray, roi: tuple[int, int, int, int], iterations: int, max_side: int = 0
) -> np.ndarray:
    """GrabCut of RGB ``image`` inside ``roi`` (x0, y0, x1, y1) from ``seed`` labels (``cv2.GC_*``)
    -> H x W bool mask, empty outside the region.

    With ``max_side`` the region is first shrunk to at most that many pixels a side: GrabCut's
    cost grows with the pixel count, and its answer is scaled back by linear interpolation.
    """
    h, w = seed.shape
    x0, y0 = max(roi[0], 0), max(roi[1], 0)
    x1, y1 = min(roi[2], w), min(roi[3], h)
    sub = seed[y0:y1, x0:x1].copy()  # GrabCut writes its labels into it
    region = np.ascontiguousarray(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2BGR))
    shrink = max_side / max(sub.shape) if max_side else 1.0
    if shrink < 1.0:
        size = (max(round(sub.shape[1] * shrink), 1), max(round(sub.shape[0] * shrink), 1))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        sub = cv2.resize(sub, size, interpolation=cv2.INTER_NEAREST)
    if not ((sub == cv2.GC_BGD) | (sub == cv2.GC_PR_BGD)).any():
        # GrabCut needs a background colour model; a window filling the region gets a border.
        sub[[0, -1], :] = cv2.GC_PR_BGD
        sub[:, [0, -1]] = cv2.GC_PR_BGD
    out = np.zeros((h, w), bool)
    if not _object(sub).any():
        # No object colour to model (an object lost in the shrink, or none seeded): the seed stands.
        out[y0:y1, x0:x1] = _object(seed[y0:y1, x0:x1])
        return out
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models by k-means from OpenCV's random generator (per thread):
    # seeded here, the same image and prompt give the same mask whatever ran before.
    cv2.setRNGSeed(0)
    cv2.grabCut(region, sub, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    found = _object(sub)
    if shrink < 1.0:
        found = cv2.resize(found.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) > 0.5
    out[y0:y1, x0:x1] = found
    return out


def _object(labels: np.ndarray) -> np.ndarray:
    """The pixels GrabCut's labels call object, certain or probable."""
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def seed_from_probability(probability: np.ndarray, threshold: float, sure: float) -> np.ndarray:
    """GrabCut labels from a segmenter's per-pixel object probability: certain object at or above
    ``sure``, certain background at or below 1 - ``sure``, probable either way of ``threshold``."""
    seed = np.where(probability > threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    seed[probability >= sure] = cv2.GC_FGD
    seed[probability <= 1.0 - sure] = cv2.GC_BGD
    return seed


def _component_at(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """The connected component of ``mask`` containing (x, y)."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels == labels[y, x]


def box_region(box: BoxPrompt, height: int, width: int) -> np.ndarray:
    """The pixels of the image inside ``box`` (at least one)."""
    region = np.zeros((height, width), bool)
    x0, y0 = max(int(np.floor(box.x0)), 0), max(int(np.floor(box.y0)), 0)
    region[y0 : max(int(np.ceil(box.y1)), y0 + 1), x0 : max(int(np.ceil(box.x1)), x0 + 1)] = True
    return region
