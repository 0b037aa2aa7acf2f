"""A prompt's latency through the node against the same pipeline call in a plain script.

    python benchmarks/node_latency.py [--prompts 40] [--prompt mask|point] [--set KEY=VALUE ...]

In one run, on one 640x480 rgb8 frame and its mask prompt (or a click on the disc's
innermost pixel), in alternating rounds: (1) the
pipeline alone in this process; (2) ``gestalt-ros node`` in its own process, with this
process publishing the frame once and the prompts one at a time (each after the previous
answer), timing from publishing a prompt to receiving its ``objects`` answer. The node's
own part is that end-to-end time minus the pipeline's stage times the answer reports.
Prints p50/p95/p99 of each and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gestalt_ros import timing


def frame_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """A 640x480 frame: a textured background, a red disc half hidden by a blue bar."""
    rng = np.random.default_rng(0)
    image = rng.integers(40, 120, (480, 640, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:480, :640]
    disc = (yy - 240) ** 2 + (xx - 300) ** 2 < 90**2
    image[disc] = (220, 40, 40)
    bar = (xx >= 320) & (xx < 380)
    image[bar] = (40, 40, 220)
    return image, disc & ~bar


def percentiles(values: list[float]) -> dict[str, float]:
    return timing.percentiles(values) | {"n": len(values)}


class FrameMissing(RuntimeError):
    """The node answered that the prompt's frame never reached it."""


class NodeClient:
    """``gestalt-ros node`` in its own process, and this process's publishers and subscriber."""

    def __init__(self, config, image: np.ndarray, mask: np.ndarray, click: bool = False) -> None:
        from gestalt_ros.resources import fastdds_profile

        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile())
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        params = Path(tempfile.mkdtemp()) / "params.yaml"
        params.write_text(config.to_ros_yaml())
        self.log = open(params.parent / "node.log", "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gestalt_ros.cli", "node", "--ros-args", "--params-file", str(params)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._meet(image, mask, click)
        except BaseException:  # a node left running would answer the next run's prompts too
            self.process.kill()
            self.process.wait(timeout=30)
            self.log.close()
            raise

    def _meet(self, image: np.ndarray, mask: np.ndarray, click: bool) -> None:
        """This process's topics, matched with the node's; the frame sent; one prompt answered."""
        import rclpy
        from builtin_interfaces.msg import Time
        from geometry_msgs.msg import PointStamped
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header, String

        from gestalt_ros.ros import convert, topics

        rclpy.init()
        self.rclpy = rclpy
        self.peer = rclpy.create_node("latency_bench")
        self.answers: list[tuple[float, dict]] = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.peer.create_subscription(
            String, topics.OBJECTS, lambda m: self.answers.append((time.perf_counter(), json.loads(m.data))), reliable
        )
        image_pub = self.peer.create_publisher(Image, topics.IMAGE, reliable)
        kind = (PointStamped, topics.PROMPT_POINT) if click else (Image, topics.PROMPT_MASK)
        self.prompt_pub = self.peer.create_publisher(*kind, reliable)
        header = Header(stamp=Time(sec=1, nanosec=0), frame_id="camera")
        deadline = time.monotonic() + 120
        publishers = (image_pub, self.prompt_pub)  # an image sent before its match is lost
        while not all(p.get_subscription_count() for p in publishers) and time.monotonic() < deadline:
            rclpy.spin_once(self.peer, timeout_sec=0.1)
        # Matched here is not yet matched at the node: a best-effort frame sent at once is lost.
        time.sleep(0.5)
        self.frame = convert.rgb_to_image(image, header)
        self.image_pub = image_pub
        image_pub.publish(self.frame)
        time.sleep(0.5)
        if click:
            from gestalt_ros.prompts import interior_point

            self.prompt = PointStamped(header=header)
            point = interior_point(mask)
            self.prompt.point.x, self.prompt.point.y = point.x, point.y
        else:
            self.prompt = convert.mask_to_image(mask, header)
        self.warm_up()

    def warm_up(self, tries: int = 5) -> None:
        """One answered prompt; the frame is sent again while the node reports it never came
        (the node reads images best-effort, so a frame may be dropped)."""
        for _ in range(tries - 1):
            try:
                self.prompts(1)
                return
            except FrameMissing:
                self.image_pub.publish(self.frame)
                time.sleep(0.5)
        self.prompts(1)

    def prompts(self, n: int) -> tuple[list[float], list[float]]:
        """End-to-end seconds of ``n`` prompts sent one after another, and each answer's pipeline seconds."""
        end_to_end, pipeline = [], []
        for _ in range(n):
            k = len(self.answers)
            sent = time.perf_counter()
            self.prompt_pub.publish(self.prompt)
            deadline = time.monotonic() + 60
            while len(self.answers) <= k and time.monotonic() < deadline:
                self.rclpy.spin_once(self.peer, timeout_sec=0.01)
            if len(self.answers) <= k:
                raise RuntimeError(f"no answer; see {self.log.name}")
            received, message = self.answers[k]
            entry = message["objects"][0]
            if entry["error"] is not None:
                missing = entry["error"].startswith("rejected (no_image)")
                raise (FrameMissing if missing else RuntimeError)(entry["error"])
            end_to_end.append(received - sent)
            pipeline.append(sum(entry["timings"].values()))
        return end_to_end, pipeline

    def close(self) -> None:
        self.peer.destroy_node()
        self.rclpy.try_shutdown()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        self.log.close()


def main() -> None:
    from gestalt_ros.config import GestaltConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40, help="prompts on each side")
    parser.add_argument("--rounds", type=int, default=4, help="alternations between the script and the node")
    parser.add_argument("--prompt", choices=("mask", "point"), default="mask", help="a mask prompt or a click")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = GestaltConfig().with_overrides(args.set)
    image, mask = frame_and_mask()
    from gestalt_ros.pipeline import GestaltPipeline
    from gestalt_ros.prompts import prompt_from_mask

    prompt = prompt_from_mask(args.prompt, mask)
    pipeline = GestaltPipeline.from_config(config)
    pipeline(image, prompt)  # warm-up
    node = NodeClient(config, image, mask, click=args.prompt == "point")
    script, end_to_end, in_node = [], [], []
    try:
        # alternate rounds, so that a machine whose speed drifts slows both sides alike
        for _ in range(args.rounds):
            for _ in range(args.prompts // args.rounds):
                start = time.perf_counter()
                pipeline(image, prompt)
                script.append(time.perf_counter() - start)
            e2e, part = node.prompts(args.prompts // args.rounds)
            end_to_end += e2e
            in_node += part
    finally:
        node.close()
    own = [e - p for e, p in zip(end_to_end, in_node)]
    result = {
        "plain_script_s": percentiles(script),
        "node_end_to_end_s": percentiles(end_to_end),
        "node_pipeline_s": percentiles(in_node),
        "node_own_part_s": percentiles(own),
        "end_to_end_over_script_p50": round(float(np.median(end_to_end) / np.median(script)), 3),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
