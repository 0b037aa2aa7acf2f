"""QoS profiles of the node's topics.

Image reliability is a parameter because a RELIABLE subscription never connects to a
best-effort camera driver, while a BEST_EFFORT one accepts both kinds of publisher.
Prompts and outputs are RELIABLE: a lost click or a lost result is a lost answer.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from gestalt_ros.config import RosConfig

_RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
}


def image_qos(cfg: RosConfig) -> QoSProfile:
    """Subscription profile for camera images, from ``ros.image_reliability``/``ros.image_depth``."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=cfg.image_depth,
        reliability=_RELIABILITY[cfg.image_reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Profile for prompts and every output."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
