"""Procedural shapes: valid seeded meshes, and scenes that mix them in with YCB objects."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gestalt_ros.data import shapes
from gestalt_ros.data.synthetic import PROCEDURAL_PREFIX, SceneConfig, TabletopRenderer
from gestalt_ros.data.ycb import HELDOUT_OBJECTS


@pytest.mark.parametrize("family", shapes.FAMILIES)
def test_each_family_is_a_valid_mesh_of_the_asked_size(family) -> None:
    for seed in range(10):
        vertices, uvs, faces = family(np.random.default_rng(seed), 0.2)
        assert vertices.shape[1] == 3 and uvs.shape == (len(vertices), 2) and faces.shape[1] == 3
        assert np.isfinite(vertices).all() and faces.min() >= 0 and faces.max() < len(vertices)
        extent = np.ptp(vertices, axis=0).max()
        # compound parts stick out of the body by at most their own size; a taper widens by 1.6x
        limit = {shapes.compound: 2.2, shapes.superquadric: 1.6}.get(family, 1.0) * 0.2 + 1e-9
        assert 0.05 < extent <= limit, extent
        area = np.linalg.norm(np.cross(*(vertices[faces[:, 1:]] - vertices[faces[:, :1]]).transpose(1, 0, 2)), axis=1)
        assert (area > 0).mean() > 0.9, "mostly non-degenerate triangles"


def test_random_mesh_is_seeded_and_rests_on_the_table() -> None:
    a = shapes.random_mesh(np.random.default_rng(3))
    b = shapes.random_mesh(np.random.default_rng(3))
    c = shapes.random_mesh(np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    vertices = a[0]
    assert vertices[:, 2].min() == pytest.approx(0.0)
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    np.testing.assert_allclose(centre[:2], 0.0, atol=1e-9)


def test_procedural_scenes_render_solid_objects_and_ycb_sets_are_untouched() -> None:
    mixed = SceneConfig(procedural_prob=1.0)
    with TabletopRenderer(HELDOUT_OBJECTS, config=mixed) as renderer:
        scenes = [renderer.render(seed) for seed in range(6)]
        again = renderer.render(2)
    np.testing.assert_array_equal(again.image, scenes[2].image)
    procedural = [o for s in scenes for o in s.objects if o.name and o.name.startswith(PROCEDURAL_PREFIX)]
    assert len(procedural) >= 6, "every object slot holds a procedural shape"
    assert all(not o.name.startswith("Ycb") for s in scenes for o in s.objects if not o.is_occluder)
    fill = []
    for obj in procedural:
        assert obj.amodal.any() and (obj.whole[obj.amodal] != 255).any()
        # A closed mesh has a solid silhouette: filling holes from the border adds almost nothing.
        outside = np.pad(~obj.amodal, 1, constant_values=True).astype(np.uint8)
        cv2.floodFill(outside, None, (0, 0), 2)
        fill.append(obj.amodal.sum() / max(int((outside[1:-1, 1:-1] != 2).sum()), 1))
    assert np.mean(fill) > 0.97, fill

    # With procedural_prob 0 the generator draws no extra numbers: YCB-only sets (the
    # evaluation sets) render exactly as before procedural shapes existed.
    with (
        TabletopRenderer(HELDOUT_OBJECTS, SceneConfig(n_procedural=7, procedural_seed=9)) as a,
        TabletopRenderer(HELDOUT_OBJECTS) as b,
    ):
        np.testing.assert_array_equal(a.render(5).image, b.render(5).image)
