"""The stage contract: one registry per stage, each stage chosen by its own config key.

| stage | key | built in |
|---|---|---|
| prompt -> visible mask | ``visible.method`` | ``grabcut`` |
| crop -> whole-object samples | ``completion.model`` | ``embedded`` |
| visible mask -> amodal mask | ``amodal.method`` | ``synthesis`` (completion samples, threshold, vote) |
| object view -> labels | ``recognition.model`` | ``efficientnet-lite0`` |
| image -> every object, in layers | ``scene.method`` | ``sequential`` (layer model), ``prompted`` |

Any combination works: a builder takes the whole ``GestaltConfig`` and reads its own
section. Segmenters have a predictor shape (``set_image`` once per frame, ``predict`` per
prompt), so a model that embeds the image (SAM) does so once for many prompts. Builders
import their heavy libraries inside, so this module, and ``import gestalt_ros``, load no
torch; full-size backends register here the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from gestalt_ros.config import ConfigError, GestaltConfig

if TYPE_CHECKING:  # the contract's types only; builders import what they run
    import numpy as np

    from gestalt_ros.config import AmodalConfig, CompletionConfig
    from gestalt_ros.prompts import CropWindow
    from gestalt_ros.types import AmodalEstimate, Prompt, SceneInstance


class Segmenter(Protocol):
    """Prompt -> visible mask, on the image set last."""

    def set_image(self, image: np.ndarray) -> None:
        """H x W x 3 uint8 RGB: the frame the next prompts refer to (embed it here, once)."""

    def predict(self, prompt: Prompt) -> np.ndarray:
        """A prompt on the set image -> H x W bool visible mask (never empty)."""


class Completer(Protocol):
    """Synthesizes whole objects in a square crop around the visible part."""

    @property
    def resolution(self) -> int:
        """Side of the square crop the model works at, pixels."""

    def window_around(self, visible: np.ndarray) -> CropWindow:
        """The crop window for a visible mask, by the rule the model was trained with."""

    def complete(self, crop: np.ndarray, visible: np.ndarray, options: CompletionConfig, seed: int) -> np.ndarray:
        """(r, r, 3) uint8 crop + (r, r) bool visible -> (N, r, r, C) uint8 samples, C = 3 or 4 (alpha).

        RGB samples are the whole object on white; a fourth channel is the object's alpha.
        The same inputs, options and seed give the same samples on a CPU.
        """


class AmodalEstimator(Protocol):
    """Visible mask -> amodal mask (and the completion it came from, if any)."""

    def estimate(
        self,
        image: np.ndarray,
        visible: np.ndarray,
        completion: CompletionConfig,
        amodal: AmodalConfig,
        seed: int,
    ) -> AmodalEstimate:
        """H x W x 3 uint8 + H x W bool visible -> ``AmodalEstimate`` at the image's resolution."""


class SceneMethod(Protocol):
    """Image -> every object in it, with amodal and visible masks and occlusion layers."""

    def segment(self, image: np.ndarray, seed: int, config: GestaltConfig | None = None) -> list[SceneInstance]:
        """H x W x 3 uint8 -> its objects, front layer first, at the image's resolution.

        ``config``: this call's settings, when a running node has changed its run-time keys
        (``completion.*``, ``amodal.*``) since the method was built; None: the build's."""


class Recognizer(Protocol):
    def __call__(self, images: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        """RGB uint8 images of any size -> per image, the top-k (label, score) pairs."""


T = TypeVar("T")


class Registry(Generic[T]):
    """Builders of one stage by name; ``build`` makes the one the config's key names."""

    def __init__(self, key: str) -> None:
        self.key = key  # the dotted config key that chooses, e.g. "visible.method"
        self._builders: dict[str, Callable[[GestaltConfig], T]] = {}

    def register(self, name: str) -> Callable[[Callable[[GestaltConfig], T]], Callable[[GestaltConfig], T]]:
        """Decorator filing a builder under ``name``; a name can be registered once."""

        def decorator(builder: Callable[[GestaltConfig], T]) -> Callable[[GestaltConfig], T]:
            if name in self._builders:
                raise ValueError(f"{self.key} {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return decorator

    def unregister(self, name: str) -> None:
        del self._builders[name]

    def names(self) -> list[str]:
        return sorted(self._builders)

    def build(self, config: GestaltConfig) -> T:
        name = config.to_flat()[self.key]
        if name not in self._builders:
            close = difflib.get_close_matches(name, self._builders, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {self.key} {name!r}{hint} (known: {', '.join(self.names())})")
        return self._builders[name](config)


SEGMENTERS: Registry[Segmenter] = Registry("visible.method")
COMPLETERS: Registry[Completer] = Registry("completion.model")
AMODAL_ESTIMATORS: Registry[AmodalEstimator] = Registry("amodal.method")
RECOGNIZERS: Registry[Recognizer] = Registry("recognition.model")
SCENE_METHODS: Registry[SceneMethod] = Registry("scene.method")


@dataclass
class Components:
    """The stages a pipeline chains (see pipeline.GestaltPipeline)."""

    segmenter: Segmenter
    amodal: AmodalEstimator
    recognizer: Recognizer


def build_components(config: GestaltConfig) -> Components:
    """Each stage from its registry, by the config's keys (loads weights: seconds)."""
    return Components(
        segmenter=SEGMENTERS.build(config),
        amodal=AMODAL_ESTIMATORS.build(config),
        recognizer=RECOGNIZERS.build(config),
    )


from gestalt_ros.backends import builtin  # noqa: E402,F401  (registers the built-in stages)
