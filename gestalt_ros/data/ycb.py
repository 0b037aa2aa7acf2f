"""Which YCB objects the synthetic scenes use, and where their models are.

The repository bundles the four held-out objects (``assets/ycb``: the demo, the held-out
evaluation set and the tests render them). The twelve training objects are not bundled:
training and ``synth --objects train`` take a folder of YCB URDF models passed explicitly
(``--ycb-root``), laid out as ``<root>/<Name>/model.urdf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gestalt_ros.resources import share_dir

TRAIN_OBJECTS: tuple[str, ...] = (
    "YcbBanana",
    "YcbChipsCan",
    "YcbCrackerBox",
    "YcbFoamBrick",
    "YcbGelatinBox",
    "YcbHammer",
    "YcbMasterChefCan",
    "YcbMediumClamp",
    "YcbPear",
    "YcbPottedMeatCan",
    "YcbStrawberry",
    "YcbTennisBall",
)
# Never seen in training; bundled with the package.
HELDOUT_OBJECTS: tuple[str, ...] = (
    "YcbMustardBottle",
    "YcbPowerDrill",
    "YcbTomatoSoupCan",
    "YcbScissors",
)
OBJECT_SETS: dict[str, tuple[str, ...]] = {
    "train": TRAIN_OBJECTS,
    "heldout": HELDOUT_OBJECTS,
    "all": TRAIN_OBJECTS + HELDOUT_OBJECTS,
}


class YcbModelsNotFound(FileNotFoundError):
    """Some requested YCB models are not in the folder searched; the message says how to pass one."""


def bundled_ycb_root() -> Path:
    """The package's own YCB folder (the held-out objects)."""
    return share_dir("assets") / "ycb"


def check_models(root: Path, names: Sequence[str]) -> None:
    """Raise ``YcbModelsNotFound`` (one line, with the fix) unless every ``names`` model is under ``root``."""
    missing = [n for n in names if not (root / n / "model.urdf").is_file()]
    if not missing:
        return
    bundled = root.resolve() == bundled_ycb_root().resolve()
    where = "the bundled models (held-out objects only)" if bundled else str(root)
    raise YcbModelsNotFound(
        f"no YCB model.urdf for {', '.join(missing)} in {where}: pass --ycb-root DIR "
        f"(a folder with <Name>/model.urdf per object, e.g. the pybullet-object-models YCB set)"
    )
