"""``gestalt-ros demo``: the whole robot path on one machine, with no ROS install.

1. Render synthetic tabletop scenes (objects held out of training) and write them, with a
   point, a box and a mask prompt per scene, to an MCAP rosbag (``input_bag``).
2. Replay that bag through a real ``GestaltNode`` over rclpy topics, in namespace
   ``/camera``, and record every output to a second MCAP bag (``output_bag``).
3. Read the output bag back and write one PNG per prompt (input | visible | amodal |
   completion | label) and the node's own overlay, for a person to look at.

The node runs in ``mode: both``: it also segments every image without a prompt (scene
mode), and ``scene_NN.png`` shows each scene's objects coloured by occlusion layer, drawn
from the published ``objects`` (``amodal_rle``, ``layer``) and ``scene/visible_ids``.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from gestalt_ros.config import GestaltConfig
from gestalt_ros.prompts import interior_point
from gestalt_ros.ros import topics
from gestalt_ros.types import mask_bbox

logger = logging.getLogger(__name__)

NAMESPACE = "/camera"
FRAME_ID = "camera_optical_frame"
# One prompt of each kind per scene, in this order (the PNG names end with the kind).
PROMPT_KINDS = ("point", "box", "mask")
# The node's outputs the demo records (``objects`` among them; not /diagnostics).
DEMO_OUTPUTS = (
    topics.VISIBLE_MASK,
    topics.AMODAL_MASK,
    topics.COMPLETION,
    topics.OBJECTS,
    topics.OVERLAY,
    topics.STATUS,
    topics.SCENE_VISIBLE_IDS,
)


@dataclass
class DemoPrompt:
    kind: str
    visible: np.ndarray  # the object's true visible mask (the prompt is derived from it)
    name: str


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

    from gestalt_ros.replay import INPUTS
    from gestalt_ros.ros.convert import mask_to_image, rgb_to_image
    from gestalt_ros.ros.topics import IMAGE, PROMPT_BOX, PROMPT_MASK, PROMPT_POINT

    typestore = get_typestore(Stores.ROS2_KILTED)
    manifest = []
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(f"{NAMESPACE}/{t}", m, typestore=typestore) for t, m in INPUTS.items()}
        for i, (image, prompts) in enumerate(scenes):
            stamp_ns = start_ns + i * 1_000_000_000
            header = Header(frame_id=FRAME_ID)
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            writer.write(conns[IMAGE], stamp_ns, serialize_message(rgb_to_image(image, header)))
            for j, prompt in enumerate(prompts):
                if prompt.kind == "point":
                    click = interior_point(prompt.visible)
                    msg, topic = PointStamped(header=header), PROMPT_POINT
                    msg.point.x, msg.point.y = click.x, click.y
                elif prompt.kind == "box":
                    x0, y0, x1, y1 = mask_bbox(prompt.visible)
                    msg, topic = PolygonStamped(header=header), PROMPT_BOX
                    msg.polygon.points = [Point32(x=float(x0), y=float(y0)), Point32(x=float(x1), y=float(y1))]
                else:
                    msg, topic = mask_to_image(prompt.visible, header), PROMPT_MASK
                writer.write(conns[topic], stamp_ns + (j + 1) * 1000, serialize_message(msg))
                manifest.append({"scene": i, "stamp_ns": stamp_ns, "kind": prompt.kind, "object": prompt.name})
    return manifest


def replay_through_node(input_bag: Path, output_bag: Path, config: GestaltConfig, timeout_s: float = 120.0) -> dict:
    """Replay the bag through a GestaltNode in this process, each prompt waiting for its answer
    (``gestalt_ros.replay``, rate 0), and record the node's outputs to ``output_bag``."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from gestalt_ros.replay import replay
    from gestalt_ros.resources import select_fastdds_profile
    from gestalt_ros.ros.node import GestaltNode

    logger.info(select_fastdds_profile())
    config = config.with_overrides(["mode=both", "scene.every_n=1"])
    context = rclpy.Context()
    rclpy.init(context=context)
    overrides = [Parameter(k, value=v) for k, v in config.to_flat().items()]
    node = GestaltNode(namespace=NAMESPACE, context=context, parameter_overrides=overrides)
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError("gestalt_node could not be configured; its log above says why")
        node.trigger_activate()
        summary = replay(
            input_bag,
            output_bag,
            namespace=NAMESPACE,
            rate=0.0,
            timeout=timeout_s,
            outputs=DEMO_OUTPUTS,
            context=context,
            nodes=[node],
            scene=True,
        )
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return {"outputs": summary.recorded, "node_status": summary.node_status, "scenes_answered": summary.scenes}


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

    from gestalt_ros.eval.annotations import decode_rle
    from gestalt_ros.overlay import contact_row, draw_scene_overlay
    from gestalt_ros.ros.convert import image_to_ids, image_to_mask, image_to_rgb, stamp_key

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
    scenes: list[tuple[tuple[int, int], list[dict]]] = []
    with Reader(output_bag) as reader:
        for conn, _, raw in reader.messages():
            topic = conn.topic.removeprefix(f"{NAMESPACE}/")
            if topic == topics.OBJECTS:
                message = json.loads(deserialize_message(raw, String).data)
                stamp = message["header"]["stamp"]
                key = (stamp["sec"], stamp["nanosec"])
                if all(entry["prompt"] is None for entry in message["objects"]):
                    scenes.append((key, [e for e in message["objects"] if e["error"] is None]))
                    continue
                for entry in message["objects"]:
                    if entry["error"] is None:
                        answers.append((key, entry))
            elif topic == topics.SCENE_VISIBLE_IDS:
                msg = deserialize_message(raw, Image)
                outputs[stamp_key(msg.header)][topic].append(msg)
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
    for k, (stamp, entries) in enumerate(scenes):
        ids = image_to_ids(outputs[stamp][topics.SCENE_VISIBLE_IDS][0])
        objects = [
            SimpleNamespace(
                id=e["id"],
                label=e["label"],
                layer=e["layer"],
                visible_mask=ids == e["id"] % 65536,
                amodal_mask=decode_rle(e["amodal_rle"]),
            )
            for e in entries
        ]
        path = out_dir / f"scene_{k:02d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(draw_scene_overlay(frames[stamp], objects), cv2.COLOR_RGB2BGR))
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
    replay = replay_through_node(input_bag, output_bag, config)
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
    if len([p for p in pngs if p.name.startswith("prompt_")]) != len(manifest):
        raise RuntimeError(
            f"{len(manifest)} prompts sent but {len(pngs)} results recorded; see {out_dir / 'summary.json'}"
        )
    return summary
