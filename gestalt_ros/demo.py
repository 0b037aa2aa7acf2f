"""``gestalt-ros demo``: the whole robot path on one machine, with no ROS install.

1. Render synthetic tabletop scenes (objects held out of training) and write them, with a
   point, a box and a mask prompt per scene, to an MCAP rosbag (``input_bag``).
2. Replay that bag through a real ``GestaltNode`` over rclpy topics, in namespace
   ``/camera``, and record every output to a second MCAP bag (``output_bag``).
3. Read the output bag back and write one PNG per prompt (input | visible | amodal |
   completion | label) and the node's own overlay, for a person to look at.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from gestalt_ros.config import GestaltConfig
from gestalt_ros.types import mask_bbox

logger = logging.getLogger(__name__)

NAMESPACE = "/camera"
FRAME_ID = "camera_optical_frame"
# One prompt of each kind per scene, in this order (the PNG names end with the kind).
PROMPT_KINDS = ("point", "box", "mask")


@dataclass
class DemoPrompt:
    kind: str
    visible: np.ndarray  # the object's true visible mask (the prompt is derived from it)
    name: str


def _interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The visible pixel farthest from the mask's edge: a click a person would make."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def _scenes_with_prompts(n: int, seed: int) -> list[tuple[np.ndarray, list[DemoPrompt]]]:
    """n scenes of held-out objects, each with prompts on its most occluded objects."""
    from gestalt_ros.data.synthetic import SceneConfig, iter_scenes
    from gestalt_ros.data.ycb import HELDOUT_OBJECTS

    out = []
    candidates = iter_scenes(10 * n, seed, objects=HELDOUT_OBJECTS, config=SceneConfig(image_size=256))
    for scene in candidates:
        objs = [o for o in scene.objects if not o.is_occluder and o.visible.sum() >= 80]
        objs.sort(key=lambda o: -o.occlusion_ratio)
        if not objs or objs[0].occlusion_ratio < 0.1:
            continue
        prompts = [
            DemoPrompt(kind, objs[i % len(objs)].visible, objs[i % len(objs)].name)
            for i, kind in enumerate(PROMPT_KINDS)
        ]
        out.append((scene.image, prompts))
        if len(out) == n:
            break
    return out


def write_input_bag(path: Path, scenes: list[tuple[np.ndarray, list[DemoPrompt]]], start_ns: int) -> list[dict]:
    """Images and prompts as an MCAP bag (topics under /camera); returns what was written."""
    from geometry_msgs.msg import Point32, PointStamped, PolygonStamped
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from std_msgs.msg import Header

    from gestalt_ros.ros.convert import mask_to_image, rgb_to_image
    from gestalt_ros.ros.topics import IMAGE, PROMPT_BOX, PROMPT_MASK, PROMPT_POINT

    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {
        IMAGE: "sensor_msgs/msg/Image",
        PROMPT_POINT: "geometry_msgs/msg/PointStamped",
        PROMPT_BOX: "geometry_msgs/msg/PolygonStamped",
        PROMPT_MASK: "sensor_msgs/msg/Image",
    }
    manifest = []
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(f"{NAMESPACE}/{t}", m, typestore=typestore) for t, m in types.items()}
        for i, (image, prompts) in enumerate(scenes):
            stamp_ns = start_ns + i * 1_000_000_000
            header = Header(frame_id=FRAME_ID)
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            writer.write(conns[IMAGE], stamp_ns, serialize_message(rgb_to_image(image, header)))
            for j, prompt in enumerate(prompts):
                if prompt.kind == "point":
                    x, y = _interior_point(prompt.visible)
                    msg, topic = PointStamped(header=header), PROMPT_POINT
                    msg.point.x, msg.point.y = x, y
                elif prompt.kind == "box":
                    x0, y0, x1, y1 = mask_bbox(prompt.visible)
                    msg, topic = PolygonStamped(header=header), PROMPT_BOX
                    msg.polygon.points = [Point32(x=float(x0), y=float(y0)), Point32(x=float(x1), y=float(y1))]
                else:
                    msg, topic = mask_to_image(prompt.visible, header), PROMPT_MASK
                writer.write(conns[topic], stamp_ns + (j + 1) * 1000, serialize_message(msg))
                manifest.append({"scene": i, "stamp_ns": stamp_ns, "kind": prompt.kind, "object": prompt.name})
    return manifest


def replay_through_node(
    input_bag: Path, output_bag: Path, config: GestaltConfig, n_prompts: int, timeout_s: float = 120.0
) -> dict:
    """Publish the bag's messages to a live GestaltNode and record its outputs to ``output_bag``."""
    import rclpy
    from geometry_msgs.msg import PointStamped, PolygonStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from gestalt_ros.ros import topics
    from gestalt_ros.ros.node import GestaltNode, select_fastdds_profile
    from gestalt_ros.ros.qos import reliable_qos

    logger.info(select_fastdds_profile())
    outputs = {
        topics.VISIBLE_MASK: Image,
        topics.AMODAL_MASK: Image,
        topics.COMPLETION: Image,
        topics.OBJECTS: String,
        topics.OVERLAY: Image,
        topics.STATUS: String,
    }
    msg_types = {
        Image: "sensor_msgs/msg/Image",
        String: "std_msgs/msg/String",
        PointStamped: "geometry_msgs/msg/PointStamped",
        PolygonStamped: "geometry_msgs/msg/PolygonStamped",
    }
    inputs = {
        f"{NAMESPACE}/{topics.IMAGE}": Image,
        f"{NAMESPACE}/{topics.PROMPT_POINT}": PointStamped,
        f"{NAMESPACE}/{topics.PROMPT_BOX}": PolygonStamped,
        f"{NAMESPACE}/{topics.PROMPT_MASK}": Image,
    }

    context = rclpy.Context()
    rclpy.init(context=context)
    typestore = get_typestore(Stores.ROS2_KILTED)
    overrides = [Parameter(k, value=v) for k, v in config.to_flat().items()]
    node = GestaltNode(namespace=NAMESPACE, context=context, parameter_overrides=overrides)
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        raise RuntimeError("gestalt_node could not be configured; its log above says why")
    node.trigger_activate()
    player = rclpy.create_node("gestalt_demo_player", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(player)
    done = threading.Event()
    counts = {t: 0 for t in outputs}
    last_status: dict = {}
    try:
        with Writer(output_bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
            conns = {
                t: writer.add_connection(f"{NAMESPACE}/{t}", msg_types[m], typestore=typestore)
                for t, m in outputs.items()
            }

            def record(topic: str):
                def callback(raw: bytes) -> None:
                    writer.write(conns[topic], time.time_ns(), raw)
                    counts[topic] += 1
                    if topic == topics.STATUS:
                        last_status.update(json.loads(_string_data(raw)))
                    if counts[topics.OBJECTS] >= n_prompts:
                        done.set()

                return callback

            for topic, msg_type in outputs.items():
                player.create_subscription(msg_type, f"{NAMESPACE}/{topic}", record(topic), reliable_qos(), raw=True)
            pubs = {name: player.create_publisher(t, name, reliable_qos()) for name, t in inputs.items()}
            spin = threading.Thread(target=executor.spin, daemon=True)
            spin.start()
            _wait_for_match(pubs, timeout_s=10.0)
            with Reader(input_bag) as reader:
                bar = tqdm(total=n_prompts, desc="replaying through gestalt_node", unit="prompt")
                sent = 0
                for conn, _, raw in reader.messages():
                    pubs[conn.topic].publish(raw)  # serialized CDR straight from the bag
                    if conn.topic.endswith(topics.IMAGE):
                        time.sleep(0.05)  # the image reaches the node's cache before its prompts
                        continue
                    sent += 1
                    deadline = time.monotonic() + timeout_s
                    while counts[topics.OBJECTS] < sent and time.monotonic() < deadline:
                        time.sleep(0.02)  # pace prompts to the worker: none is dropped
                    bar.update(1)
                bar.close()
            done.wait(timeout=timeout_s)
            time.sleep(1.2)  # one more status message after the last result
            # Stop the callbacks (shutdown waits for a running one) before the bag closes: a
            # status message written while the writer closes would corrupt its last chunk.
            executor.shutdown()
            spin.join(timeout=5.0)
    finally:
        executor.shutdown()
        node.destroy_node()
        player.destroy_node()
        rclpy.try_shutdown(context=context)
    return {"outputs": counts, "node_status": last_status}


def _string_data(raw: bytes) -> str:
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String

    return deserialize_message(raw, String).data


def _wait_for_match(pubs: dict, timeout_s: float) -> None:
    """Wait until the node subscribes to every replayed topic, so no first message is lost."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in pubs.values()):
        time.sleep(0.05)


def write_pngs(input_bag: Path, output_bag: Path, out_dir: Path) -> list[Path]:
    """One contact row per answered prompt, from the bags alone (what a person would check after a run).

    Outputs are paired by the header stamp they carry (the image's): within one frame, the
    node answers prompts in order, so the k-th message of each topic with that stamp belongs
    to the frame's k-th answer. Topics the node did not publish (the overlay, when it is
    off) are simply absent.
    """
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from gestalt_ros.overlay import contact_row
    from gestalt_ros.ros import topics
    from gestalt_ros.ros.convert import image_to_mask, image_to_rgb, stamp_key

    frames: dict[tuple[int, int], np.ndarray] = {}
    with Reader(input_bag) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic == f"{NAMESPACE}/{topics.IMAGE}":
                msg = deserialize_message(raw, Image)
                frames[stamp_key(msg.header)] = image_to_rgb(msg)
    wanted = (topics.VISIBLE_MASK, topics.AMODAL_MASK, topics.COMPLETION, topics.OVERLAY)
    # per image stamp, per topic: the messages in arrival order
    outputs: dict[tuple[int, int], dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    answers: list[tuple[tuple[int, int], dict]] = []
    with Reader(output_bag) as reader:
        for conn, _, raw in reader.messages():
            topic = conn.topic.removeprefix(f"{NAMESPACE}/")
            if topic == topics.OBJECTS:
                message = json.loads(deserialize_message(raw, String).data)
                stamp = message["header"]["stamp"]
                for entry in message["objects"]:
                    if entry["error"] is None:
                        answers.append(((stamp["sec"], stamp["nanosec"]), entry))
            elif topic in wanted:
                msg = deserialize_message(raw, Image)
                outputs[stamp_key(msg.header)][topic].append(msg)
    written = []
    seen: collections.Counter = collections.Counter()
    for k, (stamp, entry) in enumerate(answers):
        index = seen[stamp]
        seen[stamp] += 1
        frame_outputs = outputs[stamp]
        vis, amo, comp = (frame_outputs[t][index] for t in (topics.VISIBLE_MASK, topics.AMODAL_MASK, topics.COMPLETION))
        image = frames[stamp]
        row = contact_row(image, image_to_mask(vis), image_to_mask(amo), image_to_rgb(comp), entry)
        path = out_dir / f"prompt_{k:02d}_{entry['prompt']['kind']}.png"
        cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
        if len(frame_outputs[topics.OVERLAY]) > index:
            overlay = image_to_rgb(frame_outputs[topics.OVERLAY][index])
            cv2.imwrite(str(out_dir / f"overlay_{k:02d}.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written


def run_demo(out_dir: Path, config: GestaltConfig, scenes: int = 4, seed: int = 7) -> dict:
    """The three steps above; returns a summary (also written to ``out_dir/summary.json``)."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    input_bag, output_bag = out_dir / "input_bag", out_dir / "output_bag"
    for bag in (input_bag, output_bag):
        if bag.exists():
            raise FileExistsError(f"{bag} exists: choose an empty --out folder")
    logger.info("rendering %d synthetic scenes", scenes)
    data = _scenes_with_prompts(scenes, seed)
    manifest = write_input_bag(input_bag, data, start_ns=1_700_000_000 * 1_000_000_000)
    replay = replay_through_node(input_bag, output_bag, config, n_prompts=len(manifest))
    pngs = write_pngs(input_bag, output_bag, out_dir)
    summary = {
        "scenes": len(data),
        "prompts": manifest,
        "input_bag": str(input_bag),
        "output_bag": str(output_bag),
        "pngs": [str(p) for p in pngs],
        **replay,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if len(pngs) != len(manifest):
        raise RuntimeError(
            f"{len(manifest)} prompts sent but {len(pngs)} results recorded; see {out_dir / 'summary.json'}"
        )
    return summary
