"""gestalt_node with real rclpy and the tiny pipeline: in one process, then across two.

Fast DDS reads its profile file once per process, when the first participant is created, so
this module sets the shipped writer profile at import (before any test creates one): the
two-process test publishes a 640x480 rgb8 image best-effort, which is lost without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import py_compile
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import check_objects_message, node_in_own_process, tiny_scene_settings

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point, Point32, PointStamped, Polygon, PolygonStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from gestalt_ros.config import GestaltConfig
from gestalt_ros.overlay import contact_row, draw_overlay
from gestalt_ros.resources import PROFILE_ENV, fastdds_profile
from gestalt_ros.ros import convert, topics
from gestalt_ros.ros.node import GestaltNode, main, parameter_descriptions
from gestalt_ros.ros.qos import reliable_qos

os.environ.setdefault(PROFILE_ENV, str(fastdds_profile()))

ROOT = Path(__file__).resolve().parents[1]
IMAGE_OUTPUTS = (topics.VISIBLE_MASK, topics.AMODAL_MASK, topics.COMPLETION, topics.OVERLAY)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


def _header(sec: int, nanosec: int, frame_id: str) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _same_source(msg_header: Header, source: Header) -> bool:
    return convert.stamp_key(msg_header) == convert.stamp_key(source) and msg_header.frame_id == source.frame_id


class Peer:
    """A node beside the one under test: publishes inputs, records outputs, spins both."""

    def __init__(
        self,
        context: rclpy.Context,
        *nodes: rclpy.node.Node,
        output_qos: QoSProfile | None = None,
        image_outputs: tuple[str, ...] = IMAGE_OUTPUTS,
    ) -> None:
        self.node = rclpy.create_node("gestalt_peer", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        for node in (*nodes, self.node):
            self.executor.add_node(node)
        self.received: dict[str, list] = {name: [] for name in (*image_outputs, topics.OBJECTS, topics.STATUS)}
        for name in image_outputs:
            self.node.create_subscription(Image, name, self.received[name].append, output_qos or reliable_qos())
        for name in (topics.OBJECTS, topics.STATUS):
            self.node.create_subscription(String, name, self.received[name].append, reliable_qos())
        self._objects: list[dict] = []
        self._scanned, self._answered = 0, set()
        self.diagnostics: list[DiagnosticArray] = []
        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self.diagnostics.append, reliable_qos())
        self.image = self.node.create_publisher(Image, topics.IMAGE, BEST_EFFORT)
        self.point = self.node.create_publisher(PointStamped, topics.PROMPT_POINT, reliable_qos())
        self.box = self.node.create_publisher(PolygonStamped, topics.PROMPT_BOX, reliable_qos())
        self.mask = self.node.create_publisher(Image, topics.PROMPT_MASK, reliable_qos())

    def spin_until(self, done: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def connect(self, timeout: float = 10.0) -> None:
        publishers = (self.image, self.point, self.box, self.mask)
        assert self.spin_until(
            lambda: all(p.get_subscription_count() > 0 for p in publishers) and self.status() is not None, timeout
        ), "gestalt_node did not connect"

    def status(self) -> dict | None:
        messages = self.received[topics.STATUS]
        return json.loads(messages[-1].data) if messages else None

    def wait_status(self, check: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        assert self.spin_until(lambda: (s := self.status()) is not None and check(s), timeout), self.status()
        return self.status()

    def wait_outputs(self, count: int, timeout: float = 20.0) -> None:
        assert self.spin_until(
            lambda: all(len(v) >= count for k, v in self.received.items() if k != topics.STATUS), timeout
        ), {k: len(v) for k, v in self.received.items()}

    def objects(self) -> list[dict]:
        """Every ``objects`` message so far, each checked against the shipped JSON Schema once."""
        for msg in self.received[topics.OBJECTS][len(self._objects) :]:
            message = json.loads(msg.data)
            assert len(check_objects_message(message)) == 1, "prompt mode: one entry per message"
            self._objects.append(message)
        return list(self._objects)

    def answered(self, sec: int, nanosec: int = 0) -> bool:
        """Whether a result with this image stamp arrived (a cheap check while spinning; no schema validation)."""
        for msg in self.received[topics.OBJECTS][self._scanned :]:
            message = json.loads(msg.data)
            self._scanned += 1
            if message["objects"][0]["error"] is None:
                stamp = message["header"]["stamp"]
                self._answered.add((stamp["sec"], stamp["nanosec"]))
        return (sec, nanosec) in self._answered

    def answers(self) -> list[dict]:
        """The entries of ``objects`` messages that carry a result, each with its message's header."""
        return [{**m["objects"][0], "header": m["header"]} for m in self.objects() if m["objects"][0]["error"] is None]

    def errors(self) -> list[dict]:
        return [m["objects"][0] for m in self.objects() if m["objects"][0]["error"] is not None]

    # inputs
    def send_image(self, rgb: np.ndarray, header: Header) -> None:
        self.image.publish(convert.rgb_to_image(rgb, header))

    def send_point(self, x: float, y: float, header: Header) -> None:
        self.point.publish(PointStamped(header=header, point=Point(x=float(x), y=float(y))))

    def send_box(self, corner_a: tuple[float, float], corner_b: tuple[float, float], header: Header) -> None:
        msg = PolygonStamped(header=header)
        msg.polygon.points = [Point32(x=float(x), y=float(y)) for x, y in (corner_a, corner_b)]
        self.box.publish(msg)

    def send_mask(self, mask: np.ndarray, header: Header) -> None:
        self.mask.publish(convert.mask_to_image(mask, header))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture()
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture()
def start(context, tiny_pipeline_config: GestaltConfig):
    """``start(**overrides)`` -> (GestaltNode, Peer), connected; both destroyed afterwards."""
    made: list = []

    def _start(image_outputs: tuple[str, ...] = IMAGE_OUTPUTS, **overrides) -> tuple[GestaltNode, Peer]:
        flat = {**tiny_pipeline_config.to_flat(), "ros.status_period": 0.1, **overrides}
        node = GestaltNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in flat.items()])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        peer = Peer(context, node, image_outputs=image_outputs)
        made.extend([peer, node])
        peer.connect()
        return node, peer

    yield _start
    for thing in made:
        thing.close() if isinstance(thing, Peer) else thing.destroy_node()


def test_parameters_are_the_config_with_descriptions(start) -> None:
    node, _ = start(**{"completion.eta": 0.5, "ros.image_cache_size": 3})
    flat = GestaltConfig().to_flat()
    assert set(node.get_parameters_by_prefix("")) >= set(flat)
    descriptions = parameter_descriptions()
    assert set(descriptions) == set(flat) and all(descriptions.values())
    assert "Fraction of samples" in descriptions["amodal.vote_threshold"]  # from the field's comment
    described = node.describe_parameters(["amodal.vote_threshold"])[0]
    assert described.description == descriptions["amodal.vote_threshold"] and not described.read_only
    assert node.describe_parameters(["completion.weights"])[0].read_only, "model files need a new configure"
    assert (node.config.completion.eta, node.config.ros.image_cache_size) == (0.5, 3)


def test_every_prompt_kind_answers_on_every_topic_with_its_image_header(start, scene_image) -> None:
    image, visible = scene_image
    _, peer = start()
    sources = {kind: _header(i + 1, 100 * (i + 1), f"cam_{kind}") for i, kind in enumerate(("point", "box", "mask"))}
    for i, header in enumerate(sources.values()):  # three different frames in the cache
        peer.send_image(np.roll(image, i, axis=1), header)
        peer.wait_status(lambda s, n=i + 1: s["images"]["received"] == n)  # image_depth 1: one at a time
    peer.send_point(24, 24, sources["point"])
    peer.send_box((16, 12), (34, 37), sources["box"])
    peer.send_mask(np.roll(visible, 2, axis=1), sources["mask"])
    peer.wait_outputs(3)

    for name in IMAGE_OUTPUTS:
        frames = sorted(m.header.frame_id for m in peer.received[name])
        assert frames == sorted(h.frame_id for h in sources.values()), name
        for msg in peer.received[name]:
            assert _same_source(msg.header, sources[msg.header.frame_id[4:]]), name
    for name in (topics.VISIBLE_MASK, topics.AMODAL_MASK):
        for msg in peer.received[name]:
            assert (msg.encoding, msg.height, msg.width, msg.step) == ("mono8", 48, 64, 64)
            values = np.frombuffer(msg.data, np.uint8)
            assert set(np.unique(values)) == {0, 255}, name
    for msg in peer.received[topics.OVERLAY]:
        assert (msg.encoding, msg.height, msg.width) == ("rgb8", 48, 64)
    amodal_by_frame = {m.header.frame_id: convert.image_to_mask(m) for m in peer.received[topics.AMODAL_MASK]}
    for msg in peer.received[topics.COMPLETION]:  # the camera's resolution, pixel-aligned with it
        assert (msg.encoding, msg.height, msg.width) == ("rgb8", 48, 64)
        completion = convert.image_to_rgb(msg)
        amodal = amodal_by_frame[msg.header.frame_id]
        assert (completion[~amodal] == 255).all(), "white outside the object"
        assert (completion[amodal] != 255).any(), "the synthesized object where the amodal mask is"
    answers = peer.answers()
    assert len(answers) == 3 and not peer.errors()
    for obj in answers:
        kind = obj["prompt"]["kind"]
        assert obj["header"]["frame_id"] == f"cam_{kind}" and not obj["prompt"]["fell_back_to_latest"]
        assert obj["header"]["stamp"] == {"sec": sources[kind].stamp.sec, "nanosec": sources[kind].stamp.nanosec}
        assert obj["prompt"]["stamp"] == obj["header"]["stamp"]
        assert isinstance(obj["label"], str) and 0.0 <= obj["score"] <= 1.0 and obj["amodal_area"] > 0
        x0, y0, x1, y1 = obj["crop_box"]
        assert x1 - x0 >= 16 and y1 - y0 >= 16, "the window the model saw"
    assert (answers[0]["prompt"]["x"], answers[0]["prompt"]["y"]) == (24, 24)
    assert len({obj["id"] for obj in answers}) == 3, "ids are unique"
    status = peer.wait_status(lambda s: s["prompts"]["processed"] == 3)
    assert status["prompts"]["rejected"] == {} and status["prompts"]["fell_back_to_latest"] == 0


def test_prompts_on_one_frame_set_the_image_once(start, scene_image) -> None:
    image, visible = scene_image
    node, peer = start()
    frames = []
    set_image = node.pipeline.set_image
    node.pipeline.set_image = lambda rgb: (frames.append(rgb), set_image(rgb))
    first, second = _header(1, 0, "cam"), _header(2, 0, "cam")
    for n, header in enumerate((first, second), start=1):
        peer.send_image(np.roll(image, n, axis=1), header)
        peer.wait_status(lambda s, n=n: s["images"]["received"] == n)
    peer.send_point(24, 24, first)
    peer.send_box((16, 12), (34, 37), first)
    peer.send_mask(visible, first)
    peer.send_point(25, 24, second)
    peer.wait_outputs(4)
    assert len(frames) == 2, "three prompts on the first frame embed it once, the second frame once"
    assert [a["header"]["stamp"]["sec"] for a in peer.answers()] == [1, 1, 1, 2]


def test_bad_inputs_are_counted_and_the_node_keeps_serving(start, scene_image) -> None:
    image, _ = scene_image
    _, peer = start()
    peer.send_point(10, 10, _header(1, 0, "cam"))  # before any image
    peer.wait_status(lambda s: s["prompts"]["rejected"].get("no_image") == 1)

    bgr16 = Image(header=_header(2, 0, "cam"), height=48, width=64, encoding="bgr16", step=64 * 6)
    bgr16.data = bytes(64 * 6 * 48)
    empty = Image(header=_header(3, 0, "cam"), height=0, width=0, encoding="rgb8", step=0)
    short = convert.rgb_to_image(image, _header(4, 0, "cam"))
    short.data = short.data[:-1]
    good = _header(5, 0, "cam")
    for n, msg in enumerate((bgr16, empty, short, convert.rgb_to_image(image, good)), start=1):
        peer.image.publish(msg)
        peer.wait_status(lambda s, n=n: s["images"]["received"] == n)

    peer.send_point(100, 5, good)  # outside the 64x48 image
    peer.send_box((10, 10), (10, 30), good)  # zero width
    peer.send_mask(np.ones((10, 10), bool), good)  # wrong size
    peer.send_point(24, 24, good)
    peer.wait_outputs(1)
    status = peer.wait_status(lambda s: s["prompts"]["processed"] == 1)
    assert status["images"]["rejected"] == {"bad_encoding": 1, "empty": 1, "bad_length": 1}
    assert status["prompts"]["rejected"] == {"no_image": 1, "invalid_prompt": 3}
    assert status["prompts"]["received"] == 5 and status["prompts"]["failed"] == 0
    assert all(_same_source(m.header, good) for m in peer.received[topics.AMODAL_MASK])
    # every rejected request is answered on `objects`, with the reason and nulls for the result
    assert peer.spin_until(lambda: len(peer.errors()) == 4)
    errors = peer.errors()
    assert [e["prompt"]["kind"] for e in errors] == ["point", "point", "box", "mask"]
    assert "no_image" in errors[0]["error"] and "outside" in errors[1]["error"]
    assert all(e["label"] is None and e["amodal_bbox"] is None for e in errors)
    assert len(peer.answers()) == 1


def test_unknown_stamp_falls_back_to_latest_image_and_is_counted(start, scene_image) -> None:
    image, _ = scene_image
    _, peer = start()
    latest = _header(2, 0, "latest")
    for n, header in enumerate((_header(1, 0, "older"), latest), start=1):
        peer.send_image(image, header)
        peer.wait_status(lambda s, n=n: s["images"]["received"] == n)
    peer.send_point(24, 24, _header(9, 9, "cam"))
    peer.wait_outputs(1)
    assert all(_same_source(peer.received[name][0].header, latest) for name in IMAGE_OUTPUTS)
    assert peer.answers()[0]["prompt"]["fell_back_to_latest"]
    assert peer.answers()[0]["header"]["frame_id"] == "latest"
    assert peer.wait_status(lambda s: s["prompts"]["processed"] == 1)["prompts"]["fell_back_to_latest"] == 1


def _cache_images(peer: Peer, image: np.ndarray, *headers: Header) -> None:
    for n, header in enumerate(headers, start=1):
        peer.send_image(image, header)
        peer.wait_status(lambda s, n=n: s["images"]["received"] == n)


def _first_answer_source(peer: Peer) -> tuple[str, bool]:
    """The frame_id of the image the first answer was served on, and whether it fell back."""
    peer.wait_outputs(1)
    answer = peer.answers()[0]
    return answer["header"]["frame_id"], answer["prompt"]["fell_back_to_latest"]


def _prompt_waiting_for_its_image(start, image: np.ndarray) -> tuple[GestaltNode, Peer]:
    """A node (ros.frame_wait 30 s) with frame (1, 0) cached and a click stamped (5, 0) waiting for its frame."""
    node, peer = start(**{"ros.frame_wait": 30.0})
    _cache_images(peer, image, _header(1, 0, "previous"))
    peer.send_point(24, 24, _header(5, 0, "cam"))
    peer.wait_status(lambda s: s["prompts"]["awaited_frame"] == 1)
    return node, peer


def test_a_prompt_that_arrives_before_its_image_waits_for_it(start, scene_image) -> None:
    """A frame and its prompt travel on separate topics: the prompt may come first (seen in CI)."""
    image, _ = scene_image
    _, peer = _prompt_waiting_for_its_image(start, image)
    assert not peer.received[topics.OBJECTS], "served before its image came"
    peer.send_image(image, _header(5, 0, "own"))
    assert _first_answer_source(peer) == ("own", False)
    assert peer.wait_status(lambda s: s["prompts"]["processed"] == 1)["prompts"]["fell_back_to_latest"] == 0


def test_the_wait_ends_at_frame_wait_or_at_a_later_image(start, scene_image) -> None:
    image, _ = scene_image
    _, peer = start(**{"ros.frame_wait": 0.5})
    _cache_images(peer, image, _header(1, 0, "previous"))
    sent = time.monotonic()
    peer.send_point(24, 24, _header(5, 0, "cam"))
    assert _first_answer_source(peer) == ("previous", True)
    assert time.monotonic() - sent >= 0.5, "served before ros.frame_wait passed"

    _, peer = _prompt_waiting_for_its_image(start, image)  # its frame was lost: the next one ends the wait
    peer.send_image(image, _header(6, 0, "later"))
    assert _first_answer_source(peer) == ("later", True)  # well within the 30 s wait


@pytest.mark.parametrize(
    ("frame_wait", "cached", "prompt_sec"),
    [
        pytest.param(0.0, (1,), 5, id="no frame wait"),
        pytest.param(30.0, (1, 3), 2, id="inside the cached span: its frame was lost between two"),
    ],
)
def test_a_prompt_that_does_not_wait_takes_the_latest_image(start, scene_image, frame_wait, cached, prompt_sec) -> None:
    image, _ = scene_image
    _, peer = start(**{"ros.frame_wait": frame_wait})
    _cache_images(peer, image, *(_header(sec, 0, f"cam{sec}") for sec in cached))
    peer.send_point(24, 24, _header(prompt_sec, 0, "cam"))
    assert _first_answer_source(peer) == (f"cam{cached[-1]}", True)  # within 10 s, so no 30 s wait
    assert peer.status()["prompts"]["awaited_frame"] == 0


def test_a_prompt_waiting_for_its_image_is_answered_on_deactivate(start, scene_image) -> None:
    image, _ = scene_image
    node, peer = _prompt_waiting_for_its_image(start, image)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert peer.spin_until(lambda: len(peer.errors()) == 1)
    assert "deactivated" in peer.errors()[0]["error"] and peer.errors()[0]["prompt"]["stamp"]["sec"] == 5


def test_full_queue_drops_the_oldest_prompt(start, scene_image) -> None:
    image, _ = scene_image
    _, peer = start(**{"ros.max_pending_prompts": 1})
    header = _header(1, 0, "cam")
    peer.send_image(image, header)
    peer.wait_status(lambda s: s["images"]["received"] == 1)
    for _ in range(6):
        peer.send_point(24, 24, header)
    status = peer.wait_status(
        lambda s: s["prompts"]["processed"] + s["prompts"]["dropped"] == 6 and s["prompts"]["pending"] == 0, timeout=20
    )
    assert status["prompts"]["dropped"] >= 1
    assert peer.spin_until(lambda: len(peer.objects()) == 6), "a dropped prompt is answered too"
    assert len(peer.errors()) == status["prompts"]["dropped"]
    assert all(e["error"].startswith("dropped") for e in peer.errors())

    # the drops turn /diagnostics to WARN and are counted there by the same names
    assert peer.spin_until(lambda: any(_level(d) == DiagnosticStatus.WARN for d in peer.diagnostics))
    warn = next(d for d in peer.diagnostics if _level(d) == DiagnosticStatus.WARN)
    assert "dropped" in warn.status[0].message and int(_values(warn)["prompts.dropped"]) >= 1


def _level(array: DiagnosticArray) -> bytes:
    return array.status[0].level  # a byte field: compared with DiagnosticStatus.OK/WARN/ERROR as bytes


def _values(array: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in array.status[0].values}


def test_diagnostics_report_latency_and_counts(start, scene_image) -> None:
    image, visible = scene_image
    node, peer = start()
    header = _header(1, 0, "cam")
    peer.send_image(image, header)
    peer.wait_status(lambda s: s["images"]["received"] == 1)
    peer.send_mask(visible, header)
    peer.wait_outputs(1)
    assert peer.spin_until(lambda: peer.diagnostics and "latency.total.p95_ms" in _values(peer.diagnostics[-1]))
    last = peer.diagnostics[-1]
    values = _values(last)
    assert _level(last) == DiagnosticStatus.OK and last.status[0].hardware_id == "cpu"
    assert values["prompts.processed"] == "1" and values["images.received"] == "1" and values["active"] == "true"
    for stage in ("visible", "completion", "amodal", "recognition", "publish", "total"):
        assert float(values[f"latency.{stage}.p95_ms"]) >= 0.0, stage
    assert float(values["latency.total.last_ms"]) >= float(values["latency.completion.last_ms"])
    assert float(values["device.peak_rss_mib"]) > 100
    status = peer.status()
    assert status["latency_s"]["total"]["p50"] > 0, "status carries the same numbers"


@pytest.mark.parametrize("mode", ["prompt", "both"])
def test_lifecycle_transitions_free_the_models(context, tiny_pipeline_config, scene_image, mode, request) -> None:
    import gc
    import weakref

    image, visible = scene_image
    config = tiny_pipeline_config
    if mode == "both":  # the scene pipeline too (its frames come only from images sent while active)
        config = config.with_overrides([*tiny_scene_settings(request.getfixturevalue("tiny_scene_dir")), "mode=both"])
    flat = {**config.to_flat(), "ros.status_period": 0.1}
    node = GestaltNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in flat.items()])
    peer = Peer(context, node)
    try:
        assert node.pipeline is None and node.scene_pipeline is None, "nothing loads before configure"
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.pipeline is not None
        amodal = node.pipeline.components.amodal  # the default, both: diffusion model + single-pass network
        models = [weakref.ref(amodal.synthesis.completer.model), weakref.ref(amodal.refiner.predictor.model)]
        del amodal
        if mode == "both":
            models.append(weakref.ref(node.scene_pipeline.method.model))
            models.append(weakref.ref(node.scene_pipeline.recognizer))
        else:
            assert node.scene_pipeline is None, "prompt mode builds no scene pipeline"
        header = _header(1, 0, "cam")
        peer.connect()
        peer.send_image(image, header)
        peer.wait_status(lambda s: s["images"]["received"] == 1)
        peer.send_mask(visible, header)  # configured but inactive: refused and counted
        peer.wait_status(lambda s: s["prompts"]["rejected"].get("inactive") == 1)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        peer.send_mask(visible, header)
        peer.wait_outputs(1)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        peer.send_mask(visible, header)
        peer.wait_status(lambda s: s["prompts"]["rejected"].get("inactive") == 2)
        assert len(peer.answers()) == 1, "nothing is answered while inactive"
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        peer.send_mask(visible, header)
        assert peer.spin_until(lambda: len(peer.answers()) == 2), "active again: served again"
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        gc.collect()
        assert node.pipeline is None and node.scene_pipeline is None
        assert all(m() is None for m in models), "cleanup frees the models"
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, "and configure loads them again"
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS and node.pipeline is None
    finally:
        peer.close()
        node.destroy_node()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without CUDA")
def test_a_missing_gpu_fails_configure_or_falls_back(context, tiny_pipeline_config) -> None:
    flat = {**tiny_pipeline_config.to_flat(), "device": "cuda"}
    node = GestaltNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in flat.items()])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE and node.pipeline is None
    finally:
        node.destroy_node()
    flat["allow_cpu_fallback"] = True
    node = GestaltNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in flat.items()])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.pipeline.config.device == "cpu" and node.config.device == "cuda"
    finally:
        node.destroy_node()


def test_dynamic_parameters_are_validated_by_the_config(start) -> None:
    node, _ = start()
    ok = node.set_parameters(
        [Parameter("completion.num_samples", value=3), Parameter("amodal.vote_threshold", value=0.5)]
    )
    assert all(r.successful for r in ok)
    assert node.pipeline.config.completion.num_samples == 3 and node.pipeline.config.amodal.vote_threshold == 0.5
    bad = node.set_parameters([Parameter("amodal.vote_threshold", value=1.5)])[0]
    assert not bad.successful and "must lie in [0.0, 1.0]" in bad.reason
    assert node.pipeline.config.amodal.vote_threshold == 0.5, "a rejected value changes nothing"
    fixed = node.set_parameters([Parameter("completion.weights", value="/elsewhere")])[0]
    assert not fixed.successful and "read-only" in fixed.reason


def test_overlay_pictures(tiny_pipeline_config: GestaltConfig, scene_image) -> None:
    from gestalt_ros.pipeline import GestaltPipeline
    from gestalt_ros.types import PointPrompt

    image, _ = scene_image
    result = GestaltPipeline.from_config(tiny_pipeline_config)(image, PointPrompt(24, 24))
    overlay = draw_overlay(image, result)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    assert not np.array_equal(overlay[result.visible_mask], image[result.visible_mask])
    row = contact_row(image, result.visible_mask, result.amodal_mask, result.completion, result.summary())
    assert row.dtype == np.uint8 and row.shape[0] == 160 and row.shape[1] > 4 * 160


def test_main_help_lists_parameters_and_rejects_stray_arguments(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "completion.num_samples = 4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--bogus"])
    assert info.value.code == 2


@pytest.mark.parametrize(("interrupted", "code"), [(True, 0), (False, 1)])
def test_main_exits_cleanly_on_ctrl_c_while_configuring(monkeypatch, interrupted, code) -> None:
    """Ctrl-C during the model load shuts the context down and fails configure: exit 0, not an error."""

    def configure(node) -> TransitionCallbackReturn:
        if interrupted:
            rclpy.shutdown()  # what rclpy's SIGINT handler does
        return TransitionCallbackReturn.FAILURE

    monkeypatch.setattr(GestaltNode, "trigger_configure", configure)
    assert main([]) == code


@contextlib.contextmanager
def _node_in_own_process(config: GestaltConfig, tmp_path: Path, *ros_args: str, env=None, **peer_kwargs):
    """``gestalt_node`` in a subprocess (conftest's ``node_in_own_process``) and a ``Peer`` here.

    Yields (peer, log path, process).
    """
    with node_in_own_process(config, tmp_path, *ros_args, env=env) as (log_path, proc):
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        peer = None
        try:
            peer = Peer(ctx, **peer_kwargs)
            yield peer, log_path, proc
        finally:
            if peer is not None:
                peer.close()
            rclpy.try_shutdown(context=ctx)


def test_two_processes_large_best_effort_image(tiny_pipeline_config: GestaltConfig, tmp_path: Path) -> None:
    """The node in its own process; a 640x480 rgb8 frame goes best-effort, large outputs come back best-effort."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(PROFILE_ENV)  # main() must pick the shipped profile by itself
    deadline = time.monotonic() + 60
    process = _node_in_own_process(
        tiny_pipeline_config, tmp_path, "-p", "completion.num_samples:=2", env=env, output_qos=BEST_EFFORT
    )
    with process as (peer, log_path, proc):
        peer.connect(timeout=deadline - time.monotonic())
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 60, (480, 640, 3), dtype=np.uint8)
        frame[150:330, 220:420] = (220, 40, 40)
        source = _header(1234, 5678, "camera_optical")
        sent = 0
        while peer.status()["images"]["received"] == 0 and time.monotonic() < deadline:
            peer.send_image(frame, source)  # best-effort: resent until the node counts it
            sent += 1
            peer.spin_until(lambda: peer.status()["images"]["received"] > 0, timeout=1.0)
        assert peer.status()["images"]["received"] > 0, "no 640x480 rgb8 frame reached the node"
        peer.send_point(320, 240, source)
        peer.wait_outputs(1, timeout=max(deadline - time.monotonic(), 1.0))
        for name in IMAGE_OUTPUTS:
            assert _same_source(peer.received[name][0].header, source), name
        amodal = peer.received[topics.AMODAL_MASK][0]
        assert (amodal.height, amodal.width, amodal.encoding) == (480, 640, "mono8")
        assert len(peer.received[topics.OVERLAY][0].data) == 640 * 480 * 3  # needs the node's SHM profile
        assert peer.answers()[0]["header"]["frame_id"] == "camera_optical"
        completion = peer.received[topics.COMPLETION][0]
        assert (completion.height, completion.width, completion.encoding) == (480, 640, "rgb8")
        assert sent <= 2, f"{sent} sends before the node received a frame"
    output = log_path.read_text()
    assert "shipped" in output and "fastdds_shm.xml" in output, output
    assert proc.returncode == 0 and "Traceback" not in output, output


def test_launch_file_compiles_and_names_the_node(tmp_path: Path) -> None:
    path = ROOT / "launch" / "gestalt.launch.py"
    py_compile.compile(str(path), cfile=str(tmp_path / "launch.pyc"), doraise=True)
    text = path.read_text()
    for needle in (
        '"gestalt_node"',
        '"gestalt_ros"',
        '"gestalt.yaml"',
        '"params_file"',
        '"image_topic"',
        '"namespace"',
        '"device"',
        "FASTDDS_DEFAULT_PROFILES_FILE",
        '"fastdds_shm.xml"',
    ):
        assert needle in text, needle


def test_launch_description_builds() -> None:
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    import importlib.util

    spec = importlib.util.spec_from_file_location("gestalt_launch", ROOT / "launch" / "gestalt.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = [getattr(a, "name", None) for a in module.generate_launch_description().entities]
    assert {"params_file", "namespace", "image_topic", "device"} <= set(names)


def _raw_image(header: Header, width: int, height: int, encoding: str, step: int, data: bytes) -> Image:
    return Image(header=header, height=height, width=width, encoding=encoding, step=step, data=data)


def _bad_inputs(image: np.ndarray, visible: np.ndarray):
    """(name, send(peer, header), status counter that must rise) for every bad input."""
    h, w = image.shape[:2]
    nan_float = np.full((h, w), np.nan, np.float32)
    nan_float[0, 0] = np.inf

    def image_case(name, width, height, encoding, step, data, reason):
        return (
            name,
            lambda peer, hd: peer.image.publish(_raw_image(hd, width, height, encoding, step, data)),
            ("images", reason),
        )

    def prompt_case(name, send, reason):
        return (name, send, ("prompts", reason))

    return [
        image_case("16UC1", w, h, "16UC1", 2 * w, bytes(2 * w * h), "bad_encoding"),
        image_case("32FC1 with NaN and inf", w, h, "32FC1", 4 * w, nan_float.tobytes(), "bad_encoding"),
        image_case("yuv422", w, h, "yuv422", 2 * w, bytes(2 * w * h), "bad_encoding"),
        image_case("bayer_rggb8", w, h, "bayer_rggb8", w, bytes(w * h), "bad_encoding"),
        image_case("unknown encoding", w, h, "weird42", 3 * w, bytes(3 * w * h), "bad_encoding"),
        image_case("0x0", 0, 0, "rgb8", 0, b"", "empty"),
        image_case("data shorter than step x height", w, h, "rgb8", 3 * w, bytes(3 * w * h - 5), "bad_length"),
        image_case("step smaller than width x channels", w, h, "rgb8", 3 * w - 3, bytes((3 * w - 3) * h), "bad_step"),
        image_case("over ros.max_image_bytes", 1280, 720, "rgb8", 3 * 1280, bytes(3 * 1280 * 720), "too_large"),
        prompt_case("point outside", lambda peer, hd: peer.send_point(w + 5, 3, hd), "invalid_prompt"),
        prompt_case("point NaN", lambda peer, hd: peer.send_point(float("nan"), 3, hd), "invalid_prompt"),
        prompt_case("point inf", lambda peer, hd: peer.send_point(3, float("inf"), hd), "invalid_prompt"),
        prompt_case("zero-area box", lambda peer, hd: peer.send_box((10, 10), (10, 30), hd), "invalid_prompt"),
        prompt_case(
            "box of one point",
            lambda peer, hd: peer.box.publish(
                PolygonStamped(header=hd, polygon=Polygon(points=[Point32(x=1.0, y=1.0)]))
            ),
            "invalid_prompt",
        ),
        prompt_case(
            "mask of the wrong size", lambda peer, hd: peer.send_mask(np.ones((10, 10), bool), hd), "invalid_prompt"
        ),
        prompt_case("mask all zero", lambda peer, hd: peer.send_mask(np.zeros_like(visible), hd), "invalid_prompt"),
        prompt_case(
            "mask not mono8",
            lambda peer, hd: peer.mask.publish(convert.rgb_to_image(np.zeros_like(image), hd)),
            "mask_bad_encoding",
        ),
        prompt_case(
            "prompt stamped an hour ago",
            lambda peer, hd: peer.send_point(24, 24, _header(hd.stamp.sec - 3600, 0, "cam")),
            "fell_back_to_latest",
        ),
    ]


def _count(status: dict, group: str, reason: str) -> int:
    """A counter of ``status``: a plain one (``fell_back_to_latest``) or a rejection reason."""
    value = status[group].get(reason)
    return value if isinstance(value, int) else status[group]["rejected"].get(reason, 0)


def test_every_bad_input_is_counted_and_the_next_good_prompt_is_answered(start, scene_image) -> None:
    """Table-driven, over live topics: after each bad input, a valid prompt on a new frame gets its answer."""
    image, visible = scene_image
    node, peer = start(image_outputs=(), **{"ros.max_image_bytes": 1_000_000})

    def images_received() -> int:
        return peer.status()["images"]["received"]

    for k, (name, send, (group, reason)) in enumerate(_bad_inputs(image, visible), start=1):
        bad, good = _header(1000 + k, 0, "cam"), _header(1000 + k, 500, "cam")
        if group == "prompts":  # a prompt needs a cached image to be checked against
            target = images_received() + 1
            peer.send_image(image, bad)
            peer.wait_status(lambda s, n=target: s["images"]["received"] == n)
        expected = _count(peer.status(), group, reason) + 1
        send(peer, bad)
        peer.wait_status(lambda s, g=group, r=reason, n=expected: _count(s, g, r) == n)
        target = images_received() + 1
        peer.send_image(np.roll(image, k, axis=1), good)
        peer.wait_status(lambda s, n=target: s["images"]["received"] == n)
        peer.send_mask(np.roll(visible, k, axis=1), good)
        assert peer.spin_until(lambda sec=1000 + k: peer.answered(sec, 500)), name
    assert peer.status()["prompts"]["failed"] == 0 and node._worker.is_alive()


def test_a_tiny_image_and_an_inverted_box_are_served(start, scene_image) -> None:
    image, visible = scene_image
    _, peer = start()
    one = _header(1, 0, "cam")
    peer.send_image(np.full((1, 1, 3), 200, np.uint8), one)
    peer.wait_status(lambda s: s["images"]["received"] == 1)
    peer.send_point(0, 0, one)
    assert peer.spin_until(lambda: len(peer.objects()) == 1), "a 1x1 frame gets an answer (a result or a reason)"
    frame = _header(2, 0, "cam")
    peer.send_image(image, frame)
    peer.wait_status(lambda s: s["images"]["received"] == 2)
    peer.send_box((34, 37), (16, 12), frame)  # corners given the other way round
    assert peer.spin_until(lambda: any(a["header"]["stamp"]["sec"] == 2 for a in peer.answers()))


def test_after_a_burst_a_new_frame_is_answered_within_the_queue_bound(
    tiny_pipeline_config: GestaltConfig, tmp_path: Path, scene_image
) -> None:
    """The node in its own process, as on a robot: 100 clicks in a second, then a prompt on a new frame."""
    image, visible = scene_image
    config = tiny_pipeline_config.with_overrides(["ros.status_period=0.2"])
    # a planner that reads `objects` only: the node then converts and publishes no images
    with _node_in_own_process(config, tmp_path, image_outputs=()) as (peer, log_path, _):
        peer.connect(timeout=60)
        burst = _header(1, 0, "cam")
        peer.send_image(image, burst)
        peer.wait_status(lambda s: s["images"]["received"] == 1)
        burst_start = time.monotonic()
        for i in range(100):
            peer.send_point(10 + i % 40, 24, burst)
            peer.spin_until(lambda: False, timeout=0.01)  # 100 clicks in about a second
        fresh = _header(2, 0, "cam")
        peer.send_image(image, fresh)
        peer.wait_status(lambda s: s["images"]["received"] == 2)
        sent = time.monotonic()
        peer.send_mask(visible, fresh)
        assert peer.spin_until(lambda: peer.answered(2), timeout=60)
        waited = time.monotonic() - sent
        status = peer.wait_status(  # all accounted for: none pending, none in flight
            lambda s: s["prompts"]["received"] == 101 and s["prompts"]["processed"] + s["prompts"]["dropped"] == 101,
            timeout=30,
        )
        elapsed = time.monotonic() - burst_start
        prompts, latency = status["prompts"], status["latency_s"]
        # one prompt's work, taken at its p99: on 2 cores shared with this process, torch's threads
        # now and then wait for a descheduled one (a stall of up to a second was seen)
        pipeline = sum(latency[stage]["p99"] for stage in ("visible", "completion", "amodal", "recognition", "publish"))
        bound = (tiny_pipeline_config.ros.max_pending_prompts + 1) * pipeline + 1.0  # the queue, one pipeline, DDS
        assert waited < bound, json.dumps([waited, bound, status])
        assert prompts["received"] == 101 and prompts["processed"] + prompts["dropped"] == 101
        assert prompts["dropped"] > 0, "the burst overflowed the bounded queue"
        assert peer.spin_until(lambda: len(peer.objects()) == 101), "every prompt answered: a result or why not"
    output = log_path.read_text()
    assert output.count("dropping the oldest pending prompts") <= elapsed + 1, "drops are logged once a second at most"


def test_a_stage_that_raises_fails_that_request_and_the_node_keeps_serving(start, scene_image) -> None:
    image, visible = scene_image
    node, peer = start()
    header = _header(1, 0, "cam")
    peer.send_image(image, header)
    peer.wait_status(lambda s: s["images"]["received"] == 1)
    estimate = node.pipeline.components.amodal.estimate
    calls = []

    def out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return estimate(*args, **kwargs)

    node.pipeline.components.amodal.estimate = out_of_memory
    peer.send_mask(visible, header)
    peer.send_mask(visible, header)
    assert peer.spin_until(lambda: len(peer.objects()) == 2)
    (error,) = peer.errors()
    assert error["error"] == "failed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert len(peer.answers()) == 1 and peer.wait_status(lambda s: s["prompts"]["failed"] == 1)


def test_without_vision_msgs_detections_are_off_logged_once_and_reported(
    start, scene_image, monkeypatch, capfd
) -> None:
    monkeypatch.setitem(sys.modules, "vision_msgs", None)  # not importable, even on a machine that has it
    image, visible = scene_image
    node, peer = start()
    published = {publisher.topic_name for publisher in node.publishers}
    assert "/objects" in published and "/detections" not in published, published
    header = _header(1, 0, "cam")
    peer.send_image(image, header)
    peer.wait_status(lambda s: s["images"]["received"] == 1)
    peer.send_mask(visible, header)
    peer.wait_outputs(1)
    assert len(peer.answers()) == 1, "everything else as before"
    assert peer.spin_until(lambda: peer.diagnostics and "detections" in _values(peer.diagnostics[-1]))
    assert _values(peer.diagnostics[-1])["detections"].startswith("off: vision_msgs is not installed")
    assert capfd.readouterr().err.count("detections off: vision_msgs is not installed") == 1


def test_detections_where_vision_msgs_is_installed(start, scene_image) -> None:
    """A robot's ROS install (vision_msgs has no wheel): one Detection2DArray per answer, paired by id."""
    vision_msgs = pytest.importorskip("vision_msgs.msg")
    image, visible = scene_image
    node, peer = start()
    detections = []
    peer.node.create_subscription(vision_msgs.Detection2DArray, topics.DETECTIONS, detections.append, reliable_qos())
    assert peer.spin_until(lambda: node.count_subscribers("/detections") > 0)
    header = _header(3, 7, "cam")
    peer.send_image(image, header)
    peer.wait_status(lambda s: s["images"]["received"] == 1)
    peer.send_mask(visible, header)
    assert peer.spin_until(lambda: detections and peer.answers())
    (answer,), (array,) = peer.answers(), detections
    (detection,) = array.detections
    for head in (array.header, detection.header):
        assert _same_source(head, header)
    x0, y0, x1, y1 = answer["amodal_bbox"]
    box = detection.bbox
    assert (box.center.position.x, box.center.position.y, box.size_x, box.size_y) == (
        (x0 + x1) / 2,
        (y0 + y1) / 2,
        x1 - x0,
        y1 - y0,
    )
    assert detection.id == str(answer["id"]) and detection.results[0].hypothesis.class_id == answer["label"]
    assert detection.results[0].hypothesis.score == pytest.approx(answer["score"], abs=1e-4)
    assert peer.spin_until(lambda: peer.diagnostics and _values(peer.diagnostics[-1]).get("detections") == "on")
