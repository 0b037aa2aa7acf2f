from pathlib import Path

import pytest

from gestalt_ros.config import PRESETS, ConfigError, GestaltConfig

ROOT = Path(__file__).resolve().parents[1]


def test_committed_ros_yaml_matches_the_defaults():
    committed = (ROOT / "config" / "gestalt.yaml").read_text()
    assert committed == GestaltConfig().to_ros_yaml(), "regenerate: gestalt-ros config > config/gestalt.yaml"
    assert GestaltConfig.from_yaml_file(str(ROOT / "config" / "gestalt.yaml")) == GestaltConfig()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_committed_preset_files_match_the_presets(preset):
    command = f"gestalt-ros config --preset {preset} > config/{preset}.yaml"
    expected = GestaltConfig().with_preset(preset)
    assert (ROOT / "config" / f"{preset}.yaml").read_text() == expected.to_ros_yaml(command), f"regenerate: {command}"
    assert GestaltConfig.from_yaml_file(str(ROOT / "config" / f"{preset}.yaml")) == expected
    assert expected.completion.model == "pix2gestalt"


def test_flat_round_trip_and_types():
    flat = GestaltConfig().to_flat()
    assert flat["completion.num_samples"] == 4
    assert GestaltConfig.from_flat(flat) == GestaltConfig()


def test_overrides_are_typed():
    cfg = GestaltConfig().with_overrides(
        ["completion.num_samples=8", "amodal.union_visible=false", "amodal.vote_threshold=0.25"]
    )
    assert cfg.completion.num_samples == 8 and cfg.amodal.union_visible is False and cfg.amodal.vote_threshold == 0.25
    assert GestaltConfig().completion.num_samples == 4, "overrides must not change the defaults"


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'completion.num_samples'"):
        GestaltConfig().with_overrides(["completion.num_sample=3"])


@pytest.mark.parametrize(
    "item",
    [
        "amodal.vote_threshold=1.5",
        "completion.num_samples=0",
        "ros.image_reliability=sometimes",
        "device=tpu",
        "completion.num_samples=2.5",
    ],
)
def test_bad_values_are_rejected(item):
    with pytest.raises(ConfigError):
        GestaltConfig().with_overrides([item])


def test_readme_documents_every_parameter_with_its_default():
    readme = (ROOT / "README.md").read_text()
    for key, value in GestaltConfig().to_flat().items():
        shown = str(value).lower() if isinstance(value, bool) else ("''" if value == "" else str(value))
        assert f"| `{key}` | `{shown}` |" in readme, f"README parameter table lacks {key} = {shown}"
