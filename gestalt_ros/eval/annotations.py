"""Readers for amodal annotations: COCOA per-image JSON and the generic gestalt_ros format.

Both yield ``AnnotatedObject``s (image path, visible and amodal truth). Problems with one
file or object are collected as ``issues`` (naming the file and object) and the rest is
still read, so one bad record never stops an evaluation.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils


@dataclass
class AnnotatedObject:
    image_path: Path
    object_id: str
    name: str | None
    visible: np.ndarray
    amodal: np.ndarray
    # Occlusion order where the file has one: the synthetic writer's layer (0: nothing hides
    # it) or COCOA's depth rank (1: front); only comparisons within one image are meaningful.
    order: int | None = None

    @property
    def occlusion_ratio(self) -> float:
        return 1.0 - float(self.visible.sum()) / max(int(self.amodal.sum()), 1)


@dataclass
class AnnotationSet:
    objects: list[AnnotatedObject] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    # Per image, where objects were left out of the annotations (the generic ``ignore_rle``).
    ignore: dict[Path, np.ndarray] = field(default_factory=dict)


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE dict (``counts`` as str or bytes) -> H x W bool."""
    rle = dict(rle)
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


def encode_rle(mask: np.ndarray) -> dict:
    """H x W bool -> COCO RLE dict with ``counts`` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def load_annotations(path: Path, images_root: Path) -> AnnotationSet:
    """Dispatch on the file: a folder of COCOA JSONs, one COCOA JSON, or a generic file."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    result = AnnotationSet()
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            result.issues.append(f"{file}: cannot read annotations: {err}")
            continue
        reader = _read_generic if isinstance(data, dict) and "images" in data else _read_cocoa
        reader(file, data, images_root, result)
    return result


def _read_generic(file: Path, data: dict, images_root: Path, out: AnnotationSet) -> None:
    for image in data["images"]:
        image_path = images_root / image.get("file", "")
        if "ignore_rle" in image:
            try:
                out.ignore[image_path] = decode_rle(image["ignore_rle"])
            except (KeyError, TypeError, ValueError) as err:
                out.issues.append(f"{file}: image {image.get('file')!r}: bad ignore_rle ({err!r})")
        for obj in image.get("objects", []):
            where = f"{file}: image {image.get('file')!r} object {obj.get('id')!r}"
            try:
                visible, amodal = decode_rle(obj["visible_rle"]), decode_rle(obj["amodal_rle"])
            except (KeyError, TypeError, ValueError) as err:
                out.issues.append(f"{where}: bad RLE ({err!r})")
                continue
            order = obj.get("order")
            obj = AnnotatedObject(image_path, str(obj.get("id")), obj.get("name"), visible, amodal, order)
            _add(out, where, obj)


def _read_cocoa(file: Path, data: dict, images_root: Path, out: AnnotationSet) -> None:
    """COCOA: amodal polygon per region; occluded regions carry a ``visible_mask`` RLE."""
    regions = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(regions, list):
        out.issues.append(f"{file}: neither a generic ('images') nor a COCOA ('regions') annotation file")
        return
    image_path = _find_image(file, data, images_root)
    if image_path is None:
        out.issues.append(f"{file}: image not found under {images_root}")
        return
    import cv2

    height, width = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED).shape[:2]
    for index, region in enumerate(regions):
        where = f"{file}: region {index} ({region.get('name', '?').strip()!r})"
        try:
            polygon = region["segmentation"]
            polygon = json.loads(polygon) if isinstance(polygon, str) else polygon
            polygons = polygon if polygon and isinstance(polygon[0], list) else [polygon]
            amodal = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)
            visible = amodal
            if "visible_mask" in region:
                rle = region["visible_mask"]
                rle = ast.literal_eval(rle) if isinstance(rle, str) else rle
                rle.setdefault("size", [height, width])
                visible = decode_rle(rle) & amodal
        except (KeyError, TypeError, ValueError, SyntaxError, IndexError) as err:
            out.issues.append(f"{where}: bad annotation ({err!r})")
            continue
        obj = AnnotatedObject(
            image_path,
            f"{data.get('image_id', file.stem)}:{index}",
            region.get("name", "").strip() or None,
            visible,
            amodal,
            region.get("order"),
        )
        _add(out, where, obj)


def _find_image(file: Path, data: dict, images_root: Path) -> Path | None:
    """COCOA files name the image by URL; the five shipped here sit beside the JSON as N.jpg."""
    names = [Path(str(data.get("url", ""))).name, f"{file.stem}.jpg", f"{file.stem}.png"]
    for name in names:
        if name and (images_root / name).is_file():
            return images_root / name
    return None


def _add(out: AnnotationSet, where: str, obj: AnnotatedObject) -> None:
    if not obj.visible.any():
        out.issues.append(f"{where}: empty visible mask, skipped")
    elif obj.visible.shape != obj.amodal.shape:
        out.issues.append(f"{where}: visible {obj.visible.shape} and amodal {obj.amodal.shape} differ, skipped")
    else:
        out.objects.append(obj)


def iter_images(objects: list[AnnotatedObject]) -> Iterator[tuple[Path, list[AnnotatedObject]]]:
    """Group objects by image, in first-seen order (each image is read once)."""
    groups: dict[Path, list[AnnotatedObject]] = {}
    for obj in objects:
        groups.setdefault(obj.image_path, []).append(obj)
    yield from groups.items()
