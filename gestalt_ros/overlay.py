"""Pictures of a result for people: the node's ``overlay`` topic and the demo's PNGs.

No ROS import, so the demo and notebooks can use it. Colours are fixed so that every picture
reads the same way: visible part green, hidden part (amodal minus visible) magenta, the
amodal outline yellow.
"""

from __future__ import annotations

import cv2
import numpy as np

from gestalt_ros.prompts import check_image
from gestalt_ros.types import BBox, ObjectResult, mask_bbox

VISIBLE_RGB = (40, 200, 60)
HIDDEN_RGB = (230, 40, 200)
OUTLINE_RGB = (255, 220, 0)
TINT = 0.5
MIN_PANEL_HEIGHT = 160
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _scale(height: int, width: int) -> tuple[int, float]:
    """Line thickness and font scale that stay legible from 48 px to 4k frames."""
    short = min(height, width)
    return max(1, round(short / 240)), max(0.3, short / 640)


def _tint(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Blend ``colour`` into ``image`` where ``mask`` is set, in place."""
    image[mask] = (image[mask] * (1.0 - TINT) + np.array(colour) * TINT).astype(np.uint8)


def _box(image: np.ndarray, box: BBox, colour: tuple[int, int, int], thickness: int) -> None:
    x0, y0, x1, y1 = box
    cv2.rectangle(image, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), colour, thickness)


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float, thickness: int) -> None:
    """White text on a black band, clamped inside the image, so it reads on any background."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x = min(max(org[0], 0), max(image.shape[1] - tw, 0))
    y = min(max(org[1], th + base), image.shape[0] - 1)
    cv2.rectangle(image, (x, y - th - base), (x + tw, y + base // 2), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x, y - base // 2), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def draw_overlay(image_rgb: np.ndarray, result: ObjectResult) -> np.ndarray:
    """The input with the visible and hidden parts tinted, the amodal outline, both boxes and the label.

    ``image_rgb`` is H x W x 3 uint8 RGB, the image ``result`` was computed on; returns a new array.
    """
    out = check_image(image_rgb).copy()
    visible = result.visible_mask.astype(bool)
    amodal = result.amodal_mask.astype(bool)
    if visible.shape != out.shape[:2] or amodal.shape != out.shape[:2]:
        raise ValueError(f"masks {visible.shape}/{amodal.shape} do not match the image {out.shape[:2]}")
    thickness, font = _scale(*out.shape[:2])
    _tint(out, visible, VISIBLE_RGB)
    _tint(out, amodal & ~visible, HIDDEN_RGB)
    contours, _ = cv2.findContours(amodal.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, OUTLINE_RGB, thickness)
    _box(out, result.visible_bbox, VISIBLE_RGB, thickness)
    _box(out, result.amodal_bbox, HIDDEN_RGB, thickness)
    x0, y0 = result.amodal_bbox[:2]
    _text(out, f"{result.label} {result.score:.2f}", (int(x0), int(y0) - 2), font, thickness)
    return out


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """Resize to ``height`` keeping the aspect ratio; nearest neighbour when enlarging (no invented detail)."""
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interpolation = cv2.INTER_AREA if height < h else cv2.INTER_NEAREST
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _mask_panel(visible: np.ndarray, amodal: np.ndarray | None) -> np.ndarray:
    """Masks on black in the overlay's colours (amodal: hidden part magenta beside the visible green)."""
    panel = np.zeros((*visible.shape, 3), dtype=np.uint8)
    if amodal is not None:
        panel[amodal] = HIDDEN_RGB
    panel[visible] = VISIBLE_RGB
    return panel


def _label_panel(summary: dict, height: int) -> np.ndarray:
    """White panel listing label, top-k scores and occlusion ratio."""
    panel = np.full((height, height, 3), 255, dtype=np.uint8)
    lines = [f"{summary['label']} {summary['score']:.2f}"]
    lines += [f"{name[:18]} {score:.2f}" for name, score in summary["top_k"][1:]]
    lines.append(f"occluded {summary['occlusion_ratio']:.0%}")
    scale = height / 400
    line_height = max(int(height / (len(lines) + 1)), 1)
    for i, line in enumerate(lines, start=1):
        cv2.putText(panel, line, (4, i * line_height), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def contact_row(
    image: np.ndarray, visible: np.ndarray, amodal: np.ndarray, completion: np.ndarray, summary: dict
) -> np.ndarray:
    """input | visible | amodal | completion | label, side by side at one height, as RGB uint8.

    Takes plain arrays and an ``ObjectResult.summary()``-style dict, so it works as well on
    outputs read back from a bag as on a live result. Panels are at least
    ``MIN_PANEL_HEIGHT`` pixels high so that the captions stay readable.
    """
    image = check_image(image)
    visible = visible.astype(bool)
    amodal = amodal.astype(bool)
    height = max(image.shape[0], MIN_PANEL_HEIGHT)
    thickness, font = _scale(height, height)
    panels = []
    for caption, picture in (
        ("input", image),
        ("visible", _mask_panel(visible, None)),
        ("amodal", _mask_panel(visible, amodal)),
        ("completion", check_image(completion)),
    ):
        panel = np.ascontiguousarray(_fit_height(picture, height))
        _text(panel, caption, (0, 0), font, thickness)
        panels.append(panel)
    panels.append(_label_panel(summary, height))
    gap = np.full((height, 2, 3), 128, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.hstack(row)


def eval_row(
    image: np.ndarray, visible: np.ndarray, predicted: np.ndarray, truth: np.ndarray, caption: str
) -> np.ndarray:
    """input | visible | predicted amodal | ground-truth amodal, cropped around the object.

    One row of the evaluation's contact sheet; ``MIN_PANEL_HEIGHT`` pixels high.
    """
    x0, y0, x1, y1 = mask_bbox(predicted | truth | visible)
    margin = max(x1 - x0, y1 - y0) // 4 + 2
    h, w = visible.shape
    x0, y0, x1, y1 = max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, w), min(y1 + margin, h)
    window = (slice(y0, y1), slice(x0, x1))
    height = MIN_PANEL_HEIGHT
    thickness, font = _scale(height, height)
    panels = []
    for name, picture in (
        ("input", check_image(image)[window]),
        ("visible", _mask_panel(visible[window], None)),
        ("predicted", _mask_panel(visible[window], predicted[window])),
        ("truth", _mask_panel(visible[window], truth[window])),
    ):
        panel = np.ascontiguousarray(_fit_height(picture, height))
        _text(panel, name, (0, 0), font, thickness)
        panels.append(panel)
    row = np.hstack([np.pad(p, ((0, 0), (0, 2), (0, 0)), constant_values=128) for p in panels])
    _text(row, caption, (0, height), font, thickness)
    return row


# Scene mode: one colour per occlusion layer, front (0) to back; deeper layers reuse the last.
LAYER_RGB = ((230, 40, 40), (255, 150, 0), (240, 220, 0), (40, 200, 60), (40, 120, 255), (150, 60, 220))


def layer_colour(layer: int) -> tuple[int, int, int]:
    return LAYER_RGB[min(layer, len(LAYER_RGB) - 1)]


def draw_scene_overlay(image_rgb: np.ndarray, objects: list, legend: bool = True) -> np.ndarray:
    """Every object of a scene: its visible part tinted in its layer's colour, its amodal
    outline (hidden part included) in the same colour, and ``id:label L<layer>`` at its box.

    ``objects`` are ``scene.pipeline.SceneObjectResult``s (or anything with ``id``, ``label``,
    ``layer``, ``visible_mask`` and ``amodal_mask``); a legend names the layers' colours.
    """
    out = check_image(image_rgb).copy()
    thickness, font = _scale(*out.shape[:2])
    for obj in sorted(objects, key=lambda o: -o.layer):  # front layers drawn last, on top
        colour = layer_colour(obj.layer)
        _tint(out, obj.visible_mask.astype(bool), colour)
        contours, _ = cv2.findContours(obj.amodal_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, thickness)
    for obj in objects:
        x0, y0 = mask_bbox(obj.amodal_mask)[:2]
        _text(out, f"{obj.id}:{obj.label} L{obj.layer}", (int(x0), int(y0) - 2), font * 0.8, thickness)
    if legend and objects:
        depth = max(o.layer for o in objects) + 1
        (tw, th), _ = cv2.getTextSize("L0", _FONT, font, thickness)
        for k in range(depth):
            x = 4 + k * (tw + 12)
            cv2.rectangle(out, (x, out.shape[0] - th - 8), (x + tw + 8, out.shape[0] - 2), layer_colour(k), cv2.FILLED)
            cv2.putText(out, f"L{k}", (x + 4, out.shape[0] - 5), _FONT, font, (0, 0, 0), thickness, cv2.LINE_AA)
    return out
