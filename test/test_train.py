import dataclasses

import numpy as np
import pytest
from conftest import TINY_MODEL

from gestalt_ros.completion import CompletionModel
from gestalt_ros.config import GestaltConfig
from gestalt_ros.data.datasets import CompletionDataset, build_crops
from gestalt_ros.data.ycb import HELDOUT_OBJECTS
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.train.loop import TrainConfig, train
from gestalt_ros.types import MaskPrompt


def _tiny_run(steps: int) -> TrainConfig:
    """A few steps on 4 scenes of the bundled objects (the training objects are not in the repository)."""
    return TrainConfig(
        objects=HELDOUT_OBJECTS,
        scenes=4,
        workers=1,
        steps=steps,
        batch_size=2,
        warmup_steps=1,
        model=dataclasses.replace(TINY_MODEL),
    )


def test_crops_are_cut_like_the_pipeline_and_deterministic(ycb_root):
    a = build_crops(4, 5, HELDOUT_OBJECTS, 32, 2.5, jitter=0.0, workers=1, ycb_root=ycb_root, progress=False)
    b = build_crops(4, 5, HELDOUT_OBJECTS, 32, 2.5, jitter=0.0, workers=2, ycb_root=ycb_root, chunk=2, progress=False)
    assert len(a) > 0 and np.array_equal(a.images, b.images) and np.array_equal(a.targets, b.targets)
    assert a.images.shape[1:] == (32, 32, 3) and a.visible.shape[1:] == (32, 32)
    # targets are the whole object on white: white where no object, and the visible part is inside the object
    grey = a.targets.mean(axis=-1)
    assert (grey[~a.visible] > 200).mean() > 0.5
    target, condition = CompletionDataset(a, flip=False)[0]
    assert target.shape == (3, 32, 32) and condition.shape == (4, 32, 32)
    assert -1.0 <= float(target.min()) and float(target.max()) <= 1.0


def test_train_writes_a_model_the_pipeline_loads(tmp_path, ycb_root, scene_image, caplog):
    cfg = _tiny_run(steps=3)
    summary = train(cfg, tmp_path / "model", cache_dir=tmp_path / "cache", progress=False)
    assert summary["steps_done"] == 3 and summary["train_crops"] > 0
    model = CompletionModel.from_pretrained(tmp_path / "model")
    assert model.config.training["steps_done"] == 3, "provenance is stored with the weights"
    assert list((tmp_path / "cache").glob("crops*.npz")), "crops are cached for the next run"
    late = dataclasses.replace(cfg, max_minutes=1e-6)
    assert train(late, tmp_path / "late", cache_dir=tmp_path / "cache", progress=False)["steps_done"] == 1
    assert "max_minutes=1e-06 reached" in caplog.text, "a sitting cut short by time says so"

    pipe_cfg = GestaltConfig()
    pipe_cfg.completion.weights = str(tmp_path / "model")
    pipe_cfg.completion.num_samples = 2
    pipe_cfg.completion.num_inference_steps = 2
    image, visible = scene_image
    result = GestaltPipeline.from_config(pipe_cfg)(image, MaskPrompt(visible))
    assert result.amodal_mask.shape == visible.shape


def test_committed_configs_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "config" / "train"
    cpu = TrainConfig.from_yaml(root / "train_cpu.yaml")
    gpu = TrainConfig.from_yaml(root / "train_gpu.yaml")
    assert cpu.device == "cpu" and 0 < cpu.max_minutes <= 60, "the CPU config must fit in an hour"
    assert gpu.device == "cuda" and gpu.model.resolution == cpu.model.resolution
    shapes = TrainConfig.from_yaml(root / "train_cpu_stage4.yaml")
    assert shapes.scene_config().procedural_prob > 0 and shapes.max_minutes <= 65
    for path in sorted(root.glob("train_cpu_stage*.yaml")):  # every sitting of the chain parses
        assert TrainConfig.from_yaml(path).max_minutes <= 65, path


def test_cosine_lr_decays_to_zero_by_steps_or_minutes_whichever_ends_first(tmp_path):
    constant = TrainConfig(steps=1000, max_minutes=10.0, warmup_steps=100)
    assert constant.lr_factor(0, 0.0) == pytest.approx(0.01) and constant.lr_factor(999, 9.9) == 1.0
    cosine = dataclasses.replace(constant, lr_decay="cosine")
    assert cosine.lr_factor(9, 0.0) == pytest.approx(0.1, abs=1e-3)  # warmup still applies
    assert cosine.lr_factor(500, 1.0) == pytest.approx(0.5)  # half the steps
    assert cosine.lr_factor(100, 5.0) == pytest.approx(0.5)  # half the minutes
    assert cosine.lr_factor(999, 1.0) < 1e-4 and cosine.lr_factor(100, 10.0) == 0.0
    assert dataclasses.replace(cosine, max_minutes=0).lr_factor(500, 99.0) == pytest.approx(0.5)  # no time limit
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr_decay: linear\n")
    with pytest.raises(ValueError, match="bad.yaml: lr_decay"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(ValueError, match="lr_decay"):
        train(dataclasses.replace(cosine, lr_decay="linear"), tmp_path / "never")


def test_scene_overrides_are_checked_and_key_the_crop_cache(tmp_path, ycb_root):
    import pytest

    from gestalt_ros.train.loop import load_or_build_crops

    (tmp_path / "bad.yaml").write_text("scene:\n  procedural_probability: 0.5\n")
    with pytest.raises(ValueError, match="procedural_probability"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    plain = TrainConfig(objects=HELDOUT_OBJECTS, scenes=3, workers=1, model=dataclasses.replace(TINY_MODEL))
    mixed = dataclasses.replace(plain, scene={"procedural_prob": 1.0})
    a = load_or_build_crops(plain, tmp_path)
    b = load_or_build_crops(mixed, tmp_path)
    c = load_or_build_crops(dataclasses.replace(plain, overlay_prob=1.0), tmp_path)
    stretched = dataclasses.replace(plain, model=dataclasses.replace(TINY_MODEL, crop_max_aspect=3.0))
    d = load_or_build_crops(stretched, tmp_path)
    assert len(list(tmp_path.glob("crops*.npz"))) == 4, "scene overrides, overlay and crop rule key the cache"
    assert len(d) == len(a) and not np.array_equal(d.visible, a.visible), "same objects, other windows"
    assert d.visible.sum() >= a.visible.sum(), "a stretched window shows a thin part larger"
    assert len(a) and len(b) and not np.array_equal(a.targets[:1], b.targets[:1])
    assert len(c) > len(a), "whole objects add pasted-occluder copies"


def test_init_from_continues_and_checks_the_architecture(tmp_path, ycb_root):
    import pytest
    import torch

    base = _tiny_run(steps=1)
    train(base, tmp_path / "a", cache_dir=tmp_path / "cache", progress=False)
    first = CompletionModel.from_pretrained(tmp_path / "a").state_dict()
    # zero learning rate: the continued model must start (and stay) exactly at the first one
    cont = dataclasses.replace(base, init_from=str(tmp_path / "a"), learning_rate=0.0, ema_decay=0.0)
    train(cont, tmp_path / "b", cache_dir=tmp_path / "cache", progress=False)
    second = CompletionModel.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    chain = CompletionModel.from_pretrained(tmp_path / "b").config.training
    assert chain["init_from_training"]["steps_done"] == 1, "the continued model records where it started"

    stretched = dataclasses.replace(cont, model=dataclasses.replace(TINY_MODEL, crop_max_aspect=2.0))
    train(stretched, tmp_path / "s", cache_dir=tmp_path / "cache", progress=False)
    assert CompletionModel.from_pretrained(tmp_path / "s").config.crop_max_aspect == 2.0, "a sitting may change crops"
    wider = dataclasses.replace(cont, model=dataclasses.replace(TINY_MODEL, block_out_channels=(16, 48)))
    with pytest.raises(ValueError, match="architecture"):
        train(wider, tmp_path / "c", cache_dir=tmp_path / "cache", progress=False)


def test_an_rgb_model_seeds_an_rgba_model_without_changing_its_rgb():
    """Widened for alpha, the model's RGB prediction is the RGB model's, whatever the alpha input."""
    import pytest
    import torch

    from gestalt_ros.train.loop import load_start_weights

    torch.manual_seed(0)
    rgb = CompletionModel(dataclasses.replace(TINY_MODEL)).eval()
    rgba = CompletionModel(dataclasses.replace(TINY_MODEL, synthesize_alpha=True)).eval()
    load_start_weights(rgba, rgb)
    r = TINY_MODEL.resolution
    noisy, condition, t = torch.randn(2, 3, r, r), torch.randn(2, 4, r, r), torch.tensor([10, 900])
    with torch.no_grad():
        expected = rgb(noisy, condition, t)
        got = rgba(torch.cat([noisy, torch.randn(2, 1, r, r)], dim=1), condition, t)
    assert got.shape == (2, 4, r, r)
    torch.testing.assert_close(got[:, :3], expected)
    with pytest.raises(ValueError, match="architecture"):
        load_start_weights(rgb, rgba)


def test_paste_occluder_hides_part_of_the_target_and_changes_only_covered_pixels():
    from gestalt_ros.data.datasets import paste_occluder
    from gestalt_ros.data.synthetic import SceneObject

    def disc(cy, cx, r, colour):
        yy, xx = np.mgrid[:64, :64]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        whole = np.full((64, 64, 3), 255, np.uint8)
        whole[mask] = colour
        return SceneObject("x", mask.copy(), mask, whole, False, 1.0)

    target, occluder = disc(32, 32, 14, (200, 0, 0)), disc(10, 10, 8, (0, 0, 200))
    image = np.full((64, 64, 3), 90, np.uint8)
    image[target.amodal] = (200, 0, 0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = paste_occluder(image, target, occluder, rng, hidden=(0.1, 0.7))
        assert out is not None
        pasted, visible = out
        hidden = 1 - visible.sum() / target.amodal.sum()
        assert 0.1 <= hidden <= 0.7 and not (visible & ~target.visible).any()
        changed = (pasted != image).any(axis=-1)
        assert changed[target.visible & ~visible].all(), "the newly hidden pixels show the occluder"
        assert not changed[visible].any(), "the target's visible pixels are untouched"
        assert (pasted[changed][:, 2] > pasted[changed][:, 0]).all(), "what is pasted is the occluder (blue)"
    assert paste_occluder(image, target, occluder, rng, hidden=(0.99, 1.0)) is None


def test_overlay_max_occlusion_gives_partly_hidden_objects_a_second_occluder():
    from gestalt_ros.data.datasets import scene_crops
    from gestalt_ros.data.synthetic import Scene, SceneObject

    yy, xx = np.mgrid[:96, :96]

    def disc(cy, cx, r, colour, hidden_below=None):
        amodal = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        visible = amodal & (yy < hidden_below) if hidden_below else amodal.copy()
        whole = np.full((96, 96, 3), 255, np.uint8)
        whole[amodal] = colour
        return SceneObject("x", visible, amodal, whole, False, 1.0)

    target = disc(40, 40, 16, (200, 0, 0), hidden_below=46)  # about 30% hidden by the scene
    other = disc(70, 72, 12, (0, 0, 200))
    image = np.full((96, 96, 3), 90, np.uint8)
    scene = Scene(image, [target, other], seed=0)
    ratio = target.occlusion_ratio
    assert 0.2 < ratio < 0.4

    def crops(max_occlusion: float):
        return scene_crops(scene, 32, 2.5, np.random.default_rng(3), overlay=1.0, overlay_max_occlusion=max_occlusion)

    whole_only = crops(0.05)
    assert len(whole_only) == 3, "the whole object gets a pasted copy, the partly hidden one does not"
    partly = crops(0.5)
    assert len(partly) == 4
    pasted, original = partly.occlusion[0], partly.occlusion[1]
    assert original == np.float32(ratio)
    assert ratio < pasted <= 0.7, "the second occluder hides more of the target, within paste_occluder's range"
    np.testing.assert_array_equal(partly.amodal[0], partly.amodal[0] | partly.visible[0])


def test_average_models_is_the_parameter_mean_and_checks_the_architecture(tmp_path):
    import torch

    from gestalt_ros.train.loop import average_models

    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        model = CompletionModel(dataclasses.replace(TINY_MODEL, training={"steps_done": seed + 1}))
        model.save_pretrained(tmp_path / name)
    average_models([tmp_path / "a", tmp_path / "b"], tmp_path / "mean")
    a, b, mean = (CompletionModel.from_pretrained(tmp_path / n) for n in ("a", "b", "mean"))
    sa, sb, sm = a.state_dict(), b.state_dict(), mean.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    for k in sa:
        torch.testing.assert_close(sm[k], (sa[k] + sb[k]) / 2)
    from gestalt_ros.cli import main

    assert main(["average", "--out", str(tmp_path / "cli"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    cli = CompletionModel.from_pretrained(tmp_path / "cli").state_dict()
    assert all(torch.equal(cli[k], sm[k]) for k in sm), "the CLI writes the same mean"
    history = mean.config.training["average_of"]
    assert [h["training"]["steps_done"] for h in history] == [1, 2], "each source's provenance is kept"

    CompletionModel(dataclasses.replace(TINY_MODEL, block_out_channels=(16, 48))).save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match="architecture"):
        average_models([tmp_path / "a", tmp_path / "wide"], tmp_path / "bad")
    with pytest.raises(ValueError, match="at least two"):
        average_models([tmp_path / "a"], tmp_path / "bad")
