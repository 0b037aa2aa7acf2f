"""Pix2GestaltPipeline: the whole object behind an occluder, from a converted pix2gestalt folder.

In the diffusers style: one class, ``from_pretrained(DIR)``, and ``__call__`` in named steps,
each reproducing the reference implementation (cvlab-columbia/pix2gestalt ``inference.py``):

1. CLIP embedding of the occluded image (bicubic resize to 224 with ``align_corners=True``,
   no antialias, CLIP mean/std), through ``cc_projection``: the cross-attention context;
2. VAE ``encode().mode()`` of the image and of the visible mask as a 3-channel image, not
   scaled: 8 channels concatenated after the scaled noisy latent;
3. the initial noise (``latents=``, or drawn from ``generator``);
4. DDIM, with classifier-free guidance whose null condition is zeros (unconditional first);
5. VAE decode, ``clamp((x + 1) / 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gestalt_ros.pix2gestalt.architecture import Architecture, build_image_encoder, build_projection
from gestalt_ros.pix2gestalt.convert import read_architecture

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def reference_timesteps(num_inference_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """The timesteps the reference DDIM sampler evaluates when asked for ``num_inference_steps``.

    Its grid is ``arange(0, T, T // S) + 1`` and it drops the grid's largest entry, largest
    first: 5 gives [601, 401, 201, 1]; 200 gives 199 steps from 991. Where the grid reaches
    T itself the reference fails (an index error), and so does this, with a message.
    """
    ratio = num_train_timesteps // num_inference_steps
    if ratio < 1:
        raise ValueError(f"num_inference_steps {num_inference_steps} exceeds the {num_train_timesteps} training steps")
    grid = np.arange(0, num_train_timesteps, ratio) + 1
    if grid[-1] >= num_train_timesteps:
        raise ValueError(
            f"the reference sampler cannot run {num_inference_steps} steps (its grid reaches t={grid[-1]}); "
            "choose another num_inference_steps, e.g. 50 or 200"
        )
    return [int(t) for t in grid[:-1][::-1]]


@dataclass
class Pix2GestaltOutput:
    images: np.ndarray | torch.Tensor  # (N, 256, 256, 3) floats in [0, 1] ("np"), or (N, 3, 256, 256) ("pt")


class Pix2GestaltPipeline:
    """pix2gestalt: whole objects (on white) from an occluded image and the visible part's mask."""

    def __init__(self, unet, vae, image_encoder, cc_projection, scheduler, architecture: Architecture) -> None:
        self.unet = unet
        self.vae = vae
        self.image_encoder = image_encoder
        self.cc_projection = cc_projection
        self.scheduler = scheduler
        self.architecture = architecture

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, device: str | torch.device = "cpu", torch_dtype: torch.dtype = torch.float32
    ) -> Pix2GestaltPipeline:
        """Load a folder written by ``gestalt-ros convert``."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from safetensors.torch import load_file

        model_dir = Path(model_dir)
        arch = read_architecture(model_dir)
        image_encoder = build_image_encoder(arch.clip)
        image_encoder.load_state_dict(load_file(model_dir / "image_encoder" / "model.safetensors"))
        cc_projection = build_projection(arch)
        cc_projection.load_state_dict(load_file(model_dir / "cc_projection" / "model.safetensors"))
        pipe = cls(
            UNet2DConditionModel.from_pretrained(model_dir / "unet", torch_dtype=torch_dtype),
            AutoencoderKL.from_pretrained(model_dir / "vae", torch_dtype=torch_dtype),
            image_encoder,
            cc_projection,
            DDIMScheduler.from_pretrained(model_dir / "scheduler"),
            arch,
        )
        return pipe.to(device, torch_dtype)

    @classmethod
    def from_architecture(
        cls, arch: Architecture, device: str | torch.device = "cpu", torch_dtype: torch.dtype = torch.float32
    ) -> Pix2GestaltPipeline:
        """Random weights at ``arch``'s widths: for benchmarks and architecture tests."""
        from diffusers import DDIMScheduler

        from gestalt_ros.pix2gestalt.architecture import build_networks
        from gestalt_ros.pix2gestalt.convert import SCHEDULER

        nets = build_networks(arch, device)
        scheduler = DDIMScheduler(**arch.schedule, **SCHEDULER)
        return cls(nets["unet"], nets["vae"], nets["image_encoder"], nets["cc_projection"], scheduler, arch).to(
            device, torch_dtype
        )

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Pix2GestaltPipeline:
        for net in (self.unet, self.vae, self.image_encoder, self.cc_projection):
            net.to(device=device).eval()
            if dtype is not None and next(net.parameters()).dtype != dtype:
                net.to(dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # ----- 1. and 2. the conditions -----
    def preprocess(self, image: np.ndarray, visible_mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """H x W x 3 uint8 and H x W bool at the model's size -> both as (1, 3, H, W) in [-1, 1]."""
        size = self.architecture.image_size
        if image.shape != (size, size, 3) or image.dtype != np.uint8:
            raise ValueError(f"image must be {size}x{size}x3 uint8, got {image.shape} {image.dtype}")
        if visible_mask.shape != (size, size):
            raise ValueError(f"visible_mask must be {size}x{size}, got {visible_mask.shape}")
        mask = np.repeat((visible_mask.astype(bool) * 255).astype(np.float32)[..., None], 3, axis=-1)

        def to_tensor(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / 255.0 * 2.0 - 1.0)
            return t.permute(2, 0, 1)[None].to(self.device)

        return to_tensor(image), to_tensor(mask)

    def clip_pixel_values(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> CLIP's input: bicubic 224 (align_corners, no antialias), mean/std."""
        x = F.interpolate(image, (CLIP_SIZE, CLIP_SIZE), mode="bicubic", align_corners=True)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return ((x + 1.0) / 2.0 - mean) / std

    @torch.no_grad()
    def encode_cross_attention(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> the projected CLIP embedding, (1, 1, D)."""
        embedding = self.image_encoder(self.clip_pixel_values(image).to(self.dtype))
        return self.cc_projection(embedding)[:, None]

    @torch.no_grad()
    def encode_concat(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """VAE posterior modes of the image and of the mask image, unscaled: (1, 8, h, w)."""
        both = torch.cat([image, mask]).to(self.dtype)
        modes = self.vae.encode(both).latent_dist.mode()
        return torch.cat([modes[:1], modes[1:]], dim=1)

    # ----- 3. and 4. sampling -----
    def timesteps(self, num_inference_steps: int, reference_schedule: bool) -> torch.Tensor:
        """Sets the scheduler for ``num_inference_steps`` (its step size) and returns the timesteps to run."""
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        if not reference_schedule:
            return self.scheduler.timesteps
        train_steps = self.scheduler.config.num_train_timesteps
        return torch.tensor(reference_timesteps(num_inference_steps, train_steps), device=self.device)

    @torch.no_grad()
    def predict_noise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor | int,
        context: torch.Tensor,
        concat: torch.Tensor,
        guidance_scale: float,
    ) -> torch.Tensor:
        """The UNet's noise prediction with guidance; the null condition is zeros, unconditional first."""
        n = latents.shape[0]
        context, concat = context.expand(n, -1, -1), concat.expand(n, -1, -1, -1)
        if guidance_scale > 1.0:
            model_in = torch.cat([torch.cat([latents, latents]), torch.cat([torch.zeros_like(concat), concat])], dim=1)
            context = torch.cat([torch.zeros_like(context), context])
            uncond, cond = self.unet(model_in, t, encoder_hidden_states=context).sample.chunk(2)
            return uncond + guidance_scale * (cond - uncond)
        return self.unet(torch.cat([latents, concat], dim=1), t, encoder_hidden_states=context).sample

    # ----- 5. decoding -----
    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> (N, 3, H, W) images in [0, 1]."""
        images = self.vae.decode(latents / self.architecture.scale_factor).sample
        return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray,
        visible_mask: np.ndarray,
        num_samples: int = 4,
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        eta: float = 1.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        reference_schedule: bool = False,
        output_type: str = "np",
    ) -> Pix2GestaltOutput:
        """256 x 256 x 3 uint8 image + 256 x 256 bool visible mask -> ``num_samples`` whole objects on white.

        ``reference_schedule`` runs exactly the timesteps the reference sampler runs for
        ``num_inference_steps`` (``reference_timesteps``). ``latents`` (N, 4, h, w) fixes the
        initial noise; otherwise it is drawn on the CPU from ``generator`` (same seed, same
        noise on any device).
        """
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        # 1. and 2. conditions
        pixels, mask = self.preprocess(image, visible_mask)
        context = self.encode_cross_attention(pixels)
        concat = self.encode_concat(pixels, mask)
        # 3. initial noise
        shape = (num_samples, self.unet.config.out_channels, *concat.shape[-2:])
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = (latents.to(self.device) * self.scheduler.init_noise_sigma).to(self.dtype)
        # 4. denoise
        for t in self.timesteps(num_inference_steps, reference_schedule):
            noise = self.predict_noise(latents, t, context, concat, guidance_scale)
            latents = self.scheduler.step(noise, t, latents, eta=eta, generator=generator).prev_sample
        # 5. decode
        images = self.decode(latents)
        return Pix2GestaltOutput(images.permute(0, 2, 3, 1).cpu().numpy() if output_type == "np" else images)
