"""How a click's first window should be chosen: each of several first windows, refined once,
scored against the truth, and the rules that pick one from the network's own estimates.

    python benchmarks/click_windows.py --annotations A --images-root R [--windows 0.5,0.35,0.75,1.0,1.5]

Prints the mean visible IoU (percent, no GrabCut) of each rule over the set's objects, the
click at each object's innermost visible pixel as in ``gestalt-ros eval --prompt point``,
and how many clicks the fallback rule sends to the other windows. The rows of
``docs/model-card-single-pass.md`` (section 5, "A fallback for doubted clicks") come from it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from gestalt_ros.backends.builtin import single_pass_predictor
from gestalt_ros.config import GestaltConfig
from gestalt_ros.eval.annotations import iter_images, load_annotations
from gestalt_ros.eval.metrics import iou
from gestalt_ros.prompts import interior_point
from gestalt_ros.single_pass.predictor import SinglePassPredictor
from gestalt_ros.types import touches_border


def candidates(predictor: SinglePassPredictor, image: np.ndarray, truth: np.ndarray, fractions: list[float]) -> dict:
    """Per first window: the refined mask's IoU with the truth and the two passes' estimates."""
    height, width = image.shape[:2]
    click = interior_point(truth)
    # The predictor's own first pass and refinement, so this measures what the pipeline runs.
    first = predictor._first_passes(image, [click], tuple(fractions))[0]
    refined = predictor._refine(image, [click] * len(fractions), first, 1)
    touches = [touches_border(p.visible > 0.5) for p in first]
    return {
        "truth": [iou(predictor.visible_in_frame(p, click, height, width), truth) for p in refined],
        "first": [p.visible_iou for p in first],
        "refined": [p.visible_iou for p in refined],
        "touches": touches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--images-root", type=Path, required=True)
    parser.add_argument("--windows", default="0.5,0.35,0.75,1.0,1.5", help="first windows; the first is the protocol's")
    parser.add_argument("--below", type=float, default=0.4, help="the fallback's confidence threshold")
    args = parser.parse_args()
    fractions = [float(f) for f in args.windows.split(",")]
    predictor = single_pass_predictor(GestaltConfig())
    rows = []
    for path, group in iter_images(load_annotations(args.annotations, args.images_root).objects):
        image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        rows.extend(candidates(predictor, image, obj.visible, fractions) for obj in group)
    all_windows = range(len(fractions))

    def product(r: dict, i: int) -> float:
        return r["first"][i] * r["refined"][i]

    def fallback(r: dict) -> int:
        return 0 if product(r, 0) >= args.below else max(all_windows, key=lambda i: product(r, i))

    rules: dict[str, Callable[[dict], int]] = {f"{fractions[0]} only": lambda r: 0}
    rules["best by the truth (upper bound)"] = lambda r: max(all_windows, key=lambda i: r["truth"][i])
    rules["highest refined estimate"] = lambda r: max(all_windows, key=lambda i: r["refined"][i])
    rules["highest product of the estimates"] = lambda r: max(all_windows, key=lambda i: product(r, i))
    rules[f"{fractions[0]}, the product where below {args.below}"] = fallback
    rules["smallest window whose first mask misses its border"] = lambda r: next(
        (i for i in sorted(all_windows, key=lambda i: fractions[i]) if not r["touches"][i]),
        max(all_windows, key=lambda i: fractions[i]),
    )
    print(f"{len(rows)} clicks; windows {args.windows}")
    for name, rule in rules.items():
        print(f"{name:55s} {100 * np.mean([r['truth'][rule(r)] for r in rows]):6.2f}")
    doubted = sum(product(r, 0) < args.below for r in rows)
    print(f"clicks that fall back: {doubted} of {len(rows)} ({100 * doubted / max(len(rows), 1):.0f}%)")


if __name__ == "__main__":
    main()
