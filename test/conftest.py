"""Shared fixtures: tiny random-weight models, CPU only, loopback-only ROS discovery."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def tiny_single_pass_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 px single-pass network (the real encoder's architecture, seeded random weights)."""
    from gestalt_ros.single_pass.model import SinglePassConfig, SinglePassNet

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_single_pass")
    config = SinglePassConfig(resolution=64, decoder_channels=(32, 24, 16, 16, 8), click_windows=(0.3, 0.8))
    SinglePassNet(config, pretrained=False).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 px layer model for scene mode (the real encoder's architecture, seeded random weights).

    With ``tiny_scene_settings`` it finds a few objects (some behind others) in the 48x64
    ``scene_image``: plumbing to test, not quality.
    """
    from gestalt_ros.scene.sequential import LayerModelConfig, LayerNet

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_scene")
    LayerNet(LayerModelConfig(resolution=64), pretrained=False).save_pretrained(directory)
    return directory


def tiny_scene_settings(scene_dir: Path) -> list[str]:
    """Overrides for scene mode with the tiny layer model in ``scene_dir``: one sample of one
    step, the layer model alone (the prompted method also runs the amodal stage per object)."""
    return [
        f"scene.weights={scene_dir}",
        "scene.method=sequential",
        "scene.steps=1",
        "scene.num_samples=1",
        "scene.min_area=0.0005",
    ]


def tiny_config(model_dir: Path) -> GestaltConfig:
    """The embedded backend with the tiny model in ``model_dir``, 2 samples and 2 DDIM steps."""
    cfg = GestaltConfig()
    cfg.completion.weights = str(model_dir)
    cfg.completion.num_samples = 2
    cfg.completion.num_inference_steps = 2
    return cfg.validate()


@pytest.fixture()
def tiny_pipeline_config(tiny_model_dir: Path) -> GestaltConfig:
    return tiny_config(tiny_model_dir)


@contextlib.contextmanager
def node_in_own_process(
    config: GestaltConfig, directory: Path, *ros_args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Path, subprocess.Popen]]:
    """``gestalt_node`` in a subprocess with ``config`` as its parameter file (written to ``directory``).

    Yields (log path, process); afterwards the node is stopped with SIGINT, as Ctrl-C would.
    """
    params = directory / "params.yaml"
    params.write_text(config.to_ros_yaml())
    log_path = directory / "node.log"
    command = [sys.executable, "-m", "gestalt_ros.ros.node", "--ros-args", "--params-file", str(params), *ros_args]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield log_path, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture, *words: str) -> None:
    """The command exits with code 2 and one error line naming the problem, no traceback."""
    from gestalt_ros.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "error:" in lines[-1] and len(lines) == 1, err
    for word in words:
        assert word in lines[-1], err


def check_objects_message(message: dict) -> list[dict]:
    """Validate an ``objects`` message against the shipped JSON Schema; return its entries."""
    import jsonschema

    from gestalt_ros.objects_json import schema

    jsonschema.validate(message, schema(), cls=jsonschema.Draft202012Validator)
    return message["objects"]


@pytest.fixture(scope="session")
def ycb_root() -> Path:
    """The bundled YCB models (the held-out objects): what a fresh clone has."""
    from gestalt_ros.data.ycb import bundled_ycb_root

    return bundled_ycb_root()


@pytest.fixture(scope="session")
def coffee_cocoa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A COCOA-format folder made here: a real photo (scikit-image's coffee cup, CC0) as
    ``1.png`` and ``1.json`` with two regions, the cup (whole) and the saucer it hides in
    part (polygons and RLE stored as strings, as COCOA does)."""
    import json

    import cv2
    import skimage.data
    from pycocotools import mask as mask_utils

    root = tmp_path_factory.mktemp("cocoa")
    image = skimage.data.coffee()  # 400 x 600 RGB
    cv2.imwrite(str(root / "1.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    height, width = image.shape[:2]
    cup = np.zeros((height, width), np.uint8)
    cv2.ellipse(cup, (290, 110), (118, 92), 0, 0, 360, 1, -1)
    cv2.rectangle(cup, (178, 110), (400, 250), 1, -1)
    cv2.ellipse(cup, (290, 250), (110, 35), 0, 0, 360, 1, -1)
    saucer = np.zeros((height, width), np.uint8)
    cv2.ellipse(saucer, (278, 232), (202, 152), 0, 0, 360, 1, -1)

    def polygon(mask: np.ndarray) -> str:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return str([float(v) for v in max(contours, key=cv2.contourArea).reshape(-1)])

    hidden = saucer.astype(bool) & cup.astype(bool)
    rle = mask_utils.encode(np.asfortranarray((saucer.astype(bool) & ~hidden).astype(np.uint8)))
    regions = [
        {"segmentation": polygon(cup), "name": "espresso cup ", "occlude_rate": "0", "order": "1"},
        {
            "segmentation": polygon(saucer),
            "name": "dish ",
            "visible_mask": str({"counts": rle["counts"].decode("ascii"), "size": list(rle["size"])}),
            "occlude_rate": str(hidden.sum() / saucer.sum()),
            "order": "2",
        },
    ]
    (root / "1.json").write_text(
        json.dumps({"url": "https://example.invalid/1.png", "image_id": 1, "regions": regions})
    )
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
