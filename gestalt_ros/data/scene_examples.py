"""Training examples for the scene-layer model: one occlusion layer of a rendered scene.

An example is a scene (from a ``SceneStore``), a layer index k drawn from 0..depth (depth:
an empty layer, which teaches the model to stop), the union of the amodal masks of the
layers before k as the condition, and as targets the union of layer k's amodal masks and
their cores (the part of each object farther from its edge than ``core_fraction`` of its
largest inner distance; cores of touching objects do not touch, which splits instances).
Layers come from ``scene/layers.py``, the same rule the writer uses for the ground truth.

Augmentation, per example: a real-photo background; photo-textured silhouettes pasted on
top as new front objects (they change every layer below them); a camera frame of 4:3, 3:4
or 1:1 cut from the scene and letterboxed as the model sees a camera image
(``scene/framing.py``); photometric changes; a mirror flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gestalt_ros.data.augment import photometric, place, silhouette, surface
from gestalt_ros.data.photos import random_patch
from gestalt_ros.data.scene_store import SceneStore
from gestalt_ros.scene.framing import frame_window
from gestalt_ros.scene.layers import occlusion_layers

MIN_VISIBLE_PX = 10


@dataclass
class LayerExampleConfig:
    """Probabilities and ranges of the layer sampler (``examples`` in the training YAML)."""

    photo_background: float = 0.5
    # Photo-textured silhouettes pasted on top: up to this many, each with ``paste_prob``.
    max_pasted: int = 3
    paste_prob: float = 0.4
    # A camera frame of this fraction of the scene's side (uniform), letterboxed.
    frame_scale: tuple[float, float] = (0.75, 1.0)
    core_fraction: float = 0.4
    photometric: float = 0.8


def scene_masks(store: SceneStore, s: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Visible and amodal masks of scene ``s``'s objects, in store order."""
    objects = np.flatnonzero(store.scene_of == s)
    label = store.labels[s]
    visible = [label == int(store.local[m]) + 1 for m in objects]
    amodal = [store.amodal_mask(int(m)) | v for m, v in zip(objects, visible)]
    return visible, amodal


def core(mask: np.ndarray, fraction: float) -> np.ndarray:
    """The part of ``mask`` farther from its edge than ``fraction`` of its largest inner distance."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return dist > fraction * dist.max() if mask.any() else mask


def sample_layer_example(
    store: SceneStore, s: int, rng: np.random.Generator, resolution: int, cfg: LayerExampleConfig
) -> dict:
    """One example of scene ``s``: ``image`` (r, r, 3) uint8; ``before``, ``layer`` and
    ``core`` (r, r) bool; ``k`` the layer index and ``depth`` the scene's number of layers."""
    image = store.images[s].copy()
    height, width = image.shape[:2]
    visible, amodal = scene_masks(store, s)
    if rng.uniform() < cfg.photo_background:
        background = store.labels[s] == 0
        image[background] = random_patch(rng, height, width)[background]
    for _ in range(cfg.max_pasted):
        if rng.uniform() >= cfg.paste_prob:
            continue
        size = rng.uniform(0.15, 0.45) * min(height, width)
        cover = place(
            silhouette(store, rng), size, rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height, height, width
        )
        if not cover.any():
            continue
        image[cover] = surface(rng, height, width)[cover]
        visible = [v & ~cover for v in visible]
        visible.append(cover)
        amodal.append(cover)
    kept = [i for i, v in enumerate(visible) if v.sum() >= MIN_VISIBLE_PX]
    visible, amodal = [visible[i] for i in kept], [amodal[i] for i in kept]
    layers, _ = occlusion_layers(visible, amodal)
    depth = max(layers, default=-1) + 1
    k = int(rng.integers(depth + 1))
    before = np.zeros((height, width), bool)
    layer = np.zeros((height, width), bool)
    cores = np.zeros((height, width), bool)
    for mask, index in zip(amodal, layers):
        if index < k:
            before |= mask
        elif index == k:
            layer |= mask
            cores |= core(mask, cfg.core_fraction)

    aspect = (4 / 3, 3 / 4, 1.0)[int(rng.integers(3))]
    side = rng.uniform(*cfg.frame_scale) * min(height, width)
    fw, fh = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
    x0, y0 = int(round(rng.uniform(0, width - fw))), int(round(rng.uniform(0, height - fh)))
    fw, fh = int(round(fw)), int(round(fh))
    window = frame_window(fh, fw, x0, y0)
    r = resolution
    # Letterbox bars: outside the camera frame the model sees grey, as at inference.
    inside = np.zeros((height, width), bool)
    inside[y0 : y0 + fh, x0 : x0 + fw] = True
    framed = np.where(inside[..., None], image, np.uint8(127))
    crop = window.crop_image(framed, r)
    if rng.uniform() < cfg.photometric:
        crop = photometric(crop, rng)
    out = {
        "image": crop,
        "before": window.crop_mask(before & inside, r),
        "layer": window.crop_mask(layer & inside, r),
        "core": window.crop_mask(cores & inside, r),
        "k": k,
        "depth": depth,
    }
    if rng.uniform() < 0.5:
        for key in ("image", "before", "layer", "core"):
            out[key] = np.ascontiguousarray(out[key][:, ::-1])
    return out
