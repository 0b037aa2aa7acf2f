"""Soak: a camera at 30 Hz and a prompt every second against ``gestalt-ros node`` for minutes.

    python benchmarks/soak.py [--minutes 10] [--fps 30] [--set KEY=VALUE ...]

The node runs in its own process with the shipped Fast DDS profile; this process publishes
640x480 rgb8 frames (best effort, as a camera driver) and, once a second, a mask prompt on
the frame it just sent. Prints the end-to-end latency of the answers (p50/p95/p99), the
throughput, how many prompts were dropped or failed, the node's counters, and its RSS over
time with the growth after the first minute (warm-up).
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

sys.path.insert(0, str(Path(__file__).parent))
from node_latency import frame_and_mask, percentiles  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, String

    from gestalt_ros.config import GestaltConfig
    from gestalt_ros.resources import fastdds_profile
    from gestalt_ros.ros import convert, topics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = GestaltConfig().with_overrides(args.set)
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile())
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    params = Path(tempfile.mkdtemp()) / "params.yaml"
    params.write_text(config.to_ros_yaml())
    log = open(params.parent / "node.log", "w")  # noqa: SIM115 - closed at the end
    node = subprocess.Popen(
        [sys.executable, "-m", "gestalt_ros.cli", "node", "--ros-args", "--params-file", str(params)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    rclpy.init()
    peer = rclpy.create_node("soak")
    sent: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    status: dict = {}

    def on_objects(msg: String) -> None:
        message = json.loads(msg.data)
        entry = message["objects"][0]
        stamp = (message["header"]["stamp"]["sec"], message["header"]["stamp"]["nanosec"])
        if entry["error"] is not None:
            errors.append(entry["error"])
        elif stamp in sent:
            latencies.append(time.perf_counter() - sent.pop(stamp))

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    peer.create_subscription(String, topics.OBJECTS, on_objects, reliable)
    peer.create_subscription(String, topics.STATUS, lambda m: status.update(json.loads(m.data)), reliable)
    image_pub = peer.create_publisher(Image, topics.IMAGE, best_effort)
    mask_pub = peer.create_publisher(Image, topics.PROMPT_MASK, reliable)
    image, mask = frame_and_mask()
    deadline = time.monotonic() + 120
    while mask_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(peer, timeout_sec=0.1)
    time.sleep(2.0)  # the node configures (loads its models) after its topics exist
    rss: list[tuple[float, float]] = []
    start = time.monotonic()
    period = 1.0 / args.fps
    frames = prompts = 0
    next_frame, next_prompt, next_rss = start, start + 1.0, start
    try:
        while time.monotonic() - start < 60 * args.minutes:
            now = time.monotonic()
            if now >= next_frame:
                stamp_ns = time.time_ns()
                header = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="camera")
                image_pub.publish(convert.rgb_to_image(np.roll(image, frames % 64, axis=1), header))
                frames += 1
                next_frame += period
                if now >= next_prompt:
                    sent[(header.stamp.sec, header.stamp.nanosec)] = time.perf_counter()
                    mask_pub.publish(convert.mask_to_image(np.roll(mask, (frames - 1) % 64, axis=1), header))
                    prompts += 1
                    next_prompt += 1.0
            if now >= next_rss:
                rss.append((round(now - start, 1), round(rss_mib(node.pid), 1)))
                next_rss += 10.0
            rclpy.spin_once(peer, timeout_sec=max(0.0, min(next_frame, next_rss) - time.monotonic()))
        end = time.monotonic() + 10
        while sent and time.monotonic() < end:  # the last answers
            rclpy.spin_once(peer, timeout_sec=0.1)
    finally:
        peer.destroy_node()
        rclpy.try_shutdown()
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
        log.close()
    after_warmup = [r for t, r in rss if t >= 60.0] or [r for _, r in rss]
    result = {
        "minutes": args.minutes,
        "frames_sent": frames,
        "prompts_sent": prompts,
        "answers": len(latencies),
        "unanswered": len(sent),
        "errors": len(errors),
        "error_kinds": sorted({e.split(":")[0] for e in errors}),
        "latency_s": percentiles(latencies) if latencies else None,
        "answers_per_second": round(len(latencies) / (60 * args.minutes), 3),
        "node_status": status,
        "rss_mib": rss,
        "rss_growth_after_warmup_percent": round(100 * (after_warmup[-1] / after_warmup[0] - 1), 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
