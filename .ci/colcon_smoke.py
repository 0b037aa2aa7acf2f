"""CI: the colcon-installed gestalt_node answers one prompt, from its own install tree.

    python .ci/colcon_smoke.py WORKSPACE

Starts WORKSPACE/install/gestalt_ros/lib/gestalt_ros/gestalt_node (the sourced workspace's
environment is inherited), sends a 640x480 frame and a mask prompt over real topics from
this process, and checks the answer's header and that the node read its Fast DDS profile
and model from WORKSPACE/install/gestalt_ros/share/gestalt_ros.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from gestalt_ros.ros import convert, topics


def main() -> int:
    workspace = Path(sys.argv[1]).resolve()
    share = workspace / "install" / "gestalt_ros" / "share" / "gestalt_ros"
    executable = workspace / "install" / "gestalt_ros" / "lib" / "gestalt_ros" / "gestalt_node"
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    log_path = workspace / "node.log"
    with open(log_path, "w") as log:
        node = subprocess.Popen([str(executable)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    # this process writes a 900 KB frame to a best-effort reader: it needs the large-image profile too
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(share / "config" / "fastdds_shm.xml")
    rclpy.init()
    peer = rclpy.create_node("colcon_smoke")
    answers: list[dict] = []
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    peer.create_subscription(String, topics.OBJECTS, lambda m: answers.append(json.loads(m.data)), reliable)
    image_pub = peer.create_publisher(Image, topics.IMAGE, reliable)
    mask_pub = peer.create_publisher(Image, topics.PROMPT_MASK, reliable)
    header = Header(stamp=Time(sec=42, nanosec=7), frame_id="camera")
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[150:330, 220:420] = (220, 40, 40)
    mask = np.zeros((480, 640), bool)
    mask[150:330, 220:330] = True
    deadline = time.monotonic() + 90
    try:
        while mask_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(peer, timeout_sec=0.2)
        image_pub.publish(convert.rgb_to_image(frame, header))
        time.sleep(0.5)
        mask_pub.publish(convert.mask_to_image(mask, header))
        while not answers and time.monotonic() < deadline:
            rclpy.spin_once(peer, timeout_sec=0.2)
    finally:
        peer.destroy_node()
        rclpy.try_shutdown()
        node.send_signal(signal.SIGINT)
        node.wait(timeout=20)
    output = log_path.read_text()
    assert answers, f"no answer from the colcon-installed node:\n{output}"
    entry = answers[0]["objects"][0]
    assert entry["error"] is None and answers[0]["header"] == {"stamp": {"sec": 42, "nanosec": 7}, "frame_id": "camera"}
    assert str(share / "config" / "fastdds_shm.xml") in output, output
    print(f"colcon-installed gestalt_node answered: {entry['label']} ({entry['amodal_area']} px amodal), from {share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
