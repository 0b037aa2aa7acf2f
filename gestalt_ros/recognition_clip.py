"""Label the completed object with CLIP, zero-shot (``recognition.model: open_clip``), as the paper does.

The vocabulary (``recognition.vocabulary``: a comma-separated list or a file with one name
per line; empty: the ImageNet-1k names) is embedded once, at load, through a few prompt
templates; each object then costs one image embedding. Weights come from a local file
(``recognition.clip_pretrained``): no model hub is needed or asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "a cropped photo of a {}.")


def read_vocabulary(spec: str) -> list[str]:
    """``""`` -> ImageNet-1k names; an existing file -> its non-empty lines; else comma-separated names."""
    if not spec:
        from gestalt_ros.recognition import imagenet_categories

        return imagenet_categories()
    path = Path(spec)
    names = path.read_text().splitlines() if path.is_file() else spec.split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ValueError(f"recognition.vocabulary {spec!r} names no class")
    return names


class OpenClipRecognizer:
    """Zero-shot classifier: cosine similarity of the image to each class's text embedding."""

    def __init__(
        self,
        model_name: str,
        pretrained: str | Path,
        vocabulary: list[str],
        device: str | torch.device = "cpu",
        top_k: int = 5,
    ) -> None:
        import open_clip

        if not Path(pretrained).is_file():
            raise FileNotFoundError(
                f"recognition.clip_pretrained: no such file {pretrained!r} (a local open_clip or OpenAI checkpoint)"
            )
        self.device = torch.device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(pretrained), device=self.device
        )
        self.model.eval()
        self.vocabulary = list(vocabulary)
        self.top_k = min(top_k, len(self.vocabulary))
        tokenizer = open_clip.get_tokenizer(model_name)
        with torch.no_grad():
            tokens = tokenizer([t.format(name) for name in self.vocabulary for t in TEMPLATES]).to(self.device)
            text = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
            text = text.view(len(self.vocabulary), len(TEMPLATES), -1).mean(dim=1)
            self.text_embeddings = torch.nn.functional.normalize(text, dim=-1)

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        """RGB uint8 images of any size -> per image, the top-k (label, probability) pairs."""
        from PIL import Image

        if not images:
            return []
        batch = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(im))) for im in images])
        features = torch.nn.functional.normalize(self.model.encode_image(batch.to(self.device)).float(), dim=-1)
        probs = (self.model.logit_scale.exp().float() * features @ self.text_embeddings.T).softmax(dim=-1)
        scores, index = probs.topk(self.top_k, dim=-1)
        return [
            [(self.vocabulary[j], float(s)) for s, j in zip(row_s.tolist(), row_i.tolist())]
            for row_s, row_i in zip(scores, index)
        ]
