"""Random colours and procedural surface textures for synthetic scenes."""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

TEXTURE_KINDS = ("solid", "noise", "stripes", "checker", "wood")


def random_color(rng: np.random.Generator) -> list[float]:
    """An RGBA colour (opaque) of random hue, saturation and a brightness of at least 0.2."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 1.0), rng.uniform(0.2, 1.0))
    return [*rgb, 1.0]


def procedural_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random surface texture (solid, noise, stripes, checker or wood), RGB uint8."""
    kind = TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
    c1 = np.array(random_color(rng)[:3])
    c2 = np.array(random_color(rng)[:3])
    y, x = np.mgrid[0:size, 0:size] / size
    if kind == "solid":
        t = np.zeros((size, size))
    elif kind == "noise":
        grid = int(rng.integers(3, 24))
        t = cv2.resize(rng.uniform(size=(grid, grid)), (size, size), interpolation=cv2.INTER_CUBIC)
    elif kind == "stripes":
        angle = rng.uniform(0, np.pi)
        u = x * math.cos(angle) + y * math.sin(angle)
        t = (np.sin(2 * np.pi * rng.uniform(3, 30) * u) > rng.uniform(-0.5, 0.5)).astype(float)
    elif kind == "checker":
        n = int(rng.integers(2, 16))
        t = ((np.floor(x * n) + np.floor(y * n)) % 2).astype(float)
    else:
        c1, c2 = (
            np.array([0.75, 0.55, 0.35]) * rng.uniform(0.6, 1.2),
            np.array([0.45, 0.28, 0.15]) * rng.uniform(0.6, 1.2),
        )
        grain = cv2.resize(rng.uniform(size=(4, 32)), (size, size), interpolation=cv2.INTER_CUBIC)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (rng.uniform(4, 20) * y + 2.0 * grain))
    image = c1 * (1 - t[..., None]) + c2 * t[..., None]
    image += rng.normal(0.0, rng.uniform(0.0, 0.05), image.shape)
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
