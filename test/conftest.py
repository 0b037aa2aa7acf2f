"""Shared fixtures: tiny random-weight models, CPU only, loopback-only ROS discovery."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

# Every test process (and the subprocesses it starts) talks DDS on loopback only, in a
# domain of its own, so parallel runs and other machines never see each other.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 199)))

from gestalt_ros.completion import CompletionModel, CompletionModelConfig  # noqa: E402
from gestalt_ros.config import GestaltConfig  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY_MODEL = CompletionModelConfig(
    resolution=16,
    patch_size=2,
    block_out_channels=(16, 32),
    layers_per_block=1,
    attention_levels=(1,),
    norm_num_groups=8,
    attention_head_dim=8,
    crop_scale=2.0,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: full-size architectures or long runs")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16x16 completion model with seeded random weights, saved like the real one."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_model")
    CompletionModel(TINY_MODEL).save_pretrained(directory)
    return directory


@pytest.fixture()
def tiny_pipeline_config(tiny_model_dir: Path) -> GestaltConfig:
    """The embedded backend with the tiny model, 2 samples and 2 DDIM steps."""
    cfg = GestaltConfig()
    cfg.completion.weights = str(tiny_model_dir)
    cfg.completion.num_samples = 2
    cfg.completion.num_inference_steps = 2
    return cfg.validate()


@pytest.fixture()
def ycb_root() -> Path:
    root = SHARED / "data" / "ycb"
    if not root.is_dir():
        pytest.skip(f"YCB meshes not found at {root} (the shared/ folder beside the repository)")
    return root


@pytest.fixture()
def scene_image() -> tuple[np.ndarray, np.ndarray]:
    """A 48x64 image: a red disc partly hidden by a blue bar, and the disc's visible mask."""
    image = np.full((48, 64, 3), 200, np.uint8)
    yy, xx = np.mgrid[:48, :64]
    disc = (yy - 24) ** 2 + (xx - 30) ** 2 < 12**2
    image[disc] = (220, 30, 30)
    bar = (xx >= 34) & (xx < 44)
    image[bar] = (30, 30, 220)
    return image, disc & ~bar
