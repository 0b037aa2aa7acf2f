"""gestalt_node's scene mode (``mode: scene`` and ``both``) with real rclpy and tiny random models.

The layer model has random weights (conftest's ``tiny_scene_dir``): these tests check the
plumbing (ids, headers, encodings, counters, the worker's queueing), not what it finds.
Where exact objects are needed, the scene pipeline is replaced by one that returns them.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import check_objects_message, tiny_scene_settings

rclpy = pytest.importorskip("rclpy")

from pycocotools import mask as mask_utils
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from test_ros_node import Peer, _header, _node_in_own_process, _same_source, _values

from gestalt_ros.config import GestaltConfig
from gestalt_ros.ros import topics
from gestalt_ros.ros.convert import image_to_ids
from gestalt_ros.ros.node import ID_IMAGE_MODULUS, GestaltNode
from gestalt_ros.scene.pipeline import SceneObjectResult, SceneResult
from gestalt_ros.types import SceneInstance, mask_bbox

SCENE_OUTPUTS = (topics.SCENE_VISIBLE_IDS, topics.SCENE_OVERLAY)
WAIT = 60.0  # seconds; generous: on 2 shared cores one frame can take seconds, and waits end when met


@pytest.fixture()
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _scene_config(base: GestaltConfig, scene_dir: Path, mode: str, *settings: str) -> GestaltConfig:
    return base.with_overrides([*tiny_scene_settings(scene_dir), f"mode={mode}", *settings])


def _node(context, config: GestaltConfig) -> GestaltNode:
    return GestaltNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in config.to_flat().items()]
    )


@pytest.fixture()
def scene_start(context, tiny_pipeline_config: GestaltConfig, tiny_scene_dir: Path):
    """``scene_start(mode, *settings)`` -> (GestaltNode, Peer) with the tiny models, connected."""
    made: list = []

    def _start(mode: str = "scene", *settings: str, image_outputs=SCENE_OUTPUTS) -> tuple[GestaltNode, Peer]:
        config = _scene_config(tiny_pipeline_config, tiny_scene_dir, mode, "ros.status_period=0.1", *settings)
        node = _node(context, config)
        made.append(node)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        peer = Peer(context, node, image_outputs=image_outputs)
        made.append(peer)
        peer.connect()
        return node, peer

    yield _start
    for thing in reversed(made):
        thing.close() if isinstance(thing, Peer) else thing.destroy_node()


def _messages(peer: Peer) -> list[dict]:
    """Every ``objects`` message so far, each validated against the shipped JSON Schema."""
    out = []
    for msg in peer.received[topics.OBJECTS]:
        message = json.loads(msg.data)
        check_objects_message(message)
        out.append(message)
    return out


def _scene_messages(peer: Peer) -> list[dict]:
    """The messages that answer scene frames: no entry has a prompt (an empty list counts)."""
    return [m for m in _messages(peer) if all(e["prompt"] is None for e in m["objects"])]


def _stamped(messages: list[dict], sec: int) -> list[dict]:
    return [m for m in messages if m["header"]["stamp"] == {"sec": sec, "nanosec": 0}]


def _ids_image(msg: Image) -> np.ndarray:
    assert (msg.encoding, msg.is_bigendian, msg.step) == ("mono16", 0, 2 * msg.width)
    ids = np.frombuffer(bytes(msg.data), "<u2").reshape(msg.height, msg.width)
    assert np.array_equal(image_to_ids(msg), ids)
    return ids


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def _check_scene_message(message: dict, ids_msg: Image, source) -> list[dict]:
    """One frame's ``objects`` and ``scene/visible_ids`` agree with each other and with the frame."""
    assert _same_source(ids_msg.header, source)
    assert message["header"] == {
        "stamp": {"sec": source.stamp.sec, "nanosec": source.stamp.nanosec},
        "frame_id": source.frame_id,
    }
    entries = message["objects"]
    ids = {e["id"] for e in entries}
    ids_image = _ids_image(ids_msg)
    assert ids_image.shape == (48, 64)
    shown = set(np.unique(ids_image).tolist()) - {0}
    assert shown <= {i % ID_IMAGE_MODULUS for i in ids}, (shown, ids)
    assert bool(shown) == bool(entries), "every frame with objects shows some of them"
    for entry in entries:
        assert entry["prompt"] is None and entry["error"] is None
        assert set(entry["occluded_by"]) <= ids - {entry["id"]}
        layers = {e["id"]: e["layer"] for e in entries}
        assert all(layers[front] < entry["layer"] for front in entry["occluded_by"])
        amodal = _decode(entry["amodal_rle"])
        assert entry["amodal_rle"]["size"] == [48, 64] and amodal.sum() == entry["amodal_area"]
        assert list(mask_bbox(amodal)) == entry["amodal_bbox"]
        seen = ids_image == entry["id"] % ID_IMAGE_MODULUS
        assert seen.sum() <= entry["visible_area"] and not (seen & ~amodal).any(), "seen only where it is"
    return entries


def test_scene_mode_in_its_own_process(
    tiny_pipeline_config: GestaltConfig, tiny_scene_dir: Path, tmp_path: Path, scene_image
) -> None:
    """As on a robot: every 3rd of 7 frames segmented, each answered on every scene topic with its header."""
    image, _ = scene_image
    config = _scene_config(tiny_pipeline_config, tiny_scene_dir, "scene", "scene.every_n=3", "ros.status_period=0.2")
    with _node_in_own_process(config, tmp_path, image_outputs=SCENE_OUTPUTS) as (peer, log_path, proc):
        peer.connect(timeout=90)
        sources = {sec: _header(sec, 0, f"cam_{sec}") for sec in range(1, 8)}
        for sec, source in sources.items():
            peer.send_image(image, source)
            peer.wait_status(lambda s, n=sec: s["images"]["received"] == n, timeout=WAIT)
            if sec in (1, 4, 7):  # each segmented frame answered before the next is sent: none replaced
                assert peer.spin_until(lambda s=sec: _stamped(_scene_messages(peer), s), timeout=WAIT), sec
        status = peer.wait_status(lambda s: s["scene"]["processed"] == 3, timeout=WAIT)
        peer.send_point(24, 24, sources[7])  # scene mode answers no prompts, and says why
        assert peer.spin_until(lambda: any(e["error"] for m in _messages(peer) for e in m["objects"]), WAIT)
        assert peer.spin_until(lambda: all(len(peer.received[name]) == 3 for name in SCENE_OUTPUTS), WAIT)
        peer.spin_until(lambda: False, timeout=0.5)  # nothing more comes

        messages = _messages(peer)
        scene = _scene_messages(peer)
        assert [m["header"]["stamp"]["sec"] for m in scene] == [1, 4, 7], "every_n=3: frames 1, 4 and 7"
        ids_by_sec = {m.header.stamp.sec: m for m in peer.received[topics.SCENE_VISIBLE_IDS]}
        assert sorted(ids_by_sec) == [1, 4, 7]
        entries = []
        for message in scene:
            sec = message["header"]["stamp"]["sec"]
            entries += _check_scene_message(message, ids_by_sec[sec], sources[sec])
        assert entries, "the tiny layer model finds objects in the scene image"
        assert len({e["id"] for e in entries}) == len(entries), "ids unique since the node started"
        assert all(isinstance(e["label"], str) and 0 <= e["score"] <= 1 for e in entries)
        assert all(e["timings"]["scene"] > 0 for e in entries)
        for msg in peer.received[topics.SCENE_OVERLAY]:
            assert (msg.encoding, msg.height, msg.width) == ("rgb8", 48, 64)
            assert _same_source(msg.header, sources[msg.header.stamp.sec])

        (rejected,) = [m for m in messages if m["objects"] and m["objects"][0]["error"]]
        error = rejected["objects"][0]
        assert error["error"].startswith("rejected (scene_mode)") and error["prompt"]["kind"] == "point"
        status = peer.wait_status(lambda s: s["prompts"]["rejected"].get("scene_mode") == 1, WAIT)
        assert status["mode"] == "scene"
        frames = status["scene"]
        assert (frames["received"], frames["skipped"], frames["processed"], frames["failed"]) == (7, 4, 3, 0)
        assert frames["dropped"] == {} and frames["pending"] == 0 and frames["objects"] == len(entries)
        assert frames["latency_s"]["total"]["p95"] >= frames["latency_s"]["scene"]["p50"] > 0
        assert status["prompts"]["processed"] == 0
        assert peer.spin_until(
            lambda: peer.diagnostics and "scene.latency.total.p95_ms" in _values(peer.diagnostics[-1]), WAIT
        )
        values = _values(peer.diagnostics[-1])
        assert values["mode"] == "scene" and values["scene.processed"] == "3" and values["scene.skipped"] == "4"
    output = log_path.read_text()
    assert "mode scene" in output and proc.returncode == 0 and "Traceback" not in output, output


def test_both_mode_answers_clicks_beside_scenes(scene_start, scene_image) -> None:
    image, visible = scene_image
    node, peer = scene_start("both")
    assert node.scene_pipeline.recognizer is node.pipeline.components.recognizer, "one recognizer for both"
    frame = _header(1, 0, "cam")
    peer.send_image(image, frame)
    peer.wait_status(lambda s: s["images"]["received"] == 1, WAIT)
    peer.send_point(24, 24, frame)  # while the frame is segmented, or queued before it
    peer.send_mask(visible, frame)

    def prompts() -> list[dict]:
        return [m for m in _messages(peer) if m["objects"] and m["objects"][0]["prompt"] is not None]

    assert peer.spin_until(lambda: len(prompts()) == 2 and _scene_messages(peer), timeout=WAIT)
    answers = [m["objects"][0] for m in prompts()]
    assert all(a["error"] is None and "layer" not in a and "amodal_rle" not in a for a in answers)
    assert [a["prompt"]["kind"] for a in answers] == ["point", "mask"]
    (scene,) = _scene_messages(peer)
    assert peer.spin_until(lambda: peer.received[topics.SCENE_VISIBLE_IDS], WAIT)
    entries = _check_scene_message(scene, peer.received[topics.SCENE_VISIBLE_IDS][0], frame)
    all_ids = [a["id"] for a in answers] + [e["id"] for e in entries]
    assert len(set(all_ids)) == len(all_ids), "prompt answers and scene objects share one id counter"
    status = peer.wait_status(lambda s: s["prompts"]["processed"] == 2 and s["scene"]["processed"] == 1, WAIT)
    assert status["mode"] == "both" and status["scene"]["received"] == 1


class _Gated:
    """A scene pipeline that waits for ``gate`` before each frame: a busy worker, on demand."""

    def __init__(self, pipeline) -> None:
        self.pipeline, self.config = pipeline, pipeline.config
        self.gate, self.entered, self.frames = threading.Event(), threading.Event(), []

    def __call__(self, rgb: np.ndarray) -> SceneResult:
        self.frames.append(rgb)
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return self.pipeline(rgb)


def test_a_busy_worker_keeps_only_the_newest_scene_frame(scene_start, scene_image) -> None:
    """Frames keep arriving while the worker segments (not in the image callback): the newest waits."""
    image, _ = scene_image
    node, peer = scene_start("scene")
    gated = node.scene_pipeline = _Gated(node.scene_pipeline)

    def send(sec: int) -> None:
        target = peer.status()["images"]["received"] + 1
        peer.send_image(np.roll(image, sec, axis=1), _header(sec, 0, "cam"))
        peer.wait_status(lambda s: s["images"]["received"] == target, WAIT)

    send(1)
    assert gated.entered.wait(WAIT), "frame 1 reached the worker"
    for sec in (2, 3, 4):  # the image callback keeps running while the worker is busy
        send(sec)
    status = peer.wait_status(lambda s: s["scene"]["dropped"].get("replaced") == 2, WAIT)
    assert status["scene"]["pending"] == 1 and status["scene"]["processed"] == 0
    gated.gate.set()
    assert peer.spin_until(lambda: len(_scene_messages(peer)) == 2, timeout=WAIT)
    assert [m["header"]["stamp"]["sec"] for m in _scene_messages(peer)] == [1, 4], "frames 2 and 3 were replaced"
    assert np.array_equal(gated.frames[1], np.roll(image, 4, axis=1))

    gated.gate.clear()
    gated.entered.clear()
    send(5)
    assert gated.entered.wait(WAIT)
    send(6)  # waits behind frame 5, then the node is deactivated
    peer.wait_status(lambda s: s["scene"]["pending"] == 1, WAIT)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    gated.gate.set()
    status = peer.wait_status(
        lambda s: s["scene"]["dropped"].get("deactivated") == 1 and s["scene"]["processed"] == 3, WAIT
    )
    assert status["scene"]["dropped"] == {"replaced": 2, "deactivated": 1} and status["scene"]["pending"] == 0
    send(7)  # inactive: cached for prompts, not segmented
    assert peer.wait_status(lambda s: s["images"]["received"] == 7, WAIT)["scene"]["received"] == 6


class _Scripted:
    """A scene pipeline that returns the given results (an exception is raised), one per frame."""

    def __init__(self, config: GestaltConfig, results: list) -> None:
        self.config, self.results = config, list(results)

    def __call__(self, rgb: np.ndarray) -> SceneResult:
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def _two_objects() -> tuple[SceneResult, np.ndarray, np.ndarray]:
    """A 48x64 scene: object 1 in front (layer 0) hides the right half of object 2 (layer 1)."""
    yy, xx = np.mgrid[:48, :64]
    front = (xx >= 30) & (xx < 50) & (yy >= 10) & (yy < 40)
    back = (xx >= 10) & (xx < 40) & (yy >= 15) & (yy < 35)
    objects = [
        SceneObjectResult(1, SceneInstance(front, front, 0, [], 0.9), [], "mug", 0.7, [("mug", 0.7), ("cup", 0.2)]),
        SceneObjectResult(2, SceneInstance(back, back & ~front, 1, [0], 0.8), [1], "box", 0.6, [("box", 0.6)]),
    ]
    return SceneResult(objects, 48, 64, {"scene": 0.25, "recognition": 0.05}), front, back


def test_scene_entries_carry_the_nodes_ids_everywhere(scene_start, scene_image) -> None:
    """The pipeline's 1-based ids become the node's counter ids in entries, occluded_by and the id image."""
    image, _ = scene_image
    node, peer = scene_start("scene")
    result, front, back = _two_objects()
    node.scene_pipeline = _Scripted(node.config, [result, RuntimeError("CUDA out of memory"), SceneResult([], 48, 64)])
    node._ids = itertools.count(ID_IMAGE_MODULUS - 1)  # the next ids: 65535, then 65536 (0 in mono16: skipped)
    sources = [_header(sec, 0, "cam") for sec in (1, 2, 3)]
    for n, source in enumerate(sources, start=1):
        peer.send_image(image, source)
        assert peer.spin_until(lambda n=n: len(_messages(peer)) == n, timeout=WAIT), n
    assert peer.spin_until(lambda: len(peer.received[topics.SCENE_VISIBLE_IDS]) == 2, WAIT)
    first, failed, empty = _messages(peer)

    mug, box = first["objects"]
    assert (mug["id"], box["id"]) == (65535, 65537)
    assert (mug["layer"], mug["occluded_by"], box["layer"], box["occluded_by"]) == (0, [], 1, [65535])
    assert (mug["label"], mug["top_k"], box["score"]) == ("mug", [["mug", 0.7], ["cup", 0.2]], 0.6)
    assert box["visible_area"] == (back & ~front).sum() and box["amodal_area"] == back.sum()
    assert box["occlusion_ratio"] == round(1 - (back & ~front).sum() / back.sum(), 4)
    assert np.array_equal(_decode(box["amodal_rle"]), back), "the whole amodal mask, under the mug too"
    assert mug["timings"] == box["timings"] == {"scene": 0.25, "recognition": 0.05}
    ids = _ids_image(peer.received[topics.SCENE_VISIBLE_IDS][0])
    expected = np.zeros((48, 64), np.uint16)
    expected[back & ~front], expected[front] = 65537 % ID_IMAGE_MODULUS, 65535
    assert np.array_equal(ids, expected)
    _check_scene_message(first, peer.received[topics.SCENE_VISIBLE_IDS][0], sources[0])

    (error,) = failed["objects"]
    assert error["error"] == "failed: RuntimeError: CUDA out of memory" and error["prompt"] is None
    assert empty["objects"] == [] and empty["header"]["stamp"]["sec"] == 3, "nothing found: an empty list"
    assert not _ids_image(peer.received[topics.SCENE_VISIBLE_IDS][1]).any()
    status = peer.wait_status(lambda s: s["scene"]["processed"] == 2, WAIT)
    assert status["scene"]["failed"] == 1 and status["scene"]["objects"] == 2 and node._worker.is_alive()


def test_scene_configure_fails_without_its_model_and_prompt_mode_has_no_scene_topics(
    context, tiny_pipeline_config: GestaltConfig, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    missing = _scene_config(tiny_pipeline_config, tiny_scene_dir, "scene", f"scene.weights={tmp_path / 'none'}")
    node = _node(context, missing)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.pipeline is None and node.scene_pipeline is None
    finally:
        node.destroy_node()
    node = _node(context, _scene_config(tiny_pipeline_config, tiny_scene_dir, "prompt"))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        published = {publisher.topic_name for publisher in node.publishers}
        assert "/objects" in published and not {"/scene/visible_ids", "/scene/overlay"} & published, published
        assert node.scene_pipeline is None and node.pipeline is not None
    finally:
        node.destroy_node()
