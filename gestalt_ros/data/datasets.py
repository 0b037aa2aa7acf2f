"""Training crops for the completion model, cut exactly as the pipeline cuts them.

Each example is (occluded crop, visible mask, whole object on white, amodal mask), all at
the model's resolution, around the visible part with ``prompts.CropWindow``. Scenes come from the
pybullet generator; rendering runs in worker processes and the crops are cached as one
``.npz`` so a training run can be repeated without re-rendering.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from gestalt_ros.prompts import CropWindow

if TYPE_CHECKING:
    from gestalt_ros.data.synthetic import SceneConfig

logger = logging.getLogger(__name__)


@dataclass
class CropSet:
    """N training examples as uint8 arrays (cheap to cache and to index)."""

    images: np.ndarray  # (N, r, r, 3) occluded crops
    visible: np.ndarray  # (N, r, r) bool
    targets: np.ndarray  # (N, r, r, 3) whole object on white
    amodal: np.ndarray  # (N, r, r) bool, the exact whole silhouette (the alpha target)
    occlusion: np.ndarray  # (N,) float32, 1 - visible/amodal area in the full frame

    FIELDS = ("images", "visible", "targets", "amodal", "occlusion")

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{k: getattr(self, k) for k in self.FIELDS})

    @classmethod
    def load(cls, path: Path) -> CropSet:
        with np.load(path) as data:
            return cls(*(data[k] for k in cls.FIELDS))

    @classmethod
    def concatenate(cls, parts: Sequence[CropSet]) -> CropSet:
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in cls.FIELDS))


def scene_crops(
    scene,
    resolution: int,
    crop_scale: float,
    rng: np.random.Generator,
    jitter: float = 0.0,
    min_visible_px: int = 30,
    keep_unoccluded: float = 1.0,
) -> CropSet:
    """Crops of every usable object of one ``synthetic.Scene``.

    Objects whose visible part is tiny, or whose amodal mask touches the frame (the truth is
    cut off there), are skipped. ``jitter`` randomly scales and shifts the window by up to
    that fraction, so the model does not depend on a perfectly tight visible box. Objects
    hidden by less than 5% are kept with probability ``keep_unoccluded``: enough of them to
    learn not to invent parts, few enough that completing hidden parts dominates training.
    """
    images, visible, targets, amodal_crops, occlusion = [], [], [], [], []
    h, w = scene.image.shape[:2]
    for obj in scene.objects:
        amodal = obj.amodal
        if (
            obj.visible.sum() < min_visible_px
            or amodal[0].any()
            or amodal[-1].any()
            or amodal[:, 0].any()
            or amodal[:, -1].any()
        ):
            continue
        ratio = 1.0 - obj.visible.sum() / max(amodal.sum(), 1)
        if ratio < 0.05 and rng.random() >= keep_unoccluded:
            continue
        window = CropWindow.around(obj.visible, crop_scale * float(np.exp(rng.uniform(-jitter, jitter))))
        if jitter:
            shift = rng.uniform(-jitter, jitter, size=2) * window.size
            window = CropWindow(window.x0 + int(shift[0]), window.y0 + int(shift[1]), window.size)
        images.append(window.crop_image(scene.image, resolution))
        visible.append(window.crop_mask(obj.visible, resolution))
        targets.append(window.crop_image(obj.whole, resolution, fill=255))
        amodal_crops.append(window.crop_mask(amodal, resolution))
        occlusion.append(ratio)
    if not images:
        r = resolution
        return CropSet(
            np.zeros((0, r, r, 3), np.uint8),
            np.zeros((0, r, r), bool),
            np.zeros((0, r, r, 3), np.uint8),
            np.zeros((0, r, r), bool),
            np.zeros(0, np.float32),
        )
    return CropSet(
        np.stack(images),
        np.stack(visible),
        np.stack(targets),
        np.stack(amodal_crops),
        np.asarray(occlusion, np.float32),
    )


def _render_chunk(args: tuple) -> CropSet:
    from gestalt_ros.data.synthetic import iter_scenes

    seed, start, count, objects, resolution, crop_scale, jitter, keep_unoccluded, ycb_root, scene_config = args
    rng = np.random.default_rng([seed, start])
    parts = [
        scene_crops(scene, resolution, crop_scale, rng, jitter, keep_unoccluded=keep_unoccluded)
        for scene in iter_scenes(count, seed, objects=objects, config=scene_config, ycb_root=ycb_root, start=start)
    ]
    return CropSet.concatenate(parts)


def build_crops(
    n_scenes: int,
    seed: int,
    objects: Sequence[str],
    resolution: int,
    crop_scale: float,
    jitter: float = 0.1,
    keep_unoccluded: float = 1.0,
    workers: int = 2,
    ycb_root: Path | None = None,
    chunk: int = 50,
    progress: bool = True,
    scene_config: SceneConfig | None = None,
) -> CropSet:
    """Render ``n_scenes`` scenes in ``workers`` processes and cut their crops (deterministic)."""
    jobs = [
        (
            seed,
            start,
            min(chunk, n_scenes - start),
            tuple(objects),
            resolution,
            crop_scale,
            jitter,
            keep_unoccluded,
            ycb_root,
            scene_config,
        )
        for start in range(0, n_scenes, chunk)
    ]
    parts: list[CropSet] = []
    bar = tqdm(total=n_scenes, desc="rendering scenes", unit="scene", disable=not progress)
    if workers <= 1:
        results: Iterable[CropSet] = map(_render_chunk, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_render_chunk, jobs)
    for job, part in zip(jobs, results):
        parts.append(part)
        bar.update(job[2])
    bar.close()
    if workers > 1:
        pool.shutdown()
    crops = CropSet.concatenate(parts)
    logger.info("%d scenes -> %d crops", n_scenes, len(crops))
    return crops


class CompletionDataset(torch.utils.data.Dataset):
    """Tensors in [-1, 1]: (target (3 or 4 with alpha, r, r), condition (4, r, r)); random flips."""

    def __init__(self, crops: CropSet, flip: bool = True, alpha: bool = False) -> None:
        self.crops = crops
        self.flip = flip
        self.alpha = alpha

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from gestalt_ros.completion import encode_condition, encode_target

        c = self.crops
        arrays = [c.images[i], c.visible[i], c.targets[i], c.amodal[i]]
        if self.flip and torch.rand(()) < 0.5:
            arrays = [a[:, ::-1] for a in arrays]
        image, visible, target, amodal = (np.ascontiguousarray(a) for a in arrays)
        return encode_target(target, amodal if self.alpha else None), encode_condition(image, visible)[0]
