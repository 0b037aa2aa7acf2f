"""Rendered scenes stored once, compactly, for the example samplers to draw from.

A ``SceneStore`` keeps per scene its image and visible instance labels, and per object its
bit-packed amodal mask; the single-pass and the scene-layer samplers cut their training
examples from it on the fly, so one rendering run feeds many different examples.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm


@dataclass
class SceneStore:
    """Rendered scenes, compact: S images, their visible instance labels, M amodal masks."""

    images: np.ndarray  # (S, H, W, 3) uint8
    labels: np.ndarray  # (S, H, W) uint8: 0 background, k + 1 the scene's object k
    amodal: np.ndarray  # (M, H, ceil(W / 8)) uint8, np.packbits along the rows
    scene_of: np.ndarray  # (M,) int32
    local: np.ndarray  # (M,) uint8: k, the object's index within its scene

    FIELDS = ("images", "labels", "amodal", "scene_of", "local")

    def __len__(self) -> int:
        return len(self.scene_of)

    def amodal_mask(self, m: int) -> np.ndarray:
        return np.unpackbits(self.amodal[m], axis=-1, count=self.images.shape[2]).astype(bool)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{k: getattr(self, k) for k in self.FIELDS})

    @classmethod
    def load(cls, path: Path) -> SceneStore:
        with np.load(path) as data:
            return cls(*(data[k] for k in cls.FIELDS))

    @classmethod
    def concatenate(cls, parts: Sequence[SceneStore]) -> SceneStore:
        offsets = np.cumsum([0] + [len(p.images) for p in parts[:-1]])
        return cls(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.amodal for p in parts]),
            np.concatenate([p.scene_of + o for p, o in zip(parts, offsets)]).astype(np.int32),
            np.concatenate([p.local for p in parts]),
        )


def store_scenes(scenes) -> SceneStore:
    """``synthetic.Scene`` objects -> a SceneStore (objects with no visible pixel are dropped)."""
    images, labels, amodal, scene_of, local = [], [], [], [], []
    for scene in scenes:
        label = np.zeros(scene.image.shape[:2], np.uint8)
        k = 0
        for obj in scene.objects:
            if not obj.visible.any():
                continue
            label[obj.visible] = k + 1
            amodal.append(np.packbits(obj.amodal, axis=-1))
            scene_of.append(len(images))
            local.append(k)
            k += 1
        images.append(scene.image)
        labels.append(label)
    return SceneStore(
        np.stack(images),
        np.stack(labels),
        np.stack(amodal),
        np.asarray(scene_of, np.int32),
        np.asarray(local, np.uint8),
    )


def _render_chunk(args: tuple) -> SceneStore:
    from gestalt_ros.data.synthetic import iter_scenes

    seed, start, count, objects, ycb_root, scene_config = args
    return store_scenes(iter_scenes(count, seed, objects, scene_config, ycb_root, start=start))


def build_scene_store(
    n_scenes: int,
    seed: int,
    objects: Sequence[str],
    scene_config=None,
    ycb_root: Path | None = None,
    workers: int = 2,
    chunk: int = 50,
    progress: bool = True,
) -> SceneStore:
    """Render ``n_scenes`` scenes in ``workers`` processes (deterministic for a seed)."""
    jobs = [
        (seed, start, min(chunk, n_scenes - start), tuple(objects), ycb_root, scene_config)
        for start in range(0, n_scenes, chunk)
    ]
    bar = tqdm(total=n_scenes, desc="rendering scenes", unit="scene", disable=not progress)
    parts = []
    # forkserver, not fork: a caller that already runs threads (torch, rclpy) can leave a forked
    # child with locks held by threads it does not have, and the child may crash.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        for job, part in zip(jobs, pool.map(_render_chunk, jobs)):
            parts.append(part)
            bar.update(job[2])
    bar.close()
    return SceneStore.concatenate(parts)
