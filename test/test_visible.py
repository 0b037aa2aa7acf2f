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


def test_click_segments_the_clicked_object():
    image, truth = _square_scene()
    mask = GrabCutSegmenter(VisibleConfig())(image, PointPrompt(70, 60))
    assert iou(mask, truth) > 0.9


def test_box_segments_the_object_inside():
    image, truth = _square_scene(1)
    mask = GrabCutSegmenter()(image, BoxPrompt(44, 34, 96, 86))
    assert iou(mask, truth) > 0.9


def test_mask_prompt_passes_through():
    image, truth = _square_scene()
    mask = GrabCutSegmenter()(image, MaskPrompt(truth.astype(np.uint8) * 255))
    assert np.array_equal(mask, truth)
