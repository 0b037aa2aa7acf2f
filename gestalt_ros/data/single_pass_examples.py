"""Training examples for the single-pass model: rendered scenes, cut and prompted on the fly.

Scenes are rendered once into a compact ``SceneStore`` (image, visible instance labels,
bit-packed amodal masks); every example is then drawn fresh from it, so one scene yields
many different crops, prompts and augmentations:

- the background (table and wall) is replaced by a real photo region (``data/photos.py``);
- an occluder cut in the silhouette of another object and textured with a photo (or a
  procedural texture) is pasted over the target, which changes its visible mask only;
- the target itself can be such a photo-textured silhouette pasted into the scene, so the
  model also learns to separate objects whose surfaces look like real ones;
- the prompt is a click (anywhere on the visible part, mostly inside it), a jittered box, or
  the visible mask; a click's window is sized as the predictor's first pass or its
  refinement passes see it (``single_pass/prompting.py``);
- colour, contrast, blur, noise and JPEG compression vary per crop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from gestalt_ros.data.photos import random_patch
from gestalt_ros.data.textures import procedural_texture
from gestalt_ros.prompts import CropWindow
from gestalt_ros.single_pass.prompting import click_window, object_window, prompt_maps
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt, mask_bbox, touches_border

logger = logging.getLogger(__name__)

MIN_VISIBLE_PX = 30


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
    with ProcessPoolExecutor(workers) as pool:
        for job, part in zip(jobs, pool.map(_render_chunk, jobs)):
            parts.append(part)
            bar.update(job[2])
    bar.close()
    return SceneStore.concatenate(parts)


@dataclass
class ExampleConfig:
    """Probabilities and ranges of the example sampler (``TrainConfig.examples`` in YAML)."""

    photo_background: float = 0.5
    pasted_occluder: float = 0.5
    photo_target: float = 0.15
    # Prompt kinds, in proportion: click, box, visible mask.
    prompt_mix: tuple[float, float, float] = (0.5, 0.25, 0.25)
    # Of the clicks, the fraction cut as a first pass (a window of unknown fit around the click).
    first_pass: float = 0.5
    # A first-pass window is this many times the visible box's longer side (log-uniform).
    first_pass_scale: tuple[float, float] = (1.3, 6.0)
    # Random scale (log) and shift of the object windows, as fractions.
    window_jitter: float = 0.2
    box_jitter: float = 0.08
    photometric: float = 0.8


def _interior_weights(mask: np.ndarray) -> np.ndarray:
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return dist[mask]


def _silhouette(store: SceneStore, rng: np.random.Generator) -> np.ndarray:
    """A random object's amodal mask cut to its box, maybe rotated by quarter turns."""
    mask = store.amodal_mask(int(rng.integers(len(store))))
    x0, y0, x1, y1 = mask_bbox(mask)
    return np.ascontiguousarray(np.rot90(mask[y0:y1, x0:x1], int(rng.integers(4))))


def _surface(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    if rng.uniform() < 0.7:
        return random_patch(rng, height, width)
    return cv2.resize(procedural_texture(rng, 128), (width, height), interpolation=cv2.INTER_LINEAR)


def _place(shape: np.ndarray, size: float, cx: float, cy: float, height: int, width: int) -> np.ndarray:
    """``shape`` resized so its longer side is ``size`` and centred at (cx, cy), in an H x W mask."""
    scale = size / max(shape.shape)
    w, h = max(int(round(shape.shape[1] * scale)), 1), max(int(round(shape.shape[0] * scale)), 1)
    small = cv2.resize(shape.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((height, width), np.uint8)
    top, left = int(round(cy - h / 2)), int(round(cx - w / 2))
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, height), min(left + w, width)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return out.astype(bool)


def _photometric(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = crop.astype(np.float32) / 255.0
    x = x * rng.uniform(0.6, 1.4) + rng.uniform(-0.15, 0.15)  # contrast, brightness
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.4, 1.5)  # saturation
    x = x * rng.uniform(0.85, 1.15, 3)  # white balance
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.7, 1.4)  # gamma
    if rng.uniform() < 0.25:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.5))
    if rng.uniform() < 0.3:
        x = x + rng.normal(0.0, rng.uniform(0.005, 0.04), x.shape).astype(np.float32)
    out = (np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    if rng.uniform() < 0.25:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def sample_example(
    store: SceneStore,
    m: int,
    rng: np.random.Generator,
    resolution: int,
    sigma: float,
    crop_scale: float,
    cfg: ExampleConfig,
) -> dict | None:
    """One example for object ``m`` (None if it is too hidden to prompt).

    Returns ``image`` (r, r, 3) uint8, ``prompt`` (3, r, r) float32, ``visible`` and
    ``amodal`` (r, r) bool targets, ``amodal_valid`` (False where the amodal truth is cut off
    by the frame), ``kind`` (point, box or mask).
    """
    s = int(store.scene_of[m])
    image = store.images[s].copy()
    height, width = image.shape[:2]
    label = store.labels[s]
    visible = label == int(store.local[m]) + 1
    amodal = store.amodal_mask(m)
    if rng.uniform() < cfg.photo_background:
        background = label == 0
        image[background] = random_patch(rng, height, width)[background]
    if rng.uniform() < cfg.photo_target:
        size = rng.uniform(0.15, 0.5) * min(height, width)
        amodal = _place(
            _silhouette(store, rng),
            size,
            rng.uniform(0.25, 0.75) * width,
            rng.uniform(0.25, 0.75) * height,
            height,
            width,
        )
        if amodal.sum() < MIN_VISIBLE_PX:
            return None
        image[amodal] = _surface(rng, height, width)[amodal]
        visible = amodal.copy()
    if rng.uniform() < cfg.pasted_occluder:
        ys, xs = np.nonzero(amodal)
        k = rng.integers(len(ys))
        size = rng.uniform(0.3, 1.1) * max(np.ptp(ys), np.ptp(xs), 4)
        cover = _place(_silhouette(store, rng), size, xs[k], ys[k], height, width)
        if (visible & ~cover).sum() >= MIN_VISIBLE_PX:
            image[cover] = _surface(rng, height, width)[cover]
            visible = visible & ~cover
    if visible.sum() < MIN_VISIBLE_PX:
        return None

    kind = ("point", "box", "mask")[rng.choice(3, p=np.asarray(cfg.prompt_mix) / sum(cfg.prompt_mix))]
    x0, y0, x1, y1 = mask_bbox(visible)
    longer = max(x1 - x0, y1 - y0)
    window = _jittered(object_window(visible, crop_scale), rng, cfg.window_jitter)
    if kind == "point":
        ys, xs = np.nonzero(visible)
        weights = _interior_weights(visible) if rng.uniform() < 0.7 else np.ones(len(ys))
        k = rng.choice(len(ys), p=weights / weights.sum())
        prompt = PointPrompt(float(xs[k]), float(ys[k]))
        if rng.uniform() < cfg.first_pass:
            side = longer * float(np.exp(rng.uniform(*np.log(cfg.first_pass_scale))))
            offset = rng.uniform(-0.25, 0.25, 2) * side
            window = click_window(prompt.x + offset[0], prompt.y + offset[1], side)
    elif kind == "box":
        j = cfg.box_jitter * longer
        b = np.array([x0, y0, x1, y1], np.float64) + rng.uniform(-j, j, 4)
        prompt = BoxPrompt(min(b[0], b[2] - 1), min(b[1], b[3] - 1), b[2], b[3])
    else:
        prompt = MaskPrompt(visible)

    r = resolution
    crop = window.crop_image(image, r)
    if rng.uniform() < cfg.photometric:
        crop = _photometric(crop, rng)
    out = {
        "image": crop,
        "prompt": prompt_maps(prompt, window, r, sigma),
        "visible": window.crop_mask(visible, r),
        "amodal": window.crop_mask(amodal | visible, r),
        "amodal_valid": not touches_border(amodal),
        "kind": kind,
    }
    if rng.uniform() < 0.5:
        out["image"] = out["image"][:, ::-1]
        out["prompt"] = out["prompt"][:, :, ::-1]
        out["visible"] = out["visible"][:, ::-1]
        out["amodal"] = out["amodal"][:, ::-1]
    return out


def _jittered(window: CropWindow, rng: np.random.Generator, jitter: float) -> CropWindow:
    scale = float(np.exp(rng.uniform(-jitter, jitter)))
    side = max(int(round(window.width * scale)), 16)
    shift = rng.uniform(-jitter / 2, jitter / 2, 2) * side
    cx, cy = window.x0 + window.width / 2 + shift[0], window.y0 + window.height / 2 + shift[1]
    return replace(window, x0=int(round(cx - side / 2)), y0=int(round(cy - side / 2)), width=side, height=side)
