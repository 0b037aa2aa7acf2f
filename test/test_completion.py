import numpy as np
import pytest
import torch

from gestalt_ros.completion import CompletionModel, CompletionSampler, encode_condition


@pytest.fixture(scope="module")
def sampler(tiny_model_dir):
    return CompletionSampler(CompletionModel.from_pretrained(tiny_model_dir))


def _inputs(r=16):
    crop = np.random.default_rng(0).integers(0, 255, (r, r, 3), dtype=np.uint8)
    visible = np.zeros((r, r), bool)
    visible[4:10, 4:10] = True
    return crop, visible


def test_save_load_round_trip_keeps_weights(tiny_model_dir):
    a = CompletionModel.from_pretrained(tiny_model_dir)
    b = CompletionModel.from_pretrained(tiny_model_dir)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert a.config.resolution == 16 and a.config.patch_size == 2


def test_condition_encoding_ranges():
    crop, visible = _inputs()
    cond = encode_condition(crop, visible)
    assert cond.shape == (1, 4, 16, 16)
    assert cond.min() >= -1 and cond.max() <= 1
    assert set(cond[0, 3].unique().tolist()) == {-1.0, 1.0}


def test_samples_are_batched_seeded_and_distinct(sampler):
    crop, visible = _inputs()
    a = sampler(crop, visible, num_samples=3, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    b = sampler(crop, visible, num_samples=3, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    c = sampler(crop, visible, num_samples=3, num_inference_steps=2, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b), "same seed must give the same completions"
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1]), "each sample starts from its own noise"


def test_guidance_changes_the_output(sampler):
    crop, visible = _inputs()
    plain = sampler(crop, visible, num_samples=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    guided = sampler(
        crop,
        visible,
        num_samples=1,
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert not np.array_equal(plain, guided)


def test_bad_inputs_are_rejected(sampler):
    crop, visible = _inputs()
    with pytest.raises(ValueError, match="16x16x3"):
        sampler(crop[:8], visible)
    with pytest.raises(ValueError, match=">= 1"):
        sampler(crop, visible, num_samples=0)


def test_missing_model_directory_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="gestalt.json"):
        CompletionModel.from_pretrained(tmp_path)


def test_strength_below_one_starts_from_the_visible_part(sampler):
    """With almost no noise left to remove, the output stays near the visible part on white."""
    crop, visible = _inputs()
    out = sampler(
        crop, visible, num_samples=2, num_inference_steps=10, strength=0.1, generator=torch.Generator().manual_seed(0)
    )
    full = sampler(crop, visible, num_samples=2, num_inference_steps=10, generator=torch.Generator().manual_seed(0))
    start = np.where(visible[..., None], crop, 255).astype(float)
    assert np.abs(out - start).mean() < np.abs(full - start).mean()


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_mirror_runs_every_second_sample_on_the_mirrored_crop(sampler, strength):
    """Sample 1 of a mirrored batch is sample 1 of the mirrored crop, mirrored back; sample 0 is untouched."""
    crop, visible = _inputs()
    crop[:, :8] = 255  # not symmetric, so mirroring matters

    def run(c, v, mirror):
        return sampler(
            np.ascontiguousarray(c),
            np.ascontiguousarray(v),
            num_samples=2,
            num_inference_steps=3,
            strength=strength,
            mirror=mirror,
            generator=torch.Generator().manual_seed(4),
        )

    mirrored = run(crop, visible, True)
    plain = run(crop, visible, False)
    of_mirror = run(crop[:, ::-1], visible[:, ::-1], False)
    np.testing.assert_allclose(mirrored[0], plain[0], atol=1)
    np.testing.assert_allclose(mirrored[1], of_mirror[1][:, ::-1], atol=1)
    assert np.abs(mirrored[1].astype(int) - plain[1]).max() > 10


def test_zero_terminal_snr_schedule():
    from dataclasses import replace

    from conftest import TINY_MODEL

    from gestalt_ros.completion import make_scheduler

    assert make_scheduler(TINY_MODEL).alphas_cumprod[-1] > 0
    assert make_scheduler(replace(TINY_MODEL, rescale_betas_zero_snr=True)).alphas_cumprod[-1] == 0


def test_an_rgba_model_synthesizes_alpha_from_the_visible_part(tmp_path):
    """RGBA models return 4 channels; image-to-image starts their alpha at the visible mask."""
    from dataclasses import replace

    from conftest import TINY_MODEL

    torch.manual_seed(0)
    CompletionModel(replace(TINY_MODEL, synthesize_alpha=True)).save_pretrained(tmp_path)
    rgba = CompletionSampler(CompletionModel.from_pretrained(tmp_path))
    crop, visible = _inputs()
    out = [
        rgba(
            crop, visible, num_samples=2, num_inference_steps=10, strength=s, generator=torch.Generator().manual_seed(0)
        )
        for s in (0.1, 1.0)
    ]
    assert out[0].shape == (2, 16, 16, 4)
    start = visible * 255.0
    near, far = (np.abs(o[..., 3] - start).mean() for o in out)
    assert near < far
