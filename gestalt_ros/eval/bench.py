"""``gestalt-ros bench``: seconds per object (or per image, in scene mode) and peak memory, printed.

Speed targets are checked here, by numbers a person reads, not by timed unit tests.
Objects are held-out synthetic scenes' objects (rendered before timing starts), prompted
as in ``eval`` (``prompt``: visible mask, box or innermost click), so the benchmark needs no
data beyond the bundled YCB meshes. ``width`` pads each square render to a camera frame
(640 at 480: VGA) so the stages run at the resolution a robot's camera gives them. With
``annotations`` it times the objects of an evaluation set instead (your own photos, in any
format ``eval`` reads), at their own resolution.
"""

from __future__ import annotations

import dataclasses
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from gestalt_ros.config import GestaltConfig
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.prompts import prompt_from_mask


def _scenes(n: int, seed: int, image_size: int, width: int):
    """Held-out scenes, each image padded to ``width`` with the visible masks of its objects."""
    from gestalt_ros.data.synthetic import SceneConfig, iter_scenes
    from gestalt_ros.data.ycb import HELDOUT_OBJECTS

    pad = ((0, 0), (0, max(width - image_size, 0)))
    for scene in iter_scenes(n, seed, objects=HELDOUT_OBJECTS, config=SceneConfig(image_size=image_size)):
        image = np.pad(scene.image, (*pad, (0, 0)), mode="edge")
        yield image, [np.pad(o.visible, pad) for o in scene.objects if o.visible.sum() >= 30]


def _objects(n: int, seed: int, image_size: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for image, visible in _scenes(4 * n, seed, image_size, width):
        out += [(image, v) for v in visible]
        if len(out) >= n:
            break
    return out[:n]


def _annotated_objects(annotations: Path, images_root: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` objects of an evaluation set (as ``eval`` reads it), cycled if it has fewer."""
    from gestalt_ros.eval.annotations import iter_images, load_annotations
    from gestalt_ros.segment import read_rgb

    data = load_annotations(annotations, images_root)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for path, group in iter_images(data.objects):
        image = read_rgb(path)
        out += [(image, o.visible) for o in group if o.visible.shape == image.shape[:2]]
        if len(out) >= n:
            break
    if not out:
        raise ValueError(f"{annotations}: no objects to time")
    return [out[i % len(out)] for i in range(n)]


def _machine(config: GestaltConfig) -> dict:
    return {
        # ru_maxrss is in KiB on Linux: the process's high-water mark, models and rendering included
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": config.device,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }


def run_bench(
    config: GestaltConfig,
    objects: int = 20,
    warmup: int = 2,
    seed: int = 3,
    image_size: int = 256,
    width: int = 0,
    prompt: str = "mask",
    annotations: Path | None = None,
    images_root: Path | None = None,
) -> dict:
    """Time ``objects`` prompted objects after ``warmup`` untimed ones: held-out renders, or the
    objects of an evaluation set (``annotations``) at their own resolution."""
    if annotations is not None:
        root = images_root or (annotations if annotations.is_dir() else annotations.parent)
        data = _annotated_objects(annotations, root, objects + warmup)
    else:
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
        "num_samples": config.completion.num_samples,
        "num_inference_steps": config.completion.num_inference_steps,
        **_machine(config),
    }


def run_scene_bench(
    config: GestaltConfig, images: int = 10, warmup: int = 1, seed: int = 3, image_size: int = 256, width: int = 0
) -> dict:
    """Time the scene pipeline on ``images`` held-out scenes after ``warmup`` untimed ones."""
    from gestalt_ros.scene.pipeline import ScenePipeline

    data = [image for image, _ in _scenes(images + warmup, seed, image_size, width)]
    pipeline = ScenePipeline.from_config(config)
    for image in data[:warmup]:
        pipeline(image)
    totals, found, stages = [], [], {}
    for image in data[warmup:]:
        start = time.perf_counter()
        result = pipeline(image)
        totals.append(time.perf_counter() - start)
        found.append(len(result.objects))
        for stage, seconds in result.timings.items():
            stages.setdefault(stage, []).append(seconds)
    return {
        "images": len(totals),
        "seconds_per_image_mean": round(float(np.mean(totals)), 4),
        "seconds_per_image_median": round(float(np.median(totals)), 4),
        "objects_per_image_mean": round(float(np.mean(found)), 2),
        "frame": list(data[0].shape[1::-1]),
        "scene": {k: v for k, v in dataclasses.asdict(config.scene).items() if k != "weights"},
        "stage_seconds_mean": {k: round(float(np.mean(v)), 4) for k, v in stages.items()},
        **_machine(config),
    }
