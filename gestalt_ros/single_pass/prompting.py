"""Prompts as the single-pass model sees them: three maps over its square crop.

Training (``data/single_pass_examples.py``) and inference (``single_pass/predictor.py``)
encode prompts and cut windows with these functions only, so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import torch

from gestalt_ros.prompts import CropWindow
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt, Prompt

# The Lite models were trained on inputs scaled to [-1, 1] (see recognition.py).
MEAN, STD = 0.5, 0.5


def to_crop(window: CropWindow, resolution: int, x: float, y: float) -> tuple[float, float]:
    """Image pixel coordinates -> crop pixel coordinates (pixel centres map to centres)."""
    return (x + 0.5 - window.x0) * resolution / window.width - 0.5, (
        y + 0.5 - window.y0
    ) * resolution / window.height - 0.5


def prompt_maps(prompt: Prompt, window: CropWindow, resolution: int, sigma: float) -> np.ndarray:
    """(3, r, r) float32 in [0, 1]: a click's Gaussian (``sigma`` x r), a filled box, a mask.

    Only the prompt's own map is non-zero, so the model knows which kind it was given.
    """
    r = resolution
    maps = np.zeros((3, r, r), np.float32)
    if isinstance(prompt, PointPrompt):
        cx, cy = to_crop(window, r, prompt.x, prompt.y)
        grid = np.arange(r, dtype=np.float32)
        s = sigma * r
        maps[0] = np.exp(-((grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2) / (2 * s * s))
    elif isinstance(prompt, BoxPrompt):
        # Box corners are pixel edges (x1, y1 exclusive): fill the crop pixels whose centres lie inside.
        sx, sy = r / window.width, r / window.height
        e = [
            (min(prompt.x0, prompt.x1) - window.x0) * sx,
            (min(prompt.y0, prompt.y1) - window.y0) * sy,
            (max(prompt.x0, prompt.x1) - window.x0) * sx,
            (max(prompt.y0, prompt.y1) - window.y0) * sy,
        ]
        c0, r0, c1, r1 = (int(np.clip(np.ceil(v - 0.5), 0, r)) for v in e)
        maps[1, r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)] = 1.0
    elif isinstance(prompt, MaskPrompt):
        maps[2] = window.crop_mask(prompt.mask, r)
    else:
        raise TypeError(f"unknown prompt type {type(prompt).__name__}")
    return maps


def click_window(x: float, y: float, side: float) -> CropWindow:
    """A square window of ``side`` pixels centred on the clicked pixel (x, y)."""
    side = max(int(round(side)), 16)
    return CropWindow(int(round(x + 0.5 - side / 2)), int(round(y + 0.5 - side / 2)), side, side)


def object_window(visible: np.ndarray, scale: float) -> CropWindow:
    """The square window around a visible mask (box and mask prompts, refinement passes)."""
    return CropWindow.around(visible, scale)


def box_window(box: BoxPrompt, scale: float) -> CropWindow:
    """``object_window`` for a box prompt: the box stands in for the visible box."""
    x0, x1 = sorted((box.x0, box.x1))
    y0, y1 = sorted((box.y0, box.y1))
    side = max(max(x1 - x0, y1 - y0) * scale, 16)
    return click_window((x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5, side)


def image_tensor(crops: np.ndarray) -> torch.Tensor:
    """(B, r, r, 3) uint8 -> (B, 3, r, r) float in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD
