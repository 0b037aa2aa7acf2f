"""``gestalt-ros bench``: seconds per object and peak memory of a pipeline, printed.

Speed targets are checked here, by numbers a person reads, not by timed unit tests.
Objects are held-out synthetic scenes' objects (rendered before timing starts), prompted
as in ``eval`` (``prompt``: visible mask, box or innermost click), so the benchmark needs no
data beyond the bundled YCB meshes. ``width`` pads each square render to a camera frame
(640 at 480: VGA) so the stages run at the resolution a robot's camera gives them.
"""

from __future__ import annotations

import platform
import resource
import time

import numpy as np
import torch

from gestalt_ros.config import GestaltConfig
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.prompts import prompt_from_mask


def _objects(n: int, seed: int, image_size: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from gestalt_ros.data.synthetic import SceneConfig, iter_scenes
    from gestalt_ros.data.ycb import HELDOUT_OBJECTS

    pad = ((0, 0), (0, max(width - image_size, 0)))
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for scene in iter_scenes(4 * n, seed, objects=HELDOUT_OBJECTS, config=SceneConfig(image_size=image_size)):
        image = np.pad(scene.image, (*pad, (0, 0)), mode="edge")
        out += [(image, np.pad(o.visible, pad)) for o in scene.objects if o.visible.sum() >= 30]
        if len(out) >= n:
            break
    return out[:n]


def run_bench(
    config: GestaltConfig,
    objects: int = 20,
    warmup: int = 2,
    seed: int = 3,
    image_size: int = 256,
    width: int = 0,
    prompt: str = "mask",
) -> dict:
    """Time ``objects`` prompted objects after ``warmup`` untimed ones."""
    data = _objects(objects + warmup, seed, image_size, width)
    pipeline = GestaltPipeline.from_config(config)
    for image, visible in data[:warmup]:
        pipeline(image, prompt_from_mask(prompt, visible))
    stages: dict[str, list[float]] = {}
    totals = []
    for image, visible in data[warmup:]:
        start = time.perf_counter()
        result = pipeline(image, prompt_from_mask(prompt, visible))
        totals.append(time.perf_counter() - start)
        for stage, seconds in result.timings.items():
            stages.setdefault(stage, []).append(seconds)
    return {
        "objects": len(totals),
        "seconds_per_object_mean": round(float(np.mean(totals)), 4),
        "seconds_per_object_median": round(float(np.median(totals)), 4),
        "objects_per_second": round(len(totals) / float(np.sum(totals)), 2),
        "frame": list(data[0][0].shape[1::-1]),
        "prompt": prompt,
        "stages": config.stages(),
        "stage_seconds_mean": {k: round(float(np.mean(v)), 4) for k, v in stages.items()},
        # ru_maxrss is in KiB on Linux: the process's high-water mark, models and rendering included
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "num_samples": config.completion.num_samples,
        "num_inference_steps": config.completion.num_inference_steps,
        "device": config.device,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
