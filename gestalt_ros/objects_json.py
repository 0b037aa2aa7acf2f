"""The ``objects`` message: one JSON schema for every mode (prompt mode and scene mode).

``{"header": {"stamp": {"sec", "nanosec"}, "frame_id"}, "objects": [entry, ...]}``, where
the header is the source image's and each entry describes one object, or says why a
request failed (``error``; the result fields are then null). A prompt's answer has one
entry; a scene frame's message has one per object found (none: an empty list), each with
``layer``, ``occluded_by`` and ``amodal_rle`` and ``prompt`` null. The schema ships as
``gestalt_ros/schemas/objects.schema.json``; the node, ``gestalt-ros segment`` and the tests
all build messages here, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from importlib import resources
from typing import Any

from gestalt_ros.types import BoxPrompt, MaskPrompt, ObjectResult, PointPrompt, Prompt

SCHEMA_FILE = "objects.schema.json"
# The fields an entry takes from ``ObjectResult.summary()``; null in an error entry.
RESULT_FIELDS = (
    "label",
    "score",
    "top_k",
    "visible_bbox",
    "amodal_bbox",
    "crop_box",
    "occlusion_ratio",
    "agreement",
    "visible_area",
    "amodal_area",
    "timings",
)
PROMPT_KINDS = ("point", "box", "mask")
# The fields only a scene entry has (``SceneObjectResult.summary()`` gives the first two).
SCENE_FIELDS = ("layer", "occluded_by", "amodal_rle")


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of an ``objects`` message (package data)."""
    return json.loads(resources.files("gestalt_ros.schemas").joinpath(SCHEMA_FILE).read_text())


def header(sec: int, nanosec: int, frame_id: str) -> dict[str, Any]:
    return {"stamp": {"sec": int(sec), "nanosec": int(nanosec)}, "frame_id": frame_id}


def describe_prompt(
    prompt: Prompt, stamp: dict[str, int] | None = None, fell_back_to_latest: bool = False
) -> dict[str, Any]:
    """The prompt as the request named it: kind, coordinates (not the mask), its stamp.

    ``fell_back_to_latest``: no cached image had the prompt's stamp, so the latest was used.
    """
    out: dict[str, Any] = {"kind": prompt_kind(prompt), "stamp": stamp, "fell_back_to_latest": fell_back_to_latest}
    if not isinstance(prompt, MaskPrompt):
        out.update(dataclasses.asdict(prompt))
    return out


def prompt_kind(prompt: Prompt) -> str:
    if isinstance(prompt, PointPrompt):
        return "point"
    if isinstance(prompt, BoxPrompt):
        return "box"
    if isinstance(prompt, MaskPrompt):
        return "mask"
    raise TypeError(f"unknown prompt type {type(prompt).__name__}")


def result_entry(object_id: int, result: ObjectResult, prompt: dict[str, Any]) -> dict[str, Any]:
    """An entry for a result; ``prompt`` from ``describe_prompt``."""
    return {"id": object_id, **result.summary(), "prompt": prompt, "error": None}


def scene_entry(
    object_id: int,
    summary: dict[str, Any],
    occluded_by: list[int],
    amodal_rle: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    """An entry for one object of a scene; ``summary`` from ``SceneObjectResult.summary()``.

    ``occluded_by``: the ids (as published) of the objects in front of it; ``amodal_rle``:
    its whole amodal mask as COCO RLE; ``timings``: the frame's stage times, where the
    summary has none of its own (they are the whole frame's, shared by its objects).
    """
    return {
        "id": object_id,
        "timings": {stage: round(float(s), 4) for stage, s in timings.items()},
        **summary,
        "occluded_by": list(occluded_by),
        "amodal_rle": amodal_rle,
        "prompt": None,
        "error": None,
    }


def error_entry(object_id: int, prompt: dict[str, Any] | None, error: str) -> dict[str, Any]:
    """An entry for a request that produced no result, with the reason (``prompt`` None: a scene frame)."""
    return {"id": object_id, **dict.fromkeys(RESULT_FIELDS), "prompt": prompt, "error": error}


def message(head: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"header": head, "objects": entries}
