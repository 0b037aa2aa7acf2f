"""Data passed between the stages.

Conventions used everywhere in gestalt_ros:
- images are H x W x 3 ``uint8`` RGB arrays, row-major (row = y, column = x);
- masks are H x W ``bool`` arrays at the resolution of the image they belong to;
- points are pixel coordinates (x = column, y = row), as rqt_image_view publishes clicks;
- boxes are (x0, y0, x1, y1) pixel coordinates with x1/y1 exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class PointPrompt:
    """A click on the object: x = column, y = row, in pixels."""

    x: float
    y: float


@dataclass(frozen=True)
class BoxPrompt:
    """A box around the object's visible part: (x0, y0) and (x1, y1) are opposite corners."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, eq=False)
class MaskPrompt:
    """The visible part itself, H x W bool (or 0/255 uint8) at the image's resolution."""

    mask: np.ndarray


Prompt = PointPrompt | BoxPrompt | MaskPrompt


@dataclass
class AmodalEstimate:
    """What the amodal stage found for one object.

    ``amodal_mask`` (bool), ``agreement`` (float, per pixel: the fraction of samples that saw
    object there) and ``completion`` (the chosen sample in place, white elsewhere) are at
    the image's resolution; ``completion_crop``, ``completions`` (N, r, r, 3) and
    ``sample_masks`` (N, r, r) are the model's own crops of the window ``crop_box``.
    """

    amodal_mask: np.ndarray
    agreement: np.ndarray
    completion: np.ndarray
    completion_crop: np.ndarray
    completions: np.ndarray
    sample_masks: np.ndarray
    crop_box: BBox
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ObjectResult:
    """Everything the pipeline knows about one prompted object.

    Masks, ``agreement`` (per pixel, the fraction of samples that saw object there) and
    ``completion`` are at the image's resolution and pixel-aligned with it: ``completion`` is
    the sample whose mask agrees best with the vote, placed where the object is (amodal
    mask) on white. ``completion_crop`` is that sample and ``completions`` all of them, as
    the model made them: RGB crops (object on white) of the window ``crop_box``;
    ``sample_masks`` (N, h, w) are each sample's object pixels in that crop.
    """

    visible_mask: np.ndarray
    amodal_mask: np.ndarray
    agreement: np.ndarray
    completion: np.ndarray
    completion_crop: np.ndarray
    completions: np.ndarray
    sample_masks: np.ndarray
    label: str
    score: float
    top_k: list[tuple[str, float]]
    visible_bbox: BBox
    amodal_bbox: BBox
    crop_box: BBox
    occlusion_ratio: float
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready description: the result's fields of an ``objects`` entry (``output.py``)."""
        inside = self.agreement[self.amodal_mask]
        return {
            "label": self.label,
            "score": round(float(self.score), 4),
            "top_k": [[name, round(float(s), 4)] for name, s in self.top_k],
            "visible_bbox": list(self.visible_bbox),
            "amodal_bbox": list(self.amodal_bbox),
            "crop_box": list(self.crop_box),
            "occlusion_ratio": round(float(self.occlusion_ratio), 4),
            "agreement": round(float(inside.mean()) if inside.size else 0.0, 4),
            "visible_area": int(self.visible_mask.sum()),
            "amodal_area": int(self.amodal_mask.sum()),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class SceneInstance:
    """One object a scene method found, before recognition: masks at the image's resolution,
    ``layer`` 0 for the front, ``occluded_by`` the indices (in the method's list) of the
    objects in front of it, ``score`` the method's confidence in [0, 1], and ``completion``
    the synthesized object in the frame (as ``ObjectResult.completion``) where there is one."""

    amodal_mask: np.ndarray
    visible_mask: np.ndarray
    layer: int
    occluded_by: list[int]
    score: float
    completion: np.ndarray | None = None


def mask_bbox(mask: np.ndarray) -> BBox:
    """Tight (x0, y0, x1, y1) box of a non-empty mask, x1/y1 exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask is empty: it has no bounding box")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def touches_border(mask: np.ndarray) -> bool:
    """Whether a mask reaches the frame's edge, where an object's amodal truth may be cut off."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
