"""Sequential amodal segmentation: a scene's amodal masks, one occlusion layer at a time.

As in Ao et al. (2024), the model denoises the mask of all objects of the current layer,
conditioned on the image and on the union of the layers already predicted; layer 0 holds
the objects nothing hides, and the loop ends at an empty layer or at ``scene.max_layers``.
Each layer is sampled ``scene.num_samples`` times and the sample closest to their mean is
kept. The network is the single-pass network's body (EfficientNet-Lite0 with ImageNet
weights, a prompt-conditioned U-Net decoder) with other meanings for its inputs and heads:

- prompt maps: the earlier layers' union, the noisy layer mask, the noise level;
- heads: the clean layer mask (the denoiser predicts the sample, not the noise) and the
  layer's object cores, which split touching objects of one layer (``scene/instances.py``).

The committed model keeps the single-pass model's encoder frozen and does not store it
(``encoder_from``): the two networks share one set of encoder weights on disk.

The noise schedule and the sampling steps are diffusers' ``DDIMScheduler``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from gestalt_ros.config import GestaltConfig, SceneModeConfig
from gestalt_ros.inference import for_inference
from gestalt_ros.scene.framing import frame_window
from gestalt_ros.scene.instances import split_layer
from gestalt_ros.single_pass.model import SinglePassNet
from gestalt_ros.single_pass.prompting import image_tensor
from gestalt_ros.types import SceneInstance

CARD = "scene_layers.json"


@dataclass
class LayerModelConfig:
    """Architecture, framing and noise schedule of the layer model."""

    resolution: int = 160
    decoder_channels: tuple[int, ...] = (128, 96, 64, 48, 32)
    frozen_stages: int = 2
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # A single-pass model directory (relative to this one) whose frozen encoder this model
    # uses and does not store; its digest must match. Empty: the encoder is in this file.
    encoder_from: str = ""
    encoder_sha256: str = ""
    training: dict = field(default_factory=dict)

    def architecture(self) -> LayerModelConfig:
        """What a continued run must match: not the training choices (frozen stages, shared encoder)."""
        return replace(self, training={}, frozen_stages=0, encoder_from="", encoder_sha256="")

    @classmethod
    def from_dict(cls, data: dict) -> LayerModelConfig:
        data = dict(data)
        if "decoder_channels" in data:
            data["decoder_channels"] = tuple(data["decoder_channels"])
        return cls(**data)


class LayerNet(SinglePassNet):
    """(B, 3, r, r) RGB in [-1, 1] + (B, 3, r, r) [earlier layers, noisy layer in [-1, 1],
    noise level t / T] -> logits (B, 2, r, r) of the clean layer and its cores, IoUs (B, 2)."""

    card = CARD
    config_class = LayerModelConfig


def noise_scheduler(config: LayerModelConfig):
    """The layer masks' noise schedule (the denoiser predicts the clean sample)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=config.train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type="sample",
        clip_sample=True,
        set_alpha_to_one=True,
        # Sampling starts at the last training step (pure noise), whatever the step count.
        timestep_spacing="trailing",
    )


def condition(before: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor, timesteps: int) -> torch.Tensor:
    """(B, r, r) earlier layers, (B, r, r) noisy layer, (B,) timesteps -> (B, 3, r, r) prompt maps."""
    level = (t.float() / timesteps).view(-1, 1, 1).expand_as(noisy)
    return torch.stack([before.float(), noisy.float(), level], dim=1)


@dataclass
class LayerSample:
    """The kept sample of one layer at model resolution: probabilities of the layer and its cores."""

    layer: np.ndarray
    cores: np.ndarray


class SequentialScene:
    """``scene.method: sequential``: the layer model alone, from an image to its objects."""

    def __init__(self, model: LayerNet, options: SceneModeConfig, device: str | torch.device = "cpu") -> None:
        self.model = for_inference(model, device)
        self.device = torch.device(device)
        self.options = options
        self.scheduler = noise_scheduler(model.config)

    @classmethod
    def from_pretrained(cls, directory, options: SceneModeConfig, device: str = "cpu") -> SequentialScene:
        return cls(LayerNet.from_pretrained(directory), options, device)

    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    @torch.no_grad()
    def sample_layer(
        self, crop: torch.Tensor, before: np.ndarray, generator: torch.Generator, opts: SceneModeConfig
    ) -> LayerSample:
        """``opts.num_samples`` denoising runs of the next layer; the one closest to their mean."""
        n, r = opts.num_samples, self.resolution
        scheduler = self.scheduler
        scheduler.set_timesteps(opts.steps)
        x = torch.randn((n, r, r), generator=generator).to(self.device)
        images = crop.expand(n, -1, -1, -1)
        cond = torch.from_numpy(before).to(self.device).expand(n, -1, -1)
        for t in scheduler.timesteps:
            ts = torch.full((n,), int(t), device=self.device)
            logits, _ = self.model(images, condition(cond, x, ts, scheduler.config.num_train_timesteps))
            x = scheduler.step(torch.tanh(logits[:, 0] / 2), t, x).prev_sample
        prob = torch.sigmoid(logits).cpu().numpy()
        layers = prob[:, 0]
        mean = layers.mean(axis=0)
        keep = int(np.argmin(np.abs(layers - mean).sum(axis=(1, 2))))
        return LayerSample(layers[keep], prob[keep, 1])

    def visible_masks(self, image: np.ndarray, seed: int = 0) -> list[np.ndarray]:
        """The objects' visible parts alone: the layer model as an instance source."""
        return [o.visible_mask for o in self.segment(image, seed)]

    def segment(self, image: np.ndarray, seed: int = 0, config: GestaltConfig | None = None) -> list[SceneInstance]:
        """H x W x 3 uint8 -> its objects, front layer first, at the image's resolution."""
        opts, r = (config.scene if config is not None else self.options), self.resolution
        height, width = image.shape[:2]
        window = frame_window(height, width)
        crop = image_tensor(window.crop_image(image, r)[None]).to(self.device)
        # Areas are fractions of the camera frame; the frame covers this many model pixels.
        frame_px = height * width * (r / window.width) ** 2
        min_px = max(int(round(opts.min_area * frame_px)), 4)
        generator = torch.Generator().manual_seed(seed)
        before = np.zeros((r, r), bool)
        front = np.zeros((height, width), bool)
        found: list[SceneInstance] = []
        for depth in range(opts.max_layers):
            sample = self.sample_layer(crop, before.astype(np.float32), generator, opts)
            parts = split_layer(sample.layer > opts.threshold, sample.cores > opts.threshold, min_px)
            parts = [p for p in parts if (p & ~before).sum() >= min_px]
            if not parts:
                break
            layer_front = np.zeros((height, width), bool)
            for part in parts:
                amodal = window.paste(np.where(part, sample.layer, 0).astype(np.float32), height, width, linear=True)
                amodal = amodal > opts.threshold
                visible = amodal & ~front
                if not visible.any():
                    continue
                occluders = [i for i, o in enumerate(found) if o.layer < depth and (o.amodal_mask & amodal).any()]
                found.append(
                    SceneInstance(
                        amodal_mask=amodal,
                        visible_mask=visible,
                        layer=depth,
                        occluded_by=occluders,
                        score=float(sample.layer[part].mean()),
                    )
                )
                layer_front |= amodal
            before |= np.logical_or.reduce(parts)
            front |= layer_front
        return found
