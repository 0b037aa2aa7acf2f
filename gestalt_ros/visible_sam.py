"""Prompt -> visible mask with Segment Anything (``visible.method: sam``), as pix2gestalt's demo.

``set_image`` runs SAM's image encoder once per frame (about 14 s for ViT-B on a 2-core CPU,
milliseconds on a GPU); each prompt then costs one small decoder pass. The encoder's size
(ViT-B, -L or -H, or a reduced one) is read from the checkpoint's tensor shapes, so
``visible.sam_checkpoint`` is all the node needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gestalt_ros.scene.instances import disjoint_instances
from gestalt_ros.types import BoxPrompt, MaskPrompt, PointPrompt, Prompt

PUBLISHED = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}


@dataclass(frozen=True)
class SamEncoderShape:
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]

    @property
    def name(self) -> str:
        return PUBLISHED.get((self.embed_dim, self.depth), "custom")


def encoder_shape(state: dict[str, torch.Tensor]) -> SamEncoderShape:
    """SAM's image-encoder widths from a state dict: heads from the relative-position tables'
    width (the head size), global blocks from their full-size tables."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state:
        raise ValueError(f"not a Segment Anything checkpoint: no {key!r}")
    embed_dim = int(state[key].shape[0])
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
    windowed = min(int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth))
    global_blocks = tuple(
        i for i in range(depth) if int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) > windowed
    )
    return SamEncoderShape(embed_dim, depth, embed_dim // head_dim, global_blocks)


def build_sam(shape: SamEncoderShape):
    """SAM with this encoder and the published prompt encoder and mask decoder (random weights)."""
    builder = importlib.import_module("segment_anything.build_sam")._build_sam  # the one builder of all sizes
    return builder(shape.embed_dim, shape.depth, shape.num_heads, list(shape.global_attn_indexes))


def load_sam(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """A SAM model from a segment-anything checkpoint file, its size read from the weights."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"visible.sam_checkpoint: no such file {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_sam(encoder_shape(state))
    model.load_state_dict(state)
    return model.to(device).eval()


class SamInstances:
    """Every object's visible part, without a prompt: SAM's automatic mask generator over a
    grid of ``points_per_side``² clicks, made disjoint (``scene.instances: sam``)."""

    def __init__(self, checkpoint: str | Path, points_per_side: int, min_area: float, device="cpu") -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.generator = SamAutomaticMaskGenerator(load_sam(checkpoint, device), points_per_side=points_per_side)
        self.min_area = min_area

    def visible_masks(self, image: np.ndarray, seed: int = 0) -> list[np.ndarray]:
        proposals = self.generator.generate(image)
        masks = [p["segmentation"].astype(bool) for p in proposals]
        scores = [float(p["predicted_iou"]) * float(p["stability_score"]) for p in proposals]
        return disjoint_instances(masks, scores, self.min_area)


class SamSegmenter:
    """Points and boxes through ``SamPredictor``; a mask prompt is the answer already."""

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
        from segment_anything import SamPredictor

        model = load_sam(checkpoint, device)
        self.shape = encoder_shape(model.state_dict())
        self.predictor = SamPredictor(model)
        self._size: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Embed the frame (SAM's image encoder): the expensive part, once per frame."""
        self.predictor.set_image(image, image_format="RGB")
        self._size = image.shape[:2]

    def predict(self, prompt: Prompt) -> np.ndarray:
        """A prompt on the set image -> H x W bool; a click keeps the best-scored of SAM's three masks."""
        if self._size is None:
            raise RuntimeError("call set_image(image) before predict(prompt)")
        if isinstance(prompt, MaskPrompt):
            return prompt.mask
        if isinstance(prompt, PointPrompt):
            masks, scores, _ = self.predictor.predict(
                point_coords=np.array([[prompt.x, prompt.y]]), point_labels=np.array([1]), multimask_output=True
            )
            mask = masks[int(np.argmax(scores))]
            fallback = np.zeros(self._size, bool)
            fallback[int(prompt.y), int(prompt.x)] = True
        else:
            assert isinstance(prompt, BoxPrompt)
            box = np.array([prompt.x0, prompt.y0, prompt.x1, prompt.y1])
            mask = self.predictor.predict(box=box, multimask_output=False)[0][0]
            fallback = np.zeros(self._size, bool)
            fallback[int(prompt.y0) : int(np.ceil(prompt.y1)), int(prompt.x0) : int(np.ceil(prompt.x1))] = True
        # an empty answer (possible with untrained or mismatched weights) falls back to the prompt itself
        return mask.astype(bool) if mask.any() else fallback
