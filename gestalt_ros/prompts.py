"""Prompt checks and the one transform between camera pixels and the model's crop.

The completion model sees a window around the visible part, scaled so that the hidden part
fits, resized to the model's square resolution. ``CropWindow`` is that mapping; the
trainer uses the same class, so training and inference crop identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gestalt_ros.types import BBox, BoxPrompt, MaskPrompt, PointPrompt, Prompt, mask_bbox

# Prompts the evaluation derives from a true visible mask (``prompt_from_mask``).
PROMPT_KINDS = ("point", "box", "mask")


class PromptError(ValueError):
    """A prompt that does not fit the image it refers to."""


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an H x W x 3 uint8 RGB image and return it (C-contiguous)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def check_prompt(prompt: Prompt, height: int, width: int) -> Prompt:
    """Raise ``PromptError`` (showing the value) unless ``prompt`` lies on an H x W image."""
    if isinstance(prompt, PointPrompt):
        if not (np.isfinite(prompt.x) and np.isfinite(prompt.y)):
            raise PromptError(f"point {prompt} is not finite")
        if not (0 <= prompt.x < width and 0 <= prompt.y < height):
            raise PromptError(f"point ({prompt.x}, {prompt.y}) lies outside the {width}x{height} image")
        return prompt
    if isinstance(prompt, BoxPrompt):
        x0, x1 = sorted((prompt.x0, prompt.x1))
        y0, y1 = sorted((prompt.y0, prompt.y1))
        if not all(np.isfinite(v) for v in (x0, y0, x1, y1)):
            raise PromptError(f"box {prompt} is not finite")
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(width)), min(y1, float(height))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise PromptError(f"box {prompt} covers less than 2x2 pixels of the {width}x{height} image")
        return BoxPrompt(x0, y0, x1, y1)
    if isinstance(prompt, MaskPrompt):
        mask = np.asarray(prompt.mask)
        if mask.shape != (height, width):
            raise PromptError(f"mask prompt has shape {mask.shape}, image is {(height, width)}")
        mask = mask > (127 if mask.dtype == np.uint8 else 0)
        if not mask.any():
            raise PromptError("mask prompt is empty")
        return MaskPrompt(mask)
    raise PromptError(f"unknown prompt type {type(prompt).__name__}")


def interior_point(mask: np.ndarray) -> PointPrompt:
    """The mask's pixel farthest from its edge: the click a person would make on the object."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return PointPrompt(float(x), float(y))


def prompt_from_mask(kind: str, visible: np.ndarray) -> Prompt:
    """The evaluation's prompt of ``kind`` for an object's true visible mask: its innermost
    pixel (point), its bounding box (box), or the mask itself (mask)."""
    if kind == "point":
        return interior_point(visible)
    if kind == "box":
        return BoxPrompt(*(float(v) for v in mask_bbox(visible)))
    if kind == "mask":
        return MaskPrompt(visible)
    raise ValueError(f"prompt kind must be one of {PROMPT_KINDS}, got {kind!r}")


@dataclass(frozen=True)
class CropWindow:
    """A window of the camera image, in pixels; may extend past the image borders.

    ``scale`` times the visible box, centred on it, and at least ``min_size`` pixels a side,
    so a small or thin visible part still leaves room for the hidden part. The window is
    square (``max_aspect`` 1) or, for an elongated visible part, up to ``max_aspect`` times
    longer than wide: resized to the model's square crop, a thin object is then stretched
    across its length instead of shrinking to a line one or two crop pixels wide.
    """

    x0: int
    y0: int
    width: int
    height: int

    @classmethod
    def around(cls, visible: np.ndarray, scale: float, max_aspect: float = 1.0, min_size: int = 16) -> CropWindow:
        if max_aspect < 1.0:
            raise ValueError(f"max_aspect must be at least 1, got {max_aspect}")
        x0, y0, x1, y1 = mask_bbox(visible)
        shortest = max(x1 - x0, y1 - y0) / max_aspect
        width = max(int(round(max(x1 - x0, shortest) * scale)), min_size)
        height = max(int(round(max(y1 - y0, shortest) * scale)), min_size)
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        return cls(int(round(cx - width / 2.0)), int(round(cy - height / 2.0)), width, height)

    @classmethod
    def from_box(cls, box: BBox) -> CropWindow:
        """The window whose ``box`` is ``box`` (as stored in ``ObjectResult.crop_box``)."""
        x0, y0, x1, y1 = box
        return cls(x0, y0, x1 - x0, y1 - y0)

    @property
    def box(self) -> BBox:
        return self.x0, self.y0, self.x0 + self.width, self.y0 + self.height

    def clipped(self, height: int, width: int) -> BBox:
        """The part of the window inside a height x width image (x1 <= x0 or y1 <= y0: none)."""
        return max(self.x0, 0), max(self.y0, 0), min(self.x0 + self.width, width), min(self.y0 + self.height, height)

    def _affine(self, resolution: int) -> np.ndarray:
        """Maps window pixel centres (image coordinates) to crop pixel centres."""
        rx, ry = resolution / self.width, resolution / self.height
        return np.array([[rx, 0.0, (0.5 - self.x0) * rx - 0.5], [0.0, ry, (0.5 - self.y0) * ry - 0.5]])

    def crop_image(self, image: np.ndarray, resolution: int, fill: int = 127) -> np.ndarray:
        """H x W x 3 uint8 -> resolution x resolution x 3; grey outside the image.

        An axis the window shrinks is first shrunk with area averaging, so a large object
        is not aliased; the rest of the mapping is one affine warp.
        """
        sx0, sy0, sx1, sy1 = self.clipped(*image.shape[:2])
        out = np.full((resolution, resolution, 3), fill, dtype=np.uint8)
        if sx1 <= sx0 or sy1 <= sy0:
            return out
        rx, ry = resolution / self.width, resolution / self.height
        if min(rx, ry) < 1.0:  # area-average the visible region once, then place it by affine warp
            part = image[sy0:sy1, sx0:sx1]
            pw = max(int(round(part.shape[1] * min(rx, 1.0))), 1)
            ph = max(int(round(part.shape[0] * min(ry, 1.0))), 1)
            part = cv2.resize(part, (pw, ph), interpolation=cv2.INTER_AREA)
            gx, gy = max(rx, 1.0), max(ry, 1.0)  # what is left to enlarge
            m = np.array(
                [[gx, 0.0, 0.5 * gx - 0.5 + (sx0 - self.x0) * rx], [0.0, gy, 0.5 * gy - 0.5 + (sy0 - self.y0) * ry]]
            )
            return cv2.warpAffine(
                part, m, (resolution, resolution), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT
            )
        return cv2.warpAffine(
            image,
            self._affine(resolution),
            (resolution, resolution),
            dst=out,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_TRANSPARENT,
        )

    def crop_mask(self, mask: np.ndarray, resolution: int) -> np.ndarray:
        """H x W bool -> resolution x resolution bool (nearest neighbour; empty outside)."""
        small = cv2.warpAffine(
            mask.astype(np.uint8),
            self._affine(resolution),
            (resolution, resolution),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return small.astype(bool)

    def paste(self, crop: np.ndarray, height: int, width: int, linear: bool = False) -> np.ndarray:
        """resolution x resolution map -> H x W; zero outside the window.

        Nearest neighbour, or with ``linear`` bilinear interpolation of a float map, which a
        caller thresholds afterwards to get edges finer than one crop pixel. Both give the
        window's edge pixels the crop's edge values and nothing beyond.
        """
        is_bool = crop.dtype == bool
        if is_bool and linear:
            raise ValueError("linear paste needs a float map, not a bool mask")
        src = crop.astype(np.uint8) if is_bool else crop
        big = np.zeros((height, width, *src.shape[2:]), src.dtype)
        x0, y0, x1, y1 = self.clipped(height, width)
        if x1 > x0 and y1 > y0:
            # Warp only the window's part of the frame: a small object's window is a small
            # part of a camera frame, and nothing outside it is written.
            to_part = cv2.invertAffineTransform(self._affine(crop.shape[0]))  # crop -> frame
            to_part[:, 2] -= (x0, y0)  # frame -> the part's own pixels
            flags, border = (
                (cv2.INTER_LINEAR, cv2.BORDER_REPLICATE) if linear else (cv2.INTER_NEAREST, cv2.BORDER_CONSTANT)
            )
            big[y0:y1, x0:x1] = cv2.warpAffine(src, to_part, (x1 - x0, y1 - y0), flags=flags, borderMode=border)
        return big.astype(bool) if is_bool else big
