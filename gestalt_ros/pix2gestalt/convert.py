"""``gestalt-ros convert``: the original pix2gestalt Lightning checkpoint -> a diffusers folder.

    DIR/unet/            UNet2DConditionModel (12 input channels), EMA weights by default
    DIR/vae/             AutoencoderKL
    DIR/image_encoder/   OpenAI CLIP image tower as open_clip's VisionTransformer (QuickGELU)
    DIR/cc_projection/   Linear(768, 768) from the CLIP embedding to the cross-attention context
    DIR/scheduler/       DDIMScheduler, the reference sampler's schedule
    DIR/pix2gestalt.json architecture, provenance, parameter counts

diffusers' ``single_file_utils`` map the UNet and VAE keys; open_clip takes OpenAI's
``visual.*`` keys as they are. The file is memory-mapped and every network is built on the
meta device and filled with the mapped tensors, so the peak memory stays far below the
file's size (most of which is optimizer state that is never read).
"""

from __future__ import annotations

import json
import pickle
import resource
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from gestalt_ros.pix2gestalt import CheckpointError
from gestalt_ros.pix2gestalt.architecture import (
    CLIP_PREFIX,
    EMA_PREFIX,
    PROJECTION_PREFIX,
    UNET_PREFIX,
    Architecture,
    build_networks,
    infer,
    unet_config,
    vae_config,
)

FORMAT = 1
MANIFEST = "pix2gestalt.json"
SCHEDULER = {
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}


def load_original(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of an original checkpoint, memory-mapped; ``CheckpointError`` if it is none."""
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    try:
        try:
            data = torch.load(path, map_location="cpu", mmap=True, weights_only=not trust_pickle)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            data = torch.load(path, map_location="cpu", weights_only=not trust_pickle)  # legacy format
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: torch.load(weights_only=True) refused an object in this pickle ({str(err).splitlines()[0]}). "
            "A checkpoint is code as well as data: if you trust where it came from, pass --trust-pickle "
            "(weights_only=False) to load it anyway"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: cannot read it as a PyTorch checkpoint (truncated?): {err}") from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not any(k.startswith(UNET_PREFIX) for k in state):
        raise CheckpointError(f"{path}: no {UNET_PREFIX}* tensors: not a pix2gestalt (ldm) checkpoint")
    return state


def _ema_key(name: str) -> str:
    """ldm's LitEma name: the parameter name without ``model.`` and with every dot removed."""
    return EMA_PREFIX + name.removeprefix("model.").replace(".", "")


def unet_state(state: dict[str, torch.Tensor], config: dict[str, Any], ema: bool) -> dict[str, torch.Tensor]:
    """The UNet's diffusers state dict, from the EMA copy (inference's weights) or the live one."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    if ema:
        names = [k for k in state if k.startswith(UNET_PREFIX)]
        missing = [k for k in names if _ema_key(k) not in state]
        if len(missing) == len(names):
            raise CheckpointError("the checkpoint has no EMA weights (model_ema.*): pass --no-ema for the live ones")
        if missing:
            raise CheckpointError(f"{len(missing)} UNet tensors have no EMA copy, e.g. {_ema_key(missing[0])!r}")
    return convert_ldm_unet_checkpoint(state, config, extract_ema=ema)


def _fill(net: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """Load ``state`` into a meta-device ``net`` by reference; every tensor must be there."""
    result = net.load_state_dict(state, strict=False, assign=True)
    problems = [f"missing {k}" for k in result.missing_keys] + [f"unexpected {k}" for k in result.unexpected_keys]
    left = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    problems += [f"not in the checkpoint {n}" for n in left if f"missing {n}" not in problems]
    if problems:
        raise CheckpointError(f"{what}: {len(problems)} tensors do not fit, e.g. {', '.join(problems[:3])}")
    return net


def convert(ckpt: Path, out_dir: Path, ema: bool = True, num_heads: int = 8, trust_pickle: bool = False) -> dict:
    """Convert ``ckpt`` into ``out_dir``; returns the manifest (also written as ``pix2gestalt.json``)."""
    from diffusers import DDIMScheduler
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import save_file

    start = time.perf_counter()
    state = load_original(Path(ckpt), trust_pickle)
    arch = infer(state, num_heads)
    nets = build_networks(arch, "meta")
    states = {
        "unet": unet_state(state, unet_config(arch), ema),
        "vae": convert_ldm_vae_checkpoint(state, vae_config(arch)),
        "image_encoder": {k.removeprefix(CLIP_PREFIX): v for k, v in state.items() if k.startswith(CLIP_PREFIX)},
        "cc_projection": {
            k.removeprefix(PROJECTION_PREFIX): v for k, v in state.items() if k.startswith(PROJECTION_PREFIX)
        },
    }
    for name, net in nets.items():
        _fill(net, states[name], name)

    out_dir = Path(out_dir)
    # 1 GB shards: safetensors serializes a shard in memory before writing it
    nets["unet"].save_pretrained(out_dir / "unet", max_shard_size="1GB")
    nets["vae"].save_pretrained(out_dir / "vae", max_shard_size="1GB")
    for name in ("image_encoder", "cc_projection"):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in nets[name].state_dict().items()}, out_dir / name / "model.safetensors")
    DDIMScheduler(**arch.schedule, **SCHEDULER).save_pretrained(out_dir / "scheduler")
    manifest = {
        "format": FORMAT,
        "source": str(ckpt),
        "unet_weights": "ema" if ema else "live",
        "architecture": arch.to_dict(),
        "parameters": {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()},
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_architecture(model_dir: Path) -> Architecture:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a converted pix2gestalt folder (no {MANIFEST}; see gestalt-ros convert)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, this version reads {FORMAT}")
    return Architecture.from_dict(manifest["architecture"])
