"""Train the embedded completion model on synthetic tabletop scenes.

A run is fully described by a ``TrainConfig`` (a YAML file under ``config/train/``) and its seed;
the output directory is a model directory the pipeline loads directly, with the config,
data size and wall time recorded in ``gestalt.json`` under ``training``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from gestalt_ros.completion import SCHEDULE_FIELDS, CompletionModel, CompletionModelConfig, make_scheduler
from gestalt_ros.data.datasets import CompletionDataset, CropSet, build_crops
from gestalt_ros.data.ycb import TRAIN_OBJECTS, bundled_ycb_root, check_models

if TYPE_CHECKING:
    from gestalt_ros.data.synthetic import SceneConfig

logger = logging.getLogger(__name__)

# Bumped whenever CropSet gains a field, so an older cache is not read as the new format.
CROPS_FORMAT = 2
LR_DECAYS = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything that decides a training run."""

    seed: int = 0
    scenes: int = 4000
    # Scene renders run in this many processes.
    workers: int = 2
    # Random scale/shift of the crop window, as a fraction (robustness to loose prompts).
    crop_jitter: float = 0.1
    # Fraction of (almost) unoccluded objects kept as training examples.
    keep_unoccluded: float = 0.3
    # Objects hidden by less than ``overlay_max_occlusion`` (0.05: whole ones only) also
    # yield, with this probability, a copy occluded by a 2D-pasted object (pix2gestalt's
    # overlay recipe; ``datasets.paste_occluder``). A higher limit gives objects the scene
    # already hides in part a second occluder.
    overlay_prob: float = 0.0
    overlay_max_occlusion: float = 0.05
    batch_size: int = 16
    steps: int = 4000
    # Training stops early, and saves, once this much wall time has passed (0: no limit).
    max_minutes: float = 55.0
    learning_rate: float = 3e-4
    warmup_steps: int = 200
    # After warmup: "constant", or "cosine" decay to zero at the end of the run (``steps`` or
    # ``max_minutes``, whichever comes first), which anneals a sitting that continues a model.
    lr_decay: str = "constant"
    ema_decay: float = 0.999
    # Probability of dropping the condition (zeros), for classifier-free guidance.
    condition_dropout: float = 0.1
    threads: int = 2
    device: str = "cpu"
    # Start from this model directory's weights (same architecture) instead of random ones:
    # a run can continue an earlier one (the chain in docs/model-card.md).
    init_from: str = ""
    # YCB models of the training scenes, and the folder that holds them as <Name>/model.urdf
    # (empty: the package's bundled models, which are the held-out objects only).
    objects: tuple[str, ...] = TRAIN_OBJECTS
    ycb_root: str = ""
    # Overrides of the scene generator's ``SceneConfig`` for the training scenes, e.g.
    # ``procedural_prob`` to mix procedural shapes in with the YCB training objects.
    scene: dict = field(default_factory=dict)
    model: CompletionModelConfig = field(default_factory=CompletionModelConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        model = CompletionModelConfig.from_dict(data.pop("model", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training keys {sorted(unknown)} in {path}; known: {sorted(known)}")
        try:
            if "objects" in data:
                data["objects"] = tuple(data["objects"])
            return cls(model=model, **data).validate()
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` for settings that would fail later, before any rendering."""
        self.scene_config()
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        return self

    def ycb_path(self) -> Path:
        return Path(self.ycb_root) if self.ycb_root else bundled_ycb_root()

    def lr_factor(self, step: int, minutes: float) -> float:
        """Learning-rate multiplier after ``step`` optimizer steps and ``minutes`` of the run."""
        return lr_factor(step, minutes, self.warmup_steps, self.steps, self.max_minutes, self.lr_decay)

    def scene_config(self) -> SceneConfig:
        """The training scenes' ``SceneConfig``."""
        return scene_config(self.scene)


def lr_factor(step: int, minutes: float, warmup_steps: int, steps: int, max_minutes: float, decay: str) -> float:
    """Linear warmup, then ``decay``: "constant", or "cosine" to zero at ``steps`` or
    ``max_minutes`` (if positive), whichever comes first. Shared by the training loops."""
    warmup = min(1.0, (step + 1) / warmup_steps)
    if decay == "constant":
        return warmup
    done = step / steps
    if max_minutes > 0:
        done = max(done, minutes / max_minutes)
    return warmup * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))


def scene_config(overrides: dict) -> SceneConfig:
    """``SceneConfig`` with a training config's ``scene`` overrides; unknown keys are errors."""
    from gestalt_ros.data.synthetic import SceneConfig

    known = {f.name for f in dataclasses.fields(SceneConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown scene keys {sorted(unknown)}; known: {sorted(known)}")
    return SceneConfig(**overrides)


def _regression_target(prediction_type: str, scheduler, target, noise, t) -> torch.Tensor:
    """What the network is trained to output, for the scheduler's ``prediction_type``."""
    if prediction_type == "sample":
        return target
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(target, noise, t)
    return noise


def load_start_weights(model: CompletionModel, start: CompletionModel) -> None:
    """Copy ``start``'s weights into ``model`` (same architecture up to the schedule and crop fields).

    An RGB start may also seed an RGBA model (``synthesize_alpha``): its UNet is reused as is,
    the new noisy-alpha input starts with zero weights (ignored at first) and the new alpha
    output channels keep their fresh initialisation, so the RGB behaviour carries over.
    """
    # The crop rule may change too: a sitting can teach a square-window model stretched windows.
    free = SCHEDULE_FIELDS + ("synthesize_alpha", "crop_scale", "crop_max_aspect")
    if not start.config.same_except(model.config, free) or (
        start.config.synthesize_alpha and not model.config.synthesize_alpha
    ):
        raise ValueError(f"init_from: its architecture {start.config} differs from {model.config}")
    state = start.state_dict()
    if start.config.synthesize_alpha == model.config.synthesize_alpha:
        model.load_state_dict(state)
        return
    own = model.state_dict()
    # Pixel-unshuffle keeps each image channel's p*p block together: RGB, [alpha], condition.
    block = model.config.patch_size**2
    w_in = state["unet.conv_in.weight"]
    alpha_in = torch.zeros_like(w_in[:, :block])
    state["unet.conv_in.weight"] = torch.cat([w_in[:, : 3 * block], alpha_in, w_in[:, 3 * block :]], dim=1)
    for name in ("unet.conv_out.weight", "unet.conv_out.bias"):
        state[name] = torch.cat([state[name], own[name][3 * block :]])
    model.load_state_dict(state)


def average_models(directories: list[str | Path], out_dir: str | Path) -> CompletionModel:
    """Save the parameter mean of models with one architecture to ``out_dir`` (a "model soup").

    Sittings that continue one another end near each other in weight space, and their mean
    often scores above either. ``gestalt.json`` records each source's training history.
    """
    if len(directories) < 2:
        raise ValueError("averaging needs at least two model directories")
    models = [CompletionModel.from_pretrained(d) for d in directories]
    first = models[0].config
    for d, m in zip(directories[1:], models[1:]):
        if not m.config.same_except(first):
            raise ValueError(f"{d}: its architecture {m.config} differs from {directories[0]}'s")
    states = [m.state_dict() for m in models]
    mean = {k: sum(s[k] for s in states) / len(states) for k in states[0]}
    history = [{"directory": str(d), "training": m.config.training} for d, m in zip(directories, models)]
    out = CompletionModel(dataclasses.replace(first, training={"average_of": history}))
    out.load_state_dict(mean)
    out.save_pretrained(out_dir)
    return out


def load_or_build_crops(cfg: TrainConfig, cache_dir: Path | None, progress: bool = True) -> CropSet:
    """Training crops for ``cfg``; cached under ``cache_dir`` keyed by what decides them."""
    key = f"crops{CROPS_FORMAT}_s{cfg.seed}_n{cfg.scenes}_r{cfg.model.resolution}_c{cfg.model.crop_scale}_j{cfg.crop_jitter}_k{cfg.keep_unoccluded}"
    if cfg.model.crop_max_aspect != 1.0:
        key += f"_a{cfg.model.crop_max_aspect}"
    if cfg.overlay_prob:
        key += f"_o{cfg.overlay_prob}"
        if cfg.overlay_max_occlusion != 0.05:
            key += f"_om{cfg.overlay_max_occlusion}"
    if cfg.objects != TRAIN_OBJECTS:
        key += "_objects" + hashlib.sha1(",".join(cfg.objects).encode()).hexdigest()[:10]
    if cfg.scene:
        key += "_scene" + hashlib.sha1(json.dumps(cfg.scene, sort_keys=True).encode()).hexdigest()[:10]
    key += ".npz"
    if cache_dir is not None and (cache_dir / key).is_file():
        logger.info("using cached crops %s", cache_dir / key)
        return CropSet.load(cache_dir / key)
    crops = build_crops(
        cfg.scenes,
        cfg.seed,
        cfg.objects,
        cfg.model.resolution,
        cfg.model.crop_scale,
        cfg.crop_jitter,
        cfg.keep_unoccluded,
        cfg.overlay_prob,
        cfg.workers,
        ycb_root=cfg.ycb_path(),
        scene_config=cfg.scene_config(),
        overlay_max_occlusion=cfg.overlay_max_occlusion,
        crop_max_aspect=cfg.model.crop_max_aspect,
        progress=progress,
    )
    if cache_dir is not None:
        crops.save(cache_dir / key)
    return crops


def train(cfg: TrainConfig, out_dir: Path, cache_dir: Path | None = None, progress: bool = True) -> dict:
    """Train, save the EMA weights to ``out_dir``, and return the training summary."""
    from diffusers.training_utils import EMAModel

    cfg.validate()
    check_models(cfg.ycb_path(), cfg.objects)  # before any rendering: one line that says how to fix it
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t_start = time.time()

    def minutes() -> float:
        """Wall time of the run so far, rendering included: what ``max_minutes`` bounds."""
        return (time.time() - t_start) / 60.0

    crops = load_or_build_crops(cfg, cache_dir, progress)
    if len(crops) == 0:
        raise RuntimeError("the scene generator produced no usable training crops")
    t_data = time.time() - t_start

    device = torch.device(cfg.device)
    model = CompletionModel(cfg.model)
    earlier: dict = {}
    if cfg.init_from:
        start = CompletionModel.from_pretrained(cfg.init_from)
        load_start_weights(model, start)
        earlier = start.config.training
        logger.info("starting from the weights in %s", cfg.init_from)
    model = model.to(device).train()
    scheduler = make_scheduler(cfg.model)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cfg.lr_factor(s, minutes()))
    loader = torch.utils.data.DataLoader(
        CompletionDataset(crops, alpha=cfg.model.synthesize_alpha),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )

    losses: list[float] = []
    step = 0
    out_of_time = False
    t_train = time.time()
    bar = tqdm(total=cfg.steps, desc="training", unit="step", disable=not progress)
    while step < cfg.steps and not out_of_time:
        for target, condition in loader:
            target, condition = target.to(device), condition.to(device)
            keep = (torch.rand(target.shape[0], 1, 1, 1, device=device) >= cfg.condition_dropout).float()
            noise = torch.randn_like(target)
            t = torch.randint(0, cfg.model.num_train_timesteps, (target.shape[0],), device=device)
            noisy = scheduler.add_noise(target, noise, t)
            pred = model(noisy, condition * keep, t)
            loss = torch.nn.functional.mse_loss(
                pred, _regression_target(cfg.model.prediction_type, scheduler, target, noise, t)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_schedule.step()
            ema.step(model.parameters())
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            out_of_time = cfg.max_minutes > 0 and minutes() > cfg.max_minutes
            if step >= cfg.steps or out_of_time:
                break
    if out_of_time:
        logger.warning("stopping at step %d: max_minutes=%s reached", step, cfg.max_minutes)
    bar.close()

    ema.copy_to(model.parameters())
    summary = {
        "config": dataclasses.asdict(dataclasses.replace(cfg, model=None)),
        "train_crops": len(crops),
        "steps_done": step,
        "final_loss_mean_last_100": float(np.mean(losses[-100:])),
        "loss_first_100": float(np.mean(losses[:100])),
        "minutes_data": round(t_data / 60.0, 2),
        "minutes_train": round((time.time() - t_train) / 60.0, 2),
        "minutes_total": round(minutes(), 2),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, device {cfg.device}",
        "torch": torch.__version__,
    }
    if earlier:  # the provenance chain: what the starting weights came from
        summary["init_from_training"] = earlier
    model.config = dataclasses.replace(cfg.model, training=summary)
    model.cpu().save_pretrained(out_dir)
    (Path(out_dir) / "loss_curve.json").write_text(json.dumps([round(v, 5) for v in losses[::10]]) + "\n")
    return summary
