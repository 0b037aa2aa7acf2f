"""pix2gestalt's speed: the reference protocol against the fast setting, in one run, same inputs.

    python benchmarks/pix2gestalt_speed.py --device cuda             # the released widths, random weights
    python benchmarks/pix2gestalt_speed.py --device cpu --reduced    # a CPU check at reduced widths

Random weights at the released architecture (no weights are needed to time it). The
reference protocol: fp32, 199 UNet steps (200 requested on the reference schedule),
guidance 2, samples one after another as inference.py does. The fast setting: the
``pix2gestalt_fast`` preset's steps, half precision on CUDA, all samples in one batch,
PyTorch SDPA attention (diffusers' default), and optionally ``torch.compile`` of the UNet.
Prints seconds per object, UNet calls (steps) per second of the whole call and peak GPU memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from gestalt_ros.config import GestaltConfig
from gestalt_ros.pix2gestalt.architecture import REFERENCE, UNetShape
from gestalt_ros.pix2gestalt.pipeline import Pix2GestaltPipeline


def _time(
    pipe: Pix2GestaltPipeline, image, mask, batches: list[int], steps: int, reference: bool, repeats: int
) -> dict:
    def run() -> None:
        for n in batches:
            pipe(
                image,
                mask,
                num_samples=n,
                num_inference_steps=steps,
                guidance_scale=2.0,
                eta=1.0,
                generator=torch.Generator().manual_seed(0),
                reference_schedule=reference,
            )

    run()  # warm-up: kernels, allocator, compilation
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    unet_steps = len(pipe.timesteps(steps, reference)) * len(batches)
    best = min(seconds)
    return {
        "seconds_per_object": round(best, 4),
        "seconds_all": [round(s, 4) for s in seconds],
        "unet_calls_per_object": unet_steps,
        "unet_calls_per_second": round(unet_steps / best, 2),  # of the whole call (CLIP and VAE included)
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if pipe.device.type == "cuda"
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reduced", action="store_true", help="UNet at 1/5 width (model_channels 64): a CPU check")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--reference-steps", type=int, default=200, help="requested steps of the reference protocol")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast setting's UNet")
    args = parser.parse_args()
    arch = REFERENCE
    if args.reduced:
        arch = dataclasses.replace(arch, unet=dataclasses.replace(arch.unet, model_channels=64, context_dim=768))
    assert isinstance(arch.unet, UNetShape)
    fast = GestaltConfig().with_preset("pix2gestalt_fast").completion
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    mask = np.zeros((256, 256), bool)
    mask[64:192, 80:176] = True
    torch.manual_seed(0)
    results = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "architecture": "reduced (UNet model_channels 64)" if args.reduced else "released widths",
        "torch": torch.__version__,
        "samples": args.samples,
    }
    pipe = Pix2GestaltPipeline.from_architecture(arch, args.device, torch.float32)
    results["reference"] = _time(pipe, image, mask, [1] * args.samples, args.reference_steps, True, args.repeats)
    half = torch.float16 if args.device.startswith("cuda") else torch.float32
    pipe = pipe.to(args.device, half)
    if args.compile:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=True)
    results["fast"] = _time(pipe, image, mask, [args.samples], fast.num_inference_steps, False, args.repeats)
    results["fast"]["dtype"] = str(half)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
