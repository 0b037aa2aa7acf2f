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


def test_grabcut_on_a_shrunk_region_answers_at_full_size():
    import cv2

    from gestalt_ros.visible import grabcut

    image, truth = _square_scene(2)
    seed = np.full(truth.shape, cv2.GC_PR_BGD, np.uint8)
    seed[35:85, 45:95] = cv2.GC_PR_FGD  # a loose square around the object
    seed[55:65, 65:75] = cv2.GC_FGD
    full = grabcut(image, seed, (20, 10, 140, 110), iterations=2)
    shrunk = grabcut(image, seed, (20, 10, 140, 110), iterations=2, max_side=60)
    assert shrunk.shape == truth.shape and not shrunk[:10].any()  # nothing outside the region
    assert iou(full, truth) > 0.9 and iou(shrunk, truth) > 0.85
    # A seed whose object vanishes in the shrink (or has none) is answered by the seed itself.
    seed[:] = cv2.GC_PR_BGD
    seed[60, 70] = cv2.GC_PR_FGD
    lost = grabcut(image, seed, (20, 10, 140, 110), iterations=2, max_side=20)
    assert np.array_equal(np.argwhere(lost), [[60, 70]])


def test_seeds_from_a_probability_keep_the_sure_pixels_sure():
    import cv2

    from gestalt_ros.visible import seed_from_probability

    probability = np.array([[0.0, 0.005, 0.3, 0.5, 0.6, 0.995, 1.0]])
    seed = seed_from_probability(probability, threshold=0.5, sure=0.99)
    assert seed.tolist() == [
        [cv2.GC_BGD, cv2.GC_BGD, cv2.GC_PR_BGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD, cv2.GC_FGD, cv2.GC_FGD]
    ]


def test_grabcut_gives_the_same_mask_whatever_ran_before():
    import cv2

    from gestalt_ros.visible import grabcut

    rng = np.random.default_rng(0)
    image = np.zeros((120, 160, 3), np.uint8)
    for _ in range(60):  # clutter, where k-means' random start changes GrabCut's colour models
        x, y, w, h = (int(v) for v in (*rng.integers(0, (160, 120)), *rng.integers(4, 30, 2)))
        image[y : y + h, x : x + w] = rng.integers(0, 255, 3)
    image = (image + rng.normal(0, 10, image.shape)).clip(0, 255).astype(np.uint8)
    seed = np.full((120, 160), cv2.GC_PR_BGD, np.uint8)
    seed[30:90, 40:120] = cv2.GC_PR_FGD
    seed[50:70, 70:90] = cv2.GC_FGD
    before, masks = seed.copy(), []
    for state in (1, 2, 3):
        cv2.setRNGSeed(state)  # what another OpenCV user may have left behind
        masks.append(grabcut(image, seed, (0, 0, 160, 120), iterations=1))
    assert np.array_equal(masks[0], masks[1]) and np.array_equal(masks[0], masks[2])
    assert np.array_equal(seed, before)  # the caller's seed is read, not written
