"""Networks made ready to answer, not to train: the same outputs, less work per pass.

Both CPU models here are EfficientNet-Lite0 bodies (the single-pass and layer networks, the
ImageNet recognizer): mostly depthwise convolutions, each followed by a batch norm. Folding
each batch norm into the convolution before it and storing activations channels-last takes
about a quarter off the recognizer's pass and a tenth off the single-pass network's on two
CPU cores (``benchmarks/inference_layout.py``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# efficientnet_lite_pytorch keeps its convolutions and batch norms as named attributes.
_NAMED_PAIRS = (
    ("_conv_stem", "_bn0"),
    ("_expand_conv", "_bn0"),
    ("_depthwise_conv", "_bn1"),
    ("_project_conv", "_bn2"),
    ("_conv_head", "_bn1"),
)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a convolution into it, in place; eval mode.

    Covers ``nn.Sequential(conv, bn, ...)`` and efficientnet_lite_pytorch's named pairs. The
    folded model can no longer be trained or saved as the original: for inference copies.
    """
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                    module._modules[bn_name] = nn.Identity()
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return model


def for_inference(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """``model`` on ``device``, batch norms folded, weights channels-last (in place)."""
    return fold_batch_norms(model.to(device)).to(memory_format=torch.channels_last)
