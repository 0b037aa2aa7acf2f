"""The scene model's view of a camera frame: the whole frame, letterboxed into a square.

Training (``data/scene_examples.py``) and inference (``scene/sequential.py``) frame images
with this function only, so the two cannot drift apart.
"""

from __future__ import annotations

from gestalt_ros.prompts import CropWindow


def frame_window(height: int, width: int, x0: int = 0, y0: int = 0) -> CropWindow:
    """The square window, centred on the ``height`` x ``width`` frame at (x0, y0), whose side
    is the frame's longer side: the shorter axis is padded (grey) on both sides."""
    side = max(height, width)
    return CropWindow(x0 + (width - side) // 2, y0 + (height - side) // 2, side, side)
