"""Message conversion without a node: round trips, padded rows, read-only buffers, bad images."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Point32, PointStamped, PolygonStamped, PoseWithCovariance
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from gestalt_ros.prompts import PromptError
from gestalt_ros.ros import convert
from gestalt_ros.ros.detections import detection_array
from gestalt_ros.types import BoxPrompt, ObjectResult, PointPrompt

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_optical")


def _rgb(height: int = 5, width: int = 7) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _message(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """Build an Image by hand, with ``pad`` junk bytes after each row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, pad), 77, np.uint8)], axis=1)
    msg = Image(header=HEADER, height=height, width=width, encoding=encoding, step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_round_trip(pad: int) -> None:
    rgb = _rgb()
    assert np.array_equal(convert.image_to_rgb(_message(rgb, "rgb8", pad)), rgb)
    msg = convert.rgb_to_image(rgb, HEADER)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ("rgb8", 21, 5, 7)
    assert np.array_equal(convert.image_to_rgb(msg), rgb)


@pytest.mark.parametrize("pad", [0, 5])
def test_bgr8_is_swapped_to_rgb(pad: int) -> None:
    rgb = _rgb()
    out = convert.image_to_rgb(_message(rgb[:, :, ::-1], "bgr8", pad))
    assert np.array_equal(out, rgb)
    assert out.flags.c_contiguous


@pytest.mark.parametrize("pad", [0, 1])
def test_mono8_is_replicated(pad: int) -> None:
    grey = _rgb()[:, :, :1]
    out = convert.image_to_rgb(_message(grey, "mono8", pad))
    assert out.shape == (5, 7, 3)
    assert all(np.array_equal(out[:, :, c], grey[:, :, 0]) for c in range(3))


def test_mask_round_trip_is_mono8_0_255() -> None:
    mask = _rgb()[:, :, 0] > 128
    msg = convert.mask_to_image(mask, HEADER)
    assert (msg.encoding, msg.step) == ("mono8", 7)
    values = np.frombuffer(msg.data, np.uint8)
    assert set(np.unique(values)) <= {0, 255}
    assert np.array_equal(convert.image_to_mask(msg), mask)


def test_mask_prompt_with_padding_and_8uc1() -> None:
    mask = np.zeros((4, 6, 1), np.uint8)
    mask[1:3, 2:5] = 255
    out = convert.image_to_mask(_message(mask, "8UC1", pad=2))
    assert out.dtype == bool and np.array_equal(out, mask[:, :, 0] > 0)


def test_read_only_buffer_gives_writable_independent_copy() -> None:
    """rclpy stores data as a writable array, but bag readers hand out immutable bytes."""
    rgb = _rgb()
    msg = SimpleNamespace(
        header=HEADER, height=5, width=7, encoding="rgb8", step=21, is_bigendian=0, data=rgb.tobytes()
    )
    assert not np.frombuffer(msg.data, np.uint8).flags.writeable
    out = convert.image_to_rgb(msg)
    out[:] = 0
    assert np.array_equal(convert.image_to_rgb(msg), rgb)
    native = _message(rgb, "rgb8")
    convert.image_to_rgb(native)[:] = 0
    assert np.array_equal(convert.image_to_rgb(native), rgb)  # the message is untouched


def test_headers_are_copied_not_shared() -> None:
    msg = convert.rgb_to_image(_rgb(), HEADER)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 345, "camera_optical")
    assert msg.header is not HEADER
    assert convert.stamp_key(msg.header) == (12, 345)


def test_prompt_messages() -> None:
    point = PointStamped(header=HEADER, point=Point(x=10.5, y=3.0, z=9.0))
    assert convert.point_to_prompt(point) == PointPrompt(10.5, 3.0)
    box = PolygonStamped(header=HEADER)
    box.polygon.points = [Point32(x=8.0, y=9.0), Point32(x=2.0, y=1.0)]
    assert convert.polygon_to_box(box) == BoxPrompt(8.0, 9.0, 2.0, 1.0)
    box.polygon.points = [Point32(x=8.0, y=9.0)]
    with pytest.raises(PromptError, match="exactly 2 corner points, got 1"):
        convert.polygon_to_box(box)


def _bad(**fields) -> Image:
    msg = Image(header=HEADER, height=2, width=3, encoding="rgb8", step=9)
    msg.data = bytes(18)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "reason", "message"),
    [
        (_bad(encoding="bgr16"), "bad_encoding", r"unsupported image encoding 'bgr16'"),
        (_bad(encoding="32FC1"), "bad_encoding", r"'32FC1'.*expected one of \['bgr8', 'mono8', 'rgb8'\]"),
        (_bad(height=0, width=0, step=0, data=b""), "empty", r"image is empty: 0x0"),
        (_bad(height=2, width=0, data=b""), "empty", r"image is empty: 0x2"),
        (_bad(data=bytes(17)), "bad_length", r"data has 17 bytes, expected step 9 x height 2 = 18"),
        (_bad(data=bytes(19)), "bad_length", r"data has 19 bytes"),
        (_bad(step=8, data=bytes(16)), "bad_step", r"step 8 is smaller than width 3 x 3 channel\(s\) = 9"),
    ],
)
def test_bad_images_raise_image_error(msg: Image, reason: str, message: str) -> None:
    with pytest.raises(convert.ImageError, match=message) as info:
        convert.image_to_rgb(msg)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_bad_mask_prompts_raise_image_error() -> None:
    with pytest.raises(convert.ImageError, match="unsupported mask encoding 'rgb8'"):
        convert.image_to_mask(_bad())
    short = Image(header=HEADER, height=2, width=3, encoding="mono8", step=3, data=bytes(5))
    with pytest.raises(convert.ImageError, match="data has 5 bytes, expected step 3 x height 2 = 6"):
        convert.image_to_mask(short)


def test_outputs_reject_wrong_arrays() -> None:
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        convert.rgb_to_image(np.zeros((4, 4), np.uint8), HEADER)
    with pytest.raises(ValueError, match="H x W mask"):
        convert.mask_to_image(np.zeros((4, 4, 3), bool), HEADER)


class _RosidlLike:
    """A message class as rosidl generates it: keyword construction, its declared fields only,
    each value checked on assignment (``[T]``: a sequence of T)."""

    FIELDS: dict = {}

    def __init__(self, **values) -> None:
        for name, kind in self.FIELDS.items():
            object.__setattr__(self, name, [] if isinstance(kind, list) else kind())
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        if name not in self.FIELDS:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        kind = self.FIELDS[name]
        if isinstance(kind, list):
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, kind[0]) for v in value)
        else:
            ok = isinstance(value, kind)
        assert ok, f"The '{name}' field must be of type {kind}, got {value!r}"
        object.__setattr__(self, name, value)


def _vision_msgs_stand_in() -> SimpleNamespace:
    """vision_msgs 4.x (ROS 2 Kilted) as its msg/*.msg files lay it out; the real one has no wheel."""

    def msg(name: str, **fields) -> type:
        return type(name, (_RosidlLike,), {"FIELDS": fields})

    point = msg("Point2D", x=float, y=float)
    pose = msg("Pose2D", position=point, theta=float)
    box = msg("BoundingBox2D", center=pose, size_x=float, size_y=float)
    hypothesis = msg("ObjectHypothesis", class_id=str, score=float)
    with_pose = msg("ObjectHypothesisWithPose", hypothesis=hypothesis, pose=PoseWithCovariance)
    detection = msg("Detection2D", header=Header, results=[with_pose], bbox=box, id=str)
    array = msg("Detection2DArray", header=Header, detections=[detection])
    classes = (point, pose, box, hypothesis, with_pose, detection, array)
    return SimpleNamespace(**{c.__name__: c for c in classes})


def test_a_result_as_a_detection2d_array() -> None:
    mask = np.zeros((40, 30), bool)
    result = ObjectResult(
        visible_mask=mask,
        amodal_mask=mask,
        agreement=np.zeros((40, 30), np.float32),
        completion=np.zeros((40, 30, 3), np.uint8),
        completion_crop=np.zeros((8, 8, 3), np.uint8),
        completions=np.zeros((1, 8, 8, 3), np.uint8),
        sample_masks=np.zeros((1, 8, 8), bool),
        label="coffee mug",
        score=np.float32(0.25),  # as the classifiers give it
        top_k=[("coffee mug", 0.25)],
        visible_bbox=(5, 4, 20, 20),
        amodal_bbox=(3, 4, 20, 31),
        crop_box=(0, 0, 30, 40),
        occlusion_ratio=0.3,
    )
    msgs = _vision_msgs_stand_in()
    array = detection_array(msgs, result, HEADER, 7)
    (detection,) = array.detections
    for header in (array.header, detection.header):  # the source image's, copied
        assert header is not HEADER and convert.stamp_key(header) == (12, 345) and header.frame_id == "camera_optical"
    assert detection.id == "7", "the objects entry's id"
    box = detection.bbox
    assert (box.center.position.x, box.center.position.y, box.size_x, box.size_y) == (11.5, 17.5, 17.0, 27.0)
    edges = (box.center.position.x - box.size_x / 2, box.center.position.y - box.size_y / 2)
    assert edges + (edges[0] + box.size_x, edges[1] + box.size_y) == result.amodal_bbox
    (hypothesis,) = detection.results
    assert hypothesis.hypothesis.class_id == "coffee mug" and hypothesis.hypothesis.score == 0.25
