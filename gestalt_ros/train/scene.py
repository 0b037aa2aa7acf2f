"""Train the scene-layer model (``scene/sequential.py``) on synthetic tabletop scenes.

A run is a YAML file with ``kind: scene`` (``config/train/``); the output directory is a
model directory ``scene.weights`` loads directly, with the run recorded in its
``scene_layers.json`` under ``training``. Each example is one occlusion layer of a rendered
scene (``data/scene_examples.py``), noised on diffusers' schedule at a random step; the
network predicts the clean layer mask and its cores (BCE + Dice per head; the IoU head
regresses the actual IoUs). ``init_weights`` starts the network from a single-pass model,
whose encoder and decoder already know objects in real photos; rendered scenes are shared
with the single-pass runs through the scene cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from gestalt_ros.data.scene_examples import LayerExampleConfig, sample_layer_example
from gestalt_ros.data.scene_store import SceneStore
from gestalt_ros.scene.sequential import LayerModelConfig, LayerNet, condition, noise_scheduler
from gestalt_ros.single_pass.model import ENCODER_PREFIXES, SinglePassNet, encoder_digest
from gestalt_ros.single_pass.prompting import image_tensor
from gestalt_ros.train.single_pass import SinglePassTrainConfig, mask_losses, run_training

KIND = "scene"


@dataclass
class SceneTrainConfig(SinglePassTrainConfig):
    """A scene-layer training run: the single-pass run's keys, the layer sampler's
    ``examples``, the layer model, and ``init_weights``."""

    MODEL: ClassVar[type] = LayerModelConfig
    kind: str = KIND
    batch_size: int = 16
    # A single-pass model directory whose weights start the network ("": ImageNet encoder only).
    init_weights: str = ""
    # This fraction of examples is noised to the last step (pure noise), where sampling
    # starts and the image alone must say where the layer is.
    pure_noise_fraction: float = 0.0
    model: LayerModelConfig = field(default_factory=LayerModelConfig)

    def example_config(self) -> LayerExampleConfig:
        data = dict(self.examples)
        if "frame_scale" in data:
            data["frame_scale"] = tuple(data["frame_scale"])
        return LayerExampleConfig(**data)


class LayerStream(torch.utils.data.IterableDataset):
    """Endless batches of layer examples; each loader worker has its own seeded generator."""

    def __init__(self, store: SceneStore, cfg: SceneTrainConfig) -> None:
        self.store = store
        self.cfg = cfg

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.cfg.seed, 7, 1 + (info.id if info else 0)])
        examples, r = self.cfg.example_config(), self.cfg.model.resolution
        while True:
            batch = [
                sample_layer_example(self.store, int(rng.integers(len(self.store.images))), rng, r, examples)
                for _ in range(self.cfg.batch_size)
            ]
            yield (
                image_tensor(np.stack([b["image"] for b in batch])),
                torch.from_numpy(np.stack([b["before"] for b in batch])),
                torch.from_numpy(np.stack([np.stack([b["layer"], b["core"]]) for b in batch])),
            )


def build_model(cfg: SceneTrainConfig, out_dir: Path) -> LayerNet:
    """A new layer model, or ``init_from``'s (continued), or one started from ``init_weights``;
    with ``model.encoder_from`` (a single-pass model directory, relative to the working
    directory here) its encoder replaces the model's, and the saved card refers to it from
    ``out_dir`` with its digest."""
    config = replace(cfg.model, encoder_from="", encoder_sha256="")
    model = LayerNet(config)
    if cfg.init_from:
        source = LayerNet.from_pretrained(cfg.init_from)
        if source.config.architecture() != cfg.model.architecture():
            raise ValueError(f"init_from: its architecture {source.config} differs from {cfg.model}")
        model.load_state_dict(source.state_dict())
        model.config.training = source.config.training
    elif cfg.init_weights:
        source = SinglePassNet.from_pretrained(cfg.init_weights)
        if tuple(source.config.decoder_channels) != tuple(cfg.model.decoder_channels):
            raise ValueError("init_weights: the single-pass model's decoder widths differ from the layer model's")
        model.load_state_dict(source.state_dict())
    if cfg.model.encoder_from:
        encoder = SinglePassNet.from_pretrained(cfg.model.encoder_from).state_dict()
        encoder = {k: v for k, v in encoder.items() if k.startswith(ENCODER_PREFIXES)}
        model.load_state_dict({**model.state_dict(), **encoder})
        model.config = replace(
            model.config,
            encoder_from=os.path.relpath(cfg.model.encoder_from, out_dir),
            encoder_sha256=encoder_digest(encoder),
        )
    return model


def layer_losses(cfg: SceneTrainConfig):
    """The loss function for ``fit``: each example noised on the schedule at a random step
    (``pure_noise_fraction`` of them at the last), the clean layer and cores as targets."""
    scheduler = noise_scheduler(cfg.model)
    timesteps = cfg.model.train_timesteps

    def make(model: LayerNet, device: torch.device):
        def losses(batch) -> dict:
            image, before, target = (t.to(device) for t in batch)
            clean = target[:, 0].float() * 2 - 1
            t = torch.randint(0, timesteps, (len(clean),), device=device)
            t = torch.where(torch.rand(len(clean), device=device) < cfg.pure_noise_fraction, timesteps - 1, t)
            noisy = scheduler.add_noise(clean, torch.randn_like(clean), t)
            logits, iou = model(image, condition(before, noisy, t, timesteps))
            parts = mask_losses(logits, iou, target, torch.ones(len(clean), dtype=torch.bool, device=device))
            layer, cores = parts.pop("visible"), parts.pop("amodal")
            parts["layer_iou"], parts["core_iou"] = parts.pop("visible_iou"), parts.pop("amodal_iou")
            parts["loss"] = layer + cores + parts["iou"]
            return parts

        return losses

    return make


def train_scene(cfg: SceneTrainConfig, out_dir: Path, cache_dir: Path | None = None, progress: bool = True) -> dict:
    """Train, save the weights to ``out_dir``, and return the training summary."""
    shown = {"layer": "layer_iou", "core": "core_iou"}
    return run_training(
        cfg, out_dir, cache_dir, progress, lambda c: build_model(c, out_dir), LayerStream, layer_losses(cfg), shown
    )
