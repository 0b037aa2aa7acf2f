"""gestalt_node: prompts on camera images in, visible/amodal masks, completions and labels out.

Callbacks stay cheap (convert, validate, cache, enqueue); the pipeline runs in one worker
thread, so a slow diffusion step never blocks image intake. Every output carries the header
of the image its prompt referred to, so consumers can synchronize and bag replay works.

``mode`` (read at configure): ``prompt`` answers clicks, boxes and masks; ``scene`` segments
every ``scene.every_n``-th image with the ``ScenePipeline`` (every object, in occlusion
order; prompts are answered with a ``scene_mode`` rejection); ``both`` does both, sharing
the recognizer. The worker takes pending prompts first; one scene frame waits beside them,
and a newer one replaces it (counted as dropped, ``replaced``).

    gestalt_node --ros-args -p completion.num_samples:=2 -r image:=/camera/image_raw
    python -m gestalt_ros.ros.node --ros-args --params-file config/gestalt.yaml
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import inspect
import itertools
import json
import re
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PolygonStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from gestalt_ros import objects_json
from gestalt_ros.config import ConfigError, GestaltConfig
from gestalt_ros.eval.annotations import encode_rle
from gestalt_ros.overlay import draw_overlay, draw_scene_overlay
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.prompts import PromptError, check_prompt
from gestalt_ros.resources import select_fastdds_profile
from gestalt_ros.ros import convert, detections, topics
from gestalt_ros.ros.diagnostics import Counters, diagnostic_array
from gestalt_ros.ros.qos import image_qos, reliable_qos
from gestalt_ros.scene.pipeline import ScenePipeline, SceneResult
from gestalt_ros.types import MaskPrompt, ObjectResult, Prompt

NODE_NAME = "gestalt_node"
# scene/visible_ids holds each object's id modulo this (mono16); ids that are multiples of
# it are never given to scene objects, so 0 always means "no object".
ID_IMAGE_MODULUS = 2**16
# Parameters that may change while the node runs (the worker reads them once per prompt);
# all others are read-only, as they would need the models rebuilt: cleanup and configure.
DYNAMIC = frozenset(
    {
        "completion.num_samples",
        "completion.num_inference_steps",
        "completion.guidance_scale",
        "completion.eta",
        "completion.strength",
        "completion.seed",
        "completion.mirror_samples",
        "completion.reference_schedule",
        "amodal.white_threshold",
        "amodal.alpha_threshold",
        "amodal.vote_threshold",
        "amodal.union_visible",
        "amodal.keep_attached",
        "amodal.smooth_paste",
        "recognition.view",
        "ros.max_pending_prompts",
        "ros.max_image_bytes",
        "ros.publish_overlay",
        "ros.latency_warn",
    }
)


def _field_comments(cls: type) -> dict[str, str]:
    """``# comment`` lines right above each field of a config dataclass, joined per field."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (frozen app): fall back to the docstring
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        field_match = re.match(r"(\w+)\s*:", stripped)
        if field_match and pending:
            comments[field_match.group(1)] = " ".join(pending)
        pending = []
    return comments


def parameter_descriptions() -> dict[str, str]:
    """Every parameter's description, taken from config.py (field comment, else section docstring)."""
    root = GestaltConfig()
    descriptions: dict[str, str] = {}
    for section in [
        None,
        *(f.name for f in dataclasses.fields(root) if dataclasses.is_dataclass(getattr(root, f.name))),
    ]:
        obj = root if section is None else getattr(root, section)
        summary = (inspect.getdoc(type(obj)) or "").splitlines()[0]
        comments = _field_comments(type(obj))
        for f in dataclasses.fields(obj):
            if dataclasses.is_dataclass(getattr(obj, f.name)):
                continue
            name = f.name if section is None else f"{section}.{f.name}"
            descriptions[name] = comments.get(f.name, summary)
    return descriptions


@dataclass
class _Job:
    """One prompt with the frame it refers to, as the worker needs it."""

    kind: str
    prompt: Prompt
    prompt_header: Header
    image_header: Header
    rgb: np.ndarray
    fell_back: bool
    arrived: float  # time.perf_counter() when the prompt arrived

    def describe(self) -> dict:
        """The prompt as the ``objects`` entry names it."""
        return objects_json.describe_prompt(self.prompt, convert.stamp_json(self.prompt_header), self.fell_back)


@dataclass
class _Request:
    """A converted prompt before it is checked against its frame (maybe still waiting for it)."""

    kind: str
    prompt: Prompt
    header: Header
    described: dict  # the prompt as the ``objects`` entry names it, fell_back_to_latest false
    arrived: float  # time.perf_counter() when the prompt arrived


@dataclass
class _SceneFrame:
    """One image to segment in scene mode."""

    header: Header
    rgb: np.ndarray
    arrived: float  # time.perf_counter() when the image arrived


class GestaltNode(LifecycleNode):
    """Amodal segmentation as a managed (lifecycle) node; parameters are ``GestaltConfig().to_flat()``.

    configure: read the parameters, load the models on ``device``, create topics; activate:
    start the worker and serve prompts (and scene frames); deactivate: stop taking prompts
    (pending ones are answered with an error; a waiting scene frame is dropped); cleanup: free
    the models (and CUDA's cache). ``main`` configures and activates the node itself, so
    ``ros2 run`` needs no lifecycle manager.
    """

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.config = self._declare_parameters()
        self.pipeline: GestaltPipeline | None = None  # mode prompt or both
        self.scene_pipeline: ScenePipeline | None = None  # mode scene or both
        self.counters = Counters()
        self._ids = itertools.count()  # objects entry ids; next() is atomic under the GIL
        self._cache: collections.OrderedDict[tuple[int, int], tuple[Header, np.ndarray]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._awaiting: list[_Request] = []  # prompts waiting for their image (under _cache_lock)
        self._jobs: collections.deque[_Job] = collections.deque()
        self._jobs_cv = threading.Condition()
        self._scene_next: _SceneFrame | None = None  # the scene frame waiting for the worker (under _jobs_cv)
        self._scene_seen = 0  # valid images since activation, for scene.every_n (image callback only)
        self._frame_set: np.ndarray | None = None  # the frame the pipeline's set_image last saw (worker only)
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._active = False
        self._entities: list = []  # subscriptions, publishers and timers made at configure
        self._vision_msgs, self._pub_detections, self._detections_state = None, None, "off: not configured"
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ----- parameters -----
    def _declare_parameters(self) -> GestaltConfig:
        """Declare every config key (``DYNAMIC`` ones may change while running) and read them back."""
        descriptions = parameter_descriptions()
        defaults = GestaltConfig().to_flat()
        for name, default in defaults.items():
            descriptor = ParameterDescriptor(description=descriptions[name], read_only=name not in DYNAMIC)
            self.declare_parameter(name, default, descriptor)
        return GestaltConfig.from_flat({name: self.get_parameter(name).value for name in defaults})

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate run-time changes with the config's own checks; the reason comes back on failure."""
        flat = self.config.to_flat()
        try:
            for parameter in parameters:
                if parameter.name not in flat:
                    raise ConfigError(f"unknown parameter {parameter.name!r}")
                flat[parameter.name] = parameter.value
            config = GestaltConfig.from_flat(flat)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.config = config
        for pipeline in (self.pipeline, self.scene_pipeline):  # the worker reads the config once per prompt
            if pipeline is not None:
                pipeline.config = dataclasses.replace(config, device=pipeline.config.device)
        return SetParametersResult(successful=True)

    @property
    def scene_mode(self) -> bool:
        """Whether scene frames are segmented (``mode`` scene or both)."""
        return self.config.mode != "prompt"

    def _device(self) -> str:
        """The device the models run on (after a CPU fallback), else the configured one."""
        for pipeline in (self.pipeline, self.scene_pipeline):
            if pipeline is not None:
                return pipeline.config.device
        return self.config.device

    # ----- lifecycle -----
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        failure: list[BaseException] = []
        ready = threading.Event()
        self._stopping = False
        self._worker = threading.Thread(target=self._work, args=(ready, failure), name="gestalt_worker", daemon=True)
        self._worker.start()
        ready.wait()
        if failure:
            self.stop_worker()
            self.get_logger().fatal(f"cannot configure: {failure[0]}")  # bad parameters, model files or device
            return TransitionCallbackReturn.FAILURE
        ros = self.config.ros
        out = reliable_qos()
        self._pub_visible = self.create_lifecycle_publisher(Image, topics.VISIBLE_MASK, out)
        self._pub_amodal = self.create_lifecycle_publisher(Image, topics.AMODAL_MASK, out)
        self._pub_completion = self.create_lifecycle_publisher(Image, topics.COMPLETION, out)
        self._pub_overlay = self.create_lifecycle_publisher(Image, topics.OVERLAY, out)
        self._pub_objects = self.create_lifecycle_publisher(String, topics.OBJECTS, out)
        self._pub_status = self.create_publisher(String, topics.STATUS, out)
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, out)
        self._entities = [
            self._pub_visible,
            self._pub_amodal,
            self._pub_completion,
            self._pub_overlay,
            self._pub_objects,
            self._pub_status,
            self._pub_diagnostics,
            self.create_subscription(Image, topics.IMAGE, self._on_image, image_qos(ros)),
            self.create_subscription(PointStamped, topics.PROMPT_POINT, self._on_point, reliable_qos()),
            self.create_subscription(PolygonStamped, topics.PROMPT_BOX, self._on_box, reliable_qos()),
            self.create_subscription(Image, topics.PROMPT_MASK, self._on_mask, reliable_qos()),
            self.create_timer(ros.status_period, self._publish_status),
        ]
        if ros.frame_wait > 0:  # on the steady clock: the wait is for transport, whatever /clock does
            steady = Clock(clock_type=ClockType.STEADY_TIME)
            period = min(0.05, max(0.005, ros.frame_wait / 5))
            self._entities.append(self.create_timer(period, self._expire_awaiting, clock=steady))
        if self.scene_mode:
            self._pub_visible_ids = self.create_lifecycle_publisher(Image, topics.SCENE_VISIBLE_IDS, out)
            self._pub_scene_overlay = self.create_lifecycle_publisher(Image, topics.SCENE_OVERLAY, out)
            self._entities += [self._pub_visible_ids, self._pub_scene_overlay]
        self._vision_msgs, self._detections_state = detections.load()
        if self._vision_msgs is None:
            self.get_logger().info(
                f"detections {self._detections_state}: no Detection2DArray on {self.resolve_topic_name(topics.DETECTIONS)}"
            )
        else:
            self._pub_detections = self.create_lifecycle_publisher(
                self._vision_msgs.Detection2DArray, topics.DETECTIONS, out
            )
            self._entities.append(self._pub_detections)
        scene = self.config.scene
        what = {
            "prompt": f"stages {self.config.stages()}",
            "scene": f"scene.method {scene.method} every {scene.every_n} image(s)",
            "both": f"stages {self.config.stages()} and scene.method {scene.method} every {scene.every_n} image(s)",
        }[self.config.mode]
        self.get_logger().info(
            f"configured: mode {self.config.mode}, {what} on {self._device()}, image QoS "
            f"{ros.image_reliability}/depth {ros.image_depth}, listening on {self.resolve_topic_name(topics.IMAGE)}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._scene_seen = 0  # the first image after activation is a scene frame
        self._active = True
        serving = {"prompt": "prompts", "scene": "scene frames", "both": "prompts and scene frames"}
        self.get_logger().info(f"active: serving {serving[self.config.mode]}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        with self._cache_lock:
            awaiting, self._awaiting = self._awaiting, []
        with self._jobs_cv:
            pending = list(self._jobs)
            self._jobs.clear()
            waiting, self._scene_next = self._scene_next, None
        for request in awaiting:
            self._publish_error(request.described, "dropped: the node was deactivated", request.header)
        for job in pending:
            self._publish_error(job.describe(), "dropped: the node was deactivated", job.image_header)
        if waiting is not None:
            self.counters.scene("dropped", "deactivated")
        self.get_logger().info("inactive: prompts are refused until the node is activated again")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Destroy the topics and free the models: their CPU memory, and CUDA's cached blocks."""
        for entity in self._entities:
            if isinstance(entity, Timer):
                self.destroy_timer(entity)
            elif isinstance(entity, Subscription):
                self.destroy_subscription(entity)
            else:
                self.destroy_publisher(entity)
        self._entities = []
        with self._cache_lock:
            self._cache.clear()
            self._awaiting = []
        loaded = self.pipeline is not None or self.scene_pipeline is not None
        cuda = loaded and self._device().startswith("cuda")
        self.pipeline = None
        self.scene_pipeline = None
        self._frame_set = None
        gc.collect()
        if cuda:
            import torch

            torch.cuda.empty_cache()

    # ----- callbacks: cheap, never run the pipeline -----
    def _on_image(self, msg: Image) -> None:
        arrived = time.perf_counter()
        self.counters.image("received")
        try:
            size = len(msg.data)
            if size > self.config.ros.max_image_bytes:
                raise convert.ImageError(
                    f"image of {size} bytes ({msg.width}x{msg.height} {msg.encoding}) exceeds "
                    f"ros.max_image_bytes={self.config.ros.max_image_bytes}",
                    "too_large",
                )
            rgb = convert.image_to_rgb(msg)
        except convert.ImageError as err:
            self.counters.image("rejected", err.reason)
            self.get_logger().error(
                f"rejected image (frame_id {msg.header.frame_id!r}): {err}", throttle_duration_sec=1.0
            )
        else:
            header = convert.copy_header(msg.header)
            with self._cache_lock:
                key = convert.stamp_key(msg.header)
                self._cache[key] = (header, rgb)
                self._cache.move_to_end(key)
                while len(self._cache) > self.config.ros.image_cache_size:
                    self._cache.popitem(last=False)
                ended = self._take_awaiting(lambda r: convert.stamp_key(r.header) <= key)
            for request in ended:  # its own frame, or a later one: its own was lost
                self._serve(request, (header, rgb) if convert.stamp_key(request.header) == key else None)
            if self.scene_mode and self._active:
                self._offer_scene(_SceneFrame(header, rgb, arrived))

    def _offer_scene(self, frame: _SceneFrame) -> None:
        """Every ``scene.every_n``-th frame to the worker; a newer one replaces a waiting one."""
        self.counters.scene("received")
        self._scene_seen += 1
        if (self._scene_seen - 1) % self.config.scene.every_n:
            self.counters.scene("skipped")
            return
        with self._jobs_cv:
            replaced, self._scene_next = self._scene_next, frame
            self._jobs_cv.notify()
        if replaced is not None:
            self.counters.scene("dropped", "replaced")

    def _on_point(self, msg: PointStamped) -> None:
        self._on_prompt("point", msg.header, lambda: convert.point_to_prompt(msg))

    def _on_box(self, msg: PolygonStamped) -> None:
        self._on_prompt("box", msg.header, lambda: convert.polygon_to_box(msg))

    def _on_mask(self, msg: Image) -> None:
        self._on_prompt("mask", msg.header, lambda: MaskPrompt(convert.image_to_mask(msg)))

    def _on_prompt(self, kind: str, header: Header, make_prompt: Callable[[], Prompt]) -> None:
        """Convert, find the prompt's frame (or wait for it, ``ros.frame_wait``), then ``_serve`` it.

        A prompt that cannot be served is counted, logged and answered on ``objects`` with an
        entry whose ``error`` says why, so a client never waits for an answer that will not come.
        """
        arrived = time.perf_counter()
        self.counters.prompt("received")
        stamp = convert.stamp_key(header)
        request = {"kind": kind, "stamp": convert.stamp_json(header)}
        if not self._active:
            self.counters.prompt("rejected", "inactive")
            self.get_logger().warning(f"{kind} prompt refused: the node is not active", throttle_duration_sec=1.0)
            return
        if self.config.mode == "scene":
            text = "the node runs in mode scene, which answers no prompts (mode prompt or both does)"
            self._reject(kind, stamp, "scene_mode", text, request, header)
            return
        try:
            prompt = make_prompt()
        except convert.ImageError as err:
            self._reject(kind, stamp, f"mask_{err.reason}", str(err), request, header)
            return
        except PromptError as err:  # a polygon that is no box
            self._reject(kind, stamp, "invalid_prompt", str(err), request, header)
            return
        described = objects_json.describe_prompt(prompt, request["stamp"])
        pending = _Request(kind, prompt, convert.copy_header(header), described, arrived)
        with self._cache_lock:
            frame = self._cache.get(stamp)
            if frame is None and self._may_still_arrive(stamp):
                self._awaiting.append(pending)
                self.counters.prompt("awaited_frame")
                return
        self._serve(pending, frame)

    def _may_still_arrive(self, stamp: tuple[int, int]) -> bool:
        """Whether a prompt's uncached frame may still come (under ``_cache_lock``).

        Not when the stamp lies inside the cached span: its frame was lost between cached ones.
        Otherwise it may be in flight (newer than the cache), or a stream restarted (a bag
        played again), so the prompt waits up to ``ros.frame_wait`` for it.
        """
        if self.config.ros.frame_wait <= 0:
            return False
        return not self._cache or not min(self._cache) <= stamp <= max(self._cache)

    def _expire_awaiting(self) -> None:
        """Serve, on the latest image, prompts that waited ``ros.frame_wait`` for theirs in vain."""
        deadline = time.perf_counter() - self.config.ros.frame_wait
        with self._cache_lock:
            expired = self._take_awaiting(lambda r: r.arrived <= deadline)
        for request in expired:
            self._serve(request, None)

    def _take_awaiting(self, done: Callable[[_Request], bool]) -> list[_Request]:
        """Remove and return the waiting prompts for which ``done`` holds (under ``_cache_lock``)."""
        taken: list[_Request] = []
        kept: list[_Request] = []
        for request in self._awaiting:
            (taken if done(request) else kept).append(request)
        self._awaiting = kept
        return taken

    def _serve(self, request: _Request, frame: tuple[Header, np.ndarray] | None) -> None:
        """Check a prompt against its frame (None: it has none, so the latest, flagged) and hand it on."""
        stamp = convert.stamp_key(request.header)
        fell_back = frame is None
        if fell_back:
            with self._cache_lock:
                frame = self._cache[next(reversed(self._cache))] if self._cache else None
        if frame is None:
            text = f"no image before it or within ros.frame_wait ({self.config.ros.frame_wait} s)"
            self._reject(request.kind, stamp, "no_image", text, request.described, request.header)
            return
        image_header, rgb = frame
        described = {**request.described, "fell_back_to_latest": fell_back}
        if fell_back:
            self.counters.prompt("fell_back_to_latest")
            self.get_logger().warning(
                f"{request.kind} prompt stamped {stamp}: no cached image with that stamp; using the latest "
                f"image, stamped {convert.stamp_key(image_header)}",
                throttle_duration_sec=1.0,
            )
        try:
            prompt = check_prompt(request.prompt, *rgb.shape[:2])
        except PromptError as err:
            self._reject(request.kind, stamp, "invalid_prompt", str(err), described, image_header)
        else:
            self._enqueue(_Job(request.kind, prompt, request.header, image_header, rgb, fell_back, request.arrived))

    def _reject(self, kind: str, stamp: tuple[int, int], reason: str, text: str, request: dict, head: Header) -> None:
        self.counters.prompt("rejected", reason)
        self.get_logger().error(f"rejected {kind} prompt stamped {stamp}: {text}", throttle_duration_sec=1.0)
        self._publish_error({"fell_back_to_latest": False, **request}, f"rejected ({reason}): {text}", head)

    def _enqueue(self, job: _Job) -> None:
        with self._jobs_cv:
            old = None
            if len(self._jobs) >= self.config.ros.max_pending_prompts:
                old = self._jobs.popleft()
            self._jobs.append(job)
            self._jobs_cv.notify()
        if old is not None:
            self.counters.prompt("dropped")
            text = f"{self.config.ros.max_pending_prompts} prompts were pending (ros.max_pending_prompts)"
            self.get_logger().warning(
                f"dropping the oldest pending prompts: {text}; the count is in status and /diagnostics",
                throttle_duration_sec=1.0,
            )
            self._publish_error(old.describe(), f"dropped: {text}", old.image_header)

    # ----- worker -----
    def _work(self, ready: threading.Event, failure: list[BaseException]) -> None:
        """Load the models, then run queued prompts until stopped; no exception from one prompt ends it.

        The models are built and run in this one thread, with torch's intra-op threads set
        here: a pipeline built in the main thread ran about 35% slower in this one (measured,
        benchmarks/node_latency.py; the README's Latency section).
        """
        import torch

        torch.set_num_threads(torch.get_num_threads())
        try:
            if self.config.mode != "scene":
                self.pipeline = GestaltPipeline.from_config(self.config)
            if self.scene_mode:
                recognizer = self.pipeline.components.recognizer if self.pipeline is not None else None
                self.scene_pipeline = ScenePipeline.from_config(self.config, recognizer=recognizer)
        except Exception as err:  # noqa: BLE001 - any failure to load is a failed configure, with its reason
            self.pipeline = self.scene_pipeline = None
            failure.append(err)
            return
        finally:
            ready.set()
        while True:
            with self._jobs_cv:
                self._jobs_cv.wait_for(lambda: self._jobs or self._scene_next is not None or self._stopping)
                if self._stopping:
                    return
                if not self._jobs:  # prompts first: a click waits for one scene frame at most
                    frame, self._scene_next = self._scene_next, None
                    job = None
                else:
                    job = self._jobs.popleft()
            if job is None:
                self._segment_scene(frame)
                continue
            try:
                result = self._predict(job)
                published = time.perf_counter()
                self._publish_result(job, result)
                now = time.perf_counter()
                self.counters.latency({**result.timings, "publish": now - published, "total": now - job.arrived})
                self.counters.prompt("processed")
            except PromptError as err:
                self.counters.prompt("rejected", "invalid_prompt")
                self._log_error(f"rejected {job.kind} prompt: {err}")
                self._publish_error(job.describe(), f"rejected (invalid_prompt): {err}", job.image_header)
            except Exception as err:  # noqa: BLE001 - the worker must outlive any single failure
                self.counters.prompt("failed")
                text = f"{type(err).__name__}: {err}"
                self._log_error(f"{job.kind} prompt failed: {text}")
                self._publish_error(job.describe(), f"failed: {text}", job.image_header)

    def _segment_scene(self, frame: _SceneFrame) -> None:
        """The scene pipeline on one frame, and its outputs; a failure is counted and answered."""
        try:
            result = self.scene_pipeline(frame.rgb)
            published = time.perf_counter()
            self._publish_scene(frame, result)
            now = time.perf_counter()
            self.counters.scene_latency({**result.timings, "publish": now - published, "total": now - frame.arrived})
            self.counters.scene("processed")
            self.counters.scene("objects", n=len(result.objects))
        except Exception as err:  # noqa: BLE001 - the worker must outlive any single failure
            self.counters.scene("failed")
            text = f"{type(err).__name__}: {err}"
            self._log_error(f"scene frame stamped {convert.stamp_key(frame.header)} failed: {text}")
            self._publish_objects(frame.header, [objects_json.error_entry(next(self._ids), None, f"failed: {text}")])

    def _scene_id(self) -> int:
        """The next id from the node's counter that ``scene/visible_ids`` can hold (never 0 modulo 2**16)."""
        while (object_id := next(self._ids)) % ID_IMAGE_MODULUS == 0:
            pass
        return object_id

    def _publish_scene(self, frame: _SceneFrame, result: SceneResult) -> None:
        """``objects`` (one entry per object, maybe none), ``scene/visible_ids`` and ``scene/overlay``,
        each with the frame's header; the pipeline's 1-based ids become the node's unique ids."""
        header = frame.header
        ids = {obj.id: self._scene_id() for obj in result.objects}
        if self._pub_visible_ids.get_subscription_count():
            table = np.zeros(max(ids, default=0) + 1, np.uint16)
            for scene_id, object_id in ids.items():
                table[scene_id] = object_id % ID_IMAGE_MODULUS
            self._pub_visible_ids.publish(convert.ids_to_image(table[result.visible_ids()], header))
        if self.config.ros.publish_overlay and self._pub_scene_overlay.get_subscription_count():
            relabelled = [dataclasses.replace(obj, id=ids[obj.id]) for obj in result.objects]
            self._pub_scene_overlay.publish(convert.rgb_to_image(draw_scene_overlay(frame.rgb, relabelled), header))
        entries = [
            objects_json.scene_entry(
                ids[obj.id],
                obj.summary(),
                [ids[i] for i in obj.occluded_by],
                encode_rle(obj.amodal_mask),
                result.timings,
            )
            for obj in result.objects
        ]
        self._publish_objects(header, entries)

    def _predict(self, job: _Job) -> ObjectResult:
        """The pipeline on the job's frame; a frame is set (embedded) once for all its prompts."""
        if job.rgb is not self._frame_set:  # cached frames are distinct arrays, never reused
            self.pipeline.set_image(job.rgb)
            self._frame_set = job.rgb
        return self.pipeline.predict(job.prompt)

    def _log_error(self, text: str) -> None:
        """Log from the worker unless shutdown has begun (rosout is gone after Ctrl-C)."""
        if not self._stopping and self.context.ok():
            self.get_logger().error(text, throttle_duration_sec=1.0)

    def _publish_result(self, job: _Job, result: ObjectResult) -> None:
        """Every output with the image's header; images only for topics someone subscribes to."""
        header = job.image_header
        for publisher, make in (
            (self._pub_visible, lambda: convert.mask_to_image(result.visible_mask, header)),
            (self._pub_amodal, lambda: convert.mask_to_image(result.amodal_mask, header)),
            (self._pub_completion, lambda: convert.rgb_to_image(result.completion, header)),
        ):
            if publisher.get_subscription_count():
                publisher.publish(make())
        entry_id = next(self._ids)
        self._publish_objects(header, [objects_json.result_entry(entry_id, result, job.describe())])
        if self._pub_detections is not None:
            self._pub_detections.publish(detections.detection_array(self._vision_msgs, result, header, entry_id))
        if self.config.ros.publish_overlay and self._pub_overlay.get_subscription_count():
            self._pub_overlay.publish(convert.rgb_to_image(draw_overlay(job.rgb, result), header))

    def _publish_error(self, prompt: dict, error: str, header: Header) -> None:
        self._publish_objects(header, [objects_json.error_entry(next(self._ids), prompt, error)])

    def _publish_objects(self, header: Header, entries: list[dict]) -> None:
        head = objects_json.header(header.stamp.sec, header.stamp.nanosec, header.frame_id)
        if self.context.ok():
            self._pub_objects.publish(String(data=json.dumps(objects_json.message(head, entries))))

    def _publish_status(self) -> None:
        """``status`` JSON and ``/diagnostics``, once per ``ros.status_period``."""
        if not self.context.ok():
            return
        status = {"mode": self.config.mode, **self.counters.snapshot(scene=self.scene_mode)}
        with self._jobs_cv:
            status["prompts"]["pending"] = len(self._jobs)
            if self.scene_mode:
                status["scene"]["pending"] = int(self._scene_next is not None)
        self._pub_status.publish(String(data=json.dumps(status)))
        header = Header(stamp=self.get_clock().now().to_msg())
        device = self._device()
        self._pub_diagnostics.publish(
            diagnostic_array(
                f"{self.get_fully_qualified_name()}: amodal pipeline",  # one per namespace on /diagnostics
                device,
                status,
                header,
                worker_alive=self._worker is not None and self._worker.is_alive(),
                active=self._active,
                dropped_recently=self.counters.dropped_since_last_call(),
                latency_warn=self.config.ros.latency_warn,
                device_memory=_device_memory(device),
                detections=self._detections_state,
            )
        )

    # ----- shutdown -----
    def stop_worker(self) -> None:
        """Stop the worker after its current prompt or frame; pending prompts and frames are discarded."""
        with self._jobs_cv:
            self._stopping = True
            self._jobs.clear()
            self._scene_next = None
            self._jobs_cv.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None

    def destroy_node(self) -> None:
        self._active = False
        self.stop_worker()
        super().destroy_node()


def _device_memory(device: str) -> dict[str, float]:
    """CUDA memory in MiB (allocated by tensors, reserved by the cache), or the process's peak RSS on a CPU."""
    if device.startswith("cuda"):
        import torch

        return {
            "allocated_mib": torch.cuda.memory_allocated(device) / 2**20,
            "reserved_mib": torch.cuda.memory_reserved(device) / 2**20,
        }
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _parser() -> argparse.ArgumentParser:
    epilog = "parameters (set with --ros-args -p NAME:=VALUE or --params-file FILE):\n" + "\n".join(
        f"  {name} = {value!r}" for name, value in GestaltConfig().to_flat().items()
    )
    return argparse.ArgumentParser(
        prog=NODE_NAME,
        description="Amodal segmentation ROS 2 node (pix2gestalt): prompts in, masks, completions, labels out.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the node until Ctrl-C; ``argv`` excludes the program name (default ``sys.argv[1:]``)."""
    args = [NODE_NAME, *(sys.argv[1:] if argv is None else argv)]
    _parser().parse_args(remove_ros_args(args)[1:])  # --help; rejects anything that is not a ROS argument
    profile_note = select_fastdds_profile()
    rclpy.init(args=args)
    node = None
    try:
        node = GestaltNode()
        node.get_logger().info(f"{profile_note} (rmw: {rclpy.get_rmw_implementation_identifier()})")
        # no lifecycle manager needed: configure and activate as the node starts (as yolo_ros does)
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return 0 if not rclpy.ok() else 1  # Ctrl-C while the models load is a clean stop
        node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (OSError, ValueError) as err:
        serving = node is not None and (node.pipeline is not None or node.scene_pipeline is not None)
        if serving:  # raised while serving: not a start-up problem
            raise
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {err}")  # bad parameters
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
