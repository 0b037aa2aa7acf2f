"""The built-in stages: GrabCut, the project's single-pass network, the project's own
completion model or pix2gestalt (your converted weights), synthesis + vote, EfficientNet-Lite0.
Each builder imports its stage's module when it runs, so naming a stage costs nothing until
it is built.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from gestalt_ros.backends import AMODAL_ESTIMATORS, COMPLETERS, RECOGNIZERS, SCENE_METHODS, SEGMENTERS
from gestalt_ros.config import ConfigError, GestaltConfig
from gestalt_ros.resources import share_dir


@SEGMENTERS.register("grabcut")
def _grabcut(config: GestaltConfig):
    from gestalt_ros.visible import GrabCutSegmenter

    return GrabCutSegmenter(config.visible)


@SEGMENTERS.register("sam")
def _sam(config: GestaltConfig):
    from gestalt_ros.visible_sam import SamSegmenter

    if not config.visible.sam_checkpoint:
        raise ConfigError("visible.method sam needs visible.sam_checkpoint: a segment-anything checkpoint file")
    return SamSegmenter(config.visible.sam_checkpoint, device=config.device)


def embedded_model_dir(config: GestaltConfig) -> Path:
    """``completion.weights`` if set, else the committed embedded model."""
    return Path(config.completion.weights) if config.completion.weights else share_dir("model")


def single_pass_predictor(config: GestaltConfig):
    """The single-pass network (``single_pass.weights``, else the committed one), built once
    per config even when it serves both the visible and the amodal stage."""
    from gestalt_ros.single_pass.predictor import SinglePassPredictor

    key = (config.single_pass.weights, config.device)
    predictor = _single_pass_cache.get(key)
    if predictor is None:
        weights = Path(config.single_pass.weights) if config.single_pass.weights else share_dir("model") / "single_pass"
        predictor = SinglePassPredictor.from_pretrained(weights, config.single_pass, config.device)
        _single_pass_cache[key] = predictor
    predictor.options = config.single_pass
    return predictor


# Weak: a network lives only as long as a pipeline's stages hold it (cleanup frees it).
_single_pass_cache: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


@SEGMENTERS.register("single_pass")
def _single_pass_visible(config: GestaltConfig):
    from gestalt_ros.single_pass.predictor import SinglePassSegmenter

    return SinglePassSegmenter(single_pass_predictor(config))


@AMODAL_ESTIMATORS.register("single_pass")
def _single_pass_amodal(config: GestaltConfig):
    from gestalt_ros.single_pass.predictor import SinglePassAmodal

    return SinglePassAmodal(single_pass_predictor(config))


@AMODAL_ESTIMATORS.register("both")
def _both(config: GestaltConfig):
    from gestalt_ros.amodal import RefinedSynthesisAmodal, SynthesisAmodal
    from gestalt_ros.single_pass.predictor import SinglePassAmodal

    return RefinedSynthesisAmodal(
        SynthesisAmodal(COMPLETERS.build(config)), SinglePassAmodal(single_pass_predictor(config))
    )


@COMPLETERS.register("embedded")
def _embedded(config: GestaltConfig):
    from gestalt_ros.completion import CompletionModel, CompletionSampler

    return CompletionSampler(CompletionModel.from_pretrained(embedded_model_dir(config)), device=config.device)


@COMPLETERS.register("pix2gestalt")
def _pix2gestalt(config: GestaltConfig):
    import torch

    from gestalt_ros.pix2gestalt.completer import Pix2GestaltCompleter
    from gestalt_ros.pix2gestalt.pipeline import Pix2GestaltPipeline

    options = config.completion
    if not options.weights:
        raise ConfigError(
            "completion.model pix2gestalt needs completion.weights: a folder written by "
            "`gestalt-ros convert --ckpt epoch=000005.ckpt --out DIR` (the weights are not shipped)"
        )
    device = torch.device(config.device)
    precision = options.precision
    if precision == "auto":
        precision = "float16" if device.type == "cuda" else "float32"
    pipe = Pix2GestaltPipeline.from_pretrained(options.weights, device=device, torch_dtype=getattr(torch, precision))
    return Pix2GestaltCompleter(pipe, options.crop)


@AMODAL_ESTIMATORS.register("synthesis")
def _synthesis(config: GestaltConfig):
    from gestalt_ros.amodal import SynthesisAmodal

    return SynthesisAmodal(COMPLETERS.build(config))


@RECOGNIZERS.register("efficientnet-lite0")
def _efficientnet(config: GestaltConfig):
    from gestalt_ros.recognition import EfficientNetRecognizer

    return EfficientNetRecognizer(device=config.device, top_k=config.recognition.top_k)


@RECOGNIZERS.register("open_clip")
def _open_clip(config: GestaltConfig):
    from gestalt_ros.recognition_clip import OpenClipRecognizer, read_vocabulary

    options = config.recognition
    if not options.clip_pretrained:
        raise ConfigError("recognition.model open_clip needs recognition.clip_pretrained: a local weights file")
    return OpenClipRecognizer(
        options.clip_model, options.clip_pretrained, read_vocabulary(options.vocabulary), config.device, options.top_k
    )


def scene_layer_model(config: GestaltConfig):
    """The layer model (``scene.weights``, else the committed one) as a scene method."""
    from gestalt_ros.scene.sequential import SequentialScene

    weights = Path(config.scene.weights) if config.scene.weights else share_dir("model") / "scene_layers"
    return SequentialScene.from_pretrained(weights, config.scene, config.device)


@SCENE_METHODS.register("sequential")
def _sequential_scene(config: GestaltConfig):
    return scene_layer_model(config)


@SCENE_METHODS.register("prompted")
def _prompted_scene(config: GestaltConfig):
    from gestalt_ros.scene.prompted import PromptedScene

    if config.scene.instances == "sam":
        from gestalt_ros.visible_sam import SamInstances

        if not config.visible.sam_checkpoint:
            raise ConfigError("scene.instances sam needs visible.sam_checkpoint: a segment-anything checkpoint file")
        options = config.scene
        instances = SamInstances(
            config.visible.sam_checkpoint, options.sam_points_per_side, options.min_area, config.device
        )
    elif config.scene.instances == "clicks":
        from gestalt_ros.scene.click_instances import ClickInstances

        options = config.scene
        instances = ClickInstances(
            single_pass_predictor(config),
            scene_layer_model(config),
            options.click_points_per_side,
            options.min_area,
            options.click_grabcut,
        )
    else:
        instances = scene_layer_model(config)
    return PromptedScene(instances, AMODAL_ESTIMATORS.build(config), config)
