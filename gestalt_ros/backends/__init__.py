"""Backend registry: a backend turns a ``GestaltConfig`` into the pipeline's stage components.

``embedded`` (the default) uses models this project ships; full-size backends (SAM,
pix2gestalt, open_clip) register here too, under their own names, and build their heavy
imports inside the builder so ``import gestalt_ros`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gestalt_ros.config import ConfigError, GestaltConfig


@dataclass
class Components:
    """The three callables a pipeline chains (see pipeline.GestaltPipeline)."""

    segmenter: Any  # (image, prompt) -> visible mask
    # CompletionSampler-like: (crop, visible, ..., mirror) -> completions; .resolution, .window_around(visible)
    completer: Any
    recognizer: Any  # (list of RGB) -> list of top-k (label, score)


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
