import numpy as np
import pytest

from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.prompts import PromptError
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    from gestalt_ros.config import GestaltConfig

    cfg = GestaltConfig()
    cfg.completion.weights = str(tiny_model_dir)
    cfg.completion.num_samples = 3
    cfg.completion.num_inference_steps = 2
    return GestaltPipeline.from_config(cfg)


@pytest.mark.parametrize("kind", ["mask", "point", "box"])
def test_every_prompt_kind_gives_a_full_result(pipeline, scene_image, kind):
    image, visible = scene_image
    prompt = {"mask": MaskPrompt(visible), "point": PointPrompt(24, 24), "box": BoxPrompt(16, 10, 36, 38)}[kind]
    r = pipeline(image, prompt)
    h, w = image.shape[:2]
    assert r.visible_mask.shape == r.amodal_mask.shape == r.agreement.shape == (h, w)
    assert r.visible_mask.dtype == r.amodal_mask.dtype == bool
    assert (r.amodal_mask >= r.visible_mask).all(), "union_visible: the visible part is in the whole"
    assert r.completions.shape == (3, 16, 16, 3) and r.completion_crop.shape == (16, 16, 3)
    assert r.completion.shape == (h, w, 3) and (r.completion[~r.amodal_mask] == 255).all(), "in place, white elsewhere"
    assert any(np.array_equal(r.completion_crop, c) for c in r.completions)
    assert isinstance(r.label, str) and 0.0 <= r.score <= 1.0 and len(r.top_k) == 5
    assert 0.0 <= r.occlusion_ratio <= 1.0
    assert list(r.timings) == ["set_image", "visible", "completion", "amodal", "recognition"]
    summary = r.summary()
    assert summary["amodal_area"] == int(r.amodal_mask.sum()) and summary["visible_bbox"] == list(r.visible_bbox)
    if kind == "mask":
        assert np.array_equal(r.visible_mask, visible)


def test_same_seed_same_result(pipeline, scene_image):
    image, visible = scene_image
    a, b = pipeline(image, MaskPrompt(visible), seed=3), pipeline(image, MaskPrompt(visible), seed=3)
    assert np.array_equal(a.amodal_mask, b.amodal_mask) and np.array_equal(a.completions, b.completions)


@pytest.mark.parametrize("smooth", [False, True])
def test_amodal_comes_from_the_vote(pipeline, scene_image, smooth):
    """Without the union, the amodal mask is exactly the pasted vote of the samples: the
    thresholded agreement pasted pixel by pixel, or the agreement interpolated then thresholded."""
    from dataclasses import replace

    from gestalt_ros.amodal import vote
    from gestalt_ros.prompts import CropWindow

    image, visible = scene_image
    amodal_cfg = replace(pipeline.config.amodal, union_visible=False, keep_attached=False, smooth_paste=smooth)
    cfg = replace(pipeline.config, amodal=amodal_cfg)
    r = GestaltPipeline(pipeline.components, cfg)(image, MaskPrompt(visible))
    voted, agreement = vote(r.sample_masks, cfg.amodal.vote_threshold)
    window = CropWindow.from_box(r.crop_box)
    if smooth:
        expected = window.paste(agreement, *image.shape[:2], linear=True) > cfg.amodal.vote_threshold
    else:
        expected = window.paste(voted, *image.shape[:2])
    assert np.array_equal(r.amodal_mask, expected)


def test_mirror_samples_reaches_the_sampler(pipeline, scene_image):
    """completion.mirror_samples changes every second sample and only those."""
    from dataclasses import replace

    image, visible = scene_image
    plain_cfg = replace(pipeline.config, completion=replace(pipeline.config.completion, mirror_samples=False))
    mirrored = pipeline(image, MaskPrompt(visible), seed=5).completions
    plain = GestaltPipeline(pipeline.components, plain_cfg)(image, MaskPrompt(visible), seed=5).completions
    assert pipeline.config.completion.mirror_samples, "on by default"
    np.testing.assert_array_equal(mirrored[0::2], plain[0::2])
    assert not np.array_equal(mirrored[1], plain[1])


def test_bad_prompt_raises_prompt_error(pipeline, scene_image):
    image, _ = scene_image
    with pytest.raises(PromptError, match="outside"):
        pipeline(image, PointPrompt(500, 5))


def test_pipeline_imports_no_ros():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['rclpy'] = None\n"
        "import gestalt_ros.pipeline, gestalt_ros.eval.runner, gestalt_ros.data.datasets, gestalt_ros.cli\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_an_rgba_model_is_thresholded_on_alpha_not_whiteness(tmp_path, tiny_pipeline_config, scene_image):
    from dataclasses import replace

    import torch
    from conftest import TINY_MODEL

    from gestalt_ros.completion import CompletionModel

    torch.manual_seed(0)
    CompletionModel(replace(TINY_MODEL, synthesize_alpha=True)).save_pretrained(tmp_path)
    cfg = tiny_pipeline_config
    cfg.completion.weights = str(tmp_path)
    image, visible = scene_image
    pipe = GestaltPipeline.from_config(cfg)

    def masks(**amodal):
        return GestaltPipeline(pipe.components, replace(cfg, amodal=replace(cfg.amodal, **amodal)))(
            image, MaskPrompt(visible), seed=0
        )

    low, high = masks(alpha_threshold=1), masks(alpha_threshold=255)
    assert low.completions.shape[-1] == 3, "alpha leaves the pipeline as masks, not as a 4th channel"
    assert low.sample_masks.sum() > high.sample_masks.sum() and (low.sample_masks >= high.sample_masks).all()
    assert np.array_equal(masks(alpha_threshold=1, white_threshold=0).sample_masks, low.sample_masks)


def test_the_crop_window_follows_the_models_crop_rule(tmp_path, scene_image):
    """A model trained with stretched windows (``crop_max_aspect``) gets them at inference too."""
    import dataclasses

    from conftest import TINY_MODEL

    from gestalt_ros.completion import CompletionModel
    from gestalt_ros.config import GestaltConfig

    image, _ = scene_image
    thin = np.zeros(image.shape[:2], bool)
    thin[30:33, 4:44] = True  # 40 x 3 pixels
    boxes = {}
    for aspect in (1.0, 3.0):
        CompletionModel(dataclasses.replace(TINY_MODEL, crop_max_aspect=aspect)).save_pretrained(tmp_path / str(aspect))
        cfg = GestaltConfig()
        cfg.completion.weights = str(tmp_path / str(aspect))
        cfg.completion.num_samples = 1
        x0, y0, x1, y1 = GestaltPipeline.from_config(cfg)(image, MaskPrompt(thin)).crop_box
        boxes[aspect] = (x1 - x0, y1 - y0)
    assert boxes[1.0] == (80, 80), "square: 2x the longer side"
    assert boxes[3.0] == (80, 27), "stretched: at most 3 times longer than high"
