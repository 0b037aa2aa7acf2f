"""``detections``: each answer as a ``vision_msgs/Detection2DArray``, for consumers that read vision_msgs.

vision_msgs comes with a robot's ROS install but has no PyPI wheel, so the node runs
without it: ``load`` says why detections are off, and the node logs and reports that.
The conversion takes the message module as an argument, so it is tested without vision_msgs.
"""

from __future__ import annotations

from types import ModuleType

from std_msgs.msg import Header

from gestalt_ros.ros.convert import copy_header
from gestalt_ros.types import ObjectResult


def load() -> tuple[ModuleType | None, str]:
    """``vision_msgs.msg`` and "on", or None and why detections are off."""
    try:
        from vision_msgs import msg
    except ImportError as err:
        return None, f"off: vision_msgs is not installed ({err})"
    return msg, "on"


def detection_array(msgs: ModuleType, result: ObjectResult, header: Header, request_id: int):
    """One Detection2D for one answer, with the source image's header.

    The box is the amodal one in pixels: ``center`` +- ``size`` / 2 gives its edges x0 .. x1
    and y0 .. y1 of the ``objects`` entry's ``amodal_bbox`` (x1, y1 exclusive). The label and
    its score are the only hypothesis; ``id`` is the entry's ``id``, to pair the two messages.
    """
    x0, y0, x1, y1 = result.amodal_bbox
    detection = msgs.Detection2D(header=copy_header(header), id=str(request_id))
    detection.bbox.center.position.x = (x0 + x1) / 2.0
    detection.bbox.center.position.y = (y0 + y1) / 2.0
    detection.bbox.size_x = float(x1 - x0)
    detection.bbox.size_y = float(y1 - y0)
    hypothesis = msgs.ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = result.label
    hypothesis.hypothesis.score = float(result.score)
    detection.results = [hypothesis]
    return msgs.Detection2DArray(header=copy_header(header), detections=[detection])
