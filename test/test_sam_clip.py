"""SAM and open_clip as stages: published sizes on the meta device, reduced ones through the real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gestalt_ros.config import ConfigError, GestaltConfig
from gestalt_ros.pipeline import GestaltPipeline
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt
from gestalt_ros.visible_sam import SamEncoderShape, build_sam, encoder_shape

PUBLISHED_SAM = {
    "vit_b": (SamEncoderShape(768, 12, 12, (2, 5, 8, 11)), 93_735_472),
    "vit_l": (SamEncoderShape(1024, 24, 16, (5, 11, 17, 23)), 312_342_832),
    "vit_h": (SamEncoderShape(1280, 32, 16, (7, 15, 23, 31)), 641_090_608),
}
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_SAM))
def test_sam_sizes_are_the_published_ones_and_are_read_back_from_the_weights(name):
    shape, count = PUBLISHED_SAM[name]
    with torch.device("meta"):
        sam = build_sam(shape)
    assert sum(p.numel() for p in sam.parameters()) == count
    assert encoder_shape(sam.state_dict()) == shape and shape.name == name


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory) -> Path:
    """A reduced SAM (32-wide, 2-block encoder; the published decoder) with random weights, as a file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(build_sam(SamEncoderShape(32, 2, 2, (1,))).state_dict(), path)
    return path


def test_sam_segments_prompts_through_the_checkpoint_path(tiny_pipeline_config, sam_checkpoint, scene_image):
    image, visible = scene_image
    cfg = tiny_pipeline_config.with_overrides(["visible.method=sam", f"visible.sam_checkpoint={sam_checkpoint}"])
    pipeline = GestaltPipeline.from_config(cfg)
    assert pipeline.components.segmenter.shape.name == "custom"
    pipeline.set_image(image)
    for prompt in (PointPrompt(28, 24), BoxPrompt(16, 12, 34, 37)):
        result = pipeline.predict(prompt)
        assert result.visible_mask.shape == visible.shape and result.visible_mask.dtype == bool
        assert result.visible_mask.any() and (result.amodal_mask >= result.visible_mask).all()
    assert np.array_equal(pipeline.predict(MaskPrompt(visible)).visible_mask, visible), "a mask passes through"


def test_sam_without_a_checkpoint_says_which_parameter(tiny_pipeline_config, tmp_path):
    with pytest.raises(ConfigError, match="visible.sam_checkpoint"):
        GestaltPipeline.from_config(tiny_pipeline_config.with_overrides(["visible.method=sam"]))
    with pytest.raises(FileNotFoundError, match="no such file"):
        GestaltPipeline.from_config(
            tiny_pipeline_config.with_overrides(["visible.method=sam", f"visible.sam_checkpoint={tmp_path / 'x.pth'}"])
        )


@pytest.mark.parametrize("name, count", [("ViT-B-32", 151_277_313), ("ViT-L-14", 427_616_513)])
def test_open_clip_sizes_are_the_published_ones(name, count):
    import open_clip

    model = open_clip.create_model(name, pretrained=None, device="meta")
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory) -> tuple[str, Path]:
    """A reduced open_clip model registered under its own name, with random weights as a file."""
    import open_clip

    root = tmp_path_factory.mktemp("clip")
    (root / "test-tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / "test-tiny-clip.json")
    torch.manual_seed(0)
    path = root / "tiny_clip.pt"
    torch.save(open_clip.create_model("test-tiny-clip").state_dict(), path)
    return "test-tiny-clip", path


@pytest.mark.parametrize("view", ["deoccluded", "completion"])
def test_open_clip_labels_from_its_vocabulary(tiny_pipeline_config, clip_weights, scene_image, tmp_path, view):
    image, visible = scene_image
    name, path = clip_weights
    vocabulary = tmp_path / "classes.txt"
    vocabulary.write_text("red disc\nblue bar\n\ncoffee mug\n")
    cfg = tiny_pipeline_config.with_overrides(
        [
            "recognition.model=open_clip",
            f"recognition.clip_model={name}",
            f"recognition.clip_pretrained={path}",
            f"recognition.vocabulary={vocabulary}",
            f"recognition.view={view}",
        ]
    )
    pipeline = GestaltPipeline.from_config(cfg)
    recognizer = pipeline.components.recognizer
    assert recognizer.vocabulary == ["red disc", "blue bar", "coffee mug"] and recognizer.text_embeddings.shape == (
        3,
        32,
    )
    result = pipeline(image, MaskPrompt(visible))
    labels = [label for label, _ in result.top_k]
    scores = [score for _, score in result.top_k]
    assert sorted(labels) == ["blue bar", "coffee mug", "red disc"], "top_k is capped by the vocabulary"
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1.0) < 1e-5
    again = GestaltConfig().with_overrides(["recognition.vocabulary=cat, dog"])
    from gestalt_ros.recognition_clip import read_vocabulary

    assert read_vocabulary(again.recognition.vocabulary) == ["cat", "dog"] and len(read_vocabulary("")) == 1000


def test_open_clip_without_weights_says_which_parameter(tiny_pipeline_config):
    with pytest.raises(ConfigError, match="recognition.clip_pretrained"):
        GestaltPipeline.from_config(tiny_pipeline_config.with_overrides(["recognition.model=open_clip"]))


def test_the_papers_stages_together_in_segment_eval_and_the_node(
    tmp_path, sam_checkpoint, clip_weights, coffee_cocoa, capsys
):
    """SAM + pix2gestalt + open_clip (reduced, random weights) through the three entry points."""
    from conftest import check_objects_message

    from gestalt_ros.cli import main
    from gestalt_ros.pix2gestalt.convert import convert

    fixture = Path(__file__).parent / "data" / "pix2gestalt_tiny"
    convert(fixture / "tiny_pix2gestalt.ckpt", tmp_path / "p2g")
    name, clip_path = clip_weights
    stages = [
        "visible.method=sam",
        f"visible.sam_checkpoint={sam_checkpoint}",
        "completion.model=pix2gestalt",
        f"completion.weights={tmp_path / 'p2g'}",
        "amodal.method=synthesis",
        "completion.num_samples=2",
        "completion.num_inference_steps=2",
        "recognition.model=open_clip",
        f"recognition.clip_model={name}",
        f"recognition.clip_pretrained={clip_path}",
        "recognition.vocabulary=cup,saucer,table",
    ]
    settings = [a for s in stages for a in ("--set", s)]
    image = fixture / "input_image.png"
    assert main(["segment", str(image), "--point", "128,128", "--out", str(tmp_path / "seg"), *settings]) == 0
    (entry,) = check_objects_message(json.loads((tmp_path / "seg" / "result.json").read_text()))
    assert entry["label"] in ("cup", "saucer", "table")

    out = tmp_path / "eval"
    argv = ["eval", "--annotations", str(coffee_cocoa), "--images-root", str(coffee_cocoa), "--out", str(out)]
    assert main([*argv, "--quiet", *settings]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_objects"] == 2 and metrics["stages"] == {
        "visible": "sam",
        "completion": "pix2gestalt",
        "amodal": "synthesis",
        "recognition": "open_clip",
    }

    assert main(["demo", "--out", str(tmp_path / "demo"), "--scenes", "1", *settings]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["node_status"]["prompts"]["processed"] == 3 and summary["node_status"]["prompts"]["failed"] == 0
    capsys.readouterr()


def test_sam_finds_disjoint_instances_for_the_prompted_scene(tiny_pipeline_config, sam_checkpoint, scene_image):
    from gestalt_ros.scene.instances import disjoint_instances
    from gestalt_ros.scene.pipeline import ScenePipeline

    # The best proposal keeps its pixels; a part of it is dropped; a mostly new one keeps the rest.
    whole = np.zeros((20, 20), bool)
    whole[2:12, 2:12] = True
    part = np.zeros_like(whole)
    part[4:8, 4:8] = True
    other = np.zeros_like(whole)
    other[8:18, 8:18] = True
    speck = np.zeros_like(whole)
    speck[18:20, 0:2] = True  # 4 pixels: below 0.015 of the 400-pixel frame (6)
    out = disjoint_instances([part, whole, other, speck], [0.5, 0.9, 0.8, 0.95], min_area=0.015)
    assert len(out) == 2 and np.array_equal(out[0], whole) and np.array_equal(out[1], other & ~whole)
    assert disjoint_instances([speck], [1.0], min_area=0.01)[0].sum() == 4  # 4 pixels pass 0.01
    image, _ = scene_image
    cfg = tiny_pipeline_config.with_overrides(
        ["scene.method=prompted", "scene.instances=sam", f"visible.sam_checkpoint={sam_checkpoint}"]
        + ["scene.sam_points_per_side=4", "scene.min_area=0.001", "amodal.method=synthesis"]
    )
    result = ScenePipeline.from_config(cfg)(image)  # random SAM weights: any number of objects
    seen = np.zeros(image.shape[:2], bool)
    for obj in result.objects:
        assert not (obj.visible_mask & seen).any() and (obj.amodal_mask >= obj.visible_mask).all()
        seen |= obj.visible_mask
    with pytest.raises(ConfigError, match="visible.sam_checkpoint"):
        ScenePipeline.from_config(tiny_pipeline_config.with_overrides(["scene.method=prompted", "scene.instances=sam"]))
