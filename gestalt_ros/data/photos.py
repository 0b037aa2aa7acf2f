"""Real photographs as textures: backgrounds and occluder surfaces for synthetic training.

Renders alone teach a model the renderer's look; pasting real photo regions behind and in
front of the objects makes the statistics it must cope with (sensor noise, clutter, real
materials) part of training. The photos are the sample images that ship inside the
scikit-image wheel (public domain or permissively licensed; see ``skimage.data``), so no
download is needed. Grey ones are tinted with a random colour.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Sample images of the scikit-image wheel that are photographs or photo-like textures.
PHOTO_NAMES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "chelsea",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "clock",
    "page",
    "text",
)


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
    """The photos as H x W x 3 uint8 RGB (grey ones stay one channel until tinted)."""
    import skimage.data

    out = []
    for name in PHOTO_NAMES:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 3:
            image = image[..., :3]
        out.append(np.ascontiguousarray(image.astype(np.uint8)))
    return tuple(out)


def random_patch(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A height x width RGB region of a random photo, at a random scale, flip and rotation."""
    image = photos()[rng.integers(len(photos()))]
    h, w = image.shape[:2]
    # Zoom: the patch covers 15-100% of the photo's shorter side.
    side = rng.uniform(0.15, 1.0) * min(h, w)
    ph, pw = (side, side * width / height) if height >= width else (side * height / width, side)
    ph, pw = int(max(min(ph, h), 2)), int(max(min(pw, w), 2))
    y0, x0 = rng.integers(h - ph + 1), rng.integers(w - pw + 1)
    patch = cv2.resize(image[y0 : y0 + ph, x0 : x0 + pw], (width, height), interpolation=cv2.INTER_AREA)
    if patch.ndim == 2:
        tint = rng.uniform(0.4, 1.0, 3)
        patch = (patch[..., None] * tint).astype(np.uint8)
    if rng.uniform() < 0.5:
        patch = patch[:, ::-1]
    if rng.uniform() < 0.5:
        patch = patch[::-1]
    return np.ascontiguousarray(patch)
