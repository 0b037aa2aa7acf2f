import json

import pytest

from gestalt_ros.cli import main
from gestalt_ros.config import ConfigError, GestaltConfig


def test_config_prints_the_committed_yaml(capsys):
    assert main(["config"]) == 0
    assert capsys.readouterr().out == GestaltConfig().to_ros_yaml()


def test_config_applies_overrides(capsys):
    assert main(["config", "--flat", "--set", "completion.num_samples=6"]) == 0
    assert json.loads(capsys.readouterr().out)["completion.num_samples"] == 6


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="did you mean"):
        main(["config", "--set", "amodal.white_treshold=3"])


def test_node_arguments_go_to_ros(monkeypatch):
    seen = {}
    import gestalt_ros.ros.node as node

    monkeypatch.setattr(node, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    main(["node", "--ros-args", "-p", "device:=cpu"])
    assert seen["argv"] == ["--ros-args", "-p", "device:=cpu"]
