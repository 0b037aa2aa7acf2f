"""The single-pass model: prompt encoding, network, stages, training examples and a tiny run."""

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import fails_in_one_line

from gestalt_ros.config import ConfigError, GestaltConfig
from gestalt_ros.data.scene_store import SceneStore, store_scenes
from gestalt_ros.data.single_pass_examples import ExampleConfig, sample_example
from gestalt_ros.eval.metrics import iou
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.prompts import CropWindow, interior_point, prompt_from_mask
from gestalt_ros.single_pass.model import BRANCH_PREFIXES, SinglePassConfig, SinglePassNet
from gestalt_ros.single_pass.prompting import box_window, click_window, prompt_maps, to_crop
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt


def test_a_click_peaks_at_its_own_crop_pixel():
    window = CropWindow(10, 20, 64, 64)  # 1 image pixel = 1 crop pixel at r = 64
    maps = prompt_maps(PointPrompt(30, 50), window, 64, sigma=0.05)
    assert np.unravel_index(np.argmax(maps[0]), maps[0].shape) == (30, 20)
    assert maps[1:].max() == 0.0
    # A click window is centred on the clicked pixel.
    cx, cy = to_crop(click_window(100, 60, 41), 41, 100, 60)
    assert (cx, cy) == pytest.approx((20, 20), abs=0.5)


def test_box_and_mask_maps_cover_the_prompted_pixels():
    window = CropWindow(0, 0, 128, 128)  # image pixels halve into a 64 px crop
    maps = prompt_maps(BoxPrompt(32, 16, 96, 48), window, 64, sigma=0.05)
    assert maps[[0, 2]].max() == 0.0
    rows, cols = np.nonzero(maps[1])
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (8, 24, 16, 48)
    mask = np.zeros((128, 128), bool)
    mask[40:80, 20:60] = True
    maps = prompt_maps(MaskPrompt(mask), window, 64, sigma=0.05)
    assert np.array_equal(maps[2].astype(bool), window.crop_mask(mask, 64))
    # An inverted box is the same box.
    assert np.array_equal(
        prompt_maps(BoxPrompt(96, 48, 32, 16), window, 64, 0.05),
        prompt_maps(BoxPrompt(32, 16, 96, 48), window, 64, 0.05),
    )
    assert box_window(BoxPrompt(96, 48, 32, 16), 2.0).box == box_window(BoxPrompt(32, 16, 96, 48), 2.0).box


def test_evaluation_prompts_come_from_the_visible_mask():
    mask = np.zeros((50, 80), bool)
    mask[10:30, 5:65] = True
    point = interior_point(mask)
    assert mask[int(point.y), int(point.x)] and 15 <= point.y <= 24
    assert prompt_from_mask("box", mask) == BoxPrompt(5.0, 10.0, 65.0, 30.0)
    assert prompt_from_mask("mask", mask).mask is mask
    with pytest.raises(ValueError, match="prompt kind"):
        prompt_from_mask("scribble", mask)


def test_the_network_keeps_imagenet_features_frozen_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = SinglePassNet(SinglePassConfig(resolution=64, decoder_channels=(16, 16, 8, 8, 8)), pretrained=False)
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    # The encoder's batch norms keep their statistics in training mode; the decoder's update.
    encoder_bn = model.stages[3][0]._bn1
    before_encoder = encoder_bn.running_mean.clone()
    before_decoder = model.top[1].running_mean.clone()
    image, prompt = torch.randn(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    logits, iou = model(image, prompt)
    assert logits.shape == (2, 2, 64, 64) and iou.shape == (2, 2) and ((iou > 0) & (iou < 1)).all()
    assert torch.equal(encoder_bn.running_mean, before_encoder)
    assert not torch.equal(model.top[1].running_mean, before_decoder)
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = SinglePassNet.from_pretrained(tmp_path)
    with torch.no_grad():
        a, b = model(image, prompt)[0], loaded(image, prompt)[0]
    assert torch.allclose(a, b, atol=0.05)  # stored in float16
    assert json.loads((tmp_path / "single_pass.json").read_text())["resolution"] == 64
    with pytest.raises(FileNotFoundError, match="SinglePassNet model"):
        SinglePassNet.from_pretrained(tmp_path / "missing")


def test_an_amodal_branch_starts_as_the_shared_decoder_and_only_moves_the_amodal_outputs(tmp_path):
    torch.manual_seed(0)
    config = SinglePassConfig(resolution=64, decoder_channels=(16, 16, 8, 8, 8))
    shared = SinglePassNet(config, pretrained=False).eval()
    branched = SinglePassNet(dataclasses.replace(config, amodal_branch=3), pretrained=False)
    missing, unexpected = branched.load_state_dict(shared.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(BRANCH_PREFIXES) for k in missing)
    image, prompt = torch.randn(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    branched.eval()
    with torch.no_grad():
        before = shared(image, prompt)
        assert not torch.allclose(branched(image, prompt)[0][:, 1], before[0][:, 1])  # random branch
        branched.branch_from_shared()
        for a, b in zip(branched(image, prompt), before, strict=True):
            assert torch.allclose(a, b, atol=1e-5)
        for parameter in branched.amodal_branch_parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        logits, iou = branched(image, prompt)
    assert torch.equal(logits[:, 0], before[0][:, 0]) and torch.equal(iou[:, 0], before[1][:, 0])
    assert not torch.allclose(logits[:, 1], before[0][:, 1]) and not torch.allclose(iou[:, 1], before[1][:, 1])
    branched.save_pretrained(tmp_path)
    loaded = SinglePassNet.from_pretrained(tmp_path)
    assert loaded.config.amodal_branch == 3
    with torch.no_grad():
        assert torch.allclose(loaded(image, prompt)[0], logits, atol=0.05)  # stored in float16
    with pytest.raises(ValueError, match="amodal_branch must be 0..4"):
        SinglePassNet(dataclasses.replace(config, amodal_branch=5), pretrained=False)


def test_a_click_runs_the_amodal_branch_once_for_the_pass_it_answers_with(tmp_path, scene_image):
    from gestalt_ros.single_pass.prompting import image_tensor

    torch.manual_seed(1)
    config = SinglePassConfig(
        resolution=64, decoder_channels=(32, 24, 16, 16, 8), click_windows=(0.3, 0.8), amodal_branch=2
    )
    SinglePassNet(config, pretrained=False).save_pretrained(tmp_path)
    overrides = [f"single_pass.weights={tmp_path}", "amodal.method=single_pass", "single_pass.refine_skip_within=0"]
    pipeline = GestaltPipeline.from_config(GestaltConfig().with_overrides(overrides))
    predictor = pipeline.components.segmenter.predictor
    model = predictor.model
    shared, branch = model.forward_shared, model.forward_branch
    passes, branches = [], []
    model.forward_shared = lambda image, prompt: passes.append(len(image)) or shared(image, prompt)
    model.forward_branch = lambda inputs: branches.append(len(inputs.features)) or branch(inputs)
    image, visible = scene_image
    click = prompt_from_mask("point", visible)
    result = pipeline(image, click)
    assert passes[:2] == [2, 1] and branches == [1]  # two first windows, a refinement; one branch
    assert result.amodal_mask.any() and not (result.visible_mask & ~result.amodal_mask).any()
    # Read late, a pass's amodal outputs are the whole network's for its window.
    windows = [click_window(click.x, click.y, s) for s in (20, 40)]
    found = predictor.forward(image, click, windows)
    assert branches == [1]  # nothing read yet
    amodal = [(p.amodal, p.amodal_iou, p.amodal) for p in found]
    assert branches == [1, 1, 1]  # one branch per pass read, once
    del model.forward_shared, model.forward_branch
    crops = np.stack([w.crop_image(image, 64) for w in windows])
    maps = np.stack([prompt_maps(click, w, 64, config.point_sigma) for w in windows])
    with torch.no_grad():
        logits, iou_estimate = model(image_tensor(crops), torch.from_numpy(maps))
    for k, (probability, estimate, _) in enumerate(amodal):
        assert np.allclose(probability, torch.sigmoid(logits[k, 1]).numpy(), atol=1e-5)
        assert estimate == pytest.approx(float(iou_estimate[k, 1]), abs=1e-5)
        assert np.allclose(found[k].visible, torch.sigmoid(logits[k, 0]).numpy(), atol=1e-5)


@pytest.mark.parametrize("visible_method", ["single_pass", "grabcut"])
@pytest.mark.parametrize("prompt_kind", ["point", "box", "mask"])
def test_the_single_pass_stages_answer_every_prompt(tiny_single_pass_dir, scene_image, visible_method, prompt_kind):
    image, visible = scene_image
    cfg = GestaltConfig().with_overrides(
        [f"single_pass.weights={tiny_single_pass_dir}", f"visible.method={visible_method}", "amodal.method=single_pass"]
    )
    pipeline = GestaltPipeline.from_config(cfg)
    prompt = prompt_from_mask(prompt_kind, visible)
    result = pipeline(image, prompt)
    h, w = visible.shape
    assert result.visible_mask.shape == result.amodal_mask.shape == (h, w) and result.visible_mask.any()
    assert not (result.visible_mask & ~result.amodal_mask).any()  # union_visible
    assert result.completion.shape == (h, w, 3)
    assert (result.completion[~result.amodal_mask] == 255).all()
    if prompt_kind == "mask":
        assert np.array_equal(result.visible_mask, visible)
    if prompt_kind == "point" and visible_method == "single_pass":
        assert result.visible_mask[int(prompt.y), int(prompt.x)] or result.visible_mask.sum() > 1
    assert result.timings["amodal"] > 0
    # Both stages share one network.
    if visible_method == "single_pass":
        assert pipeline.components.segmenter.predictor is pipeline.components.amodal.predictor


def test_both_runs_through_the_pipeline(tiny_pipeline_config, tiny_single_pass_dir, scene_image):
    image, visible = scene_image
    cfg = tiny_pipeline_config.with_overrides([f"single_pass.weights={tiny_single_pass_dir}", "amodal.method=both"])
    result = GestaltPipeline.from_config(cfg)(image, MaskPrompt(visible))
    assert result.completions.shape == (2, 16, 16, 3)  # still synthesized, by the completion model
    assert not (visible & ~result.amodal_mask).any()
    assert (result.completion[~result.amodal_mask] == 255).all()
    assert {"completion", "amodal"} <= set(result.timings)


def test_both_keeps_the_vote_where_samples_agree_and_asks_the_network_elsewhere(scene_image):
    from gestalt_ros.amodal import RefinedSynthesisAmodal
    from gestalt_ros.config import AmodalConfig, CompletionConfig

    image, visible = scene_image
    h, w = visible.shape
    agreement = np.zeros((h, w), np.float32)
    agreement[:, :20] = 1.0  # all samples: object
    agreement[:, 20:40] = 0.5  # split
    network = np.zeros((h, w), bool)
    network[:, 10:30] = True  # object in half of each band

    class Fixed:
        def __init__(self, mask, agreement):
            self.mask, self.agreement = mask, agreement

        def estimate(self, image, visible, completion, amodal, seed):
            from gestalt_ros.types import AmodalEstimate

            crop = np.zeros((8, 8, 3), np.uint8)
            return AmodalEstimate(
                self.mask,
                self.agreement,
                image,
                crop,
                crop[None],
                np.zeros((1, 8, 8), bool),
                (0, 0, w, h),
                {"amodal": 0.1},
            )

    both = RefinedSynthesisAmodal(Fixed(agreement > 0.8, agreement), Fixed(network, network.astype(np.float32)))
    cfg = AmodalConfig(keep_attached=False, union_visible=False)
    mask = both.estimate(image, visible, CompletionConfig(), cfg, 0).amodal_mask
    assert mask[:, :20].all()  # agreed object stays, whatever the network says
    assert mask[:, 20:30].all() and not mask[:, 30:].any()  # split: the network decides; agreed background stays


@pytest.mark.parametrize(
    "first_pass, refine, later_passes, windows",
    [
        ("best", 3, [1, 1, 1], ""),
        ("best", 0, [], ""),
        ("blend", 2, [1, 1], ""),
        ("blend", 0, [1], ""),
        ("best", 1, [1], "0.5,1.5,2"),
    ],
)
def test_a_click_tries_each_window_then_refines(
    tiny_single_pass_dir, scene_image, first_pass, refine, later_passes, windows
):
    from gestalt_ros.backends.builtin import single_pass_predictor

    image, visible = scene_image
    cfg = GestaltConfig().with_overrides(
        [
            f"single_pass.weights={tiny_single_pass_dir}",
            f"single_pass.refine_passes={refine}",
            f"single_pass.click_first_pass={first_pass}",
            f"single_pass.click_windows={windows}",
            "single_pass.refine_skip_within=0",  # every refinement runs; the skip has its own test
        ]
    )
    predictor = single_pass_predictor(cfg)
    predictor.options.click_fallback_windows = ""  # the fallback has its own test
    calls = []
    forward = predictor.forward
    predictor.forward = lambda *a: calls.append([w.width for w in a[2]]) or forward(*a)
    click = interior_point(visible)
    result = predictor.predict(image, click)
    fractions = [float(f) for f in windows.split(",")] if windows else predictor.model.config.click_windows
    assert calls[0] == [max(round(f * min(visible.shape)), 16) for f in fractions]  # the first pass: each window
    assert [len(c) for c in calls[1:]] == later_passes
    assert predictor.visible_in_frame(result, click, *visible.shape).any()


class _ScaleBlind:
    """A stand-in network that sees a 160 px square whole only in windows of 180 px or more;
    in smaller ones it answers a disc around the click (a part), with IoU estimates of 0.5."""

    def __init__(self, resolution: int, whole_iou: float = 0.9) -> None:
        self.resolution, self.whole_iou, self.calls = resolution, whole_iou, []
        self.whole = np.zeros((200, 200), bool)
        self.whole[20:180, 20:180] = True
        self.part = np.hypot(*np.mgrid[-100:100, -100:100]) < 10

    def __call__(self, image, prompts, windows):
        from gestalt_ros.single_pass.predictor import PassResult

        self.calls.append([w.width for w in windows])
        out = []
        for window in windows:
            mask, estimate = (self.whole, self.whole_iou) if window.width >= 180 else (self.part, 0.5)
            crop = window.crop_mask(mask, self.resolution).astype(np.float32)
            out.append(PassResult(window, crop, crop, estimate, estimate))
        return out


class _Fixed:
    """A stand-in network that answers the same frame mask in every window, sure of it."""

    def __init__(self, resolution: int, mask: np.ndarray) -> None:
        self.resolution, self.mask, self.calls = resolution, mask, []

    def __call__(self, image, prompts, windows):
        from gestalt_ros.single_pass.predictor import PassResult

        self.calls.append([w.width for w in windows])
        crops = [w.crop_mask(self.mask, self.resolution).astype(np.float32) for w in windows]
        return [PassResult(w, c, c, 0.9, 0.9) for w, c in zip(windows, crops)]


@pytest.mark.parametrize(
    "within, rows, cols, passes",
    [
        (0.2, (60, 140), (60, 140), 1),  # 80 px: its 2.5x window is the 200 px first window
        (0.0, (60, 140), (60, 140), 2),  # off: every refinement runs
        (0.2, (80, 120), (80, 120), 2),  # 40 px: the refined window is half as wide
        (0.2, (60, 140), (90, 170), 2),  # centred 30 px (of 200) right of the click: re-centred
    ],
)
def test_a_refinement_that_would_frame_the_object_alike_is_skipped(tiny_single_pass_dir, within, rows, cols, passes):
    from gestalt_ros.single_pass.predictor import SinglePassPredictor

    options = (
        GestaltConfig()
        .with_overrides(
            [
                "single_pass.click_windows=0.5",
                "single_pass.grabcut_refine=false",
                f"single_pass.refine_skip_within={within}",
            ]
        )
        .single_pass
    )
    predictor = SinglePassPredictor.from_pretrained(tiny_single_pass_dir, options)
    mask = np.zeros((400, 400), bool)
    mask[slice(*rows), slice(*cols)] = True
    predictor.forward = network = _Fixed(predictor.resolution, mask)
    click = PointPrompt(100, 100)
    image = np.zeros((400, 400, 3), np.uint8)
    found = predictor.predict(image, click)
    assert len(network.calls) == passes and network.calls[0] == [200]
    assert iou(predictor.visible_in_frame(found, click, 400, 400), mask) > 0.95
    network.calls.clear()  # the scene mode's grid clicks run every refinement
    predictor.predict_clicks(image, [click], fallback=False, skip_alike=False)
    assert len(network.calls) == 2


def test_scene_clicks_run_every_refinement(tiny_single_pass_dir):
    from types import SimpleNamespace

    from gestalt_ros.scene.click_instances import ClickInstances
    from gestalt_ros.single_pass.predictor import SinglePassPredictor

    options = GestaltConfig().with_overrides(["single_pass.click_windows=0.5", "single_pass.grabcut_refine=false"])
    predictor = SinglePassPredictor.from_pretrained(tiny_single_pass_dir, options.single_pass)
    mask = np.zeros((400, 400), bool)
    mask[60:140, 60:140] = True
    predictor.forward = network = _Fixed(predictor.resolution, mask)
    layers = SimpleNamespace(segment=lambda image, seed: [SimpleNamespace(amodal_mask=mask)])
    found = ClickInstances(predictor, layers, points_per_side=10, min_area=0.0).visible_masks(
        np.zeros((400, 400, 3), np.uint8)
    )
    # Four grid points on the square, one batch; the innermost one's window is alike, and is refined all the same.
    assert [len(c) for c in network.calls] == [4, 4]
    assert len(found) == 1 and iou(found[0], mask) > 0.95


@pytest.mark.parametrize(
    "overrides, found",
    [
        ([], "whole"),  # a doubted part: the 1.0 and 1.5 windows see the object whole
        (["single_pass.click_fallback_below=0"], "part"),  # no click is doubted
        (["single_pass.click_fallback_windows="], "part"),  # off
        (["single_pass.click_fallback_windows=0.35,0.75"], "part"),  # every window too small
    ],
)
def test_a_doubted_click_tries_the_fallback_windows(tiny_single_pass_dir, overrides, found):
    from gestalt_ros.single_pass.predictor import SinglePassPredictor

    cfg = GestaltConfig().with_overrides(
        ["single_pass.click_windows=0.5", "single_pass.grabcut_refine=false", *overrides]
    )
    options = cfg.single_pass
    predictor = SinglePassPredictor.from_pretrained(tiny_single_pass_dir, options)
    predictor.forward = network = _ScaleBlind(predictor.resolution)
    click = PointPrompt(100, 100)
    mask = predictor.visible_in_frame(predictor.predict(np.zeros((200, 200, 3), np.uint8), click), click, 200, 200)
    assert iou(mask, getattr(network, found)) > 0.9
    fallback = options.fallback_fractions() if options.click_fallback_below > 0.25 else ()
    assert network.calls[0] == [100], "the 0.5 window first"
    assert len(network.calls) == 2 + (2 if fallback else 0), "each fallback window is refined once, in one batch"
    if fallback:
        assert network.calls[2] == [round(f * 200) for f in fallback]


def test_a_confident_click_keeps_its_answer_and_scene_clicks_never_fall_back(tiny_single_pass_dir):
    from gestalt_ros.single_pass.predictor import SinglePassPredictor

    options = GestaltConfig().with_overrides(["single_pass.click_windows=1.0"]).single_pass
    predictor = SinglePassPredictor.from_pretrained(tiny_single_pass_dir, options)
    image, click = np.zeros((200, 200, 3), np.uint8), PointPrompt(100, 100)
    predictor.forward = network = _ScaleBlind(predictor.resolution)
    assert iou(predictor.visible_in_frame(predictor.predict(image, click), click, 200, 200), network.whole) > 0.9
    assert len(network.calls) == 2, "confidence 0.81: no fallback"
    # Doubted (0.3 x 0.3), but the scene mode's grid clicks again where a mask is missing.
    predictor.forward = network = _ScaleBlind(predictor.resolution, whole_iou=0.3)
    predictor.options.click_windows = "0.5"
    predictor.predict_clicks(image, [click], fallback=False)
    assert len(network.calls) == 2
    # The first answer is a candidate too: fallback answers less sure than it lose.
    predictor.options.click_fallback_below = 0.3  # the part's 0.25 is doubted
    network.calls.clear()
    found = predictor.predict_clicks(image, [click])[0]
    assert len(network.calls) == 4 and iou(predictor.visible_in_frame(found, click, 200, 200), network.part) > 0.9


@pytest.mark.parametrize("prompt", [PointPrompt(70, 60), BoxPrompt(44, 34, 96, 86)])
def test_grabcut_redraws_the_edges_the_network_is_unsure_of(tiny_single_pass_dir, prompt):
    from gestalt_ros.single_pass.predictor import PassResult, SinglePassPredictor

    rng = np.random.default_rng(0)
    image = np.full((120, 160, 3), (60, 140, 60), np.uint8)
    image[40:80, 50:90] = (210, 30, 30)
    image = (image + rng.integers(-12, 12, image.shape)).clip(0, 255).astype(np.uint8)
    truth = np.zeros((120, 160), bool)
    truth[40:80, 50:90] = True
    # The network's map over a 128 px window at r = 64 (two frame pixels a crop pixel): unsure
    # (0.7) over the object and an 8 px ring around it, sure of its core and of the far background.
    visible = np.full((64, 64), 0.001, np.float32)
    visible[16:44, 21:49] = 0.7
    visible[24:36, 29:41] = 0.999
    result = PassResult(CropWindow(0, 0, 128, 128), visible, visible, 0.9, 0.9)
    refined = GestaltConfig().with_overrides(["single_pass.grabcut_side=64"]).single_pass
    plain = GestaltConfig().with_overrides(["single_pass.grabcut_refine=false"]).single_pass
    predictor = SinglePassPredictor.from_pretrained(tiny_single_pass_dir, refined)
    mask = predictor.visible_in_frame(result, prompt, *truth.shape, image)
    assert iou(mask, truth) > 0.9
    assert iou(predictor.visible_in_frame(result, prompt, *truth.shape), truth) < 0.6  # no image: the threshold
    predictor.options = plain
    assert np.array_equal(
        predictor.visible_in_frame(result, prompt, *truth.shape, image),
        predictor.visible_in_frame(result, prompt, *truth.shape),
    )


@pytest.mark.parametrize(
    "wandered",
    ["elsewhere", "off_the_click", "empty"],
)
def test_a_grabcut_that_lost_the_object_leaves_the_network_mask(tiny_single_pass_dir, monkeypatch, wandered):
    import gestalt_ros.single_pass.predictor as module

    image = np.zeros((60, 80, 3), np.uint8)
    visible = np.full((64, 64), 0.001, np.float32)
    visible[16:40, 16:40] = 0.8  # the network's mask: a square around the click
    result = module.PassResult(CropWindow(0, 0, 64, 64), visible, visible, 0.9, 0.9)
    answer = np.zeros((60, 80), bool)
    if wandered == "elsewhere":
        answer[40:60, 50:80] = True  # holds the click's row and column nowhere
        answer[28, 28] = True  # but the clicked pixel itself, so only the overlap rule rejects it
    elif wandered == "off_the_click":
        answer[16:40, 16:40] = True  # the same square but a hole at the click
        answer[26:31, 26:31] = False
    monkeypatch.setattr(module, "grabcut", lambda *a: answer.copy())
    predictor = module.SinglePassPredictor.from_pretrained(tiny_single_pass_dir, GestaltConfig().single_pass)
    click = PointPrompt(28, 28)
    network = predictor.visible_in_frame(result, click, 60, 80)
    assert np.array_equal(predictor.visible_in_frame(result, click, 60, 80, image), network)
    answer[16:40, 16:40] = True  # a GrabCut that redrew the edges is taken
    answer[16:40, 38:40] = False
    assert np.array_equal(predictor.visible_in_frame(result, click, 60, 80, image), answer[:60, :80] & ~_far(answer))


def _far(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` not connected to the square at (16:40, 16:40)."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels != labels[20, 20]


@pytest.mark.parametrize(
    "windows, message",
    [("0.5,big", "comma-separated numbers"), ("0.05", "must lie in"), (",".join(["0.5"] * 9), "at most 8")],
)
@pytest.mark.parametrize("key", ["click_windows", "click_fallback_windows"])
def test_click_windows_are_checked(windows, message, key):
    with pytest.raises(ConfigError, match=message):
        GestaltConfig().with_overrides([f"single_pass.{key}={windows}"])


@pytest.mark.parametrize("from_prompt_pass", [True, False])
def test_the_amodal_stage_reuses_the_pass_that_found_the_visible_mask(
    tiny_single_pass_dir, scene_image, from_prompt_pass
):
    image, visible = scene_image
    cfg = GestaltConfig().with_overrides(
        [
            f"single_pass.weights={tiny_single_pass_dir}",
            "visible.method=single_pass",
            "amodal.method=single_pass",
            "single_pass.refine_passes=1",
            "single_pass.click_fallback_windows=",  # two passes a click, the last one answering
            f"single_pass.amodal_from_prompt_pass={from_prompt_pass}",
            "amodal.keep_attached=false",
        ]
    )
    pipeline = GestaltPipeline.from_config(cfg)
    predictor = pipeline.components.segmenter.predictor
    assert pipeline.components.amodal.predictor is predictor, "both stages share one network"
    calls, results = [], []
    forward = predictor.forward

    def counted(image, prompt, windows):
        calls.append(type(prompt[0] if isinstance(prompt, list) else prompt).__name__)
        results.append(forward(image, prompt, windows))
        return results[-1]

    predictor.forward = counted
    pipeline.set_image(image)
    for prompt in (interior_point(visible), prompt_from_mask("box", visible)):
        calls.clear()
        result = pipeline.predict(prompt)
        kind = type(prompt).__name__
        if from_prompt_pass:  # the click's last pass (or the box's only one) gave both masks
            assert calls == [kind] * len(calls) and len(calls) == (2 if kind == "PointPrompt" else 1)
            last = results[-1][0]
            expected = last.window.paste(last.amodal, *visible.shape, linear=True) > 0.5
            assert np.array_equal(result.amodal_mask, expected | result.visible_mask)
        else:
            assert calls[-1] == "MaskPrompt" and calls[:-1] == [kind] * (len(calls) - 1)
    calls.clear()
    pipeline.predict(MaskPrompt(visible))  # a mask prompt has no earlier pass to take
    assert calls == ["MaskPrompt"]
    # A pass remembered for one frame is never taken for another frame's mask.
    pipeline.predict(interior_point(visible))
    calls.clear()
    other = image.copy()
    pipeline.set_image(other)
    mask = pipeline.components.segmenter.predict(MaskPrompt(visible))
    pipeline.components.amodal.estimate(other, mask, cfg.completion, cfg.amodal, 0)
    assert calls == ["MaskPrompt"]


def _scenes(ycb_root: Path) -> list:
    from gestalt_ros.data.synthetic import SceneConfig, iter_scenes
    from gestalt_ros.data.ycb import HELDOUT_OBJECTS

    return list(iter_scenes(3, 7, HELDOUT_OBJECTS, SceneConfig(image_size=96), ycb_root))


def test_the_scene_store_keeps_exact_masks(ycb_root):
    scenes = _scenes(ycb_root)
    store = store_scenes(scenes)
    both = SceneStore.concatenate([store, store])
    assert len(both) == 2 * len(store) and both.scene_of[len(store)] == len(scenes)
    kept = [(i, o) for i, s in enumerate(scenes) for o in s.objects if o.visible.any()]
    assert len(kept) == len(store)
    for m, (i, obj) in enumerate(kept):
        assert store.scene_of[m] == i
        assert np.array_equal(store.amodal_mask(m), obj.amodal)
        assert np.array_equal(store.labels[i] == store.local[m] + 1, obj.visible)


def test_training_examples_prompt_their_own_target(ycb_root):
    store = store_scenes(_scenes(ycb_root))
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(40):
        ex = sample_example(store, int(rng.integers(len(store))), rng, 64, 0.05, 2.5, ExampleConfig())
        if ex is None:
            continue
        kinds.add(ex["kind"])
        assert ex["image"].shape == (64, 64, 3) and ex["prompt"].shape == (3, 64, 64)
        assert not (ex["visible"] & ~ex["amodal"]).any()
        maps = ex["prompt"]
        if ex["kind"] == "mask":
            assert np.array_equal(maps[2].astype(bool), ex["visible"])
        elif ex["kind"] == "point":
            peak = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
            assert ex["visible"][peak] or ex["visible"].sum() < 4  # the click is on the target
        else:
            covered = (maps[1] > 0) & ex["visible"]
            assert covered.sum() >= 0.7 * ex["visible"].sum()  # a jittered box around the target
    assert kinds == {"point", "box", "mask"}


def test_photo_targets_take_the_configured_size(ycb_root, monkeypatch):
    import gestalt_ros.data.single_pass_examples as examples

    store = store_scenes(_scenes(ycb_root))
    side = min(store.images[0].shape[:2])
    sizes = []
    place = examples.place
    monkeypatch.setattr(examples, "place", lambda shape, size, *a: sizes.append(size / side) or place(shape, size, *a))
    cfg = ExampleConfig(photo_target=1.0, photo_target_size=(0.6, 0.9), pasted_occluder=0.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        sample_example(store, 0, rng, 64, 0.05, 2.5, cfg)
    assert len(sizes) == 20 and 0.6 <= min(sizes) and max(sizes) <= 0.9 and max(sizes) - min(sizes) > 0.1


def test_the_committed_cpu_config_fits_an_hour():
    from gestalt_ros.train.single_pass import SinglePassTrainConfig

    root = Path(__file__).resolve().parents[1] / "config" / "train"
    for path in sorted(root.glob("single_pass_cpu*.yaml")):
        cfg = SinglePassTrainConfig.from_yaml(path)
        assert cfg.device == "cpu" and 0 < cfg.max_minutes <= 55, path  # rendering takes the rest of the hour


def test_a_tiny_training_run_writes_a_loadable_model(tmp_path, ycb_root, capsys):
    from gestalt_ros.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "kind: single_pass\nscenes: 4\nworkers: 1\nbatch_size: 4\nsteps: 3\nwarmup_steps: 1\nloader_workers: 0\n"
        "threads: 1\nscene: {image_size: 64}\nobjects: [YcbPowerDrill, YcbTomatoSoupCan]\n"
        "model: {resolution: 64, decoder_channels: [16, 16, 8, 8, 8]}\n"
    )
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--ycb-root",
                str(ycb_root),
                "--out",
                str(out),
                "--quiet",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    model = SinglePassNet.from_pretrained(out)
    training = model.config.training
    assert training["steps_done"] == 3 and training["scenes"] == 4
    assert 0.0 <= training["train_visible_iou_last_200"] <= 1.0
    branch = tmp_path / "branch.yaml"
    branch.write_text(
        config.read_text().replace("model: {", "trainable: amodal_branch\nmodel: {amodal_branch: 2, ")
        + f"init_from: {out}\n"
    )
    args = ["--ycb-root", str(ycb_root), "--quiet", "--cache-dir", str(tmp_path / "cache")]
    assert main(["train", "--config", str(branch), "--out", str(tmp_path / "branched"), *args]) == 0
    branched = SinglePassNet.from_pretrained(tmp_path / "branched")
    assert branched.config.amodal_branch == 2 and branched.config.training["steps_done"] == 3
    before, after = model.state_dict(), branched.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "an amodal-only run moved a shared weight"
    # amodal_up.j is grown from up.(2 + j), the last two of the four levels, then trained
    grown_from = {k: f"up.{2 + int(k.split('.')[1])}.{k.split('.', 2)[2]}" for k in after if k.startswith("amodal_up.")}
    assert any(not torch.equal(after[k], before[source]) for k, source in grown_from.items())
    head = tmp_path / "head.yaml"
    head.write_text(config.read_text() + f"trainable: iou_head\niou_target: frame\ninit_from: {out}\n")
    assert main(["train", "--config", str(head), "--out", str(tmp_path / "head"), *args]) == 0
    moved = SinglePassNet.from_pretrained(tmp_path / "head").state_dict()
    changed = {k for k in before if not torch.equal(before[k], moved[k])}
    assert changed and all(k.startswith("iou.") for k in changed), changed
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: single_pass\nlerning_rate: 1\n")
    fails_in_one_line(["train", "--config", str(bad), "--out", str(out)], capsys, "lerning_rate")
    fails_in_one_line(["train", "--config", str(tmp_path / "none.yaml"), "--out", str(out)], capsys, "does not exist")
    bad.write_text("kind: single_pass\ntrainable: amodal_branch\n")
    fails_in_one_line(["train", "--config", str(bad), "--out", str(out)], capsys, "needs init_from")
    bad.write_text("kind: single_pass\ntrainable: iou_head\n")
    fails_in_one_line(["train", "--config", str(bad), "--out", str(out)], capsys, "needs init_from")
    bad.write_text("kind: single_pass\niou_target: image\n")
    fails_in_one_line(["train", "--config", str(bad), "--out", str(out)], capsys, "iou_target")


def test_the_frame_iou_counts_the_truth_outside_the_window_as_missed():
    from gestalt_ros.train.single_pass import mask_losses

    target = torch.zeros(2, 2, 8, 8)
    target[:, :, 2:6, 2:6] = 1  # 16 pixels of truth in each window
    logits = target * 20 - 10  # a perfect mask in the window
    iou, valid = torch.full((2, 2), 0.5), torch.ones(2, dtype=torch.bool)
    in_window = mask_losses(logits, iou, target, valid)
    assert in_window["visible_iou"].item() == pytest.approx(1.0) and in_window["iou"].item() == pytest.approx(0.25)
    # the first example's object has as much again outside its window: its frame IoU is 0.5
    framed = mask_losses(logits, iou, target, valid, torch.tensor([[16.0, 16.0], [0.0, 0.0]]))
    assert framed["iou"].item() == pytest.approx((0.0 + 0.0 + 0.25 + 0.25) / 4)


def test_an_example_reports_the_truth_its_window_leaves_out(ycb_root):
    store = store_scenes(_scenes(ycb_root))
    rng = np.random.default_rng(1)
    # first-pass windows a third of the object's size (but at least 16 pixels: small objects
    # fit) leave much of it outside; a mask prompt's window (2.5 times its box) leaves none
    inside = ExampleConfig(prompt_mix=(1.0, 0.0, 0.0), first_pass=1.0, first_pass_scale=(0.3, 0.35))
    framed = ExampleConfig(prompt_mix=(0.0, 0.0, 1.0))
    small, whole = [], []
    for _ in range(30):
        m = int(rng.integers(len(store)))
        for cfg, out in ((inside, small), (framed, whole)):
            ex = sample_example(store, m, rng, 64, 0.05, 2.5, cfg)
            if ex is not None:
                assert ex["outside"].shape == (2,) and (ex["outside"] >= 0).all()
                out.append(ex["outside"][0] / max(ex["visible"].sum() + ex["outside"][0], 1))
    assert small and whole
    assert np.median(small) > 0.3 and max(whole) == 0.0


@pytest.mark.parametrize("painter", ["parts", "keys"])
def test_painted_parts_stay_inside_the_visible_surface(ycb_root, painter):
    from gestalt_ros.data.single_pass_examples import _paint_keys, _paint_parts

    store = store_scenes(_scenes(ycb_root))
    rng = np.random.default_rng(3)
    painted = apart = 0
    for m in range(min(len(store), 12)):
        s = int(store.scene_of[m])
        image = store.images[s].copy()
        visible = store.labels[s] == int(store.local[m]) + 1
        before = image.copy()
        if painter == "parts":
            _paint_parts(image, visible, store, rng, (0.3, 0.6))
        else:
            _paint_keys(image, visible, rng, (0.5, 0.9))
        changed = (image != before).any(axis=-1)
        assert not (changed & ~visible).any()  # nothing outside the object is touched
        assert changed.sum() < visible.sum()  # a part, never the whole surface
        painted += int(changed.any())
        pieces, _ = cv2.connectedComponents(changed.astype(np.uint8), connectivity=4)
        apart += int(pieces - 1 >= 2)
    assert painted >= 6
    if painter == "keys":  # keys are separate cells: most grids fall apart into several pieces
        assert apart >= 0.7 * painted
