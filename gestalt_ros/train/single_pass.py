"""Train the single-pass model (``single_pass/model.py``) on synthetic tabletop scenes.

A run is described by a YAML file with ``kind: single_pass`` (``config/train/``); the output
directory is a model directory the ``single_pass`` stages load directly, with the config,
data size and wall time recorded in ``single_pass.json`` under ``training``. Loss per mask
head: binary cross-entropy + Dice; the IoU head regresses the masks' actual IoUs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import yaml
from torch.nn import functional as F
from tqdm.auto import tqdm

from gestalt_ros.data.scene_store import SceneStore, build_scene_store
from gestalt_ros.data.single_pass_examples import ExampleConfig, sample_example
from gestalt_ros.data.ycb import TRAIN_OBJECTS, bundled_ycb_root, check_models
from gestalt_ros.single_pass.model import BRANCH_PREFIXES, SinglePassConfig, SinglePassNet
from gestalt_ros.single_pass.prompting import image_tensor
from gestalt_ros.train.loop import lr_factor, scene_config

logger = logging.getLogger(__name__)

KIND = "single_pass"
STORE_FORMAT = 1
TRAINABLE = ("all", "amodal_branch", "iou_head")
IOU_TARGETS = ("crop", "frame")


@dataclass
class SinglePassTrainConfig:
    """Everything that decides a single-pass training run."""

    MODEL: ClassVar[type] = SinglePassConfig
    kind: str = KIND
    seed: int = 0
    scenes: int = 3000
    workers: int = 2
    batch_size: int = 24
    steps: int = 8000
    # Training stops early, and saves, once this much wall time has passed (0: no limit).
    max_minutes: float = 55.0
    learning_rate: float = 1e-3
    # The trainable encoder stages learn this much slower than the decoder.
    encoder_lr_factor: float = 0.1
    warmup_steps: int = 200
    threads: int = 2
    # Processes that draw examples while the main one trains (0: draw in the main process).
    loader_workers: int = 1
    device: str = "cpu"
    init_from: str = ""
    # "all"; "amodal_branch": only the amodal branch learns (``model.amodal_branch``,
    # copied from ``init_from``'s shared decoder when that model has none), so the visible
    # mask, the click protocol and the encoder the layer model shares stay exactly as they are;
    # "iou_head": only the shared IoU head (the visible mask's confidence) learns, every mask stays.
    trainable: str = "all"
    # What the IoU head learns to predict: the mask's IoU with the truth inside the window
    # ("crop"), or in the whole frame ("frame": the truth outside the window counts as missed),
    # which is what choosing between a click's windows of different sizes asks.
    iou_target: str = "crop"
    objects: tuple[str, ...] = TRAIN_OBJECTS
    ycb_root: str = ""
    # Overrides of ``synthetic.SceneConfig`` for the training scenes.
    scene: dict = field(default_factory=lambda: {"image_size": 192, "procedural_prob": 0.3})
    examples: dict = field(default_factory=dict)
    model: SinglePassConfig = field(default_factory=SinglePassConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SinglePassTrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        model = cls.MODEL.from_dict(data.pop("model", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown training keys {sorted(unknown)}; known: {sorted(known)}")
        if "objects" in data:
            data["objects"] = tuple(data["objects"])
        try:
            return cls(model=model, **data).validate()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    def validate(self) -> SinglePassTrainConfig:
        kind = type(self).__dataclass_fields__["kind"].default
        if self.kind != kind:
            raise ValueError(f"kind must be {kind!r}, got {self.kind!r}")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.trainable == "amodal_branch" and not (self.init_from and self.model.amodal_branch):
            raise ValueError("trainable: amodal_branch needs init_from and model.amodal_branch > 0")
        if self.trainable == "iou_head" and not self.init_from:
            raise ValueError("trainable: iou_head needs init_from (a trained model whose masks stay)")
        if self.iou_target not in IOU_TARGETS:
            raise ValueError(f"iou_target must be one of {IOU_TARGETS}, got {self.iou_target!r}")
        self.scene_config()
        self.example_config()
        return self

    def ycb_path(self) -> Path:
        return Path(self.ycb_root) if self.ycb_root else bundled_ycb_root()

    def scene_config(self):
        return scene_config(self.scene)

    def example_config(self) -> ExampleConfig:
        data = dict(self.examples)
        for key in ("prompt_mix", "first_pass_scale", "photo_target_size", "part_size", "key_grid_size"):
            if key in data:
                data[key] = tuple(data[key])
        return ExampleConfig(**data)

    def lr_factor(self, step: int, minutes: float) -> float:
        """Warmup, then cosine decay to zero at ``steps`` or ``max_minutes``, whichever comes first."""
        return lr_factor(step, minutes, self.warmup_steps, self.steps, self.max_minutes, "cosine")


def load_or_build_store(cfg: SinglePassTrainConfig, cache_dir: Path | None, progress: bool = True) -> SceneStore:
    """The run's rendered scenes, cached under ``cache_dir`` keyed by what decides them."""
    decided = {"seed": cfg.seed, "scenes": cfg.scenes, "objects": cfg.objects, "scene": cfg.scene}
    digest = hashlib.sha1(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"scenes{STORE_FORMAT}_{digest}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        logger.info("using cached scenes %s", path)
        return SceneStore.load(path)
    store = build_scene_store(
        cfg.scenes, cfg.seed, cfg.objects, cfg.scene_config(), cfg.ycb_path(), cfg.workers, progress=progress
    )
    if path is not None:
        store.save(path)
    return store


class ExampleStream(torch.utils.data.IterableDataset):
    """Endless batches drawn from a SceneStore; each loader worker has its own seeded generator."""

    def __init__(self, store: SceneStore, cfg: SinglePassTrainConfig) -> None:
        self.store = store
        self.cfg = cfg

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.cfg.seed, 1 + (info.id if info else 0)])
        model, examples = self.cfg.model, self.cfg.example_config()
        while True:
            batch = []
            while len(batch) < self.cfg.batch_size:
                m = int(rng.integers(len(self.store)))
                ex = sample_example(self.store, m, rng, model.resolution, model.point_sigma, model.crop_scale, examples)
                if ex is not None:
                    batch.append(ex)
            yield (
                image_tensor(np.stack([b["image"] for b in batch])),
                torch.from_numpy(np.ascontiguousarray(np.stack([b["prompt"] for b in batch]))),
                torch.from_numpy(
                    np.ascontiguousarray(np.stack([np.stack([b["visible"], b["amodal"]]) for b in batch]))
                ),
                torch.tensor([b["amodal_valid"] for b in batch]),
                torch.from_numpy(np.stack([b["outside"] for b in batch])),
            )


def mask_losses(
    logits: torch.Tensor,
    iou: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    outside: torch.Tensor | None = None,
) -> dict:
    """BCE + Dice per head (the amodal head only where its truth is whole), IoU regression.

    With ``outside`` (B, 2), each truth's pixels outside the window (crop units), the IoU
    regressed is the frame's: those pixels join the union, as a mask in the window misses them.
    """
    target = target.float()
    weight = torch.stack([torch.ones_like(valid, dtype=torch.float32), valid.float()], dim=1)  # (B, 2)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(2, 3))
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum(dim=(2, 3)) + 1) / (prob.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) + 1)
    with torch.no_grad():
        hard = logits > 0
        inter = (hard & (target > 0.5)).sum(dim=(2, 3)).float()
        union = (hard | (target > 0.5)).sum(dim=(2, 3)).float()
        if outside is not None:
            union = union + outside
        actual = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    norm = weight.sum(dim=0).clamp(min=1)
    per_head = ((bce + dice) * weight).sum(dim=0) / norm
    iou_loss = (((iou - actual) ** 2) * weight).sum() / weight.sum()
    return {
        "visible": per_head[0],
        "amodal": per_head[1],
        "iou": iou_loss,
        "visible_iou": (actual[:, 0]).mean(),
        "amodal_iou": (actual[:, 1] * weight[:, 1]).sum() / norm[1],
    }


def fit(
    model: torch.nn.Module,
    cfg: SinglePassTrainConfig,
    batches,
    losses,
    shown: dict[str, str],
    minutes,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` on ``batches`` until ``cfg.steps`` or ``cfg.max_minutes``.

    ``losses(batch)`` returns a dict of scalar tensors with the ``loss`` to minimise; every
    other entry is recorded per step, and ``shown`` (bar label -> entry) on the progress bar.
    The trainable encoder stages learn ``encoder_lr_factor`` times slower than the rest.
    """
    encoder = [p for p in model.stages.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in encoder}
    decoder = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    groups = [
        {"params": decoder, "lr": cfg.learning_rate},
        {"params": encoder, "lr": cfg.learning_rate * cfg.encoder_lr_factor},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=1e-4)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cfg.lr_factor(s, minutes()))
    history: list[dict] = []
    bar = tqdm(total=cfg.steps, desc="training", unit="step", disable=not progress)
    for batch in batches:
        parts = losses(batch)
        optimizer.zero_grad(set_to_none=True)
        parts.pop("loss").backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        history.append({k: round(v.item(), 5) for k, v in parts.items()})
        bar.update(1)
        if len(history) % 25 == 0:
            recent = history[-100:]
            bar.set_postfix({label: f"{np.mean([h[key] for h in recent]):.3f}" for label, key in shown.items()})
        out_of_time = cfg.max_minutes > 0 and minutes() > cfg.max_minutes
        if len(history) >= cfg.steps or out_of_time:
            if out_of_time:
                logger.warning("stopping at step %d: max_minutes=%s reached", len(history), cfg.max_minutes)
            break
    bar.close()
    return history


def run_summary(
    cfg: SinglePassTrainConfig, store: SceneStore, history: list[dict], t_data: float, t_train: float, minutes
) -> dict:
    """What a model directory records of its training run: config, data, steps, time, machine."""
    return {
        "config": dataclasses.asdict(dataclasses.replace(cfg, model=None)),
        "scenes": len(store.images),
        "objects": len(store),
        "steps_done": len(history),
        "minutes_data": round(t_data / 60.0, 2),
        "minutes_train": round((time.time() - t_train) / 60.0, 2),
        "minutes_total": round(minutes(), 2),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, device {cfg.device}",
        "torch": torch.__version__,
    }


def last_mean(history: list[dict], key: str, n: int = 200) -> float:
    return round(float(np.mean([h[key] for h in history[-n:]])), 4)


def run_training(
    cfg: SinglePassTrainConfig,
    out_dir: Path,
    cache_dir: Path | None,
    progress: bool,
    build,
    stream,
    make_losses,
    shown: dict[str, str],
) -> dict:
    """The run both networks share: scenes (cached), model, loader, ``fit``, then the model
    directory with the run's summary in its card, and the loss curve.

    ``build(cfg)`` makes the model; ``stream(store, cfg)`` the batches;
    ``make_losses(model, device)`` the per-batch loss function for ``fit``; ``shown`` (bar
    label -> recorded entry) also names the ``train_<entry>_last_200`` means of the summary.
    """
    cfg.validate()
    check_models(cfg.ycb_path(), cfg.objects)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t_start = time.time()

    def minutes() -> float:
        return (time.time() - t_start) / 60.0

    store = load_or_build_store(cfg, cache_dir, progress)
    t_data = time.time() - t_start
    device = torch.device(cfg.device)
    model = build(cfg).to(device).train()
    loader = torch.utils.data.DataLoader(
        stream(store, cfg),
        batch_size=None,
        num_workers=cfg.loader_workers,
        prefetch_factor=4 if cfg.loader_workers else None,
    )
    t_train = time.time()
    history = fit(model, cfg, loader, make_losses(model, device), shown, minutes, progress)
    summary = run_summary(cfg, store, history, t_data, t_train, minutes)
    for key in shown.values():
        summary[f"train_{key}_last_200"] = last_mean(history, key)
    if cfg.init_from:
        summary["init_from_training"] = model.config.training
    model.config = dataclasses.replace(model.config, training=summary)
    model.cpu().save_pretrained(out_dir)
    (Path(out_dir) / "loss_curve.json").write_text(json.dumps(history[::10]) + "\n")
    return summary


def build_single_pass(cfg: SinglePassTrainConfig) -> SinglePassNet:
    """A new single-pass network, or ``init_from``'s to continue (same architecture, or the
    same with an amodal branch grown from its shared decoder)."""
    if not cfg.init_from:
        return SinglePassNet(cfg.model)
    model = SinglePassNet.from_pretrained(cfg.init_from)
    source = model.config.architecture()
    if source != cfg.model.architecture():
        if not (
            source.amodal_branch == 0
            and dataclasses.replace(source, amodal_branch=cfg.model.amodal_branch) == cfg.model.architecture()
        ):
            raise ValueError(f"init_from: its architecture {model.config} differs from {cfg.model}")
        grown = SinglePassNet(dataclasses.replace(cfg.model, training=model.config.training), pretrained=False)
        missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(BRANCH_PREFIXES) for k in missing), (missing, unexpected)
        grown.branch_from_shared()
        model = grown
    model.config = dataclasses.replace(cfg.model, training=model.config.training)  # the run's inference fields
    if cfg.trainable == "amodal_branch":
        model.requires_grad_(False)
        for parameter in model.amodal_branch_parameters():
            parameter.requires_grad_(True)
    elif cfg.trainable == "iou_head":
        model.requires_grad_(False)
        model.iou.requires_grad_(True)
    return model


def single_pass_losses(cfg: SinglePassTrainConfig):
    """The loss function for ``fit``: both masks' BCE + Dice and the IoU head's regression
    (of the window's IoU, or with ``iou_target: frame`` the frame's)."""

    def make(model: SinglePassNet, device: torch.device):
        def losses(batch) -> dict:
            image, prompt, target, valid, outside = (t.to(device) for t in batch)
            logits, iou = model(image, prompt)
            parts = mask_losses(logits, iou, target, valid, outside if cfg.iou_target == "frame" else None)
            parts["loss"] = parts["visible"] + parts["amodal"] + parts["iou"]
            return parts

        return losses

    return make


def train_single_pass(
    cfg: SinglePassTrainConfig, out_dir: Path, cache_dir: Path | None = None, progress: bool = True
) -> dict:
    """Train, save the weights to ``out_dir``, and return the training summary."""
    shown = {"vis": "visible_iou", "amo": "amodal_iou", "iou": "iou"}
    return run_training(
        cfg, out_dir, cache_dir, progress, build_single_pass, ExampleStream, single_pass_losses(cfg), shown
    )
