"""pix2gestalt's four networks, their widths read from a checkpoint's tensor shapes.

The released checkpoint and any reduced copy (the test fixture) share one layout, so the
converter never assumes a width: ``infer`` reads them from the original (ldm) state dict.
The one number shapes cannot give is the UNet's head count (8 in pix2gestalt's config).
``REFERENCE`` is the released model, for estimates and the full-size architecture tests.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gestalt_ros.pix2gestalt import CheckpointError

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.model.visual."
PROJECTION_PREFIX = "cc_projection."
SCALE_FACTOR = 0.18215
IMAGE_SIZE = 256
# ldm's "linear" schedule, which diffusers calls "scaled_linear"; epsilon prediction.
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012}


@dataclass(frozen=True)
class UNetShape:
    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    transformer_depth: int
    context_dim: int
    use_linear_in_transformer: bool
    num_heads: int = 8


@dataclass(frozen=True)
class VaeShape:
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    embed_dim: int
    in_channels: int = 3
    out_ch: int = 3
    double_z: bool = True
    resolution: int = IMAGE_SIZE


@dataclass(frozen=True)
class ClipShape:
    """OpenAI CLIP's image tower (``clip.model.VisionTransformer``; QuickGELU)."""

    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    output_dim: int


@dataclass(frozen=True)
class Architecture:
    unet: UNetShape
    vae: VaeShape
    clip: ClipShape
    projection: tuple[int, int]  # cc_projection: (in, out)
    scale_factor: float = SCALE_FACTOR
    image_size: int = IMAGE_SIZE
    schedule: dict[str, Any] = field(default_factory=lambda: dict(SCHEDULE))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        tuples = {"channel_mult", "attention_resolutions", "ch_mult"}

        def shape(kind: type, values: dict[str, Any]) -> Any:
            return kind(**{k: tuple(v) if k in tuples else v for k, v in values.items()})

        return cls(
            unet=shape(UNetShape, data["unet"]),
            vae=shape(VaeShape, data["vae"]),
            clip=ClipShape(**data["clip"]),
            projection=tuple(data["projection"]),
            scale_factor=data["scale_factor"],
            image_size=data["image_size"],
            schedule=dict(data["schedule"]),
        )

    def original_config(self) -> dict[str, Any]:
        """The ldm YAML's structure, as diffusers' ``single_file_utils`` helpers read it."""
        unet = asdict(self.unet)
        unet.update(use_spatial_transformer=True, legacy=False, image_size=self.image_size // 8)
        vae = asdict(self.vae)
        embed_dim = vae.pop("embed_dim")
        vae["attn_resolutions"] = []
        return {
            "model": {
                "params": {
                    "scale_factor": self.scale_factor,
                    "unet_config": {"params": unet},
                    "first_stage_config": {"params": {"embed_dim": embed_dim, "ddconfig": vae}},
                }
            }
        }


REFERENCE = Architecture(
    unet=UNetShape(12, 4, 320, (1, 2, 4, 4), 2, (4, 2, 1), 1, 768, False, 8),
    vae=VaeShape(128, (1, 2, 4, 4), 2, 4, 4),
    clip=ClipShape(224, 14, 1024, 24, 16, 768),
    projection=(768, 768),
)


def _require(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"not a complete pix2gestalt checkpoint: no tensor {key!r}")
    return state[key]


def _indices(state: dict[str, torch.Tensor], pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return sorted(found)


def infer(state: dict[str, torch.Tensor], num_heads: int = 8) -> Architecture:
    """The architecture of an original-format state dict, from its tensor shapes."""
    u = UNET_PREFIX
    conv_in = _require(state, u + "input_blocks.0.0.weight")
    model_channels, in_channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    blocks = _indices(state, re.escape(u) + r"input_blocks\.(\d+)\.")
    level, per_level, mults, attention = 0, [0], [], set()
    for i in blocks[1:]:
        if f"{u}input_blocks.{i}.0.op.weight" in state:  # a downsample ends the level
            level += 1
            per_level.append(0)
            continue
        out = _require(state, f"{u}input_blocks.{i}.0.out_layers.3.weight").shape[0]
        if per_level[level] == 0:
            mults.append(int(out) // model_channels)
        per_level[level] += 1
        if f"{u}input_blocks.{i}.1.proj_in.weight" in state:
            attention.add(2**level)
    if len(set(per_level)) != 1:
        raise CheckpointError(f"UNet levels have different numbers of res blocks: {per_level}")
    first_attn = next(i for i in blocks if f"{u}input_blocks.{i}.1.proj_in.weight" in state)
    depth = len(_indices(state, re.escape(f"{u}input_blocks.{first_attn}.1.transformer_blocks.") + r"(\d+)\."))
    context = _require(state, f"{u}input_blocks.{first_attn}.1.transformer_blocks.0.attn2.to_k.weight")
    proj_in = state[f"{u}input_blocks.{first_attn}.1.proj_in.weight"]
    unet = UNetShape(
        in_channels=in_channels,
        out_channels=int(_require(state, u + "out.2.weight").shape[0]),
        model_channels=model_channels,
        channel_mult=tuple(mults),
        num_res_blocks=per_level[0],
        attention_resolutions=tuple(sorted(attention, reverse=True)),
        transformer_depth=depth,
        context_dim=int(context.shape[1]),
        use_linear_in_transformer=proj_in.ndim == 2,
        num_heads=num_heads,
    )

    v = VAE_PREFIX
    vae_in = _require(state, v + "encoder.conv_in.weight")
    ch = int(vae_in.shape[0])
    levels = _indices(state, re.escape(v) + r"encoder\.down\.(\d+)\.")
    z = int(_require(state, v + "decoder.conv_in.weight").shape[1])
    if any(f"{v}encoder.down.{lv}.attn.0.q.weight" in state for lv in levels):
        raise CheckpointError("VAE with attention inside its down levels: not pix2gestalt's autoencoder")
    vae = VaeShape(
        ch=ch,
        ch_mult=tuple(int(state[f"{v}encoder.down.{lv}.block.0.conv2.weight"].shape[0]) // ch for lv in levels),
        num_res_blocks=len(_indices(state, re.escape(f"{v}encoder.down.0.block.") + r"(\d+)\.")),
        z_channels=z,
        embed_dim=int(_require(state, v + "quant_conv.weight").shape[0]) // 2,
        in_channels=int(vae_in.shape[1]),
        out_ch=int(_require(state, v + "decoder.conv_out.weight").shape[0]),
        double_z=int(_require(state, v + "encoder.conv_out.weight").shape[0]) == 2 * z,
    )

    c = CLIP_PREFIX
    conv1 = _require(state, c + "conv1.weight")
    width, patch = int(conv1.shape[0]), int(conv1.shape[2])
    grid = round((int(_require(state, c + "positional_embedding").shape[0]) - 1) ** 0.5)
    clip = ClipShape(
        image_size=grid * patch,
        patch_size=patch,
        width=width,
        layers=len(_indices(state, re.escape(c + "transformer.resblocks.") + r"(\d+)\.")),
        heads=width // 64,  # OpenAI CLIP: 64 channels per head
        output_dim=int(_require(state, c + "proj").shape[1]),
    )
    projection = _require(state, PROJECTION_PREFIX + "weight")
    return Architecture(unet, vae, clip, (int(projection.shape[1]), int(projection.shape[0])))


# ----- the networks, built from an architecture (random weights; ``load_state_dict`` fills them) -----
def unet_config(arch: Architecture) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    with _sized():
        config = create_unet_diffusers_config_from_ldm(arch.original_config(), {}, image_size=arch.image_size)
    config["sample_size"] = arch.image_size // 2 ** (len(arch.vae.ch_mult) - 1)  # the latent side
    return config


def vae_config(arch: Architecture) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    with _sized():
        return create_vae_diffusers_config_from_ldm(arch.original_config(), {}, image_size=arch.image_size)


@contextlib.contextmanager
def _sized() -> Iterator[None]:
    """The helpers guess the image size from the checkpoint's model type (512 for SD 1.x) unless
    given one, and warn that giving one is deprecated; pix2gestalt's is 256, so it is given."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*image_size.*", category=FutureWarning)
        yield


def build_unet(arch: Architecture):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config(arch))


def build_vae(arch: Architecture):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**vae_config(arch))


def build_image_encoder(clip: ClipShape):
    """open_clip's ViT with QuickGELU: it takes OpenAI's ``visual.*`` keys as they are."""
    from open_clip.transformer import QuickGELU, VisionTransformer

    return VisionTransformer(
        image_size=clip.image_size,
        patch_size=clip.patch_size,
        width=clip.width,
        layers=clip.layers,
        heads=clip.heads,
        mlp_ratio=4.0,
        output_dim=clip.output_dim,
        act_layer=QuickGELU,
    )


def build_projection(arch: Architecture) -> torch.nn.Linear:
    return torch.nn.Linear(*arch.projection)


def build_networks(arch: Architecture, device: str | torch.device = "cpu") -> dict[str, torch.nn.Module]:
    """The four networks on ``device`` ("meta": shapes only, no memory), by their folder names."""
    with torch.device(device):
        return {
            "unet": build_unet(arch),
            "vae": build_vae(arch),
            "image_encoder": build_image_encoder(arch.clip),
            "cc_projection": build_projection(arch),
        }


def parameter_counts(arch: Architecture) -> dict[str, int]:
    """Parameters of each network, counted on the meta device (no memory, no weights)."""
    return {name: sum(p.numel() for p in net.parameters()) for name, net in build_networks(arch, "meta").items()}
