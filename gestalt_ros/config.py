"""Every default of gestalt_ros, in one place.

The ROS parameter file (``config/gestalt.yaml``), the CLI's ``--set`` overrides and the
node's ``declare_parameter`` calls are all derived from these dataclasses; a test checks
that the committed YAML matches them. Parameters are addressed by dotted names such as
``completion.num_samples``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

RELIABILITIES = ("best_effort", "reliable")
PRECISIONS = ("auto", "float32", "float16", "bfloat16")


# Named settings over the defaults; `gestalt-ros config --preset NAME` writes each as a
# parameter file (config/NAME.yaml) for the node and `--params`.
PRESETS: dict[str, tuple[str, ...]] = {
    # The reference implementation's protocol: 200 requested DDIM steps on its schedule
    # (199 run), eta 1, guidance 2, fp32, 6 samples (inference.py), the whole frame squashed
    # to 256 x 256, grey level <= 250 is object; the amodal mask is the vote alone.
    "pix2gestalt_reference": (
        "completion.model=pix2gestalt",
        "amodal.method=synthesis",
        "completion.num_samples=6",
        "completion.num_inference_steps=200",
        "completion.reference_schedule=true",
        "completion.eta=1.0",
        "completion.guidance_scale=2.0",
        "completion.precision=float32",
        "completion.crop=image",
        "completion.mirror_samples=false",
    ),
    # A GPU setting for a robot: 25 deterministic DDIM steps, half precision, the 4 samples
    # in one batch, a square around the object (a small object keeps its detail).
    "pix2gestalt_fast": (
        "completion.model=pix2gestalt",
        "amodal.method=synthesis",
        "completion.num_samples=4",
        "completion.num_inference_steps=25",
        "completion.eta=0.0",
        "completion.guidance_scale=2.0",
        "completion.precision=auto",
        "completion.crop=object",
        "completion.mirror_samples=false",
        "device=cuda",
    ),
}


class ConfigError(ValueError):
    """A configuration key or value that cannot be used."""


@dataclass
class VisibleConfig:
    """Prompt -> visible mask (embedded default: the single-pass network)."""

    # Segmenter that turns a click or box into the visible mask (registry: backends):
    # "single_pass" (the project's network, see single_pass.*), "grabcut" or "sam".
    method: str = "single_pass"
    # GrabCut refinement iterations (more: slower, tighter masks).
    iterations: int = 5
    # A click seeds GrabCut with a square window of this fraction of min(H, W) around it.
    click_window: float = 0.25
    # SAM: the segment-anything checkpoint file (ViT-B, -L or -H, told apart by its shapes).
    sam_checkpoint: str = ""

    def validate(self) -> None:
        _check_range("visible.iterations", self.iterations, 1, 50)
        _check_range("visible.click_window", self.click_window, 0.02, 1.0)


@dataclass
class CompletionConfig:
    """Whole-object synthesis by conditional diffusion."""

    # Completion model (registry: backends): "embedded" is the project's own, in model/;
    # "pix2gestalt" needs ``weights``, a folder written by `gestalt-ros convert`.
    model: str = "embedded"
    # Empty: the embedded model committed under model/. Otherwise a model directory.
    weights: str = ""
    # Completions sampled per prompt, in one batch; their masks vote per pixel.
    num_samples: int = 4
    # DDIM denoising steps per completion (the embedded model predicts the clean object, so
    # its first step from noise is already the whole object: docs/model-card.md).
    num_inference_steps: int = 1
    # Classifier-free guidance; 1 disables it (one forward pass per step instead of two).
    guidance_scale: float = 1.0
    # DDIM eta: 0 is deterministic given the initial noise, 1 is ancestral.
    eta: float = 0.0
    # 1: start from pure noise. Below 1: start part-way from the visible part on white (img2img).
    strength: float = 1.0
    # Seed of the sampling noise: the same image, prompt and seed give the same masks on CPU.
    seed: int = 0
    # Every second sample sees the crop mirrored left-right (and is mirrored back), so the
    # vote covers two views of the object at no extra cost (embedded model).
    mirror_samples: bool = True
    # pix2gestalt: the window the model sees, "object" (a square around the visible part) or
    # "image" (the whole frame squashed to 256 x 256, as the reference demo does).
    crop: str = "object"
    # pix2gestalt: run exactly the timesteps the reference sampler runs for this many steps
    # (it drops the largest: 200 requested steps run 199).
    reference_schedule: bool = False
    # pix2gestalt: "auto" (float16 on CUDA, float32 on the CPU), "float32", "float16" or "bfloat16".
    precision: str = "auto"

    def sampling(self) -> dict[str, Any]:
        """The diffusion settings every completion model takes, as its pipeline's keyword arguments."""
        return {
            "num_samples": self.num_samples,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "eta": self.eta,
        }

    def validate(self) -> None:
        _check_choice("completion.crop", self.crop, ("object", "image"))
        _check_choice("completion.precision", self.precision, PRECISIONS)
        _check_range("completion.num_samples", self.num_samples, 1, 64)
        _check_range("completion.num_inference_steps", self.num_inference_steps, 1, 1000)
        _check_range("completion.guidance_scale", self.guidance_scale, 0.0, 50.0)
        _check_range("completion.eta", self.eta, 0.0, 1.0)
        _check_range("completion.strength", self.strength, 0.05, 1.0)


@dataclass
class AmodalConfig:
    """Visible mask -> amodal mask."""

    # Amodal estimator (registry: backends): "synthesis" thresholds completion.num_samples
    # completions of the completion model and votes per pixel; "single_pass" is one forward
    # pass of the project's network (no completion is synthesized); "both": the vote where
    # the samples agree, the single-pass mask where they disagree.
    method: str = "both"
    # RGB completions: a pixel is object when its grey level is <= this (pix2gestalt's
    # evaluation threshold; models with alpha use alpha_threshold instead).
    white_threshold: int = 250
    # RGBA completions (models that synthesize alpha): a pixel is object when alpha >= this.
    alpha_threshold: int = 128
    # Fraction of samples that must agree for a pixel to be in the amodal mask (more than
    # this; 0.8 with 4 samples: all of them).
    vote_threshold: float = 0.8
    # The visible part is always part of the whole object.
    union_visible: bool = True
    # Drop blobs of the vote that do not touch the visible part (sampler hallucinations).
    keep_attached: bool = True
    # Interpolate the agreement to camera resolution before thresholding (smooth edges on
    # objects much larger than the model's crop); false pastes the crop mask pixel by pixel.
    smooth_paste: bool = True

    def validate(self) -> None:
        _check_range("amodal.white_threshold", self.white_threshold, 0, 255)
        _check_range("amodal.alpha_threshold", self.alpha_threshold, 1, 255)
        _check_range("amodal.vote_threshold", self.vote_threshold, 0.0, 1.0)


def _window_fractions(name: str, value: str) -> tuple[float, ...]:
    """Comma-separated window sides (fractions of the image's shorter side), checked."""
    try:
        fractions = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers such as '0.5,1.5', got {value!r}") from None
    for f in fractions:
        _check_range(f"{name} (each)", f, 0.1, 4.0)
    if len(fractions) > 8:
        raise ConfigError(f"{name} takes at most 8 windows, got {len(fractions)}")
    return fractions


@dataclass
class SinglePassStageConfig:
    """The single-pass model (``visible.method`` or ``amodal.method`` ``single_pass``)."""

    # Empty: the model committed under model/single_pass. Otherwise a model directory
    # written by `gestalt-ros train` with a ``kind: single_pass`` config.
    weights: str = ""
    # A click's passes after the first, each re-centred on the last visible mask.
    refine_passes: int = 1
    # A refinement pass is skipped when its window would differ from the last pass's by at
    # most this much: side within a factor e^this, centre within this / 2 of the side per
    # axis (the jitter of the training windows, so the last pass was already framed as in
    # training). 0: every refinement pass runs.
    refine_skip_within: float = 0.2
    # A pixel is in a mask when the model's probability exceeds this.
    mask_threshold: float = 0.5
    # A click's first pass: "best" keeps the window whose predicted visible IoU is highest;
    # "blend" averages the windows' masks, weighted by their predicted IoUs.
    click_first_pass: str = "best"
    # A click's first-pass window sides as fractions of the image's shorter side,
    # comma-separated, tried in one batch (e.g. "0.5,1.5" for a camera so close that one
    # object can fill the frame, such as a wrist camera); empty: the model's own (0.5).
    click_windows: str = ""
    # A click whose confidence (the product of its first and final passes' predicted IoUs) is
    # below click_fallback_below also tries first windows of these sides (fractions of the
    # shorter side, each refined likewise), and the most confident answer is kept: one window
    # cannot frame both a cup and a phone that fills a third of the frame. Empty: off.
    click_fallback_windows: str = "0.35,1.5"
    click_fallback_below: float = 0.4
    # With visible.method single_pass, the network's amodal mask for a click or box (amodal
    # single_pass, or both) is the amodal head of the pass that found its visible mask (one
    # pass fewer); off: a second pass, prompted with that visible mask.
    amodal_from_prompt_pass: bool = True
    # A click's or a box's visible mask gets its edges redrawn by GrabCut where the network is
    # unsure: GrabCut's colour models are fitted to this image's object and background.
    grabcut_refine: bool = True
    # For GrabCut, a pixel whose probability is at or above this is certain object, at or
    # below 1 - this certain background; GrabCut decides the pixels between.
    grabcut_sure: float = 0.99
    # GrabCut runs on the final pass's window shrunk to at most this many pixels a side.
    grabcut_side: int = 192
    # That GrabCut's iterations (the first does most of the work).
    grabcut_iterations: int = 1
    # GrabCut's mask replaces the network's only where the two overlap by at least this IoU
    # (and, for a click, it holds the clicked pixel): otherwise GrabCut lost the object.
    grabcut_min_iou: float = 0.4

    def window_fractions(self) -> tuple[float, ...]:
        """``click_windows`` as numbers; empty when the model's own windows apply."""
        return _window_fractions("single_pass.click_windows", self.click_windows)

    def fallback_fractions(self) -> tuple[float, ...]:
        """``click_fallback_windows`` as numbers; empty: no fallback."""
        return _window_fractions("single_pass.click_fallback_windows", self.click_fallback_windows)

    def validate(self) -> None:
        _check_choice("single_pass.click_first_pass", self.click_first_pass, ("best", "blend"))
        self.window_fractions()
        self.fallback_fractions()
        _check_range("single_pass.click_fallback_below", self.click_fallback_below, 0.0, 1.0)
        _check_range("single_pass.refine_passes", self.refine_passes, 0, 10)
        _check_range("single_pass.refine_skip_within", self.refine_skip_within, 0.0, 1.0)
        _check_range("single_pass.mask_threshold", self.mask_threshold, 0.01, 0.99)
        _check_range("single_pass.grabcut_sure", self.grabcut_sure, 0.5, 1.0)
        _check_range("single_pass.grabcut_side", self.grabcut_side, 16, 1024)
        _check_range("single_pass.grabcut_iterations", self.grabcut_iterations, 1, 20)
        _check_range("single_pass.grabcut_min_iou", self.grabcut_min_iou, 0.0, 1.0)


@dataclass
class SceneModeConfig:
    """Scene mode: every object in view, amodal and in occlusion order, without a prompt."""

    # "prompted": the layer model's visible instances, each completed by the amodal stage
    # (amodal.method), then ordered by whose amodal mask runs under whose visible part;
    # "sequential": the layer model alone, front layer first (Ao et al. 2024), faster.
    method: str = "prompted"
    # Where the prompted method finds the visible instances: "clicks" (the single-pass
    # network clicked on a grid over the layer model's foreground), "layers" (the layer
    # model's visible masks) or "sam" (SAM's automatic masks, visible.sam_checkpoint; for a GPU).
    instances: str = "clicks"
    # "clicks": the grid has this many points a side over the frame.
    click_points_per_side: int = 16
    # "clicks": each click's mask gets the prompt path's GrabCut refinement
    # (single_pass.grabcut_*). Off by default: it sharpens the masks but finds fewer objects
    # on the validation set (docs/model-card-scene.md, section 5).
    click_grabcut: bool = False
    # SAM's automatic masks: a grid of this many clicks a side.
    sam_points_per_side: int = 32
    # Empty: the layer model committed under model/scene_layers. Otherwise a model
    # directory written by `gestalt-ros train` with a ``kind: scene`` config.
    weights: str = ""
    # Layers predicted at most (layer 0: the objects nothing hides).
    max_layers: int = 5
    # Samples per layer; the one closest to their mean is kept.
    num_samples: int = 3
    # Denoising steps per sample (DDIM).
    steps: int = 6
    # A pixel is in a layer (or an object's core) when the model's probability exceeds this.
    threshold: float = 0.5
    # Smallest object kept, and smallest visible part, as a fraction of the frame's area.
    min_area: float = 0.002
    # In the node's scene mode, segment every Nth image.
    every_n: int = 1

    def validate(self) -> None:
        _check_choice("scene.method", self.method, ("sequential", "prompted"))
        _check_choice("scene.instances", self.instances, ("layers", "clicks", "sam"))
        _check_range("scene.click_points_per_side", self.click_points_per_side, 1, 128)
        _check_range("scene.sam_points_per_side", self.sam_points_per_side, 1, 128)
        _check_range("scene.max_layers", self.max_layers, 1, 20)
        _check_range("scene.num_samples", self.num_samples, 1, 16)
        _check_range("scene.steps", self.steps, 1, 1000)
        _check_range("scene.threshold", self.threshold, 0.01, 0.99)
        _check_range("scene.min_area", self.min_area, 0.0, 0.5)
        _check_range("scene.every_n", self.every_n, 1, 10_000)


@dataclass
class RecognitionConfig:
    """Label the completed object."""

    # Classifier applied to the de-occluded object (registry: backends; "efficientnet-lite0":
    # ImageNet-1k labels).
    model: str = "efficientnet-lite0"
    # Labels with scores reported per object.
    top_k: int = 5
    # What is labelled: "deoccluded" (the camera's pixels, the completion painted over the
    # occluder, cut to the amodal box) or "completion" (the synthesized object alone on white,
    # as the paper's recognition experiment).
    view: str = "deoccluded"
    # open_clip: the model name (open_clip's list, e.g. ViT-B-32, ViT-L-14-quickgelu).
    clip_model: str = "ViT-B-32"
    # open_clip: a local weights file (no hub is asked).
    clip_pretrained: str = ""
    # open_clip: class names, comma-separated, or a file with one per line; empty: ImageNet-1k.
    vocabulary: str = ""

    def validate(self) -> None:
        _check_range("recognition.top_k", self.top_k, 1, 1000)
        _check_choice("recognition.view", self.view, ("deoccluded", "completion"))


@dataclass
class RosConfig:
    """Topics, QoS and bookkeeping of the ROS node (ignored by the pipeline)."""

    # QoS reliability of the image subscription; best_effort also accepts reliable cameras.
    image_reliability: str = "best_effort"
    # QoS history depth of the image subscription.
    image_depth: int = 1
    # Images kept so that a prompt can find the frame with its own stamp.
    image_cache_size: int = 30
    # Seconds a prompt whose image has not arrived yet waits for it (a frame and its prompt
    # travel on separate topics, so the prompt can come first); an image stamped after the
    # prompt ends the wait early. Then it is served on the latest image, flagged; 0: no wait.
    frame_wait: float = 0.25
    # Prompts waiting for the worker; the oldest is dropped (and counted) beyond this.
    max_pending_prompts: int = 8
    # Frames larger than this are rejected (and counted) instead of processed.
    max_image_bytes: int = 50_000_000
    # Publish a human-readable overlay image (visible, hidden part, outline, label), when
    # someone subscribes to it.
    publish_overlay: bool = True
    # Seconds between `status` and `/diagnostics` messages.
    status_period: float = 1.0
    # /diagnostics turns WARN when a prompt's p95 latency (queue wait included) exceeds this, seconds.
    latency_warn: float = 2.0

    def validate(self) -> None:
        _check_choice("ros.image_reliability", self.image_reliability, RELIABILITIES)
        _check_range("ros.image_depth", self.image_depth, 1, 1000)
        _check_range("ros.image_cache_size", self.image_cache_size, 1, 10_000)
        _check_range("ros.frame_wait", self.frame_wait, 0.0, 60.0)
        _check_range("ros.max_pending_prompts", self.max_pending_prompts, 1, 10_000)
        _check_range("ros.max_image_bytes", self.max_image_bytes, 1, 2**31 - 1)
        _check_range("ros.status_period", self.status_period, 0.01, 3600.0)
        _check_range("ros.latency_warn", self.latency_warn, 0.0, 3600.0)


@dataclass
class GestaltConfig:
    """The whole configuration: pipeline stages plus the ROS layer."""

    # Torch device for the models: "cpu" or "cuda[:N]".
    device: str = "cpu"
    # With no such CUDA device, run on the CPU (logged once) instead of failing to start.
    allow_cpu_fallback: bool = False
    # What the node answers: "prompt" (a click, box or mask per object), "scene" (every
    # object of every scene.every_n-th image, in occlusion order) or "both".
    mode: str = "prompt"
    visible: VisibleConfig = field(default_factory=VisibleConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    amodal: AmodalConfig = field(default_factory=AmodalConfig)
    single_pass: SinglePassStageConfig = field(default_factory=SinglePassStageConfig)
    scene: SceneModeConfig = field(default_factory=SceneModeConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    ros: RosConfig = field(default_factory=RosConfig)

    def validate(self) -> GestaltConfig:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        _check_choice("mode", self.mode, ("prompt", "scene", "both"))
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.validate()
        return self

    def stages(self) -> dict[str, str]:
        """The implementation each stage uses, by the keys the registries read."""
        return {
            "visible": self.visible.method,
            "completion": self.completion.model,
            "amodal": self.amodal.method,
            "recognition": self.recognition.model,
        }

    # ----- flat dotted view (ROS parameters, CLI overrides) -----
    def to_flat(self) -> dict[str, Any]:
        """``{"completion.num_samples": 4, ...}`` in declaration order."""
        flat: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                for sub in fields(value):
                    flat[f"{f.name}.{sub.name}"] = getattr(value, sub.name)
            else:
                flat[f.name] = value
        return flat

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GestaltConfig:
        """Nested dict (as in YAML) -> config; unknown keys are errors naming the closest key."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    flat[f"{key}.{sub}"] = sub_value
            else:
                flat[key] = value
        return cls.from_flat(flat)

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> GestaltConfig:
        cfg = cls()
        for key, value in flat.items():
            cfg.set(key, value)
        return cfg.validate()

    def set(self, key: str, value: Any) -> None:
        """Set one dotted key, converting ``value`` to the field's type."""
        known = self.to_flat()
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown parameter {key!r}{hint}")
        target: Any = self
        *parents, name = key.split(".")
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, name, _coerce(key, value, type(known[key])))

    def with_preset(self, name: str) -> GestaltConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return self.with_overrides(list(PRESETS[name]))

    def with_overrides(self, overrides: list[str]) -> GestaltConfig:
        """Apply ``key=value`` strings (the CLI's ``--set``); returns a validated copy."""
        cfg = dataclasses.replace(self)  # shallow; sections replaced below
        for f in fields(cfg):
            value = getattr(cfg, f.name)
            if dataclasses.is_dataclass(value):
                setattr(cfg, f.name, dataclasses.replace(value))
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not key=value")
            cfg.set(key.strip(), value.strip())
        return cfg.validate()

    # ----- YAML -----
    def to_ros_yaml(self, command: str = "gestalt-ros config > config/gestalt.yaml") -> str:
        """The ROS 2 parameter file (``/**`` matches the node under any name and namespace)."""
        body = {"/**": {"ros__parameters": self.to_dict()}}
        header = (
            f"# Generated from gestalt_ros/config.py by `{command}`.\n"
            "# Every parameter of the node; see the README's table.\n"
        )
        return header + yaml.safe_dump(body, sort_keys=False)

    @classmethod
    def from_yaml_file(cls, path: str, node_name: str = "gestalt_node") -> GestaltConfig:
        """Read a plain nested YAML or a ROS parameter file (``node: ros__parameters: ...``)."""
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
        if node_name in data and "ros__parameters" in data[node_name]:
            data = data[node_name]["ros__parameters"]
        elif "/**" in data and "ros__parameters" in data["/**"]:
            data = data["/**"]["ros__parameters"]
        return cls.from_dict(data)


def _coerce(key: str, value: Any, kind: type) -> Any:
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} expects {kind.__name__}, got {value!r}") from None


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} must lie in [{low}, {high}], got {value!r}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}")
