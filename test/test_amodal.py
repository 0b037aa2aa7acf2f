import numpy as np

from gestalt_ros.amodal import attached_to, closest_sample, foreground_masks, vote
from gestalt_ros.config import AmodalConfig
from gestalt_ros.eval.baselines import convex_hull, modal


def test_white_is_background_and_dark_is_object():
    completions = np.full((2, 4, 4, 3), 255, np.uint8)
    completions[0, 1, 1] = (240, 240, 240)
    completions[1, 2, 2] = (10, 200, 10)
    masks = foreground_masks(completions, AmodalConfig(white_threshold=235))
    assert masks.sum() == 1 and masks[1, 2, 2]
    assert foreground_masks(completions, AmodalConfig(white_threshold=245))[0, 1, 1]


def test_alpha_decides_when_the_model_synthesizes_it():
    """RGBA: a white object pixel with high alpha is object; a dark one with low alpha is not."""
    rgba = np.zeros((1, 2, 2, 4), np.uint8)
    rgba[0, 0, 0] = (255, 255, 255, 200)
    rgba[0, 1, 1] = (0, 0, 0, 100)
    masks = foreground_masks(rgba, AmodalConfig(white_threshold=200, alpha_threshold=128))
    assert masks[0, 0, 0] and not masks[0, 1, 1] and masks.sum() == 1
    assert foreground_masks(rgba, AmodalConfig(alpha_threshold=90))[0, 1, 1]


def test_vote_is_a_strict_majority_with_agreement():
    masks = np.zeros((4, 2, 2), bool)
    masks[:3, 0, 0] = True  # 3 of 4
    masks[:2, 0, 1] = True  # tie
    voted, agreement = vote(masks, 0.5)
    assert voted[0, 0] and not voted[0, 1] and not voted[1, 1]
    assert agreement[0, 0] == 0.75 and agreement[0, 1] == 0.5


def test_closest_sample_is_the_one_like_the_vote():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2] = True
    masks[1, :3] = True
    masks[2, :3] = True
    voted, _ = vote(masks)
    assert closest_sample(masks, voted) in (1, 2)


def test_baselines():
    visible = np.zeros((10, 10), bool)
    visible[2:8, 2] = True
    visible[2, 2:8] = True
    hull = convex_hull(visible)
    assert hull[3, 3] and not hull[7, 7] and (hull >= visible).all()
    assert np.array_equal(modal(visible), visible)


def test_blobs_away_from_the_visible_part_are_dropped():
    visible = np.zeros((10, 10), bool)
    visible[1:3, 1:3] = True
    voted = np.zeros((10, 10), bool)
    voted[2:5, 2:5] = True  # overlaps the visible part
    voted[3, 5] = True  # touches that blob diagonally-adjacent: same component
    voted[8:10, 8:10] = True  # far away
    voted[0, 3] = True  # a separate blob one pixel from the visible part: kept (1 px slack)
    kept = attached_to(voted, visible)
    assert kept[3, 3] and kept[3, 5] and kept[0, 3] and not kept[8:, 8:].any()
    assert not attached_to(voted, np.zeros_like(visible)).any()
