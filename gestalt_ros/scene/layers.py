"""Occlusion order from masks: who hides whom, and the layers that follow from it.

One rule serves the ground truth (the synthetic writer, the training examples) and the
predictions (the prompted scene method): ``a`` hides ``b`` where ``b``'s amodal mask runs
under ``a``'s visible part. Layer 0 holds the objects nothing hides; layer k the objects
hidden only by layers before k, as in Sequential Amodal Segmentation (Ao et al., 2024).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hidden_counts(visible: Sequence[np.ndarray], amodal: Sequence[np.ndarray]) -> np.ndarray:
    """(N, N) pixel counts: ``[a, b]`` = pixels of ``b``'s hidden part (amodal minus visible)
    that ``a``'s visible part covers."""
    if not visible:
        return np.zeros((0, 0), np.int64)
    vis = np.stack([np.asarray(v, bool).ravel() for v in visible])
    hidden = np.stack([np.asarray(a, bool).ravel() for a in amodal]) & ~vis
    counts = vis.astype(np.float32) @ hidden.T.astype(np.float32)
    np.fill_diagonal(counts, 0)
    return np.rint(counts).astype(np.int64)


def occluders(counts: np.ndarray, min_pixels: int = 1) -> list[list[int]]:
    """Per object, the objects in front of it: ``a`` hides ``b`` if it covers at least
    ``min_pixels`` of ``b``'s hidden part and more than ``b`` covers of ``a``'s (where two
    objects interlock, the larger overlap decides)."""
    n = len(counts)
    return [[a for a in range(n) if counts[a, b] >= min_pixels and counts[a, b] > counts[b, a]] for b in range(n)]


def peel_layers(in_front: list[list[int]], counts: np.ndarray | None = None) -> list[int]:
    """Layer per object from who is in front of whom: repeatedly take the objects that no
    remaining object hides. A cycle (a hides b hides c hides a) is broken by taking the
    remaining object least hidden by the others (``counts``, else the first)."""
    n = len(in_front)
    layer = [-1] * n
    remaining = set(range(n))
    depth = 0
    while remaining:
        front = [b for b in sorted(remaining) if not any(a in remaining for a in in_front[b])]
        if not front:
            if counts is None:
                front = [min(remaining)]
            else:
                front = [min(sorted(remaining), key=lambda b: sum(int(counts[a, b]) for a in remaining))]
        for b in front:
            layer[b] = depth
        remaining -= set(front)
        depth += 1
    return layer


def occlusion_layers(
    visible: Sequence[np.ndarray], amodal: Sequence[np.ndarray], min_pixels: int = 1
) -> tuple[list[int], list[list[int]]]:
    """Masks of N objects in one image -> (layer per object, indices of the objects in front of each)."""
    counts = hidden_counts(visible, amodal)
    in_front = occluders(counts, min_pixels)
    return peel_layers(in_front, counts), in_front
