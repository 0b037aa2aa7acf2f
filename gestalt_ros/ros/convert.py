"""ROS messages <-> gestalt_ros types, without cv_bridge (it has no working wheel).

Pure functions: they never touch a node, so they are tested without DDS. Images follow
sensor_msgs/Image: ``step`` bytes per row (rows may be padded), ``len(data) == step * height``.
Only 8-bit encodings are read, so ``is_bigendian`` (byte order inside a multi-byte channel)
has no effect on them; 16-bit encodings are rejected by name. The one 16-bit image written,
scene mode's id image (mono16), is little-endian and says so (``is_bigendian`` 0).
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped, PolygonStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from gestalt_ros.prompts import PromptError
from gestalt_ros.types import BoxPrompt, PointPrompt

# encoding -> channels, for the encodings the node reads as camera images
COLOR_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
# encodings accepted for a mask prompt (one 8-bit channel, nonzero = object)
MASK_ENCODINGS = ("mono8", "8UC1")


class ImageError(ValueError):
    """A sensor_msgs/Image that cannot be read; ``reason`` is a short key for counters."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _pixels(msg: Image, channels: int) -> np.ndarray:
    """Validated H x W x C uint8 copy of ``msg.data`` (padding dropped, never aliasing the message)."""
    height, width, step = msg.height, msg.width, msg.step
    if height == 0 or width == 0:
        raise ImageError(f"image is empty: {width}x{height} ({msg.encoding})", "empty")
    row = width * channels
    if step < row:
        raise ImageError(
            f"step {step} is smaller than width {width} x {channels} channel(s) = {row} bytes ({msg.encoding})",
            "bad_step",
        )
    size = len(msg.data)
    if size != step * height:
        raise ImageError(
            f"data has {size} bytes, expected step {step} x height {height} = {step * height} "
            f"({width}x{height} {msg.encoding})",
            "bad_length",
        )
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)
    # Slicing off the padding and copying makes the result writable (frombuffer over bytes is not)
    # and independent of the message buffer.
    return np.array(rows[:, :row], copy=True).reshape(height, width, channels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """rgb8 / bgr8 / mono8 Image -> H x W x 3 uint8 RGB (mono8 replicated to three channels)."""
    channels = COLOR_ENCODINGS.get(msg.encoding)
    if channels is None:
        raise ImageError(
            f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(COLOR_ENCODINGS)}",
            "bad_encoding",
        )
    pixels = _pixels(msg, channels)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return pixels


def image_to_mask(msg: Image) -> np.ndarray:
    """mono8 mask Image (a mask prompt) -> H x W bool, object where the value is above 127."""
    if msg.encoding not in MASK_ENCODINGS:
        raise ImageError(
            f"unsupported mask encoding {msg.encoding!r}; expected one of {list(MASK_ENCODINGS)}",
            "bad_encoding",
        )
    return _pixels(msg, 1)[:, :, 0] > 127


def _image(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    """H x W (x C) uint8 pixels -> Image of ``encoding``, tightly packed, with a copy of ``header``."""
    height, width = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    return Image(
        header=copy_header(header),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
        data=np.ascontiguousarray(pixels).tobytes(),
    )


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """H x W x 3 uint8 RGB -> rgb8 Image with a copy of ``header``."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")
    return _image(rgb, "rgb8", header)


def mask_to_image(mask: np.ndarray, header: Header) -> Image:
    """H x W bool mask -> mono8 Image with only 0 and 255, with a copy of ``header``."""
    if mask.ndim != 2:
        raise ValueError(f"expected an H x W mask, got shape {mask.shape}")
    return _image(np.where(mask.astype(bool), np.uint8(255), np.uint8(0)), "mono8", header)


def ids_to_image(ids: np.ndarray, header: Header) -> Image:
    """H x W uint16 ids -> mono16 Image (little-endian, tightly packed), with a copy of ``header``."""
    if ids.ndim != 2 or ids.dtype != np.uint16:
        raise ValueError(f"expected H x W uint16 ids, got {ids.shape} {ids.dtype}")
    height, width = ids.shape
    return Image(
        header=copy_header(header),
        height=height,
        width=width,
        encoding="mono16",
        is_bigendian=0,
        step=2 * width,
        data=np.ascontiguousarray(ids, dtype="<u2").tobytes(),
    )


def image_to_ids(msg: Image) -> np.ndarray:
    """mono16 Image (``scene/visible_ids``) -> H x W uint16, either byte order."""
    if msg.encoding != "mono16":
        raise ImageError(f"expected a mono16 id image, got {msg.encoding!r}", "bad_encoding")
    pixels = _pixels(msg, 2).reshape(msg.height, msg.width * 2)
    return pixels.view(">u2" if msg.is_bigendian else "<u2").astype(np.uint16)


def point_to_prompt(msg: PointStamped) -> PointPrompt:
    """A click in pixels (as rqt_image_view publishes it): x = column, y = row; z is ignored."""
    return PointPrompt(x=float(msg.point.x), y=float(msg.point.y))


def polygon_to_box(msg: PolygonStamped) -> BoxPrompt:
    """A PolygonStamped of exactly two points, opposite corners of the box, in pixels."""
    points = msg.polygon.points
    if len(points) != 2:
        raise PromptError(f"box prompt needs exactly 2 corner points, got {len(points)}")
    a, b = points
    return BoxPrompt(x0=float(a.x), y0=float(a.y), x1=float(b.x), y1=float(b.y))


def copy_header(header: Header) -> Header:
    """A new Header with the same stamp and frame_id, so outputs never share the input message."""
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def stamp_json(header: Header) -> dict[str, int]:
    """A header's stamp as the ``objects`` JSON writes it."""
    return {"sec": header.stamp.sec, "nanosec": header.stamp.nanosec}


def stamp_key(header: Header) -> tuple[int, int]:
    """(sec, nanosec) of a header: how a prompt finds the cached image it refers to."""
    return header.stamp.sec, header.stamp.nanosec
