import cv2
import numpy as np
import pytest

from gestalt_ros.prompts import CropWindow, PromptError, check_image, check_prompt
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt, mask_bbox


def test_check_prompt_accepts_and_normalises():
    assert check_prompt(PointPrompt(3, 4), 10, 10) == PointPrompt(3, 4)
    assert check_prompt(BoxPrompt(8, 9, 2, 1), 10, 10) == BoxPrompt(2, 1, 8, 9)
    assert check_prompt(BoxPrompt(-5, -5, 4, 4), 10, 10) == BoxPrompt(0, 0, 4, 4)
    mask = np.zeros((10, 10), np.uint8)
    mask[2:4, 2:4] = 255
    assert check_prompt(MaskPrompt(mask), 10, 10).mask.dtype == bool


@pytest.mark.parametrize(
    "prompt, message",
    [
        (PointPrompt(10, 3), "outside"),
        (PointPrompt(-1, 3), "outside"),
        (PointPrompt(float("nan"), 3), "not finite"),
        (BoxPrompt(3, 3, 3.5, 8), "less than 2x2"),
        (MaskPrompt(np.zeros((10, 10), bool)), "empty"),
        (MaskPrompt(np.ones((5, 10), bool)), "shape"),
    ],
)
def test_bad_prompts_say_why(prompt, message):
    with pytest.raises(PromptError, match=message):
        check_prompt(prompt, 10, 10)


def test_check_image_rejects_bad_arrays():
    with pytest.raises(ValueError, match="H x W x 3"):
        check_image(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        check_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        check_image(np.zeros((0, 4, 3), np.uint8))


def test_crop_window_is_centred_and_scaled():
    mask = np.zeros((100, 120), bool)
    mask[40:60, 50:70] = True
    window = CropWindow.around(mask, 2.0)
    assert window == CropWindow(40, 30, 40, 40)
    small = window.crop_mask(mask, 32)
    assert mask_bbox(small) == (8, 8, 24, 24)


def test_paste_inverts_crop_for_masks():
    mask = np.zeros((90, 70), bool)
    mask[10:50, 20:44] = True
    window = CropWindow.around(mask, 1.5)
    back = window.paste(window.crop_mask(mask, window.width), 90, 70)
    assert np.array_equal(back, mask)


def test_linear_paste_interpolates_float_maps_only():
    window = CropWindow(10, 10, 40, 40)
    ramp = np.tile(np.linspace(0.0, 1.0, 4, dtype=np.float32), (4, 1))
    big = window.paste(ramp, 60, 60, linear=True)
    assert not big[:10].any() and not big[:, 50:].any()  # zero outside the window
    assert big[10, 10] == 0.0 and big[49, 49] == 1.0  # edge pixels keep the crop's edge values
    row = big[30, 15:45]
    assert (np.diff(row) >= 0).all() and len(np.unique(row)) > 4  # a ramp, not 4 steps
    with pytest.raises(ValueError, match="float map"):
        window.paste(ramp > 0.5, 60, 60, linear=True)


def test_window_past_the_border_is_padded():
    image = np.full((20, 20, 3), 9, np.uint8)
    window = CropWindow(-20, -20, 40, 40)
    crop = window.crop_image(image, 8)
    assert (crop[:4, :4] == 127).all() and (crop[5:, 5:] == 9).all()
    pasted = window.paste(np.ones((8, 8), bool), 20, 20)
    assert pasted.all()


def test_clipped_window_and_linear_paste_past_the_border():
    assert CropWindow(-5, 3, 10, 10).clipped(8, 20) == (0, 3, 5, 8)
    x0, y0, x1, y1 = CropWindow(30, 30, 10, 10).clipped(20, 20)
    assert x1 <= x0 and y1 <= y0, "a window outside the image clips to nothing"
    pasted = CropWindow(-4, -4, 12, 12).paste(np.full((4, 4), 0.7, np.float32), 10, 10, linear=True)
    assert np.allclose(pasted[:8, :8], 0.7) and not pasted[8:].any() and not pasted[:, 8:].any()
    assert not CropWindow(30, 30, 10, 10).paste(np.ones((4, 4), np.float32), 20, 20, linear=True).any()


def test_paste_matches_bilinear_sampling_of_the_crop():
    """Only the window's part of the frame is warped: it must sample the crop as a warp of
    the whole frame would, for windows inside, across and wholly outside the frame."""
    rng = np.random.default_rng(0)
    crop = cv2.resize(rng.random((4, 4)).astype(np.float32), (32, 32), interpolation=cv2.INTER_LINEAR)
    for window in (
        CropWindow(7, 5, 20, 26),
        CropWindow(-9, 30, 60, 41),
        CropWindow(-50, -50, 20, 20),
        CropWindow(70, 2, 9, 9),
    ):
        pasted = window.paste(crop, 48, 64, linear=True)
        expected = np.zeros((48, 64), np.float32)
        x0, y0, x1, y1 = window.clipped(48, 64)
        for y in range(max(y0, 0), max(y1, 0)):
            for x in range(max(x0, 0), max(x1, 0)):
                cx = np.clip((x + 0.5 - window.x0) * 32 / window.width - 0.5, 0, 31)
                cy = np.clip((y + 0.5 - window.y0) * 32 / window.height - 0.5, 0, 31)
                i, j = min(int(cy), 30), min(int(cx), 30)
                fy, fx = cy - i, cx - j
                top = crop[i, j] * (1 - fx) + crop[i, j + 1] * fx
                bottom = crop[i + 1, j] * (1 - fx) + crop[i + 1, j + 1] * fx
                expected[y, x] = top * (1 - fy) + bottom * fy
        assert np.abs(pasted - expected).max() < 0.01, window
        nearest = window.paste(crop > 0.5, 48, 64)
        assert not nearest[~(expected > 0)].any(), "nothing outside the window"


def test_stretched_window_keeps_a_thin_object_visible():
    mask = np.zeros((100, 200), bool)
    mask[48:52, 20:180] = True  # a 40:1 log
    square = CropWindow.around(mask, 2.0)
    assert square.width == square.height == 320
    assert square.crop_mask(mask, 64).sum(axis=0).max() <= 1, "a square crop leaves a line at most one pixel wide"
    window = CropWindow.around(mask, 2.0, max_aspect=4.0)
    assert (window.width, window.height) == (320, 80)
    assert window.box == (-60, 10, 260, 90)  # centred on the visible box
    small = window.crop_mask(mask, 64)
    assert mask_bbox(small) == (16, 30, 48, 34), "stretched across, the log is 4 crop pixels wide"
    back = window.paste(small, 100, 200)
    assert back[mask].all() and back.sum() <= 1.25 * mask.sum(), "the paste maps the crop back onto the log"
    assert CropWindow.around(mask.T, 2.0, max_aspect=4.0).height == 320, "an upright object stretches sideways"
    assert CropWindow.from_box(window.box) == window
    with pytest.raises(ValueError, match="max_aspect"):
        CropWindow.around(mask, 2.0, max_aspect=0.5)
    from gestalt_ros.completion import CompletionModelConfig

    with pytest.raises(ValueError, match="crop_max_aspect"):
        CompletionModelConfig(crop_max_aspect=0.5)


def test_stretched_window_crops_the_image_like_the_mask():
    image = np.zeros((100, 200, 3), np.uint8)
    image[48:52, 20:180] = 200
    mask = image[..., 0] > 0
    window = CropWindow.around(mask, 2.0, max_aspect=4.0)  # shrinks x by 5, y by 1.25: area path
    crop = window.crop_image(image, 64, fill=0)
    assert mask_bbox(crop[..., 0] > 100) == mask_bbox(window.crop_mask(mask, 64)) == (16, 30, 48, 34)
    big = CropWindow.around(mask, 2.0, max_aspect=40.0)  # 320 x 16 window: enlarges y by 4
    assert (big.width, big.height) == (320, 16)
    assert mask_bbox(big.crop_image(image, 64, fill=0)[..., 0] > 100) == mask_bbox(big.crop_mask(mask, 64))
