"""Write rendered scenes as an amodal dataset in the generic gestalt_ros format.

``images/NNNNNN.png`` plus ``annotations.json``: per image its file, size, seed and
``ignore_rle`` (where objects were left out), and per object its id, name, visible and
amodal masks (COCO RLE), occlusion ratio, occlusion layer ``order`` (0: nothing hides it)
and ``occluded_by`` (the ids in front of it). ``eval/annotations.py`` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from gestalt_ros.data.synthetic import Scene
from gestalt_ros.eval.annotations import encode_rle
from gestalt_ros.scene.layers import occlusion_layers
from gestalt_ros.types import touches_border


def write_amodal_dataset(scenes: Iterable[Scene], out_dir: Path, min_visible_px: int = 30) -> Path:
    """Write images/NNNNNN.png and annotations.json (COCO RLE masks); return the JSON path.

    Objects with fewer than min_visible_px visible pixels are skipped (nothing to prompt
    with), and so are objects whose amodal mask touches the border (truncated: their
    amodal truth is unknown to a model that sees only the image); ``ignore_rle`` covers
    them, so a scene-mode prediction of one is neither a hit nor a false positive.
    ``order`` is the object's occlusion layer among all the scene's objects (left-out ones
    too: they still hide others), ``occluded_by`` the written objects in front of it.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for index, scene in enumerate(scenes):
        file = f"images/{index:06d}.png"
        cv2.imwrite(str(out_dir / file), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        objects = [o for o in scene.objects if o.visible.any()]
        layers, in_front = occlusion_layers([o.visible for o in objects], [o.amodal for o in objects])
        keep = [int(o.visible.sum()) >= min_visible_px and not touches_border(o.amodal) for o in objects]
        ids = np.cumsum(keep)  # object k's id, where kept
        ignore = np.zeros(scene.image.shape[:2], bool)
        for o, kept in zip(objects, keep):
            if not kept:
                ignore |= o.amodal | o.visible
        height, width = scene.image.shape[:2]
        images.append(
            {
                "file": file,
                "width": width,
                "height": height,
                "seed": scene.seed,
                "ignore_rle": encode_rle(ignore),
                "objects": [
                    {
                        "id": int(ids[k]),
                        "name": o.name,
                        "visible_rle": encode_rle(o.visible),
                        "amodal_rle": encode_rle(o.amodal),
                        "occlusion_ratio": round(o.occlusion_ratio, 6),
                        "order": layers[k],
                        "occluded_by": [int(ids[a]) for a in in_front[k] if keep[a]],
                    }
                    for k, o in enumerate(objects)
                    if keep[k]
                ],
            }
        )
    path = out_dir / "annotations.json"
    path.write_text(json.dumps({"images": images}))
    return path
