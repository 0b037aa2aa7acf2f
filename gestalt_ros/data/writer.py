"""Write rendered scenes as an amodal dataset in the generic gestalt_ros format.

``images/NNNNNN.png`` plus ``annotations.json``: per image its file, size and seed, and per
object its id, name, visible and amodal masks (COCO RLE), occlusion ratio and depth
``order``. ``eval/annotations.py`` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2

from gestalt_ros.data.synthetic import Scene
from gestalt_ros.eval.annotations import encode_rle
from gestalt_ros.types import touches_border


def write_amodal_dataset(scenes: Iterable[Scene], out_dir: Path, min_visible_px: int = 30) -> Path:
    """Write images/NNNNNN.png and annotations.json (COCO RLE masks); return the JSON path.

    Objects with fewer than min_visible_px visible pixels are skipped (nothing to prompt
    with), and so are objects whose amodal mask touches the border (truncated: their
    amodal truth is unknown to a model that sees only the image). ``order`` ranks the
    written objects of an image by depth, 0 = nearest.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for index, scene in enumerate(scenes):
        file = f"images/{index:06d}.png"
        cv2.imwrite(str(out_dir / file), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        kept = [o for o in scene.objects if int(o.visible.sum()) >= min_visible_px and not touches_border(o.amodal)]
        rank = {id(o): r for r, o in enumerate(sorted(kept, key=lambda o: o.depth))}
        height, width = scene.image.shape[:2]
        images.append(
            {
                "file": file,
                "width": width,
                "height": height,
                "seed": scene.seed,
                "objects": [
                    {
                        "id": k + 1,
                        "name": o.name,
                        "visible_rle": encode_rle(o.visible),
                        "amodal_rle": encode_rle(o.amodal),
                        "occlusion_ratio": round(o.occlusion_ratio, 6),
                        "order": rank[id(o)],
                    }
                    for k, o in enumerate(kept)
                ],
            }
        )
    path = out_dir / "annotations.json"
    path.write_text(json.dumps({"images": images}))
    return path
