"""The stage contract: one registry per stage, any combination, light imports."""

import subprocess
import sys

import numpy as np
import pytest

from gestalt_ros.backends import (
    AMODAL_ESTIMATORS,
    COMPLETERS,
    RECOGNIZERS,
    SEGMENTERS,
    build_components,
)
from gestalt_ros.config import ConfigError
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.types import AmodalEstimate, MaskPrompt, PointPrompt


class _FixedSegmenter:
    """Ignores the prompt: the visible part is always the given mask; counts set_image calls."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.frames = 0

    def set_image(self, image: np.ndarray) -> None:
        self.frames += 1

    def predict(self, prompt) -> np.ndarray:
        return self.mask


class _BoxAmodal:
    """The amodal mask is the visible part's bounding box."""

    def estimate(self, image, visible, completion, amodal, seed) -> AmodalEstimate:
        from gestalt_ros.types import mask_bbox

        x0, y0, x1, y1 = mask_bbox(visible)
        box = np.zeros_like(visible)
        box[y0:y1, x0:x1] = True
        white = np.full((*visible.shape, 3), 255, np.uint8)
        empty = np.zeros((0, 1, 1), bool)
        return AmodalEstimate(box, box.astype(np.float32), white, white, white[None], empty, (x0, y0, x1, y1), {})


def _recognize(images: list[np.ndarray]) -> list[list[tuple[str, float]]]:
    return [[("plugged-in", 1.0)] for _ in images]


@pytest.fixture()
def plugged_in(scene_image):
    """Test stages registered under 'test' in every registry, removed afterwards."""
    _, visible = scene_image
    segmenter = _FixedSegmenter(visible)
    added = [
        (SEGMENTERS, lambda config: segmenter),
        (AMODAL_ESTIMATORS, lambda config: _BoxAmodal()),
        (RECOGNIZERS, lambda config: _recognize),
    ]
    for registry, builder in added:
        registry.register("test")(builder)
    yield segmenter
    for registry, _ in added:
        registry.unregister("test")


@pytest.mark.parametrize(
    "keys",
    [
        {"visible.method": "test"},
        {"amodal.method": "test"},
        {"recognition.model": "test"},
        {"visible.method": "test", "recognition.model": "test"},
        {"visible.method": "test", "amodal.method": "test", "recognition.model": "test"},
    ],
    ids=lambda keys: "+".join(k.split(".")[0] for k in keys),
)
def test_any_combination_of_stages_builds(tiny_pipeline_config, scene_image, plugged_in, keys):
    image, visible = scene_image
    cfg = tiny_pipeline_config.with_overrides([f"{k}={v}" for k, v in keys.items()])
    result = GestaltPipeline.from_config(cfg)(image, PointPrompt(1, 1))
    # the click at (1, 1) is on the background: only the plugged-in segmenter returns the disc
    assert (result.visible_mask == visible).all() == ("visible.method" in keys)
    assert (result.label == "plugged-in") == ("recognition.model" in keys)
    box = np.zeros_like(result.visible_mask)
    x0, y0, x1, y1 = result.visible_bbox
    box[y0:y1, x0:x1] = True
    assert np.array_equal(result.amodal_mask, box) == ("amodal.method" in keys)
    if "amodal.method" not in keys:  # synthesis: the completion model's samples
        assert result.completions.shape[1:] == (16, 16, 3)


def test_a_frame_is_set_once_for_its_prompts(tiny_pipeline_config, scene_image, plugged_in):
    image, _ = scene_image
    pipeline = GestaltPipeline.from_config(tiny_pipeline_config.with_overrides(["visible.method=test"]))
    pipeline.set_image(image)
    first = pipeline.predict(PointPrompt(1, 1))
    second = pipeline.predict(PointPrompt(2, 2))
    assert plugged_in.frames == 1
    assert first.timings["set_image"] >= 0 and second.timings["set_image"] == 0.0
    with pytest.raises(RuntimeError, match="set_image"):
        GestaltPipeline.from_config(tiny_pipeline_config).predict(PointPrompt(1, 1))


def test_unknown_names_say_what_is_known(tiny_pipeline_config):
    for key, wrong, known in (
        ("visible.method", "grabkut", "grabcut"),
        ("completion.model", "pix2gestlat", "embedded"),
        ("amodal.method", "vote", "synthesis"),
        ("recognition.model", "clip", "efficientnet-lite0"),
    ):
        cfg = tiny_pipeline_config.with_overrides([f"{key}={wrong}"])
        with pytest.raises(ConfigError, match=f"unknown {key} '{wrong}'.*known: .*{known}"):
            build_components(cfg)
    with pytest.raises(ValueError, match="already registered"):
        SEGMENTERS.register("grabcut")(lambda config: None)


def test_the_built_in_stages(tiny_pipeline_config, scene_image):
    image, visible = scene_image
    components = build_components(tiny_pipeline_config)
    components.segmenter.set_image(image)
    assert (components.segmenter.predict(MaskPrompt(visible)) == visible).all()
    assert components.amodal.synthesis.completer.resolution == 16  # the default amodal stage: both
    assert "embedded" in COMPLETERS.names()


def test_importing_the_package_and_the_registries_loads_no_torch():
    code = "import sys, gestalt_ros, gestalt_ros.backends, gestalt_ros.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
