"""Scene-mode evaluation: every object of an image found, amodal, and in the right order.

Predicted and true objects are matched one-to-one by amodal IoU (Hungarian, IoU >= 0.5).
Reported, in ``metrics.json`` under ``scene``: ``recall`` (true objects matched),
``precision`` (predictions matched; a prediction that lies mostly in an image's
``ignore_rle``, an object the annotations left out, counts neither way), ``miou_matched``
and ``miou_matched_occluded`` (mean amodal IoU of the matches, percent; occluded: hidden
fraction >= ``OCCLUDED_MIN_RATIO``), and ``order_accuracy`` over ``n_pairs``: matched pairs
of true objects whose amodal masks overlap and whose annotated orders differ, scored 1 when
the prediction puts the right one in front, 0 when the wrong one, 0.5 when it does not say.

Baselines, from the same predicted visible instances: ``visible_whole`` (each visible
segment taken as the whole object, no order: 0.5 by construction) and ``hull_by_area``
(convex hulls, the larger visible segment in front).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from gestalt_ros.config import GestaltConfig
from gestalt_ros.eval.annotations import AnnotatedObject, iter_images, load_annotations
from gestalt_ros.eval.baselines import convex_hull
from gestalt_ros.eval.metrics import OCCLUDED_MIN_RATIO
from gestalt_ros.overlay import draw_scene_overlay
from gestalt_ros.scene.pipeline import ScenePipeline

logger = logging.getLogger(__name__)

MIN_IOU = 0.5
IGNORE_MIN_FRACTION = 0.5

# front(i, j): 1 if prediction i is in front of prediction j, 0 if behind, 0.5 if not said.
Front = Callable[[int, int], float]


@dataclass
class ScenePrediction:
    """One method's answer for one image: masks per object and its pairwise order."""

    amodal: list[np.ndarray]
    visible: list[np.ndarray]
    front: Front


def iou_matrix(pred: list[np.ndarray], truth: list[np.ndarray]) -> np.ndarray:
    """(P, T) IoUs of flattened bool masks."""
    if not pred or not truth:
        return np.zeros((len(pred), len(truth)))
    p = np.stack([m.ravel() for m in pred]).astype(np.float32)
    t = np.stack([m.ravel() for m in truth]).astype(np.float32)
    inter = p @ t.T
    union = p.sum(1)[:, None] + t.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match(pred: list[np.ndarray], truth: list[np.ndarray], min_iou: float = MIN_IOU) -> list[tuple[int, int, float]]:
    """One-to-one (prediction, truth, IoU) pairs maximising total IoU, each IoU >= ``min_iou``."""
    ious = iou_matrix(pred, truth)
    if ious.size == 0:
        return []
    rows, cols = linear_sum_assignment(-ious)
    return [(int(p), int(t), float(ious[p, t])) for p, t in zip(rows, cols) if ious[p, t] >= min_iou]


def score_image(truth: list[AnnotatedObject], prediction: ScenePrediction, ignore: np.ndarray | None = None) -> dict:
    """Counts and per-match / per-pair scores of one image (summed by ``summarize_scene``)."""
    matches = match(prediction.amodal, [t.amodal for t in truth])
    matched_pred = {p for p, _, _ in matches}
    ignored = 0
    if ignore is not None:
        for p, visible in enumerate(prediction.visible):
            if p not in matched_pred and visible.any() and ignore[visible].mean() >= IGNORE_MIN_FRACTION:
                ignored += 1
    of_truth = {t: p for p, t, _ in matches}
    pairs = []
    for a in of_truth:
        for b in of_truth:
            ta, tb = truth[a], truth[b]
            if a >= b or ta.order is None or tb.order is None or ta.order == tb.order:
                continue
            if not (ta.amodal & tb.amodal).any():
                continue
            said = prediction.front(of_truth[a], of_truth[b])
            pairs.append(said if ta.order < tb.order else 1.0 - said)
    return {
        "n_true": len(truth),
        "n_pred": len(prediction.amodal) - ignored,
        "n_ignored": ignored,
        "matches": [(iou, truth[t].occlusion_ratio) for _, t, iou in matches],
        "pairs": pairs,
    }


def summarize_scene(images: list[dict], seconds: list[float] | None = None) -> dict:
    matches = [m for image in images for m in image["matches"]]
    pairs = [p for image in images for p in image["pairs"]]
    n_true = sum(i["n_true"] for i in images)
    n_pred = sum(i["n_pred"] for i in images)
    ious = np.array([iou for iou, _ in matches])
    occluded = np.array([ratio >= OCCLUDED_MIN_RATIO for _, ratio in matches], bool)
    out = {
        "recall": round(len(matches) / n_true, 4) if n_true else float("nan"),
        "precision": round(len(matches) / n_pred, 4) if n_pred else float("nan"),
        "miou_matched": round(100 * float(ious.mean()), 2) if ious.size else float("nan"),
        "miou_matched_occluded": round(100 * float(ious[occluded].mean()), 2) if occluded.any() else float("nan"),
        "order_accuracy": round(float(np.mean(pairs)), 4) if pairs else float("nan"),
        "n_pairs": len(pairs),
        "n_true": n_true,
        "n_predicted": n_pred,
        "n_matched": len(matches),
        "n_matched_occluded": int(occluded.sum()),
        "n_ignored": sum(i["n_ignored"] for i in images),
    }
    if seconds is not None:
        out["seconds_per_image"] = round(float(np.mean(seconds)), 4) if seconds else float("nan")
    return out


def ours(result) -> ScenePrediction:
    """The pipeline's answer: an object is in front of another that lists it in
    ``occluded_by``; otherwise the lower layer is in front; same layer: not said."""
    objects = result.objects

    def front(i: int, j: int) -> float:
        a, b = objects[i], objects[j]
        if a.id in b.occluded_by:
            return 1.0
        if b.id in a.occluded_by:
            return 0.0
        return 0.5 if a.layer == b.layer else float(a.layer < b.layer)

    return ScenePrediction([o.amodal_mask for o in objects], [o.visible_mask for o in objects], front)


def baselines(visible: list[np.ndarray]) -> dict[str, ScenePrediction]:
    areas = [int(v.sum()) for v in visible]
    return {
        "visible_whole": ScenePrediction(list(visible), list(visible), lambda i, j: 0.5),
        "hull_by_area": ScenePrediction(
            [convex_hull(v) for v in visible],
            list(visible),
            lambda i, j: 0.5 if areas[i] == areas[j] else float(areas[i] > areas[j]),
        ),
    }


@dataclass
class _Drawn:
    """A true object as ``draw_scene_overlay`` wants it."""

    id: int
    label: str
    layer: int
    visible_mask: np.ndarray
    amodal_mask: np.ndarray


def _truth_layers(truth: list[AnnotatedObject]) -> list[_Drawn]:
    orders = sorted({t.order for t in truth if t.order is not None})
    rank = {o: k for k, o in enumerate(orders)}
    return [_Drawn(k + 1, t.name or "", rank.get(t.order, 0), t.visible, t.amodal) for k, t in enumerate(truth)]


def run_scene_eval(
    config: GestaltConfig,
    annotations: Path,
    images_root: Path,
    out_dir: Path,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Score ``config``'s scene pipeline and the baselines; write metrics.json,
    per_image.jsonl, report.md and scene_sheet.png (the worst images by recall)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_annotations(annotations, images_root)
    for issue in data.issues:
        logger.error(issue)
    issues = list(data.issues)
    groups = list(iter_images(data.objects))[: limit or None]
    pipeline = ScenePipeline.from_config(config)
    scored: dict[str, list[dict]] = {"scene": [], "visible_whole": [], "hull_by_area": []}
    seconds: list[float] = []
    rows = []
    for image_path, truth in tqdm(groups, desc="scene eval", unit="image", disable=not progress):
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            issues.append(f"{image_path}: image missing or unreadable; {len(truth)} objects skipped")
            continue
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        start = time.perf_counter()
        result = pipeline(image)
        seconds.append(time.perf_counter() - start)
        ignore = data.ignore.get(image_path)
        predictions = {"scene": ours(result), **baselines([o.visible_mask for o in result.objects])}
        per = {name: score_image(truth, p, ignore) for name, p in predictions.items()}
        for name, s in per.items():
            scored[name].append(s)
        ours_score = summarize_scene([per["scene"]])
        rows.append(
            {"image": str(image_path), "seconds": seconds[-1], **ours_score, "_result": result, "_truth": truth}
        )
    metrics = {
        "scene": summarize_scene(scored["scene"], seconds),
        "baselines": {name: summarize_scene(scored[name]) for name in ("visible_whole", "hull_by_area")},
        "method": config.scene.method,
        "stages": {
            "scene": config.scene.method,
            **({"instances": config.scene.instances, **config.stages()} if config.scene.method == "prompted" else {}),
        },
        "recognition": config.recognition.model,
        "n_images": len(rows),
        "n_issues": len(issues),
        "issues": issues,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with open(out_dir / "per_image.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}) + "\n")
    if rows:
        write_scene_sheet(rows, out_dir / "scene_sheet.png")
    (out_dir / "report.md").write_text(_report(metrics))
    return metrics


def write_scene_sheet(rows: list[dict], path: Path, worst: int = 6) -> None:
    """Per chosen image: prediction | truth, objects coloured by layer (front: red)."""
    chosen = sorted(rows, key=lambda r: (r["recall"], r["miou_matched"]))[:worst]
    sheet = []
    for row in chosen:
        image = cv2.cvtColor(cv2.imread(row["image"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        predicted = draw_scene_overlay(image, row["_result"].objects)
        truth = draw_scene_overlay(image, _truth_layers(row["_truth"]))
        pair = np.hstack([predicted, np.full((image.shape[0], 4, 3), 255, np.uint8), truth])
        scale = 320 / pair.shape[0]
        pair = cv2.resize(pair, (int(pair.shape[1] * scale), 320), interpolation=cv2.INTER_AREA)
        caption = (
            f"{Path(row['image']).name}: predicted (left) | truth; recall {row['recall']}, mIoU {row['miou_matched']}"
        )
        cv2.putText(pair, caption, (4, 314), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(pair, caption, (4, 314), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        sheet.append(pair)
    width = max(p.shape[1] for p in sheet)
    sheet = [np.pad(p, ((0, 4), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in sheet]
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(sheet), cv2.COLOR_RGB2BGR))


def _report(m: dict) -> str:
    keys = ("recall", "precision", "miou_matched", "miou_matched_occluded", "order_accuracy", "n_pairs")
    lines = [
        f"Scene mode, method {m['method']}, {m['n_images']} images; "
        f"{m['scene'].get('seconds_per_image')} s per image.\n",
        "| method | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
        "| ours | " + " | ".join(str(m["scene"][k]) for k in keys) + " |",
    ]
    for name, b in m["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(str(b[k]) for k in keys) + " |")
    lines.append(f"\n{m['scene']['n_true']} true objects, {m['n_issues']} issues.\n")
    return "\n".join(lines) + "\n"
