"""Networks made ready to answer, not to train: the same outputs, less work per pass.

Three of the CPU models here are EfficientNet-Lite0 bodies (the single-pass and layer
networks, the ImageNet recognizer): mostly depthwise convolutions, each followed by a batch
norm and a ReLU6. Folding each batch norm into the convolution before it, storing weights
channels-last, letting each ReLU6 overwrite the fresh convolution output it follows rather
than allocate another, and moving TensorFlow-style "same" padding into the convolution where
it is symmetric all leave the outputs as they were and save time on two CPU cores
(``benchmarks/inference_layout.py``). The completion model's UNet has none of these layers
and gains from channels-last weights alone.
"""

from __future__ import annotations

import torch
from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding
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
_ACTIVATIONS = (nn.ReLU, nn.ReLU6)


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


def fold_same_padding(model: nn.Module) -> int:
    """Move each symmetric "same" padding of efficientnet_lite_pytorch into its convolution
    (one op fewer per layer, the same output); asymmetric ones (stride 2) stay. Returns how many."""
    folded = 0
    for module in model.modules():
        if isinstance(module, Conv2dStaticSamePadding) and isinstance(module.static_padding, nn.ZeroPad2d):
            left, right, top, bottom = module.static_padding.padding
            if left == right and top == bottom:
                module.padding = (top, left)
                module.static_padding = nn.Identity()
                folded += 1
    return folded


def activations_in_place(model: nn.Module) -> int:
    """Let each ReLU/ReLU6 that only ever sees a convolution's fresh output overwrite it.

    Those are efficientnet_lite_pytorch's ``_swish`` (applied to convolution outputs only,
    their batch norms folded or not) and, in an ``nn.Sequential``, an activation right after a
    convolution or after a batch norm that follows one. Returns how many were switched.
    """
    switched = 0

    def switch(activation: nn.Module) -> None:
        nonlocal switched
        if isinstance(activation, _ACTIVATIONS) and not activation.inplace:
            activation.inplace = True
            switched += 1

    for module in model.modules():
        switch(getattr(module, "_swish", None))
        if isinstance(module, nn.Sequential):
            children = list(module)
            for i in range(1, len(children)):
                after_conv = isinstance(children[i - 1], nn.Conv2d)
                after_conv_norm = i >= 2 and isinstance(children[i - 2], nn.Conv2d) and _is_norm(children[i - 1])
                if after_conv or after_conv_norm:
                    switch(children[i])
    return switched


def _is_norm(module: nn.Module) -> bool:
    """A batch norm, or the identity a folded one left behind."""
    return isinstance(module, (nn.BatchNorm2d, nn.Identity))


def for_inference(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """``model`` on ``device``, batch norms and symmetric paddings folded, ReLUs in place,
    weights channels-last (in place)."""
    model = fold_batch_norms(model.to(device))
    fold_same_padding(model)
    activations_in_place(model)
    return model.to(memory_format=torch.channels_last)
