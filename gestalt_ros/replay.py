"""``gestalt-ros replay``: a recorded bag through a running gestalt_node, its answers into another bag.

The bag's images and prompts (``image``, ``prompt/point``, ``prompt/box``, ``prompt/mask``
under the node's namespace) are published at the bag's receive times scaled by ``rate``
(0: as fast as the node answers, each prompt waiting for its answer), with ``/clock`` from
the bag's time if asked, for a node on ``use_sim_time``. Every output of the node is
recorded to an MCAP bag, and each prompt sent is matched to its ``objects`` answer by kind
and stamp; with ``scene``, each image is matched to its scene-mode answer (an ``objects``
message with the image's stamp whose entries answer no prompt). ``gestalt-ros demo`` replays its bag with this same code, through a node in the
demo's own process.

rclpy is imported where it is used: the CLI imports ``ReplayError`` without a ROS install.
"""

from __future__ import annotations

import collections
import importlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype
from rosbags.typesys.store import Typestore
from tqdm.auto import tqdm

from gestalt_ros.ros import topics

if TYPE_CHECKING:
    from rclpy.context import Context
    from rclpy.node import Node

logger = logging.getLogger(__name__)

# The node's inputs and the message type the bag must carry on each.
INPUTS = {
    topics.IMAGE: "sensor_msgs/msg/Image",
    topics.PROMPT_POINT: "geometry_msgs/msg/PointStamped",
    topics.PROMPT_BOX: "geometry_msgs/msg/PolygonStamped",
    topics.PROMPT_MASK: "sensor_msgs/msg/Image",
}
PROMPT_KINDS = {topics.PROMPT_POINT: "point", topics.PROMPT_BOX: "box", topics.PROMPT_MASK: "mask"}
# Everything the node publishes; a type whose package is not installed here is not recorded.
OUTPUTS = {
    topics.VISIBLE_MASK: "sensor_msgs/msg/Image",
    topics.AMODAL_MASK: "sensor_msgs/msg/Image",
    topics.COMPLETION: "sensor_msgs/msg/Image",
    topics.OBJECTS: "std_msgs/msg/String",
    topics.OVERLAY: "sensor_msgs/msg/Image",
    topics.STATUS: "std_msgs/msg/String",
    topics.DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
    topics.DETECTIONS: "vision_msgs/msg/Detection2DArray",
    topics.SCENE_VISIBLE_IDS: "sensor_msgs/msg/Image",
    topics.SCENE_OVERLAY: "sensor_msgs/msg/Image",
}
# Outputs the node publishes only where it has vision_msgs, or in scene mode: not waited for.
OPTIONAL_OUTPUTS = frozenset({topics.DETECTIONS, topics.SCENE_VISIBLE_IDS, topics.SCENE_OVERLAY})
CLOCK_PERIOD = 0.025  # seconds between /clock messages while waiting for the next message (ros2 bag play's 40 Hz)
IMAGE_SETTLE = 0.05  # rate 0: seconds after an image, so that it is in the node's cache before its prompts arrive
# Seconds between the graph showing every subscription matched and the first message: a
# publisher can match the node's subscriber before that subscriber has matched it, and a
# best-effort message sent in between is dropped by the subscriber (ros2 bag play's --delay).
DISCOVERY_SETTLE = 0.5
FINAL_STATUS_WAIT = 1.5  # seconds to wait, after the last answer, for a status message that counts it
STATUS_GRACE = 0.1  # a status message that counts the last answer comes at least this long after it


class ReplayError(ValueError):
    """A bag, namespace or node that a replay cannot use: one line for the user, exit code 2."""


@dataclass
class ReplaySummary:
    """What a replay sent, what came back, and where it was recorded."""

    output_bag: Path
    timeout: float
    sent: dict[str, int] = field(default_factory=dict)  # bag topic -> messages published
    answers: int = 0  # objects entries answering a prompt sent
    scene: bool = False  # images were matched to scene-mode answers too
    scenes: int = 0  # scene-mode answers to images sent (with ``scene``)
    errors: int = 0  # of those, entries whose ``error`` says why there is no result
    unanswered: int = 0  # prompts sent that had no answer within the timeout
    recorded: dict[str, int] = field(default_factory=dict)  # output topic (as in topics.py) -> messages
    node_status: dict = field(default_factory=dict)  # the node's last status message
    bag_seconds: float = 0.0  # span of the receive times played
    send_seconds: float = 0.0  # wall time from the first message published to the last

    def line(self) -> str:
        sent = ", ".join(f"{topic} {n}" for topic, n in self.sent.items())
        waited = (
            f"{self.scenes} scenes answered, {self.unanswered} prompts or scenes"
            if self.scene
            else f"{self.unanswered} prompts"
        )
        return (
            f"sent {sent}; {self.answers} objects answers ({self.errors} with an error), {waited} "
            f"unanswered within {self.timeout:g} s; {self.bag_seconds:.2f} s of bag in {self.send_seconds:.2f} s; "
            f"outputs in {self.output_bag}"
        )


def topic_name(namespace: str, name: str) -> str:
    """A node topic's full name in ``namespace`` (absolute names, ``/diagnostics``, stay)."""
    return name if name.startswith("/") else f"{namespace.rstrip('/')}/{name}"


def default_output(bag: Path) -> Path:
    """``BAG_gestalt`` beside the input bag (a folder or a single .mcap/.db3 file)."""
    return bag.parent / f"{bag.stem if bag.is_file() else bag.name}_gestalt"


def match_inputs(bag: Path, namespace: str) -> dict[str, str]:
    """The bag's topics that are the node's inputs in ``namespace``: bag topic -> input name (topics.py)."""
    if not bag.exists():
        raise ReplayError(f"bag {bag} does not exist")
    wanted = {topic_name(namespace, name): name for name in INPUTS}
    try:
        with Reader(bag) as reader:
            found = {conn.topic: conn.msgtype for conn in reader.connections}
    except Exception as err:  # noqa: BLE001 - rosbags raises several kinds for a file that is no bag
        raise ReplayError(f"cannot read {bag} as a rosbag2 bag (sqlite3 or MCAP): {err}") from err
    matched = {topic: wanted[topic] for topic in found if topic in wanted}
    if not matched:
        listed = ", ".join(sorted(found)[:8]) + (", ..." if len(found) > 8 else "") or "none"
        raise ReplayError(
            f"{bag} has none of gestalt_node's inputs in namespace {namespace} ({', '.join(wanted)}); "
            f"its topics: {listed} (--namespace sets the node's namespace)"
        )
    for topic, name in matched.items():
        if found[topic] != INPUTS[name]:
            raise ReplayError(f"{topic} in {bag} carries {found[topic]}; gestalt_node reads {INPUTS[name]} there")
    return matched


def message_class(msgtype: str) -> type | None:
    """The rclpy class of ``pkg/msg/Name``, or None where its package is not installed (vision_msgs)."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except ImportError:
        return None


def typestore_for(msgtypes: Iterable[str], store: Stores = Stores.ROS2_KILTED) -> Typestore:
    """rosbags' ``store`` plus the types it lacks (vision_msgs), read from their installed ``.msg`` files.

    Each connection of a bag carries its type's full definition; rosbag2 finds them the same way.
    """
    typestore = get_typestore(store)
    wanted = list(msgtypes)
    while wanted:
        msgtype = wanted.pop()
        if msgtype in typestore.fielddefs:
            continue
        package, _, name = msgtype.split("/")
        found = get_types_from_msg((_share(package) / "msg" / f"{name}.msg").read_text(), msgtype)
        typestore.register(found)
        wanted += _referenced(found[msgtype][1])
    return typestore


def _share(package: str) -> Path:
    """A ROS package's share folder: from the ament index (a sourced ROS install), else the Python prefix (wheels)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError):  # no index (wheels), or the package is not in it
        return Path(sys.prefix) / "share" / package


def _referenced(fields: list) -> list[str]:
    """The message types a type's fields name, arrays and sequences included."""
    names = []
    for _, (kind, detail) in fields:
        while kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (kind, detail), _ = detail
        if kind == Nodetype.NAME:
            names.append(detail)
    return names


def replay(
    bag: Path,
    out: Path | None = None,
    *,
    namespace: str = "/",
    rate: float = 1.0,
    clock: bool = False,
    timeout: float = 60.0,
    outputs: Iterable[str] = tuple(OUTPUTS),
    context: Context | None = None,
    nodes: Iterable[Node] = (),
    scene: bool = False,
) -> ReplaySummary:
    """Publish ``bag``'s node inputs to a running gestalt_node and record its ``outputs`` to ``out`` (MCAP).

    ``timeout``: seconds to wait for the node to appear, and (rate 0) for each answer or
    (rate > 0) for the last ones. ``objects`` is always recorded: answers are matched on it.
    ``context``, ``nodes``: an initialised rclpy context and nodes of this process to spin
    with the player (the demo's node); by default a context of its own, shut down after.
    ``scene``: the node is in scene mode (``mode`` scene or both, ``scene.every_n`` 1), so
    every image is answered too, and waited for like a prompt.
    """
    import rclpy

    from gestalt_ros.resources import select_fastdds_profile

    if not (rate >= 0 and timeout > 0):  # NaN too
        raise ReplayError(f"--rate must be >= 0 and --timeout > 0, got {rate:g} and {timeout:g}")
    namespace = "/" + namespace.strip("/")
    inputs = match_inputs(bag, namespace)
    out = default_output(bag) if out is None else out
    if out.exists():
        raise FileExistsError(f"{out} exists: choose another --out")
    own_context = context is None
    if own_context:
        logger.info(select_fastdds_profile())  # before this process's first DDS participant
        context = rclpy.Context()
        rclpy.init(context=context)
    try:
        player = _Player(context, namespace, inputs, clock, scene)
        try:
            return player.run(
                bag, out, rate, timeout, [n for n in OUTPUTS if n in outputs or n == topics.OBJECTS], nodes
            )
        finally:
            player.node.destroy_node()
    finally:
        if own_context:
            rclpy.try_shutdown(context=context)


def _wait_for(done: Callable[[], bool], deadline: float, failure: str) -> None:
    """Poll the graph until ``done``; past ``deadline`` (time.monotonic()), fail with ``failure``."""
    while not done():
        if time.monotonic() > deadline:
            raise ReplayError(failure)
        time.sleep(0.05)


class _Player:
    """The replay's node: publishes the bag's inputs (and /clock), records the outputs, matches answers to prompts."""

    def __init__(self, context: Context, namespace: str, inputs: dict[str, str], clock: bool, scene: bool) -> None:
        import rclpy
        from rosgraph_msgs.msg import Clock

        from gestalt_ros.ros.qos import reliable_qos

        self.namespace, self.inputs, self.scene = namespace, inputs, scene
        self.node = rclpy.create_node("gestalt_replay", context=context)
        self._publishers = {
            topic: self.node.create_publisher(message_class(INPUTS[name]), topic, reliable_qos())
            for topic, name in inputs.items()
        }
        # RELIABLE, depth 1, reaches the best-effort /clock readers of rclpy and rclcpp nodes too
        self._clock = self.node.create_publisher(Clock, "/clock", reliable_qos(depth=1)) if clock else None
        self._clock_ns = 0  # the last /clock published: the output bag's receive time with --clock
        self._cv = threading.Condition()
        self._pending: collections.Counter = collections.Counter()  # (kind, sec, nanosec) -> prompts unanswered
        self._last_answer = 0.0  # time.monotonic() of the last answer
        self._status_at = 0.0  # ... and of the last status message
        self.summary: ReplaySummary | None = None

    def run(
        self, bag: Path, out: Path, rate: float, timeout: float, outputs: list[str], nodes: Iterable[Node]
    ) -> ReplaySummary:
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=self.node.context)
        for node in (*nodes, self.node):
            executor.add_node(node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        self.summary = summary = ReplaySummary(
            output_bag=out, timeout=timeout, sent=dict.fromkeys(self.inputs, 0), scene=self.scene
        )
        try:
            deadline = time.monotonic() + timeout
            _wait_for(
                lambda: all(p.get_subscription_count() for p in self._publishers.values()),
                deadline,
                f"no gestalt_node subscribed to {', '.join(self._publishers)} within {timeout:g} s: is it running, "
                f"in namespace {self.namespace} (--namespace), with this ROS_DOMAIN_ID?",
            )
            with Reader(bag) as reader, Writer(out, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
                self._clock_ns = reader.start_time  # with --clock, for what arrives before the first /clock
                try:
                    subscriptions = self._record(writer, outputs)
                    awaited = [s for name, s in subscriptions.items() if name not in OPTIONAL_OUTPUTS]
                    _wait_for(
                        lambda: all(s.get_publisher_count() for s in awaited),
                        deadline,
                        f"a node reads {', '.join(self._publishers)}, but not all of gestalt_node's outputs "
                        f"({', '.join(s.topic_name for s in awaited)}) have a publisher within {timeout:g} s",
                    )
                    time.sleep(DISCOVERY_SETTLE)
                    connections = [c for c in reader.connections if c.topic in self.inputs]
                    with tqdm(total=sum(c.msgcount for c in connections), desc="replaying", unit="msg") as bar:
                        self._play(reader.messages(connections=connections), rate, timeout, bar)
                    self._finish(timeout)
                finally:
                    # Stop the callbacks (shutdown waits for a running one) before the bag closes: a
                    # message written while the writer closes would corrupt its last chunk.
                    executor.shutdown()
                    spin.join(timeout=5.0)
        finally:
            executor.shutdown()
        with self._cv:
            summary.unanswered = sum(self._pending.values())
        return summary

    # ----- recording (callbacks in the executor's thread, the only one writing to the bag) -----
    def _record(self, writer: Writer, outputs: list[str]) -> dict:
        from rclpy.serialization import deserialize_message
        from std_msgs.msg import String

        from gestalt_ros.ros.qos import reliable_qos

        classes = {name: message_class(OUTPUTS[name]) for name in outputs}
        names = [name for name in outputs if classes[name] is not None]
        typestore = typestore_for(OUTPUTS[name] for name in names)
        self.summary.recorded = dict.fromkeys(names, 0)

        def callback(name: str, connection):
            def record(raw: bytes) -> None:
                # Received at the replay's /clock (as `ros2 bag record --use-sim-time`), else the wall clock.
                writer.write(connection, self._clock_ns if self._clock is not None else time.time_ns(), raw)
                self.summary.recorded[name] += 1
                if name == topics.OBJECTS:
                    self._answered(json.loads(deserialize_message(raw, String).data))
                elif name == topics.STATUS:
                    with self._cv:
                        self.summary.node_status = json.loads(deserialize_message(raw, String).data)
                        self._status_at = time.monotonic()
                        self._cv.notify_all()

            return record

        subscriptions = {}
        for name in names:
            topic = topic_name(self.namespace, name)
            connection = writer.add_connection(topic, OUTPUTS[name], typestore=typestore)
            subscriptions[name] = self.node.create_subscription(
                classes[name], topic, callback(name, connection), reliable_qos(), raw=True
            )
        return subscriptions

    def _answered(self, message: dict) -> None:
        """Count the entries that answer a prompt sent (kind and stamp), or the scene answer to an
        image sent (no entry answers a prompt); answers to other clients are ignored."""
        with self._cv:
            if all(entry["prompt"] is None for entry in message["objects"]):
                stamp = message["header"]["stamp"]
                key = ("scene", stamp["sec"], stamp["nanosec"])
                if self._pending[key] > 0:
                    self._pending[key] -= 1
                    self.summary.scenes += 1
                    self._last_answer = time.monotonic()
            for entry in message["objects"]:
                prompt = entry["prompt"]
                if prompt is None:
                    continue
                key = (prompt["kind"], prompt["stamp"]["sec"], prompt["stamp"]["nanosec"])
                if self._pending[key] > 0:
                    self._pending[key] -= 1
                    self.summary.answers += 1
                    self.summary.errors += entry["error"] is not None
                    self._last_answer = time.monotonic()
            self._cv.notify_all()

    # ----- playing (the caller's thread) -----
    def _play(self, messages: Iterable, rate: float, timeout: float, bar: tqdm) -> None:
        start = first = last = last_ns = None
        for connection, stamp_ns, raw in messages:
            if start is None:
                start, first = time.monotonic(), stamp_ns
            last_ns = stamp_ns
            if rate > 0:
                self._sleep_until(start + (stamp_ns - first) / 1e9 / rate, start, first, rate)
            key = self._send(connection.topic, stamp_ns, raw)
            last = time.monotonic()
            bar.update(1)
            if rate == 0 and key is None:
                time.sleep(IMAGE_SETTLE)
            elif rate == 0:
                with self._cv:
                    self._cv.wait_for(lambda key=key: self._pending[key] == 0, timeout)
        if start is not None:
            self.summary.bag_seconds = (last_ns - first) / 1e9
            self.summary.send_seconds = last - start

    def _sleep_until(self, due: float, start: float, first_ns: int, rate: float) -> None:
        """Sleep until ``due``, meanwhile advancing /clock at ``rate`` from the first message's time."""
        while (left := due - time.monotonic()) > 0:
            if self._clock is not None:
                self._publish_clock(first_ns + int((time.monotonic() - start) * rate * 1e9))
            time.sleep(min(left, CLOCK_PERIOD) if self._clock is not None else left)

    def _send(self, topic: str, stamp_ns: int, raw: bytes) -> tuple | None:
        """Publish one message from the bag (serialized CDR as recorded); a prompt's answer key, or None."""
        from rclpy.serialization import deserialize_message

        raw = bytes(raw)  # rosbags may hand out a memoryview
        if self._clock is not None:
            self._publish_clock(stamp_ns)
        name = self.inputs[topic]
        key = None
        if name in PROMPT_KINDS or (self.scene and name == topics.IMAGE):
            stamp = deserialize_message(raw, message_class(INPUTS[name])).header.stamp
            key = (PROMPT_KINDS.get(name, "scene"), stamp.sec, stamp.nanosec)
            with self._cv:
                self._pending[key] += 1  # before publishing: the answer may come back at once
        self._publishers[topic].publish(raw)
        self.summary.sent[topic] += 1
        return key

    def _publish_clock(self, stamp_ns: int) -> None:
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        self._clock.publish(Clock(clock=Time(sec=sec, nanosec=nanosec)))
        self._clock_ns = stamp_ns

    def _finish(self, timeout: float) -> None:
        """Wait for the last answers, then for a status message that counts them."""
        with self._cv:
            self._cv.wait_for(lambda: sum(self._pending.values()) == 0, timeout)
            self._cv.wait_for(lambda: self._status_at > self._last_answer + STATUS_GRACE, FINAL_STATUS_WAIT)
