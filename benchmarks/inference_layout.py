"""What ``gestalt_ros.inference.for_inference`` saves: each CPU network's pass, as loaded
and as prepared for inference, timed in alternating rounds in one process.

    python benchmarks/inference_layout.py [--rounds 5] [--repeats 30]

Prints the median milliseconds per pass (batch 1; the completion UNet at its default batch of
4 samples) of each and their ratio, and the largest difference of outputs (the prepared
network must answer the same).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from gestalt_ros.completion import CompletionModel
from gestalt_ros.inference import for_inference
from gestalt_ros.recognition import efficientnet_lite0
from gestalt_ros.resources import share_dir
from gestalt_ros.single_pass.model import SinglePassNet


def milliseconds(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            model(*inputs)
        start = time.perf_counter()
        for _ in range(repeats):
            model(*inputs)
    return 1000 * (time.perf_counter() - start) / repeats


def first_output(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.inference_mode():
        out = model(*inputs)
    return out[0] if isinstance(out, tuple) else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    single_pass = SinglePassNet.from_pretrained(share_dir("model") / "single_pass")
    plain_recognizer = efficientnet_lite0()  # as the recognizer loads it, before for_inference
    completion = CompletionModel.from_pretrained(share_dir("model"))
    size, c = single_pass.config.resolution, completion.config
    samples = 4  # the default completion.num_samples, one batch per denoising step
    nets = {
        "single_pass": (single_pass.eval(), (torch.randn(1, 3, size, size), torch.rand(1, 3, size, size))),
        "recognizer": (plain_recognizer.eval(), (torch.randn(1, 3, 224, 224),)),
        "completion_unet": (
            completion.eval(),
            (
                torch.randn(samples, c.channels, c.resolution, c.resolution),
                torch.randn(samples, 4, c.resolution, c.resolution),
                torch.full((samples,), 500),
            ),
        ),
    }
    report = {}
    for name, (plain, inputs) in nets.items():
        ready = for_inference(copy.deepcopy(plain))
        times = {"plain": [], "for_inference": []}
        for _ in range(args.rounds):
            times["plain"].append(milliseconds(plain, inputs, args.repeats))
            times["for_inference"].append(milliseconds(ready, inputs, args.repeats))
        medians = {k: round(float(np.median(v)), 2) for k, v in times.items()}
        diff = (first_output(plain, inputs) - first_output(ready, inputs)).abs().max().item()
        report[name] = {
            "ms_per_pass": medians,
            "ratio": round(medians["for_inference"] / medians["plain"], 3),
            "max_abs_output_difference": float(f"{diff:.2e}"),
        }
    report["torch_threads"] = torch.get_num_threads()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
