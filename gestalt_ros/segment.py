"""``gestalt-ros segment``: the pipeline once on a photo of your own, no ROS.

Writes the visible mask, the amodal mask (both 0/255 PNGs at the photo's size), the
completion placed in the frame and as the model's crop, the overlay, and ``result.json``
(the ``objects`` message schema, as the node publishes it). With ``--scene``, every object
of the photo instead: ``visible_ids.png`` (16-bit, the id seen at each pixel),
``amodal_NN.png`` per object, ``scene_overlay.png`` (layers coloured) and ``result.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from gestalt_ros import objects_json
from gestalt_ros.config import GestaltConfig
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt, Prompt

OUTPUT_FILES = (
    "visible_mask.png",
    "amodal_mask.png",
    "completion.png",
    "completion_crop.png",
    "overlay.png",
    "result.json",
)


class InputError(ValueError):
    """A path, image or prompt the user gave that cannot be used (a one-line message)."""


def _read(path: Path, what: str, flags: int) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"no such {what} file: {path}")
    pixels = cv2.imread(str(path), flags)
    if pixels is None:
        raise InputError(f"cannot read {path} as an image (OpenCV reads PNG, JPEG, BMP, TIFF, WebP, ...)")
    return pixels


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(_read(path, "image", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """White (> 127) is the object."""
    return _read(path, "mask", cv2.IMREAD_GRAYSCALE) > 127


def parse_numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(np.isfinite(values)):
        raise InputError(f"{what} must be {count} comma-separated numbers, got {text!r}")
    return values


def make_prompt(point: str | None, box: str | None, mask: Path | None) -> Prompt:
    if point is not None:
        return PointPrompt(*parse_numbers(point, 2, "--point X,Y"))
    if box is not None:
        return BoxPrompt(*parse_numbers(box, 4, "--box X0,Y0,X1,Y1"))
    assert mask is not None  # argparse requires one of the three
    return MaskPrompt(read_mask(mask))


def segment(image_path: Path, prompt: Prompt, out_dir: Path, config: GestaltConfig) -> dict:
    """Run the pipeline once and write ``OUTPUT_FILES`` to ``out_dir``; returns the result JSON.

    Raises ``InputError`` or ``PromptError`` for inputs that do not fit, before loading models.
    """
    from gestalt_ros.overlay import draw_overlay
    from gestalt_ros.pipeline import GestaltPipeline
    from gestalt_ros.prompts import check_prompt

    image = read_rgb(image_path)
    prompt = check_prompt(prompt, *image.shape[:2])
    result = GestaltPipeline.from_config(config)(image, prompt)
    out_dir.mkdir(parents=True, exist_ok=True)

    def save_rgb(name: str, rgb: np.ndarray) -> None:
        cv2.imwrite(str(out_dir / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    cv2.imwrite(str(out_dir / "visible_mask.png"), result.visible_mask.astype(np.uint8) * 255)
    cv2.imwrite(str(out_dir / "amodal_mask.png"), result.amodal_mask.astype(np.uint8) * 255)
    save_rgb("completion.png", result.completion)
    save_rgb("completion_crop.png", result.completion_crop)
    save_rgb("overlay.png", draw_overlay(image, result))
    entry = objects_json.result_entry(0, result, objects_json.describe_prompt(prompt))
    message = objects_json.message(objects_json.header(0, 0, ""), [entry])
    (out_dir / "result.json").write_text(json.dumps(message, indent=2) + "\n")
    return message


SCENE_FILES = ("visible_ids.png", "scene_overlay.png", "result.json")


def segment_scene(image_path: Path, out_dir: Path, config: GestaltConfig) -> dict:
    """Run the scene pipeline once and write ``SCENE_FILES`` plus ``amodal_NN.png`` per object."""
    from gestalt_ros.eval.annotations import encode_rle
    from gestalt_ros.overlay import draw_scene_overlay
    from gestalt_ros.scene.pipeline import ScenePipeline

    image = read_rgb(image_path)
    result = ScenePipeline.from_config(config)(image)
    out_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_dir / "visible_ids.png"), result.visible_ids())
    for obj in result.objects:
        cv2.imwrite(str(out_dir / f"amodal_{obj.id:02d}.png"), obj.amodal_mask.astype(np.uint8) * 255)
    overlay = draw_scene_overlay(image, result.objects)
    cv2.imwrite(str(out_dir / "scene_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    entries = [
        objects_json.scene_entry(obj.id, obj.summary(), obj.occluded_by, encode_rle(obj.amodal_mask), result.timings)
        for obj in result.objects
    ]
    message = objects_json.message(objects_json.header(0, 0, ""), entries)
    (out_dir / "result.json").write_text(json.dumps(message, indent=2) + "\n")
    return message
