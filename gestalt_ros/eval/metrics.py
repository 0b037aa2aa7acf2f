"""Amodal segmentation metrics (the pix2gestalt protocol: mean IoU over objects)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# An object counts as occluded when its hidden part is at least this fraction of its amodal area.
OCCLUDED_MIN_RATIO = 0.05


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two bool masks; two empty masks agree perfectly."""
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def summarize(ious: Sequence[float], occlusion: Sequence[float]) -> dict[str, float | int]:
    """mIoU over all objects and over occluded ones (in percent, like the paper)."""
    ious_a, occ = np.asarray(ious, float), np.asarray(occlusion, float)
    occluded = occ >= OCCLUDED_MIN_RATIO
    return {
        "miou": round(100 * float(ious_a.mean()), 2) if ious_a.size else float("nan"),
        "miou_occluded": round(100 * float(ious_a[occluded].mean()), 2) if occluded.any() else float("nan"),
        "n_objects": int(ious_a.size),
        "n_occluded": int(occluded.sum()),
    }
