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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from gestalt_ros.prompts import CropWindow
from gestalt_ros.types import touches_border

if TYPE_CHECKING:
    from gestalt_ros.data.synthetic import SceneConfig, SceneObject

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
    overlay: float = 0.0,
    overlay_max_occlusion: float = 0.05,
    crop_max_aspect: float = 1.0,
) -> CropSet:
    """Crops of every usable object of one ``synthetic.Scene``.

    Objects whose visible part is tiny, or whose amodal mask touches the frame (the truth is
    cut off there), are skipped. ``crop_scale`` and ``crop_max_aspect`` are the model's window
    rule (``CropWindow.around``). ``jitter`` randomly scales and shifts the window by up to
    that fraction, so the model does not depend on a perfectly tight visible box. Objects
    hidden by less than 5% are kept with probability ``keep_unoccluded``: enough of them to
    learn not to invent parts, few enough that completing hidden parts dominates training.
    With probability ``overlay`` an object hidden by less than ``overlay_max_occlusion`` (by
    default only whole ones) also yields a second example, occluded in 2D by
    ``paste_occluder`` (pix2gestalt's recipe): occluders anywhere, the middle too. Above
    the default, objects the scene already hides in part get a second occluder, so gaps and
    strips between two occluders are seen in training too.
    """
    images, visible, targets, amodal_crops, occlusion = [], [], [], [], []

    def add(image: np.ndarray, obj_visible: np.ndarray, obj: SceneObject, ratio: float) -> None:
        scale = crop_scale * float(np.exp(rng.uniform(-jitter, jitter)))
        window = CropWindow.around(obj_visible, scale, crop_max_aspect)
        if jitter:
            shift = rng.uniform(-jitter, jitter, size=2) * (window.width, window.height)
            window = replace(window, x0=window.x0 + int(shift[0]), y0=window.y0 + int(shift[1]))
        images.append(window.crop_image(image, resolution))
        visible.append(window.crop_mask(obj_visible, resolution))
        targets.append(window.crop_image(obj.whole, resolution, fill=255))
        amodal_crops.append(window.crop_mask(obj.amodal, resolution))
        occlusion.append(ratio)

    for obj in scene.objects:
        if obj.visible.sum() < min_visible_px or touches_border(obj.amodal):
            continue
        ratio = 1.0 - obj.visible.sum() / max(obj.amodal.sum(), 1)
        whole = ratio < 0.05
        if ratio < overlay_max_occlusion and overlay > 0 and rng.random() < overlay:
            others = [o for o in scene.objects if o is not obj and o.amodal.sum() >= min_visible_px]
            if others:
                pasted = paste_occluder(scene.image, obj, others[rng.integers(len(others))], rng, min_visible_px)
                if pasted is not None:
                    add(*pasted, obj, 1.0 - pasted[1].sum() / obj.amodal.sum())
        if whole and rng.random() >= keep_unoccluded:
            continue
        add(scene.image, obj.visible, obj, ratio)
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


def paste_occluder(
    image: np.ndarray,
    target: SceneObject,
    occluder: SceneObject,
    rng: np.random.Generator,
    min_visible_px: int = 30,
    hidden: tuple[float, float] = (0.1, 0.7),
    tries: int = 8,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``image`` with ``occluder``'s whole appearance pasted over ``target``, and the target's
    new visible mask; None if no placement hides a fraction in ``hidden`` of it.

    The occluder is rescaled to 0.3-1.2 times the target's size, maybe rotated by quarter
    turns, and centred on a random pixel of the target (so it may land in its middle).
    """
    h, w = image.shape[:2]
    ys, xs = np.nonzero(target.amodal)
    target_size = max(np.ptp(ys), np.ptp(xs)) + 1
    oy, ox = np.nonzero(occluder.amodal)
    y0, y1, x0, x1 = oy.min(), oy.max() + 1, ox.min(), ox.max() + 1
    rgb, mask = occluder.whole[y0:y1, x0:x1], occluder.amodal[y0:y1, x0:x1].astype(np.uint8)
    turns = int(rng.integers(4))
    rgb, mask = np.rot90(rgb, turns), np.rot90(mask, turns)
    area = target.amodal.sum()
    for _ in range(tries):
        scale = target_size * rng.uniform(0.3, 1.2) / max(mask.shape)
        size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
        small_rgb = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(np.ascontiguousarray(mask), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        k = rng.integers(len(ys))
        top, left = ys[k] - size[1] // 2, xs[k] - size[0] // 2
        cover = np.zeros((h, w), bool)
        colour = np.zeros_like(image)
        cy0, cx0 = max(top, 0), max(left, 0)
        cy1, cx1 = min(top + size[1], h), min(left + size[0], w)
        if cy1 <= cy0 or cx1 <= cx0:
            continue
        window = (slice(cy0 - top, cy1 - top), slice(cx0 - left, cx1 - left))
        cover[cy0:cy1, cx0:cx1] = small_mask[window]
        colour[cy0:cy1, cx0:cx1] = small_rgb[window]
        visible = target.visible & ~cover
        if visible.sum() >= min_visible_px and hidden[0] <= 1.0 - visible.sum() / area <= hidden[1]:
            return np.where(cover[..., None], colour, image), visible
    return None


def _render_chunk(args: tuple) -> CropSet:
    from gestalt_ros.data.synthetic import iter_scenes

    seed, start, count, objects, ycb_root, scene_config, crop_options = args
    rng = np.random.default_rng([seed, start])
    parts = [
        scene_crops(scene, rng=rng, **crop_options)
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
    overlay: float = 0.0,
    workers: int = 2,
    ycb_root: Path | None = None,
    chunk: int = 50,
    progress: bool = True,
    scene_config: SceneConfig | None = None,
    overlay_max_occlusion: float = 0.05,
    crop_max_aspect: float = 1.0,
) -> CropSet:
    """Render ``n_scenes`` scenes in ``workers`` processes and cut their crops (deterministic)."""
    crop_options = dict(
        resolution=resolution,
        crop_scale=crop_scale,
        crop_max_aspect=crop_max_aspect,
        jitter=jitter,
        keep_unoccluded=keep_unoccluded,
        overlay=overlay,
        overlay_max_occlusion=overlay_max_occlusion,
    )
    jobs = [
        (seed, start, min(chunk, n_scenes - start), tuple(objects), ycb_root, scene_config, crop_options)
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
