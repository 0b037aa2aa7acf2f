"""``for_inference``: a network prepared to answer gives the outputs it gave before."""

from __future__ import annotations

import copy

import pytest
import torch
from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding
from torch import nn

from gestalt_ros.inference import activations_in_place, fold_same_padding, for_inference
from gestalt_ros.recognition import efficientnet_lite0
from gestalt_ros.single_pass.model import SinglePassConfig, SinglePassNet


def _random_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with running statistics and affine weights that folding must carry over."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def test_the_recognizer_answers_the_same_with_less_work():
    plain = _random_statistics(efficientnet_lite0(pretrained=False))
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        before = plain(x)
    ready = for_inference(copy.deepcopy(plain))
    with torch.inference_mode():
        after = ready(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ready.modules())
    assert all(m.inplace for m in ready.modules() if isinstance(m, nn.ReLU6))
    pads = [m.static_padding for m in ready.modules() if isinstance(m, Conv2dStaticSamePadding)]
    # Stride-1 "same" paddings are symmetric and moved into their convolutions; a stride-2
    # one pads only the bottom and right, which a convolution's padding cannot express.
    kept = [p for p in pads if isinstance(p, nn.ZeroPad2d)]
    assert kept and all(p.padding[0] != p.padding[1] for p in kept)
    assert sum(isinstance(p, nn.Identity) for p in pads) > len(kept)


@pytest.mark.parametrize("branch", [0, 2])
def test_the_single_pass_network_answers_the_same(branch):
    config = SinglePassConfig(resolution=64, decoder_channels=(16, 16, 8, 8, 8), amodal_branch=branch)
    plain = _random_statistics(SinglePassNet(config, pretrained=False))
    image, prompt = torch.randn(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        before = plain(image, prompt)
    ready = for_inference(copy.deepcopy(plain))
    with torch.inference_mode():
        after = ready(image, prompt.contiguous(memory_format=torch.channels_last))
    for a, b in zip(after, before, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert ready.stem[-1].inplace


def test_an_activation_that_may_see_a_callers_tensor_is_left_alone():
    """In place is safe only on a fresh convolution output: ReLU(x) first in a block would
    overwrite the tensor the caller still holds (a skip connection's input, say)."""
    first = nn.Sequential(nn.ReLU(), nn.Conv2d(2, 2, 1))
    after_identity = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Identity(), nn.Identity(), nn.ReLU6())
    after_conv = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.ReLU6())
    assert activations_in_place(first) == 0 and not first[0].inplace
    assert activations_in_place(after_identity) == 0
    assert activations_in_place(after_conv) == 1 and after_conv[2].inplace
    x = torch.randn(1, 2, 4, 4)
    kept = x.clone()
    first.eval()(x)
    assert torch.equal(x, kept)


def test_symmetric_padding_moves_into_the_convolution_and_asymmetric_stays():
    model = nn.Sequential(
        Conv2dStaticSamePadding(3, 4, 3, stride=1, image_size=16, bias=False),
        Conv2dStaticSamePadding(4, 4, 3, stride=2, image_size=16, bias=False),
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    before = model(x)
    assert fold_same_padding(model) == 1
    assert model[0].padding == (1, 1) and isinstance(model[0].static_padding, nn.Identity)
    assert model[1].static_padding.padding == (0, 1, 0, 1)
    torch.testing.assert_close(model(x), before)
