"""pix2gestalt as the pipeline's completion stage (``completion.model: pix2gestalt``)."""

from __future__ import annotations

import numpy as np
import torch

from gestalt_ros.config import CompletionConfig
from gestalt_ros.pix2gestalt.pipeline import Pix2GestaltPipeline
from gestalt_ros.prompts import CropWindow

# ``completion.crop: object``: a square of this many times the visible box around it.
OBJECT_CROP_SCALE = 2.5


class Pix2GestaltCompleter:
    """Whole objects on white from pix2gestalt, in the window ``completion.crop`` names.

    ``image`` squashes the whole frame to the model's 256 x 256, as the reference demo does;
    ``object`` crops a square around the visible part first, so a small object in a camera
    frame keeps its detail instead of shrinking to a few latent pixels.
    """

    def __init__(self, pipe: Pix2GestaltPipeline, crop: str = "object") -> None:
        if crop not in ("object", "image"):
            raise ValueError(f"crop must be 'object' or 'image', got {crop!r}")
        self.pipe = pipe
        self.crop = crop

    @property
    def resolution(self) -> int:
        return self.pipe.architecture.image_size

    def window_around(self, visible: np.ndarray) -> CropWindow:
        if self.crop == "image":
            return CropWindow(0, 0, visible.shape[1], visible.shape[0])
        return CropWindow.around(visible, OBJECT_CROP_SCALE)

    def complete(self, crop: np.ndarray, visible: np.ndarray, options: CompletionConfig, seed: int) -> np.ndarray:
        """(256, 256, 3) uint8 + (256, 256) bool -> (N, 256, 256, 3) uint8 (truncated, as the reference's output)."""
        out = self.pipe(
            crop,
            visible,
            **options.sampling(),
            generator=torch.Generator().manual_seed(seed),
            reference_schedule=options.reference_schedule,
        )
        return (255.0 * out.images).astype(np.uint8)
