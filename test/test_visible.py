import numpy as np

from gestalt_ros.config import VisibleConfig
from gestalt_ros.eval.metrics import iou
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt
from gestalt_ros.visible import GrabCutSegmenter


def _square_scene(seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((120, 160, 3), (60, 140, 60), np.uint8)
    image[40:80, 50:90] = (210, 30, 30)
    noise = rng.integers(-12, 12, image.shape)
    truth = np.zeros((120, 160), bool)
    truth[40:80, 50:90] = True
    return (image + noise).clip(0, 255).astype(np.uint8), truth


def _segment(image, prompt, config=None):
    segmenter = GrabCutSegmenter(config)
    segmenter.set_image(image)
    return segmenter.predict(prompt)


def test_click_segments_the_clicked_object():
    image, truth = _square_scene()
    mask = _segment(image, PointPrompt(70, 60), VisibleConfig())
    assert iou(mask, truth) > 0.9


def test_box_segments_the_object_inside():
    image, truth = _square_scene(1)
    mask = _segment(image, BoxPrompt(44, 34, 96, 86))
    assert iou(mask, truth) > 0.9


def test_mask_prompt_passes_through():
    image, truth = _square_scene()
    mask = _segment(image, MaskPrompt(truth.astype(np.uint8) * 255))
    assert np.array_equal(mask, truth)


def test_predict_needs_an_image_and_prompts_share_it():
    import pytest

    image, truth = _square_scene()
    segmenter = GrabCutSegmenter()
    with pytest.raises(RuntimeError, match="set_image"):
        segmenter.predict(PointPrompt(70, 60))
    segmenter.set_image(image)
    box = segmenter.predict(BoxPrompt(44, 34, 96, 86))
    click = segmenter.predict(PointPrompt(70, 60))  # a second prompt on the same frame
    assert np.array_equal(click, _segment(image, PointPrompt(70, 60))) and iou(box, truth) > 0.9
    other, _ = _square_scene(1)
    segmenter.set_image(np.ascontiguousarray(other[:, ::-1]))  # the next frame: the square moved
    assert iou(segmenter.predict(PointPrompt(160 - 70, 60)), truth[:, ::-1]) > 0.9
