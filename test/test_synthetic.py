"""Synthetic tabletop scenes: determinism, exact masks, and the dataset round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from gestalt_ros.data.synthetic import Scene, SceneObject, TabletopRenderer, iter_scenes
from gestalt_ros.data.writer import write_amodal_dataset
from gestalt_ros.data.ycb import HELDOUT_OBJECTS, TRAIN_OBJECTS, YcbModelsNotFound, bundled_ycb_root

SEEDS = range(6)


@pytest.fixture(scope="module")
def renderer() -> TabletopRenderer:
    with TabletopRenderer(HELDOUT_OBJECTS) as r:
        yield r


@pytest.fixture(scope="module")
def scenes(renderer: TabletopRenderer) -> list[Scene]:
    return [renderer.render(seed) for seed in SEEDS]


def test_object_lists_are_disjoint_and_the_heldout_ones_bundled(tmp_path: Path) -> None:
    assert len(TRAIN_OBJECTS) == 12 and len(HELDOUT_OBJECTS) == 4
    assert not set(TRAIN_OBJECTS) & set(HELDOUT_OBJECTS)
    root = bundled_ycb_root()
    for name in HELDOUT_OBJECTS:
        assert (root / name / "model.urdf").is_file(), name
    assert (root / "SOURCE.md").is_file(), "the bundled models carry their attribution and licence"
    # the training objects are not bundled: the error says which are missing and how to pass them
    with pytest.raises(YcbModelsNotFound, match="YcbBanana.*--ycb-root"):
        TabletopRenderer(TRAIN_OBJECTS)
    with pytest.raises(YcbModelsNotFound, match=str(tmp_path)):
        TabletopRenderer(HELDOUT_OBJECTS, ycb_root=tmp_path)


def test_same_seed_same_arrays_across_renderers(renderer: TabletopRenderer, scenes: list[Scene]) -> None:
    again = renderer.render(SEEDS[1])  # after other scenes were rendered in between
    with TabletopRenderer(HELDOUT_OBJECTS) as other:  # a second client coexisting with the first
        fresh = other.render(SEEDS[1])
    for scene in (again, fresh):
        np.testing.assert_array_equal(scene.image, scenes[1].image)
        assert [o.name for o in scene.objects] == [o.name for o in scenes[1].objects]
        for a, b in zip(scene.objects, scenes[1].objects):
            np.testing.assert_array_equal(a.visible, b.visible)
            np.testing.assert_array_equal(a.amodal, b.amodal)
            np.testing.assert_array_equal(a.whole, b.whole)


def test_different_seeds_differ(scenes: list[Scene]) -> None:
    images = [s.image for s in scenes]
    assert all(not np.array_equal(images[0], im) for im in images[1:])


def test_images_and_masks_are_well_formed(scenes: list[Scene]) -> None:
    size = 128
    for scene in scenes:
        assert scene.image.shape == (size, size, 3) and scene.image.dtype == np.uint8
        assert scene.image.std() > 5, "a textured tabletop is not a flat image"
        assert scene.objects
        for obj in scene.objects:
            assert obj.visible.dtype == bool and obj.amodal.shape == (size, size)
            assert obj.amodal.any() and obj.depth > 0
            assert not (obj.visible & ~obj.amodal).any(), "amodal must contain visible"
        # Visible masks come from one segmentation buffer: no pixel belongs to two objects.
        assert (np.sum([o.visible for o in scene.objects], axis=0) <= 1).all()


def test_whole_is_object_on_white(scenes: list[Scene]) -> None:
    for obj in (o for s in scenes for o in s.objects):
        assert obj.whole.shape == obj.amodal.shape + (3,) and obj.whole.dtype == np.uint8
        assert (obj.whole[~obj.amodal] == 255).all()
        assert (obj.whole[obj.amodal] != 255).any()
        assert obj.whole[obj.amodal].max() > 10, "an object rendered black (texture without UVs?)"


def test_occlusion_happens_and_some_objects_stay_whole(scenes: list[Scene]) -> None:
    ratios = [o.occlusion_ratio for s in scenes for o in s.objects]
    assert max(ratios) > 0.1
    assert min(ratios) < 0.01
    assert any(o.is_occluder and o.name is None for s in scenes for o in s.objects)


def test_occlusion_ratio_definition() -> None:
    amodal = np.zeros((4, 4), bool)
    amodal[:2] = True
    visible = amodal.copy()
    visible[0] = False
    obj = SceneObject("x", visible, amodal, np.full((4, 4, 3), 255, np.uint8), False, 1.0)
    assert obj.occlusion_ratio == pytest.approx(0.5)


def test_iter_scenes_seed_sets_do_not_overlap() -> None:
    a = [s.seed for s in iter_scenes(2, seed=0, objects=HELDOUT_OBJECTS)]
    b = [s.seed for s in iter_scenes(2, seed=1, objects=HELDOUT_OBJECTS)]
    assert len(set(a)) == 2 and not set(a) & set(b)


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_dataset_round_trip(tmp_path: Path, scenes: list[Scene]) -> None:
    path = write_amodal_dataset(scenes, tmp_path, min_visible_px=30)
    data = json.loads(path.read_text())
    assert len(data["images"]) == len(scenes)
    written = 0
    for entry, scene in zip(data["images"], scenes):
        assert (tmp_path / entry["file"]).is_file()
        assert entry["width"] == entry["height"] == 128
        by_id = {o["id"]: o for o in entry["objects"]}
        for record in entry["objects"]:
            # Layers follow who hides whom: an unhidden object is in front, and each object
            # lies behind everything that hides it.
            if record["occlusion_ratio"] == 0:
                assert record["order"] == 0 and record["occluded_by"] == []
            assert all(by_id[a]["order"] < record["order"] for a in record["occluded_by"])
        ignore = _decode(entry["ignore_rle"])
        remaining = list(scene.objects)
        for record in entry["objects"]:
            visible, amodal = (
                _decode(record["visible_rle"]),
                _decode(record["amodal_rle"]),
            )
            match = next(o for o in remaining if np.array_equal(o.amodal, amodal))
            remaining.remove(match)
            np.testing.assert_array_equal(match.visible, visible)
            assert record["name"] == match.name
            assert record["occlusion_ratio"] == pytest.approx(match.occlusion_ratio, abs=1e-5)
            assert visible.sum() >= 30
            assert not (amodal[0].any() or amodal[-1].any() or amodal[:, 0].any() or amodal[:, -1].any())
            written += 1
        # Everything left out is truncated by the border or barely visible.
        for obj in remaining:
            border = obj.amodal[0].any() or obj.amodal[-1].any() or obj.amodal[:, 0].any() or obj.amodal[:, -1].any()
            assert border or obj.visible.sum() < 30
            assert ignore[obj.visible].all()
    assert written > 0
