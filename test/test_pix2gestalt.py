"""pix2gestalt: the converter and the pipeline against the reference implementation's outputs.

``data/pix2gestalt_tiny`` is a reduced-width checkpoint in the original format with random
weights, its inputs, the initial noise and what the reference code computed from them (its
README says what each array is). Full-size architectures are checked on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gestalt_ros.pix2gestalt import CheckpointError
from gestalt_ros.pix2gestalt.architecture import REFERENCE, infer, parameter_counts
from gestalt_ros.pix2gestalt.convert import convert, load_original
from gestalt_ros.pix2gestalt.pipeline import Pix2GestaltPipeline, reference_timesteps

FIXTURE = Path(__file__).parent / "data" / "pix2gestalt_tiny"
CKPT = FIXTURE / "tiny_pix2gestalt.ckpt"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "expected.npz"))


@pytest.fixture(scope="module")
def inputs() -> tuple[np.ndarray, np.ndarray]:
    image = cv2.cvtColor(cv2.imread(str(FIXTURE / "input_image.png")), cv2.COLOR_BGR2RGB)
    return image, cv2.imread(str(FIXTURE / "input_mask.png"), cv2.IMREAD_GRAYSCALE) > 127


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("p2g") / "ema"
    convert(CKPT, out)
    return out


@pytest.fixture(scope="module")
def pipe(converted: Path) -> Pix2GestaltPipeline:
    return Pix2GestaltPipeline.from_pretrained(converted)


def _close(actual: torch.Tensor | np.ndarray, reference: np.ndarray, atol: float) -> None:
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else actual
    np.testing.assert_allclose(actual, reference, atol=atol, rtol=0)


def test_widths_come_from_the_checkpoint_and_the_folder_records_them(converted: Path) -> None:
    arch = infer(load_original(CKPT))
    assert arch.unet.model_channels == 32 and arch.unet.channel_mult == (1, 1, 1, 1) and arch.unet.context_dim == 96
    assert arch.unet.attention_resolutions == (4, 2, 1) and arch.unet.in_channels == 12
    assert arch.vae.ch == 32 and arch.vae.ch_mult == (1, 1, 1, 2) and arch.clip.width == 128 and arch.clip.layers == 2
    manifest = json.loads((converted / "pix2gestalt.json").read_text())
    assert manifest["unet_weights"] == "ema" and manifest["architecture"]["unet"]["model_channels"] == 32
    for part in ("unet", "vae", "image_encoder", "cc_projection", "scheduler"):
        assert (converted / part).is_dir(), part
    assert list((converted / "unet").glob("*.safetensors")) and not list(converted.rglob("*.bin"))


def test_conditions_match_the_reference(pipe: Pix2GestaltPipeline, inputs, expected) -> None:
    pixels, mask = pipe.preprocess(*inputs)
    _close(pipe.clip_pixel_values(pixels), expected["clip_pixel_values"], 1e-5)
    with torch.no_grad():
        _close(pipe.image_encoder(pipe.clip_pixel_values(pixels)), expected["clip_image_embeds"], 1e-4)
    context = pipe.encode_cross_attention(pixels)
    _close(context.expand(2, -1, -1), expected["c_crossattn"], 1e-4)
    concat = pipe.encode_concat(pixels, mask)
    _close(concat[:, :4], expected["image_latent_mode"], 1e-4)
    _close(concat[:, 4:], expected["mask_latent_mode"], 1e-4)


def test_first_unet_outputs_match_the_ema_weights_not_the_live_ones(
    pipe: Pix2GestaltPipeline, inputs, expected, tmp_path: Path
) -> None:
    pixels, mask = pipe.preprocess(*inputs)
    context, concat = pipe.encode_cross_attention(pixels), pipe.encode_concat(pixels, mask)
    timesteps = pipe.timesteps(5, reference_schedule=True)
    assert timesteps.tolist() == expected["timesteps"].tolist()
    x_t = torch.from_numpy(expected["x_T"])
    zeros = (torch.zeros_like(context), torch.zeros_like(concat))
    _close(pipe.predict_noise(x_t, timesteps[0], *zeros, 1.0), expected["eps_uncond_first"], 1e-4)
    cond = pipe.predict_noise(x_t, timesteps[0], context, concat, 1.0)
    _close(cond, expected["eps_cond_first"], 1e-4)
    assert np.abs(cond.numpy() - expected["eps_cond_first_nonema"]).max() > 0.1, "the EMA weights were converted"

    convert(CKPT, tmp_path / "live", ema=False)
    live = Pix2GestaltPipeline.from_pretrained(tmp_path / "live")
    live_cond = live.predict_noise(x_t, timesteps[0], context, concat, 1.0)
    _close(live_cond, expected["eps_cond_first_nonema"], 1e-4)


def test_final_images_match_the_reference(pipe: Pix2GestaltPipeline, inputs, expected) -> None:
    x_t = torch.from_numpy(expected["x_T"])
    out = pipe(*inputs, num_samples=2, num_inference_steps=5, eta=0.0, latents=x_t, reference_schedule=True)
    assert out.images.shape == (2, 256, 256, 3) and out.images.dtype == np.float32
    _close(out.images.transpose(0, 3, 1, 2), expected["images_float"], 1e-3)
    as_uint8 = (255.0 * out.images).astype(np.uint8).astype(int)  # the reference truncates
    assert np.abs(as_uint8 - expected["images_uint8"]).max() <= 1
    # ancestral sampling (eta 1) is seeded: same generator, same images; another seed, others
    a = pipe(*inputs, num_samples=1, num_inference_steps=3, generator=torch.Generator().manual_seed(1)).images
    b = pipe(*inputs, num_samples=1, num_inference_steps=3, generator=torch.Generator().manual_seed(1)).images
    c = pipe(*inputs, num_samples=1, num_inference_steps=3, generator=torch.Generator().manual_seed(2)).images
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_reference_schedule_rule() -> None:
    assert reference_timesteps(5) == [601, 401, 201, 1]
    steps = reference_timesteps(200)
    assert len(steps) == 199 and steps[0] == 991 and steps[-1] == 1
    assert len(reference_timesteps(7)) == 7
    with pytest.raises(ValueError, match="cannot run 3 steps"):
        reference_timesteps(3)


def test_full_size_architectures_have_the_published_parameter_counts() -> None:
    counts = parameter_counts(REFERENCE)
    assert counts == {"unet": 859_544_004, "vae": 83_653_863, "image_encoder": 303_966_208, "cc_projection": 590_592}


def test_bad_files_get_errors_that_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_original(tmp_path / "epoch=000005.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(CKPT.read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match="truncated"):
        load_original(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a pix2gestalt"):
        load_original(foreign)
    state = load_original(CKPT)
    partial = tmp_path / "partial.ckpt"
    torch.save(
        {"state_dict": {k: v for k, v in state.items() if not k.startswith("first_stage_model.decoder.conv_out")}},
        partial,
    )
    with pytest.raises(CheckpointError, match="first_stage_model.decoder.conv_out"):
        convert(partial, tmp_path / "out")
    no_ema = tmp_path / "no_ema.ckpt"
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("model_ema.")}}, no_ema)
    with pytest.raises(CheckpointError, match="--no-ema"):
        convert(no_ema, tmp_path / "out")
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": Path("not-a-tensor")}, pickled)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_original(pickled)
    assert load_original(pickled, trust_pickle=True).keys() == state.keys()


def test_the_pipeline_stage_runs_pix2gestalt(converted: Path, scene_image) -> None:
    from gestalt_ros.config import GestaltConfig
    from gestalt_ros.pipeline import GestaltPipeline
    from gestalt_ros.types import MaskPrompt

    image, visible = scene_image
    for crop in ("object", "image"):
        cfg = GestaltConfig().with_overrides(
            [
                "completion.model=pix2gestalt",
                f"completion.weights={converted}",
                "completion.num_samples=2",
                "completion.num_inference_steps=2",
                f"completion.crop={crop}",
            ]
        )
        result = GestaltPipeline.from_config(cfg)(image, MaskPrompt(visible))
        assert result.completions.shape == (2, 256, 256, 3) and result.amodal_mask.shape == visible.shape
        assert (result.amodal_mask >= visible).all() and result.completion.shape == image.shape
        if crop == "image":
            assert result.crop_box == (0, 0, 64, 48), "the whole frame, squashed to the model's square"


def test_pix2gestalt_without_weights_says_how_to_get_them() -> None:
    from gestalt_ros.backends import build_components
    from gestalt_ros.config import ConfigError, GestaltConfig

    with pytest.raises(ConfigError, match="gestalt-ros convert"):
        build_components(GestaltConfig().with_overrides(["completion.model=pix2gestalt"]))


def test_convert_and_segment_from_the_command_line(tmp_path: Path, capsys) -> None:
    from gestalt_ros.cli import main

    assert main(["convert", "--ckpt", str(CKPT), "--out", str(tmp_path / "p2g")]) == 0
    assert "ema UNet weights" in capsys.readouterr().out
    settings = ["--set", f"completion.weights={tmp_path / 'p2g'}", "--set", "completion.num_inference_steps=2"]
    argv = ["segment", str(FIXTURE / "input_image.png"), "--mask", str(FIXTURE / "input_mask.png")]
    assert (
        main([*argv, "--out", str(tmp_path / "seg"), "--preset", "pix2gestalt_fast", "--set", "device=cpu", *settings])
        == 0
    )
    result = json.loads((tmp_path / "seg" / "result.json").read_text())
    assert result["objects"][0]["error"] is None and (tmp_path / "seg" / "amodal_mask.png").is_file()
    with pytest.raises(SystemExit) as info:
        main(["convert", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "x")])
    assert info.value.code == 2 and "no such checkpoint" in capsys.readouterr().err
