import json

import cv2
import numpy as np
import pytest
from conftest import check_objects_message, fails_in_one_line

from gestalt_ros.cli import main
from gestalt_ros.config import GestaltConfig


def test_config_prints_the_committed_yaml(capsys):
    assert main(["config"]) == 0
    assert capsys.readouterr().out == GestaltConfig().to_ros_yaml()


def test_config_applies_overrides(capsys):
    assert main(["config", "--flat", "--set", "completion.num_samples=6"]) == 0
    assert json.loads(capsys.readouterr().out)["completion.num_samples"] == 6


def test_unknown_override_is_an_error(capsys):
    fails_in_one_line(["config", "--set", "amodal.white_treshold=3"], capsys, "did you mean")


@pytest.fixture()
def photo(tmp_path, scene_image):
    """A 48 x 64 photo file (a red disc behind a blue bar) and its disc's visible mask file."""
    image, visible = scene_image
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "visible.png"), visible.astype(np.uint8) * 255)
    return tmp_path / "photo.png", tmp_path / "visible.png", visible


@pytest.mark.parametrize("prompt", ["point", "box", "mask"])
def test_segment_writes_masks_completion_and_json(tmp_path, photo, tiny_model_dir, prompt, capsys):
    from gestalt_ros.segment import OUTPUT_FILES

    image_path, mask_path, visible = photo
    given = {"point": ["--point", "24,24"], "box": ["--box", "16,12,34,37"], "mask": ["--mask", str(mask_path)]}
    out = tmp_path / "out"
    settings = ["--set", f"completion.weights={tiny_model_dir}", "--set", "completion.num_samples=2"]
    assert main(["segment", str(image_path), *given[prompt], "--out", str(out), *settings]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    amodal = cv2.imread(str(out / "amodal_mask.png"), cv2.IMREAD_GRAYSCALE)
    visible_out = cv2.imread(str(out / "visible_mask.png"), cv2.IMREAD_GRAYSCALE)
    completion = cv2.imread(str(out / "completion.png"))
    assert amodal.shape == visible_out.shape == completion.shape[:2] == (48, 64)
    assert set(np.unique(amodal)) <= {0, 255} and (amodal[visible_out > 0] == 255).all()
    assert (completion[amodal == 0] == 255).all(), "the completion is in place, white elsewhere"
    if prompt == "mask":
        assert np.array_equal(visible_out > 0, visible)
    (entry,) = check_objects_message(json.loads((out / "result.json").read_text()))
    assert entry["prompt"]["kind"] == prompt and entry["error"] is None
    assert entry["amodal_area"] == int((amodal > 0).sum()) and entry["visible_area"] == int((visible_out > 0).sum())


def test_segment_scene_writes_every_object(tmp_path, photo, tiny_scene_dir, capsys):
    from conftest import tiny_scene_settings

    from gestalt_ros.segment import SCENE_FILES

    image_path, _, _ = photo
    out = tmp_path / "scene"
    settings = [a for s in [*tiny_scene_settings(tiny_scene_dir), "scene.threshold=0.05"] for a in ("--set", s)]
    assert main(["segment", str(image_path), "--scene", "--out", str(out), *settings]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    entries = check_objects_message(json.loads((out / "result.json").read_text()))
    assert entries, "the tiny model at a low threshold finds something"
    ids = cv2.imread(str(out / "visible_ids.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and ids.shape == (48, 64)
    names = {p.name for p in out.iterdir()}
    assert set(SCENE_FILES) <= names and len(names) == len(SCENE_FILES) + len(entries)
    for entry in entries:
        amodal = cv2.imread(str(out / f"amodal_{entry['id']:02d}.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert amodal.sum() == entry["amodal_area"] and (ids == entry["id"]).sum() == entry["visible_area"]
        assert not ((ids == entry["id"]) & ~amodal).any() and entry["prompt"] is None


def test_segment_rejects_bad_input_in_one_line(tmp_path, photo, capsys):
    image_path, mask_path, _ = photo
    out = ["--out", str(tmp_path / "out")]
    fails_in_one_line(["segment", str(tmp_path / "nope.png"), "--point", "1,1", *out], capsys, "no such image")
    (tmp_path / "text.png").write_text("not an image")
    fails_in_one_line(["segment", str(tmp_path / "text.png"), "--point", "1,1", *out], capsys, "cannot read")
    fails_in_one_line(["segment", str(image_path), "--point", "100,5", *out], capsys, "outside the 64x48 image")
    fails_in_one_line(["segment", str(image_path), "--point", "3", *out], capsys, "--point X,Y")
    fails_in_one_line(["segment", str(image_path), "--box", "1,2,3,x", *out], capsys, "--box")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((10, 10), np.uint8))
    fails_in_one_line(["segment", str(image_path), "--mask", str(small), *out], capsys, "shape")
    fails_in_one_line(["segment", str(image_path), "--mask", str(tmp_path / "none.png"), *out], capsys, "no such mask")
    assert not (tmp_path / "out").exists(), "nothing is written for a request that cannot run"


def test_training_without_the_training_meshes_says_how_to_pass_them(tmp_path, capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "config" / "train" / "train_cpu.yaml"
    argv = ["train", "--config", str(config), "--out", str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c")]
    fails_in_one_line(argv, capsys, "YcbBanana", "--ycb-root")
    fails_in_one_line([*argv, "--ycb-root", str(tmp_path)], capsys, str(tmp_path))
    fails_in_one_line(["synth", "--out", str(tmp_path / "s"), "--objects", "train"], capsys, "--ycb-root")


def test_node_arguments_go_to_ros(monkeypatch):
    seen = {}
    import gestalt_ros.ros.node as node

    monkeypatch.setattr(node, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    main(["node", "--ros-args", "-p", "device:=cpu"])
    assert seen["argv"] == ["--ros-args", "-p", "device:=cpu"]


def test_eval_without_its_data_says_so(tmp_path, capsys):
    missing = tmp_path / "cocoa5"
    argv = ["eval", "--annotations", str(missing), "--images-root", str(tmp_path), "--out", str(tmp_path / "e")]
    fails_in_one_line(argv, capsys, "--annotations", "does not exist")
    (tmp_path / "empty.json").write_text('{"images": []}')
    argv[2] = str(tmp_path / "empty.json")
    fails_in_one_line([*argv, "--quiet"], capsys, "no object could be scored")


def test_synth_sets_the_camera_distance(tmp_path, capsys):
    from pycocotools import mask as rle

    areas = {}
    for name, width in (("far", "0.1,0.15"), ("near", "0.6,0.7")):
        out = tmp_path / name
        argv = ["synth", "--out", str(out), "--scenes", "2", "--seed", "3", "--size", "64"]
        assert main([*argv, "--object-width", width, "--quiet"]) == 0
        objects = [
            o for image in json.loads((out / "annotations.json").read_text())["images"] for o in image["objects"]
        ]
        areas[name] = np.mean(
            [rle.area({**o["amodal_rle"], "counts": o["amodal_rle"]["counts"].encode()}) for o in objects]
        )
    assert areas["near"] > 4 * areas["far"], areas
    for bad in ("0.5", "0.8,0.2", "0,0.5", "a,b"):
        with pytest.raises(SystemExit) as info:
            main(["synth", "--out", str(tmp_path / "x"), "--object-width", bad])
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert info.value.code == 2 and "--object-width" in last and bad in last, last
    assert not (tmp_path / "x").exists()
