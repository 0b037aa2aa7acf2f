"""Whole-object completion: a conditional diffusion model, sampled like pix2gestalt.

The model sees the occluded crop and the visible mask (concatenated to the noisy sample,
as pix2gestalt concatenates their VAE latents) and synthesizes the whole object on a white
background. The embedded model works in pixel space: a diffusers ``UNet2DModel`` wrapped in
a space-to-depth step (``patch_size``), which makes a 64x64 model affordable on a CPU
without a pretrained VAE (none can be downloaded here).

``CompletionSampler.__call__`` reads as the diffusers pipelines do: check inputs, encode
the condition, prepare the noise, denoise with DDIM (and classifier-free guidance when the
scale is above 1), decode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gestalt_ros.config import CompletionConfig
from gestalt_ros.inference import for_inference
from gestalt_ros.prompts import CropWindow

logger = logging.getLogger(__name__)

MODEL_CARD = "gestalt.json"


@dataclass
class CompletionModelConfig:
    """Architecture and the crop convention a completion model was trained with."""

    resolution: int = 64
    patch_size: int = 2
    block_out_channels: tuple[int, ...] = (64, 96, 128)
    layers_per_block: int = 1
    # Index of the UNet levels (0 = finest) that carry self-attention.
    attention_levels: tuple[int, ...] = (2,)
    norm_num_groups: int = 16
    attention_head_dim: int = 32
    prediction_type: str = "sample"
    num_train_timesteps: int = 1000
    # Rescale the betas to zero SNR at the last timestep. Needed in pixel space: with Stable
    # Diffusion's schedule, the noisiest training input still carries the target's low
    # frequencies, the model learns to read them, and at inference it reads the initial noise's
    # instead (every sample then grows a seed-dependent blob). Zero SNR removes that leak.
    rescale_betas_zero_snr: bool = False
    # The crop window is crop_scale x the visible box, at most crop_max_aspect times longer
    # than wide (1: square); see prompts.CropWindow.around.
    crop_scale: float = 2.5
    crop_max_aspect: float = 1.0
    # Also synthesize the whole object's alpha (its amodal mask in the crop) as a 4th channel.
    # The amodal stage then thresholds alpha, which the model learns directly from the exact
    # synthetic masks, instead of the whiteness of the RGB (wrong for white object parts).
    synthesize_alpha: bool = False
    # Free-form provenance (training command, data size, time); written by the trainer.
    training: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """Channels of the synthesized image: RGB, or RGBA with ``synthesize_alpha``."""
        return 4 if self.synthesize_alpha else 3

    def same_except(self, other: CompletionModelConfig, free: tuple[str, ...] = ("training",)) -> bool:
        """Whether ``other`` equals this config up to the fields in ``free`` (one architecture check
        for continuing a model and for averaging models, each with its own ``free`` fields)."""
        return replace(self, **{f: getattr(other, f) for f in free}) == other

    def __post_init__(self) -> None:
        if self.crop_max_aspect < 1.0:  # caught when the model loads, not on every prompt
            raise ValueError(f"crop_max_aspect must be at least 1, got {self.crop_max_aspect}")

    @classmethod
    def from_dict(cls, data: dict) -> CompletionModelConfig:
        data = dict(data)
        for key in ("block_out_channels", "attention_levels"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


class CompletionModel(nn.Module):
    """``UNet2DModel`` between pixel-unshuffle and pixel-shuffle.

    Input channels: noisy whole-object image (3, or RGBA: 4) + occluded crop (3) + visible
    mask (1), all in [-1, 1]. Output: the model's prediction (``prediction_type``) of the
    image channels.
    """

    def __init__(self, config: CompletionModelConfig) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.config = config
        p = config.patch_size
        levels = range(len(config.block_out_channels))
        self.unet = UNet2DModel(
            sample_size=config.resolution // p,
            in_channels=(config.channels + 4) * p * p,
            out_channels=config.channels * p * p,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            down_block_types=tuple(
                "AttnDownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in levels
            ),
            up_block_types=tuple(
                "AttnUpBlock2D" if i in config.attention_levels else "UpBlock2D" for i in reversed(levels)
            ),
            norm_num_groups=config.norm_num_groups,
            attention_head_dim=config.attention_head_dim,
        )

    def forward(self, noisy: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        x = torch.cat([noisy, condition], dim=1)
        if p > 1:
            x = nn.functional.pixel_unshuffle(x, p)
        out = self.unet(x, timesteps).sample
        return nn.functional.pixel_shuffle(out, p) if p > 1 else out

    def save_pretrained(self, directory: str | Path) -> None:
        """``directory/gestalt.json`` (this config) + ``directory/unet`` (diffusers layout)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(directory / "unet")
        (directory / MODEL_CARD).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> CompletionModel:
        from diffusers import UNet2DModel

        directory = Path(directory)
        card = directory / MODEL_CARD
        if not card.is_file():
            raise FileNotFoundError(f"{card} not found: not a gestalt_ros completion model directory")
        config = CompletionModelConfig.from_dict(json.loads(card.read_text()))
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = config
        model.unet = UNet2DModel.from_pretrained(directory / "unet", low_cpu_mem_usage=False)
        return model.eval()


# Fields that may differ between a model and a run continuing it (train.init_from).
SCHEDULE_FIELDS = ("training", "rescale_betas_zero_snr")


def make_scheduler(config: CompletionModelConfig):
    """DDIM with the trained noise schedule (scaled-linear betas as in Stable Diffusion)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=config.prediction_type,
        rescale_betas_zero_snr=config.rescale_betas_zero_snr,
        clip_sample=True,
        clip_sample_range=1.0,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="trailing",
    )


def encode_condition(crop: np.ndarray, visible: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 crop + (h, w) bool mask -> (1, 4, h, w) float in [-1, 1]."""
    image = torch.from_numpy(crop).permute(2, 0, 1).float() / 127.5 - 1.0
    mask = torch.from_numpy(visible.astype(np.float32))[None] * 2.0 - 1.0
    return torch.cat([image, mask], dim=0)[None]


def encode_target(whole: np.ndarray, alpha: np.ndarray | None) -> torch.Tensor:
    """(h, w, 3) uint8 whole object on white (+ (h, w) bool alpha) -> (3 or 4, h, w) in [-1, 1]."""
    target = torch.from_numpy(whole).permute(2, 0, 1).float() / 127.5 - 1.0
    if alpha is None:
        return target
    return torch.cat([target, torch.from_numpy(alpha.astype(np.float32))[None] * 2.0 - 1.0])


def decode_images(x: torch.Tensor) -> np.ndarray:
    """(N, C, h, w) in [-1, 1] -> (N, h, w, C) uint8 (C = 3, or 4 with alpha)."""
    x = ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class CompletionSampler:
    """Sample N whole-object completions for one crop, in one batch."""

    def __init__(self, model: CompletionModel, device: str | torch.device = "cpu", progress: bool = False) -> None:
        self.model = for_inference(model, device)
        self.scheduler = make_scheduler(model.config)
        self.device = torch.device(device)
        self.progress = progress

    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    def window_around(self, visible: np.ndarray) -> CropWindow:
        """The crop window for a visible mask, by the rule this model was trained with."""
        cfg = self.model.config
        return CropWindow.around(visible, cfg.crop_scale, cfg.crop_max_aspect)

    def check_inputs(self, crop: np.ndarray, visible: np.ndarray, num_samples: int, steps: int) -> None:
        r = self.resolution
        if crop.shape != (r, r, 3) or crop.dtype != np.uint8:
            raise ValueError(f"crop must be {r}x{r}x3 uint8, got {crop.shape} {crop.dtype}")
        if visible.shape != (r, r):
            raise ValueError(f"visible mask must be {r}x{r}, got {visible.shape}")
        if num_samples < 1 or steps < 1:
            raise ValueError(f"num_samples and num_inference_steps must be >= 1, got {num_samples}, {steps}")

    def prepare_start(
        self,
        crop: np.ndarray,
        visible: np.ndarray,
        num_samples: int,
        strength: float,
        generator: torch.Generator | None,
        mirror: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The starting sample and the timesteps to run.

        ``strength`` 1 starts from pure noise. Below 1, sampling starts part-way, from the
        visible part on white noised to that level (as image-to-image pipelines do): the
        coarse layout then comes from what the camera saw instead of from the noise.
        """
        r = self.resolution
        # Drawn on the CPU so the same seed gives the same samples on any device.
        noise = torch.randn(
            (num_samples, self.model.config.channels, r, r), generator=generator, dtype=torch.float32
        ).to(self.device)
        timesteps = self.scheduler.timesteps
        if strength >= 1.0:
            return noise * self.scheduler.init_noise_sigma, timesteps
        keep = max(int(round(len(timesteps) * strength)), 1)
        timesteps = timesteps[len(timesteps) - keep :]
        start = np.where(visible[..., None], crop, np.uint8(255))
        alpha = visible if self.model.config.synthesize_alpha else None
        start_t = encode_target(start, alpha)[None].to(self.device).expand(num_samples, -1, -1, -1)
        if mirror:
            start_t = mirror_odd(start_t)
        return self.scheduler.add_noise(start_t, noise, timesteps[:1].repeat(num_samples)), timesteps

    def complete(self, crop: np.ndarray, visible: np.ndarray, options: CompletionConfig, seed: int) -> np.ndarray:
        """The pipeline's completion stage: ``__call__`` with the config's options and a seeded generator."""
        return self(
            crop,
            visible,
            **options.sampling(),
            generator=torch.Generator().manual_seed(seed),
            strength=options.strength,
            mirror=options.mirror_samples,
        )

    @torch.no_grad()
    def __call__(
        self,
        crop: np.ndarray,
        visible: np.ndarray,
        num_samples: int = 4,
        num_inference_steps: int = 10,
        guidance_scale: float = 1.0,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        strength: float = 1.0,
        mirror: bool = False,
    ) -> np.ndarray:
        """(h, w, 3) uint8 crop, (h, w) bool visible mask -> (N, h, w, C) uint8 completions.

        C is 3 (whole object on white), or 4 when the model also synthesizes alpha.
        ``mirror``: every second sample sees the crop mirrored left-right and is mirrored
        back, so the samples differ in view as well as in noise (test-time augmentation;
        the model trained with random flips).
        """
        # 1. inputs
        self.check_inputs(crop, visible, num_samples, num_inference_steps)
        # 2. condition; the null condition for guidance is all zeros, as in pix2gestalt
        condition = encode_condition(crop, visible).to(self.device).expand(num_samples, -1, -1, -1)
        if mirror:
            condition = mirror_odd(condition)
        guided = guidance_scale > 1.0
        if guided:
            condition = torch.cat([torch.zeros_like(condition), condition])
        # 3. timesteps and the starting sample
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        sample, timesteps = self.prepare_start(crop, visible, num_samples, strength, generator, mirror)
        # 4. denoise
        if self.progress:
            from tqdm.auto import tqdm

            timesteps = tqdm(timesteps, desc="completion", leave=False)
        for t in timesteps:
            model_in = torch.cat([sample, sample]) if guided else sample
            t_batch = torch.full((model_in.shape[0],), int(t), device=self.device, dtype=torch.long)
            pred = self.model(model_in, condition, t_batch)
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            sample = self.scheduler.step(pred, t, sample, eta=eta, generator=generator).prev_sample
        # 5. decode
        return decode_images(mirror_odd(sample) if mirror else sample)


def mirror_odd(batch: torch.Tensor) -> torch.Tensor:
    """``batch`` (N, C, H, W) with samples 1, 3, 5, ... mirrored left-right (a new tensor)."""
    out = batch.clone()
    out[1::2] = batch[1::2].flip(-1)
    return out
