"""Scene mode: occlusion layers, instance splitting, the layer model, its training, the
pipeline and its evaluation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from gestalt_ros.config import GestaltConfig
from gestalt_ros.eval.annotations import AnnotatedObject
from gestalt_ros.eval.scene import ScenePrediction, baselines, match, score_image, summarize_scene
from gestalt_ros.scene.instances import split_layer
from gestalt_ros.scene.layers import hidden_counts, occlusion_layers, peel_layers


def _rect(shape, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def stack() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three overlapping squares, front to back (a hides b hides c), and a loose d."""
    shape = (40, 60)
    amodal = [_rect(shape, 5, 15, 5, 15), _rect(shape, 10, 20, 10, 20), _rect(shape, 15, 25, 15, 25)]
    amodal.append(_rect(shape, 30, 38, 40, 58))
    visible = [amodal[0], amodal[1] & ~amodal[0], amodal[2] & ~amodal[1] & ~amodal[0], amodal[3]]
    return visible, amodal


def test_layers_follow_who_hides_whom(stack):
    visible, amodal = stack
    counts = hidden_counts(visible, amodal)
    assert counts[0, 1] == 25 and counts[1, 0] == 0 and counts[1, 2] == 25 and counts[0, 2] == 0
    layers, in_front = occlusion_layers(visible, amodal)
    assert layers == [0, 1, 2, 0]
    assert in_front == [[], [0], [1], []]
    # In any order of the objects the answer is the same.
    order = [3, 2, 0, 1]
    layers2, _ = occlusion_layers([visible[i] for i in order], [amodal[i] for i in order])
    assert layers2 == [layers[i] for i in order]
    # A cycle is broken at the object least hidden by the others.
    counts = np.array([[0, 5, 0], [0, 0, 5], [1, 0, 0]])
    assert peel_layers([[2], [0], [1]], counts) == [0, 1, 2]


def test_touching_objects_of_one_layer_are_split_at_their_cores():
    shape = (30, 60)
    layer = _rect(shape, 5, 25, 5, 30) | _rect(shape, 5, 25, 30, 55)  # one component, two objects
    cores = _rect(shape, 10, 20, 10, 24) | _rect(shape, 10, 20, 36, 50)
    parts = split_layer(layer, cores, min_area=20)
    assert len(parts) == 2
    assert np.array_equal(parts[0] | parts[1], layer) and not (parts[0] & parts[1]).any()
    left = parts[0] if parts[0][15, 10] else parts[1]
    assert left[:, :28].sum() > 0.9 * left.sum()
    # Without cores a component is one instance; blobs under min_area are dropped.
    blob = _rect(shape, 0, 3, 0, 3)
    assert len(split_layer(layer | blob, np.zeros(shape, bool), min_area=20)) == 1


def _truth(visible, amodal, orders) -> list[AnnotatedObject]:
    return [
        AnnotatedObject(Path("x.png"), str(k), None, v, a, o)
        for k, (v, a, o) in enumerate(zip(visible, amodal, orders))
    ]


def test_scene_scores_count_matches_order_and_ignored_predictions(stack):
    visible, amodal = stack
    truth = _truth(visible, amodal, [0, 1, 2, 0])
    layers = [0, 1, 2, 0]

    def by_layer(i, j):
        return 0.5 if layers[i] == layers[j] else float(layers[i] < layers[j])

    perfect = score_image(truth, ScenePrediction(list(amodal), list(visible), by_layer))
    m = summarize_scene([perfect])
    assert m["recall"] == m["precision"] == 1.0 and m["miou_matched"] == 100.0
    assert m["n_pairs"] == 2 and m["order_accuracy"] == 1.0  # (a, b) and (b, c) overlap; d overlaps nothing
    reversed_order = score_image(truth, ScenePrediction(list(amodal), list(visible), lambda i, j: by_layer(j, i)))
    assert summarize_scene([reversed_order])["order_accuracy"] == 0.0
    whole = baselines(visible)["visible_whole"]
    m = summarize_scene([score_image(truth, whole)])
    assert m["order_accuracy"] == 0.5 and m["miou_matched"] < 100.0  # the hidden parts are missing
    # A spurious prediction lowers precision, unless it lies in the ignored region.
    extra = _rect(visible[0].shape, 30, 38, 0, 10)
    noisy = ScenePrediction([*amodal, extra], [*visible, extra], by_layer)
    assert summarize_scene([score_image(truth, noisy)])["precision"] == 0.8
    assert summarize_scene([score_image(truth, noisy, ignore=extra)])["precision"] == 1.0
    assert match([amodal[0]], [amodal[1]]) == []  # IoU 25 / 175 is no match


def _scene_config(weights: Path, *more: str) -> GestaltConfig:
    return GestaltConfig().with_overrides(
        [f"scene.weights={weights}", "scene.method=sequential", "scene.steps=2", "scene.num_samples=2"]
        + ["scene.min_area=0.001", *more]
    )


@pytest.mark.parametrize("threshold", [0.05, 0.5])
def test_the_sequential_method_returns_consistent_layers(tiny_scene_dir, threshold):
    from gestalt_ros.scene.sequential import SequentialScene

    cfg = _scene_config(tiny_scene_dir, f"scene.threshold={threshold}")
    method = SequentialScene.from_pretrained(tiny_scene_dir, cfg.scene)
    image = np.random.default_rng(0).integers(0, 255, (48, 72, 3), dtype=np.uint8)
    found = method.segment(image, seed=3)
    again = method.segment(image, seed=3)
    assert [o.layer for o in found] == [o.layer for o in again]
    assert all(np.array_equal(a.amodal_mask, b.amodal_mask) for a, b in zip(found, again))
    assert [o.layer for o in found] == sorted(o.layer for o in found)
    seen = np.zeros(image.shape[:2], bool)
    for k, obj in enumerate(found):
        assert obj.amodal_mask.shape == image.shape[:2] and obj.visible_mask.any()
        assert not (obj.visible_mask & ~obj.amodal_mask).any()
        assert not (obj.visible_mask & seen).any()  # each pixel shows one object at most
        seen |= obj.visible_mask
        assert all(found[i].layer < obj.layer for i in obj.occluded_by) and all(i < k for i in obj.occluded_by)
        assert 0.0 <= obj.score <= 1.0
    if threshold == 0.05:
        assert found  # a low threshold keeps the random model's mean mask


def _store(ycb_root: Path):
    from gestalt_ros.data.scene_store import store_scenes
    from gestalt_ros.data.synthetic import SceneConfig, iter_scenes
    from gestalt_ros.data.ycb import HELDOUT_OBJECTS

    return store_scenes(iter_scenes(3, 7, HELDOUT_OBJECTS, SceneConfig(image_size=96), ycb_root))


def test_layer_examples_condition_on_earlier_layers(ycb_root):
    from gestalt_ros.data.scene_examples import LayerExampleConfig, core, sample_layer_example, scene_masks

    store = _store(ycb_root)
    rng = np.random.default_rng(0)
    plain = LayerExampleConfig(photo_background=0.0, max_pasted=0, frame_scale=(1.0, 1.0), photometric=0.0)
    seen_k = set()
    for _ in range(30):
        s = int(rng.integers(len(store.images)))
        ex = sample_layer_example(store, s, rng, 64, LayerExampleConfig())
        assert ex["image"].shape == (64, 64, 3) and 0 <= ex["k"] <= ex["depth"]
        assert not (ex["core"] & ~ex["layer"]).any()
        assert (ex["k"] == ex["depth"]) == (not ex["layer"].any())  # past the last layer: empty
        assert (ex["k"] == 0) == (not ex["before"].any())
        seen_k.add(ex["k"])
        # Without augmentation, layer 0 is exactly the union of the unhidden objects.
        ex = sample_layer_example(store, s, np.random.default_rng(1), 96, plain)
        visible, amodal = scene_masks(store, s)
        layers, _ = occlusion_layers(visible, amodal)
        want = np.logical_or.reduce([a for a, k in zip(amodal, layers) if k == ex["k"]] or [np.zeros((96, 96), bool)])
        got = ex["layer"][:, ::-1] if not np.array_equal(ex["layer"], want) else ex["layer"]  # maybe mirrored
        assert np.array_equal(got, want)
    assert {0, 1} <= seen_k
    mask = _rect((20, 20), 2, 18, 2, 18)
    assert core(mask, 0.5).sum() < mask.sum() and core(mask, 0.5)[10, 10]


def test_a_tiny_scene_training_run_feeds_the_scene_pipeline(tmp_path, ycb_root, tiny_single_pass_dir):
    from gestalt_ros.cli import main
    from gestalt_ros.scene.pipeline import ScenePipeline
    from gestalt_ros.scene.sequential import LayerNet

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "kind: scene\nscenes: 4\nworkers: 1\nbatch_size: 4\nsteps: 3\nwarmup_steps: 1\nloader_workers: 0\n"
        f"threads: 1\nscene: {{image_size: 64}}\nobjects: [YcbPowerDrill, YcbTomatoSoupCan]\ninit_weights: {tiny_single_pass_dir}\n"
        "model: {resolution: 64, decoder_channels: [32, 24, 16, 16, 8]}\n"
    )
    out = tmp_path / "layers"
    args = ["train", "--config", str(config), "--ycb-root", str(ycb_root), "--out", str(out), "--quiet"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    model = LayerNet.from_pretrained(out)
    assert model.config.training["steps_done"] == 3 and model.config.training["config"]["kind"] == "scene"
    # init_weights started it from the single-pass network: its frozen stem is that one's.
    from gestalt_ros.single_pass.model import SinglePassNet

    source = SinglePassNet.from_pretrained(tiny_single_pass_dir)
    assert torch.equal(model.stem[0].weight, source.stem[0].weight)
    cfg = _scene_config(out, "scene.threshold=0.05")
    result = ScenePipeline.from_config(cfg)(np.full((40, 56, 3), 120, np.uint8))
    ids = result.visible_ids()
    assert ids.shape == (40, 56) and ids.dtype == np.uint16
    for obj in result.objects:
        assert (ids == obj.id).sum() == obj.visible_mask.sum()
        entry = obj.summary()
        assert entry["layer"] == obj.layer and entry["occluded_by"] == obj.occluded_by and entry["label"]


def test_eval_scene_mode_writes_metrics_for_both_methods(
    tmp_path, ycb_root, tiny_scene_dir, tiny_model_dir, tiny_single_pass_dir, capsys
):
    import json

    from gestalt_ros.cli import main

    data = tmp_path / "scenes"
    assert main(["synth", "--out", str(data), "--scenes", "2", "--seed", "5", "--size", "64", "--quiet"]) == 0
    clicks = ["scene.instances=clicks", f"single_pass.weights={tiny_single_pass_dir}", "scene.click_points_per_side=4"]
    for name, method, extra in (
        ("sequential", "sequential", []),
        ("layers", "prompted", ["scene.instances=layers"]),
        ("clicks", "prompted", clicks),
    ):
        out = tmp_path / name
        sets = [
            f"scene.weights={tiny_scene_dir}",
            "scene.steps=1",
            "scene.num_samples=1",
            "scene.threshold=0.05",
            *extra,
        ]
        sets += [f"scene.method={method}", f"completion.weights={tiny_model_dir}", "completion.num_samples=2"]
        sets += ["amodal.method=synthesis", "completion.num_inference_steps=1"]
        argv = ["eval", "--mode", "scene", "--annotations", str(data / "annotations.json"), "--images-root", str(data)]
        argv += ["--out", str(out), "--quiet"]
        for item in sets:
            argv += ["--set", item]
        assert main(argv) == 0
        capsys.readouterr()
        metrics = json.loads((out / "metrics.json").read_text())
        keys = {"recall", "precision", "miou_matched", "miou_matched_occluded", "order_accuracy", "n_pairs"}
        assert keys <= set(metrics["scene"]) and metrics["method"] == method and metrics["n_images"] == 2
        assert metrics["stages"].get("instances") == {"layers": "layers", "clicks": "clicks"}.get(name)
        assert set(metrics["baselines"]) == {"visible_whole", "hull_by_area"}
        assert metrics["scene"]["n_true"] > 0 and metrics["scene"]["seconds_per_image"] > 0
        assert (out / "scene_sheet.png").is_file() and (out / "report.md").is_file()


def test_a_layer_model_can_share_the_single_pass_encoder(tmp_path, tiny_single_pass_dir):
    import shutil

    from gestalt_ros.scene.sequential import LayerModelConfig, LayerNet
    from gestalt_ros.single_pass.model import SinglePassNet
    from gestalt_ros.train.scene import SceneTrainConfig, build_model

    encoder_dir = tmp_path / "single_pass"
    shutil.copytree(tiny_single_pass_dir, encoder_dir)
    cfg = SceneTrainConfig(model=LayerModelConfig(resolution=64, decoder_channels=(32, 24, 16, 16, 8)))
    cfg.model.encoder_from, cfg.model.frozen_stages = str(encoder_dir), 5
    out = tmp_path / "layers"
    model = build_model(cfg, out)
    assert not any(p.requires_grad for p in model.stages.parameters())
    model.save_pretrained(out)
    full = tmp_path / "full"
    LayerNet(LayerModelConfig(resolution=64, decoder_channels=(32, 24, 16, 16, 8)), pretrained=False).save_pretrained(
        full
    )
    # The shared file holds the decoder only; loading takes the encoder from the single-pass model.
    assert (out / "model.safetensors").stat().st_size < 0.5 * (full / "model.safetensors").stat().st_size
    loaded = LayerNet.from_pretrained(out)
    source = SinglePassNet.from_pretrained(encoder_dir)
    assert torch.equal(loaded.stages[3][0]._depthwise_conv.weight, source.stages[3][0]._depthwise_conv.weight)
    x, maps = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    assert torch.allclose(loaded(x, maps)[0], model.eval()(x, maps)[0], atol=1e-2)
    # Another single-pass model in its place is refused.
    other = SinglePassNet(source.config, pretrained=False)
    other.save_pretrained(encoder_dir)
    with pytest.raises(ValueError, match="not the one this model was trained on"):
        LayerNet.from_pretrained(out)
    shutil.rmtree(encoder_dir)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LayerNet.from_pretrained(out)


def test_the_committed_scene_configs_parse_and_the_cpu_ones_fit_an_hour():
    from gestalt_ros.train.scene import SceneTrainConfig

    root = Path(__file__).resolve().parents[1] / "config" / "train"
    configs = {path.name: SceneTrainConfig.from_yaml(path) for path in sorted(root.glob("scene_*.yaml"))}
    assert {"scene_cpu.yaml", "scene_cpu_stage2.yaml", "scene_gpu.yaml"} <= set(configs)
    for name, cfg in configs.items():
        assert cfg.kind == "scene"
        if cfg.device == "cpu":
            assert 0 < cfg.max_minutes <= 55, name  # rendering (or the cache) takes the rest of the hour
    assert (
        configs["scene_gpu.yaml"].device == "cuda"
        and configs["scene_gpu.yaml"].scenes > configs["scene_cpu.yaml"].scenes
    )


def test_click_instances_click_the_foreground_innermost_first_and_skip_found_objects(tiny_single_pass_dir, monkeypatch):
    from types import SimpleNamespace

    from gestalt_ros.config import SinglePassStageConfig
    from gestalt_ros.scene.click_instances import BATCH, ClickInstances, grid_clicks
    from gestalt_ros.single_pass.predictor import PassResult, SinglePassPredictor

    shape = (48, 64)
    left, right = _rect(shape, 8, 40, 4, 28), _rect(shape, 12, 36, 36, 60)
    clicks = grid_clicks(left | right, 8)
    assert clicks and all((left | right)[int(c.y), int(c.x)] for c in clicks), "only foreground points"
    assert len(clicks) == sum(
        (left | right)[int(y), int(x)] for y in (np.arange(8) + 0.5) * 6 for x in (np.arange(8) + 0.5) * 8
    )
    depth = [
        min(c.x - 4, 27 - c.x, c.y - 8, 39 - c.y)
        if left[int(c.y), int(c.x)]
        else min(c.x - 36, 59 - c.x, c.y - 12, 35 - c.y)
        for c in clicks
    ]
    assert depth[0] == max(depth), "the innermost point goes first"

    class Oracle(SinglePassPredictor):
        """The real predictor's plumbing, answering each click with the object under it."""

        def forward(self, image, prompt, windows):
            calls.append(len(windows))
            out = []
            for click, window in zip(prompt, windows):
                truth = left if left[int(click.y), int(click.x)] else right
                r = self.resolution
                out.append(
                    PassResult(
                        window,
                        window.crop_mask(truth, r).astype(np.float32),
                        np.zeros((r, r), np.float32),
                        0.9 if truth is left else 0.8,
                        0.0,
                    )
                )
            return out

    from gestalt_ros.single_pass.model import SinglePassNet

    calls: list[int] = []
    predictor = Oracle(SinglePassNet.from_pretrained(tiny_single_pass_dir), SinglePassStageConfig())
    layers = SimpleNamespace(segment=lambda image, seed: [SimpleNamespace(amodal_mask=left | right)])
    found = ClickInstances(predictor, layers, 8, min_area=0.01).visible_masks(np.zeros((*shape, 3), np.uint8))
    assert len(found) == 2 and not (found[0] & found[1]).any()
    ious = sorted(((m & t).sum() / (m | t).sum() for m in found for t in (left, right)), reverse=True)[:2]
    assert min(ious) > 0.8, "each object found once, whole"
    windows = len(predictor.model.config.click_windows)
    per_click = windows + predictor.options.refine_passes
    assert calls[0] == BATCH * windows, "clicks go through the network in batches"
    assert sum(calls) < per_click * len(clicks), "points inside a found mask are not clicked again"
    import gestalt_ros.single_pass.predictor as module

    refined = []
    monkeypatch.setattr(module, "grabcut", lambda image, seed, *a: refined.append(1) or (seed % 2 == 1))
    ClickInstances(predictor, layers, 8, min_area=0.01).visible_masks(np.zeros((*shape, 3), np.uint8))
    assert not refined, "scene.click_grabcut off: the clicks' masks are the network's"
    again = ClickInstances(predictor, layers, 8, 0.01, grabcut=True).visible_masks(np.zeros((*shape, 3), np.uint8))
    assert len(refined) >= 2 and len(again) == 2, "on: each click's final mask goes through GrabCut"


def test_run_time_changes_reach_the_prompted_scene_method():
    """A running node replaces ScenePipeline.config; the amodal stage of the next frame must see it."""
    from types import SimpleNamespace

    from gestalt_ros.scene.pipeline import ScenePipeline
    from gestalt_ros.scene.prompted import PromptedScene

    shape = (32, 32)
    seen: list[tuple[float, int]] = []

    def estimate(image, visible, completion, amodal, seed):
        seen.append((amodal.vote_threshold, completion.num_samples))
        return SimpleNamespace(amodal_mask=visible, agreement=visible.astype(np.float32), completion=image)

    built = GestaltConfig()
    instances = SimpleNamespace(visible_masks=lambda image, seed: [_rect(shape, 4, 20, 4, 20)])
    method = PromptedScene(instances, SimpleNamespace(estimate=estimate), built)
    pipeline = ScenePipeline(method, lambda views: [[("object", 1.0)] for _ in views], built)
    image = np.zeros((*shape, 3), np.uint8)
    pipeline(image)
    pipeline.config = built.with_overrides(["amodal.vote_threshold=0.3", "completion.num_samples=2"])
    pipeline(image)
    assert seen == [(built.amodal.vote_threshold, built.completion.num_samples), (0.3, 2)]
