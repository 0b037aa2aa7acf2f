"""Backend registry: a backend turns a ``GestaltConfig`` into the pipeline's stage components.

``embedded`` (the default) uses models this project ships; full-size backends (SAM,
pix2gestalt, open_clip) register here too, under their own names, and build their heavy
imports inside the builder so ``import gestalt_ros`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gestalt_ros.config import ConfigError, GestaltConfig

if TYPE_CHECKING:  # the stage contract's types only; builders import what they run
    import numpy as np
    import torch

    from gestalt_ros.prompts import CropWindow
    from gestalt_ros.types import Prompt


class Segmenter(Protocol):
    def __call__(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        """H x W x 3 uint8 RGB + prompt -> H x W bool visible mask (never empty)."""


class Completer(Protocol):
    """Synthesizes whole objects in a square crop around the visible part."""

    @property
    def resolution(self) -> int:
        """Side of the square crop the model works at, pixels."""

    def window_around(self, visible: np.ndarray) -> CropWindow:
        """The crop window for a visible mask, by the rule the model was trained with."""

    def __call__(
        self,
        crop: np.ndarray,
        visible: np.ndarray,
        num_samples: int,
        num_inference_steps: int,
        guidance_scale: float,
        eta: float,
        generator: torch.Generator | None,
        strength: float,
        mirror: bool,
    ) -> np.ndarray:
        """(r, r, 3) uint8 crop + (r, r) bool visible -> (N, r, r, C) uint8, C = 3 or 4 (alpha)."""


class Recognizer(Protocol):
    def __call__(self, images: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        """RGB uint8 images of any size -> per image, the top-k (label, score) pairs."""


@dataclass
class Components:
    """The three stages a pipeline chains (see pipeline.GestaltPipeline)."""

    segmenter: Segmenter
    completer: Completer
    recognizer: Recognizer


Builder = Callable[[GestaltConfig], Components]
_REGISTRY: dict[str, Builder] = {}


def register_backend(name: str) -> Callable[[Builder], Builder]:
    """Decorator filing a builder under ``name``; a name can be registered once."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"backend {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_backends() -> list[str]:
    return sorted(_REGISTRY)


def build_components(config: GestaltConfig) -> Components:
    if config.backend not in _REGISTRY:
        raise ConfigError(f"unknown backend {config.backend!r}; known: {list_backends()}")
    return _REGISTRY[config.backend](config)


from gestalt_ros.backends import embedded  # noqa: E402,F401  (registers "embedded")
