"""Cut-and-paste and photometric augmentation shared by the example samplers.

Real-photo surfaces (``data/photos.py``) cut in the silhouettes of rendered objects stand in
for the unseen objects of real scenes; colour, blur, noise and JPEG vary the camera.
"""

from __future__ import annotations

import cv2
import numpy as np

from gestalt_ros.data.photos import random_patch
from gestalt_ros.data.scene_store import SceneStore
from gestalt_ros.data.textures import procedural_texture
from gestalt_ros.types import mask_bbox


def silhouette(store: SceneStore, rng: np.random.Generator) -> np.ndarray:
    """A random object's amodal mask cut to its box, maybe rotated by quarter turns."""
    mask = store.amodal_mask(int(rng.integers(len(store))))
    x0, y0, x1, y1 = mask_bbox(mask)
    return np.ascontiguousarray(np.rot90(mask[y0:y1, x0:x1], int(rng.integers(4))))


def surface(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    if rng.uniform() < 0.7:
        return random_patch(rng, height, width)
    return cv2.resize(procedural_texture(rng, 128), (width, height), interpolation=cv2.INTER_LINEAR)


def place(shape: np.ndarray, size: float, cx: float, cy: float, height: int, width: int) -> np.ndarray:
    """``shape`` resized so its longer side is ``size`` and centred at (cx, cy), in an H x W mask."""
    scale = size / max(shape.shape)
    w, h = max(int(round(shape.shape[1] * scale)), 1), max(int(round(shape.shape[0] * scale)), 1)
    small = cv2.resize(shape.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((height, width), np.uint8)
    top, left = int(round(cy - h / 2)), int(round(cx - w / 2))
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, height), min(left + w, width)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return out.astype(bool)


def photometric(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = crop.astype(np.float32) / 255.0
    x = x * rng.uniform(0.6, 1.4) + rng.uniform(-0.15, 0.15)  # contrast, brightness
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.4, 1.5)  # saturation
    x = x * rng.uniform(0.85, 1.15, 3)  # white balance
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.7, 1.4)  # gamma
    if rng.uniform() < 0.25:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.5))
    if rng.uniform() < 0.3:
        x = x + rng.normal(0.0, rng.uniform(0.005, 0.04), x.shape).astype(np.float32)
    out = (np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    if rng.uniform() < 0.25:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out
