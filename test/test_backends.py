"""The backend registry: how full-size backends (SAM, pix2gestalt, open_clip) plug in."""

import numpy as np
import pytest

from gestalt_ros import backends
from gestalt_ros.backends import Components, build_components, list_backends, register_backend
from gestalt_ros.completion import CompletionModel, CompletionSampler
from gestalt_ros.config import ConfigError
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.types import MaskPrompt, PointPrompt


class _DiscSegmenter:
    """Ignores the prompt: the visible part is always the given mask."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask

    def __call__(self, image: np.ndarray, prompt) -> np.ndarray:
        return self.mask


def _recognize(images: list[np.ndarray]) -> list[list[tuple[str, float]]]:
    return [[("plugged-in", 1.0)] for _ in images]


def test_a_registered_backend_builds_the_pipelines_stages(
    tiny_pipeline_config, tiny_model_dir, scene_image, monkeypatch
):
    image, visible = scene_image
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))  # registered for this test only

    @register_backend("test-plugged-in")
    def build(config):
        model = CompletionModel.from_pretrained(tiny_model_dir)
        return Components(_DiscSegmenter(visible), CompletionSampler(model), _recognize)

    assert "test-plugged-in" in list_backends() and "embedded" in list_backends()
    tiny_pipeline_config.backend = "test-plugged-in"
    result = GestaltPipeline.from_config(tiny_pipeline_config)(image, PointPrompt(1, 1))
    # The click at (1, 1) is on the background: the visible part came from the plugged-in segmenter.
    assert (result.visible_mask == visible).all()
    assert result.label == "plugged-in" and result.top_k == [("plugged-in", 1.0)]

    with pytest.raises(ValueError, match="already registered"):
        register_backend("test-plugged-in")(build)


def test_an_unknown_backend_names_the_known_ones(tiny_pipeline_config):
    tiny_pipeline_config.backend = "no-such-backend"
    with pytest.raises(ConfigError, match="unknown backend 'no-such-backend'.*embedded"):
        build_components(tiny_pipeline_config)


def test_the_embedded_backend_passes_a_mask_prompt_through(tiny_pipeline_config, scene_image):
    image, visible = scene_image
    components = build_components(tiny_pipeline_config)
    assert (components.segmenter(image, MaskPrompt(visible)) == visible).all()
    assert components.completer.resolution == 16
