"""The node's bookkeeping: counters, per-stage latency, and the ``/diagnostics`` message.

Callbacks and the worker write here under one lock; a timer reads a snapshot at
``ros.status_period`` and publishes it as ``status`` JSON and as a
``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` (what ``rqt_runtime_monitor`` and
aggregators read). Nothing is published per message.
"""

from __future__ import annotations

import collections
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from gestalt_ros.timing import percentiles

# Latencies kept per stage for the percentiles.
WINDOW = 256
# Stages timed in the node: the pipeline's own, "publish" (conversion and publishing of the
# outputs) and "total" (from the prompt's arrival to its last output, queue wait included).
STAGES = ("set_image", "visible", "completion", "amodal", "recognition", "publish", "total")
# Stages timed per scene frame (scene mode): the scene pipeline's own, "publish", and "total"
# (from the frame's arrival to its last output, the wait for the worker included).
SCENE_STAGES = ("scene", "recognition", "publish", "total")


class Counters:
    """Counts by event and reason, and latency windows by stage; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images = {"received": 0, "rejected": collections.Counter()}
        self._prompts = {
            "received": 0,
            "processed": 0,
            "rejected": collections.Counter(),
            "failed": 0,
            "dropped": 0,
            "awaited_frame": 0,  # arrived before their image and waited for it (ros.frame_wait)
            "fell_back_to_latest": 0,
        }
        # Scene mode: valid frames that arrived while active, those skipped by scene.every_n,
        # segmented, failed, and dropped by reason (replaced: a newer frame took its place
        # while the worker was busy; deactivated: waiting when the node was deactivated).
        self._scene = {
            "received": 0,
            "skipped": 0,
            "processed": 0,
            "failed": 0,
            "dropped": collections.Counter(),
            "objects": 0,
        }
        self._latency = {stage: collections.deque(maxlen=WINDOW) for stage in STAGES}
        self._scene_latency = {stage: collections.deque(maxlen=WINDOW) for stage in SCENE_STAGES}
        self._last_dropped = 0

    def image(self, key: str, reason: str | None = None) -> None:
        self._add(self._images, key, reason)

    def prompt(self, key: str, reason: str | None = None) -> None:
        self._add(self._prompts, key, reason)

    def scene(self, key: str, reason: str | None = None, n: int = 1) -> None:
        self._add(self._scene, key, reason, n)

    def _add(self, group: dict, key: str, reason: str | None, n: int = 1) -> None:
        with self._lock:
            if reason is None:
                group[key] += n
            else:
                group[key][reason] += n

    def latency(self, timings: dict[str, float]) -> None:
        self._append(self._latency, timings)

    def scene_latency(self, timings: dict[str, float]) -> None:
        self._append(self._scene_latency, timings)

    def _append(self, windows: dict[str, collections.deque], timings: dict[str, float]) -> None:
        with self._lock:
            for stage, seconds in timings.items():
                if stage in windows:
                    windows[stage].append(seconds)

    def snapshot(self, scene: bool = False) -> dict:
        """Counters and, per stage, the last / p50 / p95 / p99 latency in seconds; with
        ``scene``, the scene frames' counters and latency too (under ``scene``)."""
        with self._lock:
            out = {
                "images": _plain(self._images),
                "prompts": _plain(self._prompts),
                "latency_s": _stats(self._latency),
            }
            if scene:
                out["scene"] = {**_plain(self._scene), "latency_s": _stats(self._scene_latency)}
            return out

    def dropped_since_last_call(self) -> int:
        with self._lock:
            new = self._prompts["dropped"] - self._last_dropped
            self._last_dropped = self._prompts["dropped"]
            return new


def _stats(windows: dict[str, collections.deque]) -> dict:
    return {stage: {"last": round(window[-1], 4), **percentiles(window)} for stage, window in windows.items() if window}


def _plain(group: dict) -> dict:
    return {key: dict(value) if isinstance(value, collections.Counter) else value for key, value in group.items()}


def diagnostic_array(
    name: str,
    hardware_id: str,
    snapshot: dict,
    header: Header,
    *,
    worker_alive: bool,
    active: bool,
    dropped_recently: int,
    latency_warn: float,
    detections: str,
    device_memory: dict[str, float] | None = None,
) -> DiagnosticArray:
    """One status: ERROR when the worker died while active, WARN on recent drops or slow prompts.

    ``detections``: "on", or "off: why" (no vision_msgs), reported as it is. The snapshot's
    ``mode`` and, in scene mode, its ``scene`` counters and latency are reported as values;
    scene frames replaced by newer ones are no warning (the newest frame always wins).
    """
    mode = snapshot.get("mode", "prompt")
    total_p95 = snapshot["latency_s"].get("total", {}).get("p95", 0.0)
    if active and not worker_alive:
        served = {"prompt": "prompts are", "scene": "scene frames are"}.get(mode, "prompts and scene frames are")
        level, message = DiagnosticStatus.ERROR, f"the worker thread died: {served} not served"
    elif dropped_recently:
        level, message = DiagnosticStatus.WARN, f"{dropped_recently} prompts dropped since the last report"
    elif total_p95 > latency_warn:
        level, message = (
            DiagnosticStatus.WARN,
            f"prompt latency p95 {total_p95:.2f} s > ros.latency_warn {latency_warn} s",
        )
    else:
        level, message = DiagnosticStatus.OK, "serving" if active else "inactive (lifecycle)"
    values = [
        KeyValue(key="active", value=str(active).lower()),
        KeyValue(key="mode", value=mode),
        KeyValue(key="detections", value=detections),
    ]
    for group in ("images", "prompts", "scene"):
        for key, value in snapshot.get(group, {}).items():
            if key == "latency_s":
                continue
            if isinstance(value, dict):
                values += [KeyValue(key=f"{group}.{key}.{reason}", value=str(n)) for reason, n in sorted(value.items())]
            else:
                values.append(KeyValue(key=f"{group}.{key}", value=str(value)))
    for prefix, latency in (
        ("latency", snapshot["latency_s"]),
        ("scene.latency", snapshot.get("scene", {}).get("latency_s", {})),
    ):
        for stage, stats in latency.items():
            values += [KeyValue(key=f"{prefix}.{stage}.{q}_ms", value=f"{1000 * s:.1f}") for q, s in stats.items()]
    for key, value in (device_memory or {}).items():
        values.append(KeyValue(key=f"device.{key}", value=f"{value:.1f}"))
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)
    return DiagnosticArray(header=header, status=[status])
