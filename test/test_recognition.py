import numpy as np
import pytest

from gestalt_ros.recognition import EfficientNetRecognizer, imagenet_categories


@pytest.fixture(scope="module")
def recognizer():
    return EfficientNetRecognizer(top_k=3)


def test_categories_are_readable():
    cats = imagenet_categories()
    assert len(cats) == 1000 and cats[0] == "tench"


def test_real_weights_give_consistent_confident_labels(recognizer):
    """A plain white image and a plain white image resized must agree; probabilities sum <= 1."""
    white = np.full((64, 64, 3), 255, np.uint8)
    out = recognizer([white, np.full((300, 200, 3), 255, np.uint8)])
    assert out[0][0][0] == out[1][0][0]
    assert all(0 <= s <= 1 for _, s in out[0]) and sum(s for _, s in out[0]) <= 1.0 + 1e-6
    assert [s for _, s in out[0]] == sorted((s for _, s in out[0]), reverse=True)


def test_real_photo_is_recognized(recognizer):
    """A COCO photo crop of an elephant is an elephant: the weights are the real ImageNet ones."""
    from pathlib import Path

    import cv2

    photo = Path(__file__).resolve().parents[2] / "shared" / "data" / "cocoa5" / "5.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found (the shared/ folder beside the repository)")
    image = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    labels = [name for name, _ in recognizer([image])[0]]
    assert any("elephant" in name or name == "tusker" for name in labels), labels
