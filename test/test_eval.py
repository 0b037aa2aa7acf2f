import json

import numpy as np
import pytest

from gestalt_ros.data.synthetic import iter_scenes
from gestalt_ros.data.writer import write_amodal_dataset
from gestalt_ros.data.ycb import HELDOUT_OBJECTS
from gestalt_ros.eval.annotations import decode_rle, encode_rle, load_annotations
from gestalt_ros.eval.metrics import iou, summarize
from gestalt_ros.eval.runner import run_eval


def test_iou_and_summary():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    s = summarize([1.0, 0.5, 0.0], [0.0, 0.2, 0.04])
    assert s == {"miou": 50.0, "miou_occluded": 50.0, "n_objects": 3, "n_occluded": 1}


def test_rle_round_trip():
    mask = np.random.default_rng(0).random((7, 9)) > 0.5
    assert np.array_equal(decode_rle(json.loads(json.dumps(encode_rle(mask)))), mask)


@pytest.fixture()
def synthetic_set(tmp_path, ycb_root):
    return write_amodal_dataset(iter_scenes(3, 11, objects=HELDOUT_OBJECTS, ycb_root=ycb_root), tmp_path / "set")


def test_eval_on_generic_format(tmp_path, synthetic_set, tiny_pipeline_config):
    out = tmp_path / "out"
    metrics = run_eval(tiny_pipeline_config, synthetic_set, synthetic_set.parent, out, progress=False)
    rows = [json.loads(line) for line in (out / "per_object.jsonl").read_text().splitlines()]
    assert metrics["n_objects"] == len(rows) > 0 and metrics["n_issues"] == 0
    for row in rows:  # the modal baseline's IoU is exactly visible/amodal area
        assert row["baselines"]["modal"] == pytest.approx(1 - row["occlusion_ratio"], abs=1e-3)
        assert row["best_of_n_iou"] >= row["iou"] - 0.5
    assert {"miou", "miou_occluded", "best_of_n_miou", "seconds_per_object"} <= set(metrics)
    assert set(metrics["baselines"]) == {"modal", "convex_hull"}
    assert "| modal |" in (out / "report.md").read_text()
    assert (out / "contact_sheet.png").stat().st_size > 1000


@pytest.mark.parametrize("prompt", ["point", "box"])
def test_eval_from_a_click_or_a_box_scores_the_visible_mask(tmp_path, synthetic_set, tiny_pipeline_config, prompt):
    out = tmp_path / "out"
    metrics = run_eval(tiny_pipeline_config, synthetic_set, synthetic_set.parent, out, progress=False, prompt=prompt)
    rows = [json.loads(line) for line in (out / "per_object.jsonl").read_text().splitlines()]
    assert metrics["prompt"] == prompt and metrics["n_objects"] == len(rows) > 0
    assert metrics["visible_miou"] == pytest.approx(100 * np.mean([r["visible_iou"] for r in rows]), abs=0.01)
    assert metrics["baselines"]["modal"]["visible_miou"] == metrics["visible_miou"]
    # GrabCut from a prompt does not find the exact visible mask, so the modal baseline, which
    # starts from the found mask, is no longer exactly visible / amodal area.
    assert metrics["visible_miou"] < 100
    assert any(abs(r["baselines"]["modal"] - (1 - r["occlusion_ratio"])) > 1e-3 for r in rows)
    assert f"Prompt: {prompt}" in (out / "report.md").read_text()


def test_bad_records_are_reported_and_skipped(tmp_path, synthetic_set, tiny_pipeline_config):
    data = json.loads(synthetic_set.read_text())
    data["images"][0]["objects"][0]["visible_rle"] = {"size": [2, 2], "counts": 5}
    data["images"].append(
        {"file": "images/missing.png", "width": 4, "height": 4, "objects": [data["images"][1]["objects"][0]]}
    )
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    metrics = run_eval(tiny_pipeline_config, broken, synthetic_set.parent, tmp_path / "out", progress=False)
    assert metrics["n_issues"] == 2
    assert any("bad RLE" in i for i in metrics["issues"]) and any("missing.png" in i for i in metrics["issues"])
    assert metrics["n_objects"] > 0, "the rest of the run goes on"


def test_eval_on_cocoa_scores_recognition(tmp_path, coffee_cocoa, tiny_pipeline_config):
    metrics = run_eval(tiny_pipeline_config, coffee_cocoa / "1.json", coffee_cocoa, tmp_path / "out", progress=False)
    assert metrics["n_objects"] == 2 and metrics["n_occluded"] == 1 and metrics["n_issues"] == 0
    rec = metrics["recognition"]
    assert rec["n_objects"] == 2, "an espresso cup and a dish map to ImageNet classes"
    # the visible crop of the real cup photo is recognized by the real classifier
    assert rec["visible_crop"]["top5"] >= 50
    assert 0 <= rec["completion"]["top1"] <= rec["completion"]["top5"] <= 100


def test_bench_prints_numbers(ycb_root, tiny_pipeline_config):
    from gestalt_ros.eval.bench import run_bench

    out = run_bench(tiny_pipeline_config, objects=2, warmup=1, image_size=64, width=96, prompt="point")
    assert out["objects"] == 2 and out["seconds_per_object_mean"] > 0 and out["peak_rss_mib"] > 0
    assert out["frame"] == [96, 64] and out["prompt"] == "point" and out["objects_per_second"] > 0
    assert set(out["stage_seconds_mean"]) == {"set_image", "visible", "completion", "amodal", "recognition"}


def test_bench_times_the_objects_of_an_evaluation_set(coffee_cocoa, tiny_pipeline_config):
    from gestalt_ros.eval.bench import run_bench

    out = run_bench(tiny_pipeline_config, objects=3, warmup=1, prompt="box", annotations=coffee_cocoa)
    assert out["objects"] == 3, "a set of two objects is cycled to the count asked for"
    assert out["frame"] == [600, 400] and out["prompt"] == "box", "at the photo's own resolution"
    with pytest.raises(ValueError, match="no objects"):
        run_bench(tiny_pipeline_config, objects=1, warmup=0, annotations=coffee_cocoa / "missing")


def test_cocoa_files_are_read(coffee_cocoa):
    data = load_annotations(coffee_cocoa, coffee_cocoa)
    assert not data.issues and [o.name for o in data.objects] == ["espresso cup", "dish"]
    cup, dish = data.objects
    assert cup.occlusion_ratio == 0 and 0.2 < dish.occlusion_ratio < 0.6, "the cup hides part of the saucer"
    assert all((o.amodal >= o.visible).all() for o in data.objects)
    assert dish.amodal.shape == (400, 600) and dish.amodal.sum() > 80_000


def test_bad_cocoa_regions_are_reported(tmp_path, coffee_cocoa):
    import shutil

    shutil.copy(coffee_cocoa / "1.png", tmp_path / "1.png")
    data = json.loads((coffee_cocoa / "1.json").read_text())
    data["regions"][0]["segmentation"] = "[1.0, 2.0"  # cut short
    (tmp_path / "1.json").write_text(json.dumps(data))
    (tmp_path / "2.json").write_text(json.dumps({"regions": []}))  # its image is missing
    read = load_annotations(tmp_path, tmp_path)
    assert [o.name for o in read.objects] == ["dish"]
    assert any("region 0" in i and "bad annotation" in i for i in read.issues)
    assert any("2.json" in i and "image not found" in i for i in read.issues)
