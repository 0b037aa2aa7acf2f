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
    """A photo of an espresso cup (scikit-image's, CC0) is one: the weights are the real ImageNet ones."""
    import skimage.data

    labels = [name for name, _ in recognizer([skimage.data.coffee()])[0]]
    assert labels[0] == "espresso" and "cup" in labels, labels


def test_whole_object_view_paints_only_the_hidden_part():
    from gestalt_ros.amodal import completion_in_frame
    from gestalt_ros.prompts import CropWindow
    from gestalt_ros.recognition import whole_object_view

    image = np.zeros((40, 60, 3), np.uint8)
    image[..., 0] = 200  # the camera sees red everywhere (object, occluder and background)
    visible = np.zeros((40, 60), bool)
    visible[10:20, 10:30] = True
    amodal = visible.copy()
    amodal[20:30, 10:30] = True  # hidden lower half
    window = CropWindow.around(visible, 2.0)
    crop = np.zeros((16, 16, 3), np.uint8)
    crop[..., 2] = 250  # the model paints the whole object blue
    completion = completion_in_frame(crop, amodal, window)
    assert completion.shape == (40, 60, 3) and (completion[~amodal] == 255).all(), "white outside the object"
    assert (completion[amodal] == (0, 0, 250)).all(), "the synthesized object in place"
    view = whole_object_view(image, visible, amodal, completion)
    assert view.shape == (20, 20, 3), "cut to the amodal box"
    assert (view[:10, :, 0] == 200).all() and (view[:10, :, 2] == 0).all(), "visible: the camera's pixels"
    assert (view[10:, :, 2] == 250).all() and (view[10:, :, 0] == 0).all(), "hidden: the synthesized pixels"
    # outside the amodal mask, inside its box: the camera's pixels again
    amodal[25:30, 20:30] = False
    view = whole_object_view(image, visible, amodal, completion_in_frame(crop, amodal, window))
    assert (view[15:, 10:, 0] == 200).all() and (view[15:, :10, 2] == 250).all()
