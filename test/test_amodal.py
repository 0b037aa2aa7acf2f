from dataclasses import replace

import cv2
import numpy as np

from gestalt_ros.amodal import attached_to, closest_sample, foreground_masks, to_frame, vote
from gestalt_ros.config import AmodalConfig
from gestalt_ros.eval.baselines import convex_hull, modal
from gestalt_ros.eval.metrics import iou
from gestalt_ros.prompts import CropWindow


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


def test_the_default_vote_with_four_samples_keeps_only_what_all_of_them_saw():
    masks = np.zeros((4, 1, 2), bool)
    masks[:, 0, 0] = True  # 4 of 4
    masks[:3, 0, 1] = True  # 3 of 4
    voted, _ = vote(masks, AmodalConfig().vote_threshold)
    assert voted.tolist() == [[True, False]]


def test_closest_sample_is_the_one_like_the_vote():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2] = True
    masks[1, :3] = True
    masks[2, :3] = True
    voted, _ = vote(masks, 0.5)
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


def _disc(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] + 0.5
    return (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= radius**2


def test_smooth_paste_follows_a_large_object_closer_than_pixel_paste():
    """A 16-px crop of a disc pasted into a 160-px window: interpolating the evidence before
    thresholding recovers the round edge; nearest neighbour leaves 10-px stairs."""
    truth = _disc(160, 50)
    window = CropWindow(0, 0, 160, 160)
    evidence = cv2.resize(truth.astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA)
    crop_visible = evidence > 0.5
    visible = np.zeros_like(truth)
    cfg = AmodalConfig(union_visible=False)
    smooth = to_frame(evidence, 0.5, crop_visible, visible, window, cfg)
    pixels = to_frame(evidence, 0.5, crop_visible, visible, window, replace(cfg, smooth_paste=False))
    assert np.array_equal(pixels, window.paste(evidence > 0.5, 160, 160))
    assert iou(smooth, truth) > iou(pixels, truth) + 0.01
    assert iou(smooth, truth) > 0.97


def test_smooth_paste_thresholds_between_agreement_levels_and_drops_detached_blobs():
    evidence = np.zeros((8, 8), np.float32)
    evidence[:, :4] = 0.75  # three of four samples agree
    evidence[:, 4:] = 0.25
    evidence[0, 7] = 1.0  # a detached blob
    crop_visible = np.zeros((8, 8), bool)
    crop_visible[3, 1] = True
    window = CropWindow(0, 0, 80, 80)
    mask = to_frame(evidence, 0.5, crop_visible, np.zeros((80, 80), bool), window, AmodalConfig())
    # the 0.75 -> 0.25 edge lies between crop pixel centres 3 and 4, i.e. at x = 40
    assert mask[40, 5:39].all() and not mask[40, 41:].any()
    assert not mask[:10, 70:].any()
    kept_blob = to_frame(
        evidence, 0.5, crop_visible, np.zeros((80, 80), bool), window, AmodalConfig(keep_attached=False)
    )
    assert kept_blob[2:8, 72:78].all()
