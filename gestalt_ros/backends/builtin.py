"""The built-in stages: GrabCut, the project's own completion model, synthesis + vote,
EfficientNet-Lite0. Everything they need installs from PyPI or is committed under
``model/``, and they run on a CPU. Each builder imports its stage's module when it runs.
"""

from __future__ import annotations

from pathlib import Path

from gestalt_ros.backends import AMODAL_ESTIMATORS, COMPLETERS, RECOGNIZERS, SEGMENTERS
from gestalt_ros.config import GestaltConfig
from gestalt_ros.resources import share_dir


@SEGMENTERS.register("grabcut")
def _grabcut(config: GestaltConfig):
    from gestalt_ros.visible import GrabCutSegmenter

    return GrabCutSegmenter(config.visible)


def embedded_model_dir(config: GestaltConfig) -> Path:
    """``completion.weights`` if set, else the committed embedded model."""
    return Path(config.completion.weights) if config.completion.weights else share_dir("model")


@COMPLETERS.register("embedded")
def _embedded(config: GestaltConfig):
    from gestalt_ros.completion import CompletionModel, CompletionSampler

    return CompletionSampler(CompletionModel.from_pretrained(embedded_model_dir(config)), device=config.device)


@AMODAL_ESTIMATORS.register("synthesis")
def _synthesis(config: GestaltConfig):
    from gestalt_ros.amodal import SynthesisAmodal

    return SynthesisAmodal(COMPLETERS.build(config))


@RECOGNIZERS.register("efficientnet-lite0")
def _efficientnet(config: GestaltConfig):
    from gestalt_ros.recognition import EfficientNetRecognizer

    return EfficientNetRecognizer(device=config.device, top_k=config.recognition.top_k)
