"""Run a pipeline over annotated objects with the paper's protocol and write a report.

Protocol: the image and the visible mask of one object go in (a mask prompt), the amodal
mask comes out, and IoU against the annotated amodal mask is averaged over objects. With
``prompt`` point or box, the object's innermost visible pixel or its visible box goes in
instead, as a person would prompt it; the visible mask the pipeline finds is scored too
(``visible_miou``), and the baselines start from that same visible mask.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from gestalt_ros.amodal import to_frame
from gestalt_ros.config import AmodalConfig, GestaltConfig
from gestalt_ros.eval.annotations import decode_rle, encode_rle, iter_images, load_annotations
from gestalt_ros.eval.baselines import BASELINES
from gestalt_ros.eval.label_map import imagenet_classes
from gestalt_ros.eval.metrics import OCCLUDED_MIN_RATIO, iou, summarize
from gestalt_ros.overlay import eval_row
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.prompts import PROMPT_KINDS, CropWindow, prompt_from_mask
from gestalt_ros.types import ObjectResult

logger = logging.getLogger(__name__)


def sample_masks(result: ObjectResult, cfg: AmodalConfig) -> np.ndarray:
    """Each completion's own amodal mask at image resolution, post-processed like the vote:
    (N, H, W) bool, for best-of-N."""
    window = CropWindow.from_box(result.crop_box)
    crop_visible = window.crop_mask(result.visible_mask, result.sample_masks.shape[1])
    # One sample's mask is 0 or 1; its edge is where the interpolated mask crosses 0.5.
    return np.stack(
        [to_frame(small, 0.5, crop_visible, result.visible_mask, window, cfg) for small in result.sample_masks]
    )


def run_eval(
    config: GestaltConfig,
    annotations: Path,
    images_root: Path,
    out_dir: Path,
    limit: int | None = None,
    progress: bool = True,
    prompt: str = "mask",
) -> dict:
    """Score ``config``'s pipeline and the baselines; write metrics.json, per_object.jsonl, report.md."""
    if prompt not in PROMPT_KINDS:
        raise ValueError(f"prompt must be one of {PROMPT_KINDS}, got {prompt!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_annotations(annotations, images_root)
    for issue in data.issues:
        logger.error(issue)
    objects = data.objects[:limit] if limit else data.objects
    pipeline = GestaltPipeline.from_config(config)
    rows: list[dict] = []
    issues = list(data.issues)
    bar = tqdm(total=len(objects), desc="eval", unit="obj", disable=not progress)
    for image_path, group in iter_images(objects):
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            issues.extend(f"{image_path}: image missing or unreadable; object {o.object_id} skipped" for o in group)
            bar.update(len(group))
            continue
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        pipeline.set_image(image)  # once per image: its objects are prompts on one frame
        for obj in group:
            bar.update(1)
            if obj.visible.shape != image.shape[:2]:
                issues.append(
                    f"{image_path}: object {obj.object_id} mask {obj.visible.shape} != image {image.shape[:2]}"
                )
                continue
            start = time.perf_counter()
            result = pipeline.predict(prompt_from_mask(prompt, obj.visible))
            seconds = time.perf_counter() - start
            found = result.visible_mask
            recognition = _recognition(pipeline, image, obj, result)
            per_sample = [iou(m, obj.amodal) for m in sample_masks(result, config.amodal)]
            rows.append(
                {
                    "image": str(image_path),
                    "object": obj.object_id,
                    "name": obj.name,
                    "occlusion_ratio": round(obj.occlusion_ratio, 4),
                    "iou": iou(result.amodal_mask, obj.amodal),
                    "visible_iou": iou(found, obj.visible),
                    "best_of_n_iou": max(per_sample),
                    "seconds": seconds,
                    "label": result.label,
                    "recognition": recognition,
                    "baselines": {name: iou(fn(found), obj.amodal) for name, fn in BASELINES.items()},
                    "_masks": {
                        k: encode_rle(m)
                        for k, m in (("visible", found), ("predicted", result.amodal_mask), ("truth", obj.amodal))
                    },
                }
            )
    bar.close()
    metrics = _metrics(rows, config, issues, prompt)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if rows:
        write_contact_sheet(rows, out_dir / "contact_sheet.png")
    with open(out_dir / "per_object.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps({k: v for k, v in row.items() if k != "_masks"}) + "\n")
    (out_dir / "report.md").write_text(_report(metrics))
    return metrics


def _recognition(pipeline: GestaltPipeline, image: np.ndarray, obj, result: ObjectResult) -> dict | None:
    """Is a correct class in the top 1 / top 5, on the completion and on the visible crop?

    Only for objects whose name maps to ImageNet classes (``label_map``); the visible crop
    is the image inside the visible box, occluder and background included, as a plain
    classifier would see the object.
    """
    accepted = set(imagenet_classes(obj.name))
    if not accepted:
        return None
    x0, y0, x1, y1 = result.visible_bbox
    crop_top = pipeline.components.recognizer([image[y0:y1, x0:x1]])[0]
    out = {"classes": sorted(accepted)}
    for source, top in (("completion", result.top_k), ("visible_crop", crop_top)):
        names = [name for name, _ in top]
        out[source] = {"top1": names[0] in accepted, "top5": bool(accepted & set(names[:5]))}
    return out


def write_contact_sheet(rows: list[dict], path: Path, best: int = 4, worst: int = 8) -> None:
    """The best and worst occluded objects (or all objects, if none is occluded), by IoU."""
    pool = [r for r in rows if r["occlusion_ratio"] >= OCCLUDED_MIN_RATIO] or rows
    ranked = sorted(pool, key=lambda r: r["iou"])
    chosen = ranked[::-1][:best] + ranked[: min(worst, max(len(ranked) - best, 0))]
    sheet = []
    for rank, row in enumerate(chosen):
        image = cv2.cvtColor(cv2.imread(row["image"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        masks = {k: decode_rle(v) for k, v in row["_masks"].items()}
        tag = "best" if rank < best else "worst"
        caption = f"{tag}: {Path(row['image']).name} #{row['object']} {row['name'] or ''} IoU {row['iou']:.2f} (modal {row['baselines']['modal']:.2f})"
        sheet.append(eval_row(image, masks["visible"], masks["predicted"], masks["truth"], caption))
    width = max(r.shape[1] for r in sheet)
    sheet = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in sheet]
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(sheet), cv2.COLOR_RGB2BGR))


def _metrics(rows: list[dict], config: GestaltConfig, issues: list[str], prompt: str) -> dict:
    occlusion = [r["occlusion_ratio"] for r in rows]
    visible_miou = round(100 * float(np.mean([r["visible_iou"] for r in rows])), 2) if rows else float("nan")
    ours = summarize([r["iou"] for r in rows], occlusion)
    ours["visible_miou"] = visible_miou
    best = summarize([r["best_of_n_iou"] for r in rows], occlusion)
    ours["best_of_n_miou"] = best["miou"]
    ours["best_of_n_miou_occluded"] = best["miou_occluded"]
    ours["seconds_per_object"] = round(float(np.mean([r["seconds"] for r in rows])), 4) if rows else float("nan")
    baselines = {}
    for name in BASELINES:
        b = summarize([r["baselines"][name] for r in rows], occlusion)
        b["best_of_n_miou"] = b["miou"]  # deterministic: one answer
        b["visible_miou"] = visible_miou  # from the same visible mask as ours
        b["seconds_per_object"] = 0.0
        baselines[name] = b
    recognized = [r["recognition"] for r in rows if r.get("recognition")]
    recognition = {
        source: {k: round(100 * float(np.mean([r[source][k] for r in recognized])), 2) for k in ("top1", "top5")}
        for source in ("completion", "visible_crop")
        if recognized
    }
    return {
        **ours,
        "baselines": baselines,
        "recognition": {"n_objects": len(recognized), **recognition},
        "prompt": prompt,
        "num_samples": config.completion.num_samples,
        "num_inference_steps": config.completion.num_inference_steps,
        "seed": config.completion.seed,
        "stages": config.stages(),
        "n_issues": len(issues),
        "issues": issues,
    }


def _report(m: dict) -> str:
    lines = [
        f"Prompt: {m['prompt']}; visible mIoU {m['visible_miou']} (the baselines start from the same visible masks).\n",
        "| method | mIoU | mIoU occluded | best-of-N mIoU | s/object |",
        "|---|---|---|---|---|",
        f"| ours ({', '.join(m['stages'].values())}, N={m['num_samples']}) | {m['miou']} | {m['miou_occluded']} | {m['best_of_n_miou']} | {m['seconds_per_object']} |",
    ]
    for name, b in m["baselines"].items():
        lines.append(f"| {name} | {b['miou']} | {b['miou_occluded']} | {b['best_of_n_miou']} | - |")
    lines.append(f"\n{m['n_objects']} objects, {m['n_occluded']} occluded; {m['n_issues']} issues.\n")
    rec = m["recognition"]
    if rec["n_objects"]:
        lines.append(f"Recognition ({rec['n_objects']} objects whose name maps to ImageNet classes), top-1 / top-5 %:")
        lines.append(
            f"completion {rec['completion']['top1']} / {rec['completion']['top5']}; visible crop {rec['visible_crop']['top1']} / {rec['visible_crop']['top5']}\n"
        )
    return "\n".join(lines) + "\n"
