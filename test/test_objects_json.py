"""The ``objects`` message schema, without ROS: prompt-mode and scene-mode entries, and what it refuses."""

from __future__ import annotations

import copy

import jsonschema
import numpy as np
import pytest
from conftest import check_objects_message
from pycocotools import mask as mask_utils

from gestalt_ros import objects_json
from gestalt_ros.eval.annotations import encode_rle
from gestalt_ros.scene.pipeline import SceneObjectResult
from gestalt_ros.types import ObjectResult, PointPrompt, SceneInstance

HEAD = objects_json.header(12, 345, "camera_optical")


def _prompt_entry() -> dict:
    visible = np.zeros((8, 10), bool)
    visible[2:5, 3:6] = True
    amodal = visible.copy()
    amodal[2:7, 3:6] = True
    pixels = np.zeros((1, 1, 3), np.uint8)
    result = ObjectResult(
        visible_mask=visible,
        amodal_mask=amodal,
        agreement=amodal.astype(np.float32),
        completion=pixels,
        completion_crop=pixels,
        completions=pixels[None],
        sample_masks=np.zeros((1, 1, 1), bool),
        label="mug",
        score=0.5,
        top_k=[("mug", 0.5)],
        visible_bbox=(3, 2, 6, 5),
        amodal_bbox=(3, 2, 6, 7),
        crop_box=(0, 0, 10, 8),
        occlusion_ratio=0.4,
        timings={"visible": 0.01},
    )
    prompt = objects_json.describe_prompt(PointPrompt(4.0, 3.0), {"sec": 12, "nanosec": 345})
    return objects_json.result_entry(0, result, prompt)


def _scene_entries() -> list[dict]:
    """Two objects: 1 in front (layer 0) hides part of 2 (layer 1); ids as a node would publish them."""
    yy, xx = np.mgrid[:8, :10]
    front = (xx >= 5) & (yy >= 2)
    back = (xx >= 2) & (xx < 8) & (yy >= 3) & (yy < 7)
    objects = [
        SceneObjectResult(1, SceneInstance(front, front, 0, [], 0.9), [], "mug", 0.7, [("mug", 0.7)]),
        SceneObjectResult(2, SceneInstance(back, back & ~front, 1, [0], 0.8), [1], "box", 0.6, [("box", 0.6)]),
    ]
    ids = {1: 7, 2: 8}
    return [
        objects_json.scene_entry(
            ids[o.id], o.summary(), [ids[i] for i in o.occluded_by], encode_rle(o.amodal_mask), {"scene": 0.1}
        )
        for o in objects
    ]


def test_one_schema_validates_both_modes() -> None:
    prompt = _prompt_entry()
    assert check_objects_message(objects_json.message(HEAD, [prompt])) == [prompt]
    assert not set(objects_json.SCENE_FIELDS) & set(prompt), "prompt-mode entries have no scene fields"
    scene = _scene_entries()
    check_objects_message(objects_json.message(HEAD, scene))
    check_objects_message(objects_json.message(HEAD, []))  # a scene frame with nothing found
    failed_frame = objects_json.error_entry(9, None, "failed: RuntimeError: out of memory")
    check_objects_message(objects_json.message(HEAD, [failed_frame]))
    front, back = scene
    assert (back["layer"], back["occluded_by"], back["prompt"], back["error"]) == (1, [7], None, None)
    assert back["timings"] == {"scene": 0.1} and back["crop_box"] == back["amodal_bbox"]
    rle = back["amodal_rle"]
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    assert decoded.sum() == back["amodal_area"] > back["visible_area"], "the hidden part is in the RLE"


def _breaks(change) -> bool:
    """Whether the message with ``change`` applied to a copy of a scene and a prompt entry is refused."""
    entries = copy.deepcopy([*_scene_entries(), _prompt_entry()])
    change(entries)
    try:
        check_objects_message(objects_json.message(HEAD, entries))
    except jsonschema.ValidationError:
        return True
    return False


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("negative layer", lambda e: e[0].update(layer=-1)),
        ("occluded_by of strings", lambda e: e[1].update(occluded_by=["7"])),
        ("layer without amodal_rle", lambda e: e[1].pop("amodal_rle")),
        ("amodal_rle without layer", lambda e: e[1].pop("layer")),
        ("RLE without counts", lambda e: e[1]["amodal_rle"].pop("counts")),
        ("RLE size of three", lambda e: e[1]["amodal_rle"].update(size=[8, 10, 1])),
        ("a scene entry with a prompt", lambda e: e[0].update(prompt=e[2]["prompt"])),
        (
            "a failure with a layer",
            lambda e: e[2].update(dict.fromkeys(objects_json.RESULT_FIELDS), error="x", prompt=None, layer=0),
        ),
        ("an unknown field", lambda e: e[0].update(depth=3)),
    ],
)
def test_the_schema_refuses_malformed_entries(name: str, change) -> None:
    assert not _breaks(lambda e: None), "the unchanged message is valid"
    assert _breaks(change), name
