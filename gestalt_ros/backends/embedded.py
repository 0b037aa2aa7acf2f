"""The default backend: GrabCut, the project's own completion model, EfficientNet-Lite0.

Everything it needs installs from PyPI or is committed under ``model/``, and it runs on a
CPU.
"""

from __future__ import annotations

from pathlib import Path

from gestalt_ros.backends import Components, register_backend
from gestalt_ros.completion import CompletionModel, CompletionSampler
from gestalt_ros.config import GestaltConfig
from gestalt_ros.recognition import EfficientNetRecognizer
from gestalt_ros.resources import share_dir
from gestalt_ros.visible import GrabCutSegmenter


def model_dir(config: GestaltConfig) -> Path:
    """``completion.weights`` if set, else the committed embedded model."""
    return Path(config.completion.weights) if config.completion.weights else share_dir("model")


@register_backend("embedded")
def build(config: GestaltConfig) -> Components:
    model = CompletionModel.from_pretrained(model_dir(config))
    return Components(
        segmenter=GrabCutSegmenter(config.visible),
        completer=CompletionSampler(model, device=config.device),
        recognizer=EfficientNetRecognizer(device=config.device, top_k=config.recognition.top_k),
    )
