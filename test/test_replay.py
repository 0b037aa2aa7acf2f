"""``gestalt-ros replay``: bags written here (sqlite3 and MCAP) through gestalt_node in its own process.

One node (namespace /cam1) serves the tests that replay at the bag's pace and as fast as it
answers; a second (/sim) runs on ``use_sim_time`` for ``--clock``. Each output bag is read back.
"""

from __future__ import annotations

import collections
import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import check_objects_message, fails_in_one_line, node_in_own_process, tiny_config

pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Point32, PointStamped, PolygonStamped
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from std_msgs.msg import Header, String

from gestalt_ros.cli import main
from gestalt_ros.replay import INPUTS, message_class, replay, typestore_for
from gestalt_ros.ros import convert, topics

NS = "/cam1"
SIM_NS = "/sim"
SEC = 1_000_000_000
KINDS = ("point", "box", "mask")
PROMPT_TOPICS = {"point": topics.PROMPT_POINT, "box": topics.PROMPT_BOX, "mask": topics.PROMPT_MASK}


def _header(stamp_ns: int) -> Header:
    sec, nanosec = divmod(stamp_ns, SEC)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="cam")


def _write_bag(
    path: Path,
    storage: StoragePlugin,
    scene: tuple[np.ndarray, np.ndarray],
    *,
    frames: int,
    start_ns: int,
    spacing_s: float,
    kinds: tuple[str, ...] = KINDS,
    namespace: str = NS,
) -> list[int]:
    """Frames ``spacing_s`` apart, each followed 0.1 s later by one prompt of each kind on its stamp;
    the receive time is the header stamp. Returns the frames' stamps (ns)."""
    image, visible = scene
    typestore = get_typestore(Stores.ROS2_KILTED)
    stamps = []
    with Writer(path, version=8, storage_plugin=storage) as writer:
        names = [topics.IMAGE, *(PROMPT_TOPICS[kind] for kind in kinds)]
        conns = {
            name: writer.add_connection(f"{namespace}/{name}", INPUTS[name], typestore=typestore) for name in names
        }
        for i in range(frames):
            stamp = start_ns + int(i * spacing_s * SEC)
            header = _header(stamp)
            stamps.append(stamp)
            frame = convert.rgb_to_image(np.roll(image, i, 1), header)
            writer.write(conns[topics.IMAGE], stamp, serialize_message(frame))
            box = PolygonStamped(header=header)
            box.polygon.points = [Point32(x=16.0, y=12.0), Point32(x=34.0, y=37.0)]
            prompts = {
                "point": PointStamped(header=header, point=Point(x=24.0, y=24.0)),
                "box": box,
                "mask": convert.mask_to_image(np.roll(visible, i, 1), header),
            }
            for j, kind in enumerate(kinds):
                writer.write(conns[PROMPT_TOPICS[kind]], stamp + SEC // 10 + j * 1000, serialize_message(prompts[kind]))
    return stamps


def _read(bag: Path) -> dict[str, list]:
    """The output bag's messages by topic, deserialized, in the order recorded."""
    out: dict[str, list] = collections.defaultdict(list)
    assert list(bag.glob("*.mcap")), "the outputs are an MCAP bag"
    with Reader(bag) as reader:
        for conn, _, raw in reader.messages():
            out[conn.topic].append(deserialize_message(raw, message_class(conn.msgtype)))
    return out


def _check_answers(recorded: dict[str, list], stamps: list[int], kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """One answer per prompt, with the header of the frame it referred to, and each image output once per answer."""
    entries = []
    for msg in recorded[f"{NS}/objects"]:
        message = json.loads(msg.data)
        (entry,) = check_objects_message(message)
        entries.append({**entry, "header": message["header"]})
    want = collections.Counter((divmod(s, SEC), kind) for s in stamps for kind in kinds)
    got = collections.Counter(
        ((e["header"]["stamp"]["sec"], e["header"]["stamp"]["nanosec"]), e["prompt"]["kind"]) for e in entries
    )
    assert got == want, entries
    for entry in entries:
        assert entry["error"] is None and not entry["prompt"]["fell_back_to_latest"], entry
        assert entry["prompt"]["stamp"] == entry["header"]["stamp"] and entry["amodal_area"] > 0
    for name in (topics.VISIBLE_MASK, topics.AMODAL_MASK, topics.COMPLETION):
        messages = recorded[f"{NS}/{name}"]
        assert collections.Counter(convert.stamp_key(m.header) for m in messages) == collections.Counter(
            divmod(s, SEC) for s in stamps for _ in kinds
        ), name
    for msg in recorded[f"{NS}/{topics.AMODAL_MASK}"]:
        assert convert.image_to_mask(msg).any() and msg.encoding == "mono8"
    return entries


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    """Two gestalt_nodes in processes of their own, started together (they load their models side by side):
    in /cam1 on the wall clock and in /sim on ``use_sim_time``, reporting status every 0.2 s.
    Yields their log files by namespace. A prompt waits up to 1 s for its frame (0.25 s by
    default): under the suite's load a node's image callback can run that late."""
    config = tiny_config(tiny_model_dir).with_overrides(["ros.status_period=0.2", "ros.frame_wait=1.0"])
    with contextlib.ExitStack() as stack:
        started = {}
        for ns, ros_args in ((NS, ()), (SIM_NS, ("-p", "use_sim_time:=true"))):
            directory = tmp_path_factory.mktemp(ns.strip("/"))
            started[ns] = stack.enter_context(node_in_own_process(config, directory, "-r", f"__ns:={ns}", *ros_args))
        yield {ns: log for ns, (log, _) in started.items()}
    for log, proc in started.values():  # stopped with SIGINT: a clean exit
        assert proc.returncode == 0 and "Traceback" not in log.read_text(), log.read_text()


def test_sqlite3_bag_as_fast_as_the_node_answers(nodes, tmp_path: Path, scene_image, capsys) -> None:
    bag = tmp_path / "in"
    stamps = _write_bag(bag, StoragePlugin.SQLITE3, scene_image, frames=2, start_ns=100 * SEC, spacing_s=1.0)
    out = tmp_path / "out"
    argv = ["replay", str(bag), "--rate", "0", "--namespace", NS, "--out", str(out), "--timeout", "60"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    sent = ", ".join(f"{NS}/{name} 2" for name in INPUTS)
    assert line.startswith(f"sent {sent}; 6 objects answers (0 with an error), 0 prompts unanswered within 60 s"), line
    assert line.endswith(f"outputs in {out}"), line
    recorded = _read(out)
    _check_answers(recorded, stamps)
    assert recorded[f"{NS}/status"] and recorded["/diagnostics"], "the node's status and diagnostics are recorded"
    if message_class("vision_msgs/msg/Detection2DArray"):  # a robot's ROS install: detections too, one per answer
        assert len(recorded[f"{NS}/detections"]) == 6
    assert json.loads(recorded[f"{NS}/status"][-1].data)["prompts"]["processed"] >= 6


def test_mcap_bag_at_its_own_pace_scaled_by_rate(nodes, tmp_path: Path, scene_image) -> None:
    bag = tmp_path / "in"
    stamps = _write_bag(
        bag, StoragePlugin.MCAP, scene_image, frames=4, start_ns=200 * SEC, spacing_s=0.5, kinds=("mask",)
    )
    runs = {rate: replay(bag, tmp_path / f"out_{rate}", namespace=NS, rate=rate, timeout=60) for rate in (1.0, 4.0)}
    for rate, summary in runs.items():
        assert (summary.answers, summary.errors, summary.unanswered) == (4, 0, 0), rate
        assert summary.sent == {f"{NS}/image": 4, f"{NS}/prompt/mask": 4}
        assert summary.bag_seconds == pytest.approx(1.6)
        _check_answers(_read(summary.output_bag), stamps, kinds=("mask",))
    assert runs[1.0].send_seconds >= 0.99 * runs[1.0].bag_seconds, "no message goes out before its time"
    ratio = runs[1.0].send_seconds / runs[4.0].send_seconds
    assert 2.5 < ratio < 5.0, {rate: s.send_seconds for rate, s in runs.items()}


def test_clock_drives_a_node_on_use_sim_time(nodes, tmp_path: Path, scene_image) -> None:
    """Its timer (status, /diagnostics) runs on the bag's time, which only /clock from the replay gives it."""
    ns = SIM_NS
    bag = tmp_path / "in"
    start = 1_600_000_000 * SEC  # 2020: far from the wall clock
    stamps = _write_bag(
        bag, StoragePlugin.MCAP, scene_image, frames=4, start_ns=start, spacing_s=0.5, kinds=("mask",), namespace=ns
    )
    summary = replay(bag, tmp_path / "out", namespace=ns, rate=1.0, clock=True, timeout=60)
    assert (summary.answers, summary.unanswered) == (4, 0), nodes[ns].read_text()
    recorded = _read(summary.output_bag)
    # /diagnostics is shared: each node's entries are named after it (the /cam1 node publishes there too)
    diagnostics = [m for m in recorded["/diagnostics"] if m.status[0].name.startswith(f"{ns}/gestalt_node:")]
    assert len(diagnostics) >= 3, "the node's 0.2 s timer ran on the 1.6 s of bag time"
    end = stamps[-1] + SEC // 10
    for msg in diagnostics:
        stamp = msg.header.stamp.sec * SEC + msg.header.stamp.nanosec
        assert start <= stamp <= end, (stamp, start, end)
    answers = [json.loads(m.data) for m in recorded[f"{ns}/objects"]]
    assert sorted(a["header"]["stamp"]["sec"] * SEC + a["header"]["stamp"]["nanosec"] for a in answers) == stamps
    with Reader(summary.output_bag) as reader:
        received = [t for _, t, _ in reader.messages()]
    assert start <= min(received) and max(received) <= end, (
        "the outputs are recorded at the bag's time, as received under /clock",
        min(received),
        max(received),
    )


def test_bags_that_cannot_be_replayed_are_one_line_errors(tmp_path: Path, scene_image, capsys) -> None:
    fails_in_one_line(["replay", str(tmp_path / "nowhere")], capsys, "nowhere does not exist")

    chatter = tmp_path / "chatter"
    with Writer(chatter, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=get_typestore(Stores.ROS2_KILTED))
        writer.write(conn, 1, serialize_message(String(data="hi")))
    fails_in_one_line(["replay", str(chatter)], capsys, "none of gestalt_node's inputs", "/chatter")

    bag = tmp_path / "nobody"  # inputs in namespace /nobody, where no node runs
    _write_bag(bag, StoragePlugin.SQLITE3, scene_image, frames=1, start_ns=SEC, spacing_s=1.0, namespace="/nobody")
    fails_in_one_line(["replay", str(bag)], capsys, "in namespace /", "/nobody/image", "--namespace")
    there = ["replay", str(bag), "--namespace", "/nobody"]
    fails_in_one_line([*there, "--out", str(chatter)], capsys, "chatter exists")
    fails_in_one_line([*there, "--rate", "-1"], capsys, "--rate must be >= 0")
    fails_in_one_line([*there, "--timeout", "1"], capsys, "no gestalt_node subscribed", "within 1 s")

    wrong = tmp_path / "wrong"
    with Writer(wrong, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection(f"{NS}/image", "std_msgs/msg/String", typestore=get_typestore(Stores.ROS2_KILTED))
    fails_in_one_line(["replay", str(wrong), "--namespace", NS], capsys, "carries std_msgs/msg/String")


def test_types_missing_from_rosbags_are_read_from_installed_msg_files() -> None:
    """How a replay records vision_msgs' Detection2DArray on a robot, shown on diagnostic_msgs (a wheel here)."""
    known = get_typestore(Stores.ROS2_KILTED)
    built = typestore_for(["diagnostic_msgs/msg/DiagnosticArray"], store=Stores.EMPTY)
    assert {"std_msgs/msg/Header", "builtin_interfaces/msg/Time", "diagnostic_msgs/msg/KeyValue"} <= set(
        built.fielddefs
    )
    name = "diagnostic_msgs/msg/DiagnosticArray"
    assert built.generate_msgdef(name, ros_version=2) == known.generate_msgdef(name, ros_version=2)
    assert built.hash_rihs01(name) == known.hash_rihs01(name)
