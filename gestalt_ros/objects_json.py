"""The ``objects`` message: one JSON schema for every mode (prompt mode, and later scene mode).

``{"header": {"stamp": {"sec", "nanosec"}, "frame_id"}, "objects": [entry, ...]}``, where
the header is the source image's and each entry describes one object, or says why a
request failed (``error``; the result fields are then null). The schema ships as
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


def error_entry(object_id: int, prompt: dict[str, Any], error: str) -> dict[str, Any]:
    """An entry for a request that produced no result, with the reason."""
    return {"id": object_id, **dict.fromkeys(RESULT_FIELDS), "prompt": prompt, "error": error}


def message(head: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"header": head, "objects": entries}
