"""Training examples for the single-pass model: rendered scenes, cut and prompted on the fly.

Every example is drawn fresh from a ``SceneStore`` (``data/scene_store.py``), so one scene
yields many different crops, prompts and augmentations:

- the background (table and wall) is replaced by a real photo region (``data/photos.py``);
- an occluder cut in the silhouette of another object and textured with a photo (or a
  procedural texture) is pasted over the target, which changes its visible mask only;
- the target itself can be such a photo-textured silhouette pasted into the scene, so the
  model also learns to separate objects whose surfaces look like real ones;
- parts of the target's visible surface can be repainted with other surfaces (a label, a
  screen, the coffee in a cup), so an edge inside an object is not taken for its outline and a
  click on such a part still means the whole object; a grid of small keys (a keypad, a
  keyboard, tiles) teaches the same at the scale of the click's own neighbourhood;
- the prompt is a click (anywhere on the visible part, mostly inside it), a jittered box, or
  the visible mask; a click's window is sized as the predictor's first pass or its
  refinement passes see it (``single_pass/prompting.py``);
- colour, contrast, blur, noise and JPEG compression vary per crop (``data/augment.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from gestalt_ros.data.augment import photometric, place, silhouette, surface
from gestalt_ros.data.photos import random_patch
from gestalt_ros.data.scene_store import SceneStore
from gestalt_ros.prompts import CropWindow
from gestalt_ros.single_pass.prompting import click_window, object_window, prompt_maps
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt, mask_bbox, touches_border

MIN_VISIBLE_PX = 30


@dataclass
class ExampleConfig:
    """Probabilities and ranges of the example sampler (``TrainConfig.examples`` in YAML)."""

    photo_background: float = 0.5
    pasted_occluder: float = 0.5
    photo_target: float = 0.15
    # A photo-textured target's size, as a fraction of min(H, W).
    photo_target_size: tuple[float, float] = (0.15, 0.5)
    # The chance that the target carries painted parts, and the parts' size as a fraction of
    # its visible box's longer side.
    part_decals: float = 0.0
    part_size: tuple[float, float] = (0.2, 0.7)
    # The chance of a grid of small keys on the target, and the grid's size as a fraction of
    # its visible box's longer side.
    key_grids: float = 0.0
    key_grid_size: tuple[float, float] = (0.3, 0.9)
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


def _weighted_pick(rng: np.random.Generator, weights: np.ndarray) -> int:
    """An index drawn in proportion to ``weights`` (a pixel of ``np.nonzero(mask)``'s order)."""
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def _blend_into(image: np.ndarray, region: np.ndarray, paint: np.ndarray, alpha: float) -> None:
    """Paint ``region``'s pixels in place: ``paint`` (one row per pixel) over the image at ``alpha``."""
    image[region] = np.clip(alpha * paint.astype(np.float32) + (1 - alpha) * image[region], 0, 255).astype(np.uint8)


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
    by the frame), ``outside`` (2,) float32: how much of each truth lies outside the window,
    in crop pixels (what a mask in the window misses of the object in the frame), ``kind``
    (point, box or mask).
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
        size = rng.uniform(*cfg.photo_target_size) * min(height, width)
        amodal = place(
            silhouette(store, rng),
            size,
            rng.uniform(0.25, 0.75) * width,
            rng.uniform(0.25, 0.75) * height,
            height,
            width,
        )
        if amodal.sum() < MIN_VISIBLE_PX:
            return None
        image[amodal] = surface(rng, height, width)[amodal]
        visible = amodal.copy()
    if cfg.part_decals and rng.uniform() < cfg.part_decals:  # no draw when off: older sittings replay
        _paint_parts(image, visible, store, rng, cfg.part_size)
    if cfg.key_grids and rng.uniform() < cfg.key_grids:  # no draw when off, as above
        _paint_keys(image, visible, rng, cfg.key_grid_size)
    if rng.uniform() < cfg.pasted_occluder:
        ys, xs = np.nonzero(amodal)
        k = rng.integers(len(ys))
        size = rng.uniform(0.3, 1.1) * max(np.ptp(ys), np.ptp(xs), 4)
        cover = place(silhouette(store, rng), size, xs[k], ys[k], height, width)
        if (visible & ~cover).sum() >= MIN_VISIBLE_PX:
            image[cover] = surface(rng, height, width)[cover]
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
        k = _weighted_pick(rng, weights)
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
        crop = photometric(crop, rng)
    whole = amodal | visible
    out = {
        "image": crop,
        "prompt": prompt_maps(prompt, window, r, sigma),
        "visible": window.crop_mask(visible, r),
        "amodal": window.crop_mask(whole, r),
        "amodal_valid": not touches_border(amodal),
        "kind": kind,
        "outside": np.array([_outside(m, window, r) for m in (visible, whole)], np.float32),
    }
    if rng.uniform() < 0.5:
        out["image"] = out["image"][:, ::-1]
        out["prompt"] = out["prompt"][:, :, ::-1]
        out["visible"] = out["visible"][:, ::-1]
        out["amodal"] = out["amodal"][:, ::-1]
    return out


def _outside(mask: np.ndarray, window: CropWindow, resolution: int) -> float:
    """``mask``'s pixels outside ``window``, in crop pixels (the window's rectangle, exactly)."""
    x0, y0, x1, y1 = window.clipped(*mask.shape)
    inside = int(mask[y0:y1, x0:x1].sum()) if x1 > x0 and y1 > y0 else 0
    return (int(mask.sum()) - inside) * resolution * resolution / (window.width * window.height)


def _paint_parts(
    image: np.ndarray, visible: np.ndarray, store: SceneStore, rng: np.random.Generator, size: tuple[float, float]
) -> None:
    """Repaint one to three regions of the visible surface in place, each cut to the object.

    A part is another object's silhouette placed on an interior pixel; its surface is opaque or
    blended with the object's own shading, as a print or a glossy insert would look.
    """
    if visible.sum() < MIN_VISIBLE_PX:
        return
    ys, xs = np.nonzero(visible)
    weights = _interior_weights(visible)
    longer = max(np.ptp(ys), np.ptp(xs), 4)
    for _ in range(int(rng.integers(1, 4))):
        k = _weighted_pick(rng, weights)
        part = place(silhouette(store, rng), rng.uniform(*size) * longer, xs[k], ys[k], *visible.shape) & visible
        if part.sum() >= visible.sum():
            continue  # a part covering the whole object would only retexture it
        alpha = rng.uniform(0.6, 1.0)
        _blend_into(image, part, surface(rng, *visible.shape)[part], alpha)


def _paint_keys(image: np.ndarray, visible: np.ndarray, rng: np.random.Generator, size: tuple[float, float]) -> None:
    """Paint a rotated grid of 2-7 x 2-7 small keys on the visible surface in place, cut to the object.

    The grid is centred on an interior pixel, where the evaluation's click lands, so a click
    often falls on one key among many that all belong to the object.
    """
    if visible.sum() < MIN_VISIBLE_PX:
        return
    ys, xs = np.nonzero(visible)
    weights = _interior_weights(visible)
    k = _weighted_pick(rng, weights)
    extent = rng.uniform(*size) * max(np.ptp(ys), np.ptp(xs), 4) * np.exp(rng.uniform(-0.4, 0.4, 2))
    rows, cols = (int(v) for v in rng.integers(2, 8, 2))
    pitch = extent / (cols, rows)
    key = np.minimum(pitch * rng.uniform(0.55, 0.85), pitch - 2.0)  # fillPoly draws edges: a pixel's gap at least
    if (key < 1).any():
        return
    angle = rng.uniform(-30, 30) if rng.uniform() < 0.5 else 0.0
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    keys = np.zeros(visible.shape, np.uint8)
    for i in range(rows):
        for j in range(cols):
            u, v = (j - (cols - 1) / 2) * pitch[0], (i - (rows - 1) / 2) * pitch[1]
            centre = (float(xs[k] + c * u - s * v), float(ys[k] + s * u + c * v))
            corners = cv2.boxPoints((centre, (float(key[0]), float(key[1])), angle))
            cv2.fillPoly(keys, [np.round(corners).astype(np.int32)], 1)
    keys = keys.astype(bool) & visible
    if not keys.any() or keys.sum() >= visible.sum():
        return
    if rng.uniform() < 0.6:  # plastic keys of one colour, each shaded a little differently
        paint = np.broadcast_to(rng.uniform(0, 255, 3), (*visible.shape, 3)).astype(np.float32)
        paint = paint * rng.uniform(0.85, 1.15, visible.shape)[..., None]
    else:
        paint = surface(rng, *visible.shape).astype(np.float32)
    _blend_into(image, keys, paint[keys], rng.uniform(0.6, 1.0))


def _jittered(window: CropWindow, rng: np.random.Generator, jitter: float) -> CropWindow:
    scale = float(np.exp(rng.uniform(-jitter, jitter)))
    side = max(int(round(window.width * scale)), 16)
    shift = rng.uniform(-jitter / 2, jitter / 2, 2) * side
    cx, cy = window.x0 + window.width / 2 + shift[0], window.y0 + window.height / 2 + shift[1]
    return replace(window, x0=int(round(cx - side / 2)), y0=int(round(cy - side / 2)), width=side, height=side)
