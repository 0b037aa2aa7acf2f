"""Procedural object meshes: lathed, superquadric, extruded and compound shapes.

Twelve YCB training objects are too few shapes for a completion model to learn shape
completion in general rather than those twelve silhouettes; evaluation uses other YCB
objects and real photos. These families span what a tabletop holds (cans, bottles, bowls,
boxes, fruit, flat tools, objects with handles or caps) with unlimited variation, each
seeded so a shape pool is reproducible. Sizes are in metres, like the YCB meshes.
"""

from __future__ import annotations

import numpy as np

# Largest extent of a shape, metres (log-uniform): YCB spans ~0.06 (strawberry) to ~0.25.
_SIZE = (0.05, 0.25)


def _grid(points: np.ndarray, uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangles of an (R, C, 3) grid of points whose columns wrap around (a closed ring).

    The first column is repeated at the end so texture coordinates do not jump at the seam.
    """
    points = np.concatenate([points, points[:, :1]], axis=1)
    uvs = np.concatenate([uvs, uvs[:, :1] + [1.0, 0.0]], axis=1)
    rows, cols = points.shape[:2]
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (i * cols + j).ravel()
    b, c = a + 1, a + cols
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, c + 1], 1)])
    return points.reshape(-1, 3), uvs.reshape(-1, 2), faces


def _cap(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fan closing a ring of (C, 3) points around their centroid."""
    centre = ring.mean(axis=0, keepdims=True)
    points = np.concatenate([centre, ring])
    span = np.ptp(ring[:, :2], axis=0).max() or 1.0
    uvs = (points[:, :2] - centre[:, :2]) / span + 0.5
    k = np.arange(1, len(ring) + 1)
    faces = np.stack([np.zeros_like(k), k, k % len(ring) + 1], 1)
    return points, uvs, faces


def _merge(*parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertices, uvs, faces, offset = [], [], [], 0
    for v, uv, f in parts:
        vertices.append(v)
        uvs.append(uv)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(uvs), np.concatenate(faces)


def _double_sided(mesh: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both windings of every triangle, so culling never opens a hole whatever the winding."""
    v, uv, f = mesh
    return v, uv, np.concatenate([f, f[:, ::-1]])


def lathe(rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A surface of revolution (can, bottle, cup, vase) with a random profile, maybe oval."""
    aspect = float(np.exp(rng.uniform(np.log(0.4), np.log(3.5))))  # height / diameter
    height, radius = (size, size / aspect / 2) if aspect >= 1 else (size * aspect, size / 2)
    style = rng.choice(["can", "bottle", "free"])
    if style == "can":
        z = np.array([0.0, 1.0])
        r = np.full(2, 1.0) * rng.uniform(0.9, 1.0, 2)
    elif style == "bottle":
        shoulder, neck = rng.uniform(0.45, 0.8), rng.uniform(0.2, 0.55)
        z = np.array([0.0, shoulder, min(shoulder + rng.uniform(0.05, 0.2), 0.95), 1.0])
        r = np.array([1.0, 1.0, neck, neck * rng.uniform(0.8, 1.3)])
    else:
        z = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, int(rng.integers(1, 5)))), [1.0]])
        r = rng.uniform(0.25, 1.0, len(z))
        r /= r.max()
    rows = np.linspace(0.0, 1.0, 24)
    profile = np.interp(rows, z, r) * radius
    angles = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    oval = rng.uniform(0.45, 1.0) if rng.uniform() < 0.5 else 1.0
    ring = np.stack([np.cos(angles), oval * np.sin(angles)], 1)
    points = np.concatenate(
        [profile[:, None, None] * ring[None], np.broadcast_to(rows[:, None, None] * height, (24, 24, 1))],
        axis=2,
    )
    u, v = np.meshgrid(angles / (2 * np.pi), rows, indexing="xy")
    side = _grid(points, np.stack([u, v], -1))
    return _merge(side, _cap(points[0]), _cap(points[-1]))


def _signed_power(x: np.ndarray, e: float) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** e


def superquadric(rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A superellipsoid (box-like to star-like), maybe tapered: fruit, boxes, soap, stones.

    A taper widens one end by up to 1.6x, so the largest extent may exceed ``size``.
    """
    axes = size / 2 * np.exp(rng.uniform(np.log(0.3), 0.0, 3))
    axes *= size / 2 / axes.max()
    e1, e2 = rng.uniform(0.1, 1.5, 2)
    lat = np.linspace(-np.pi / 2, np.pi / 2, 20)
    lon = np.linspace(0.0, 2 * np.pi, 28, endpoint=False)
    v, u = np.meshgrid(lat, lon, indexing="ij")
    x = axes[0] * _signed_power(np.cos(v), e1) * _signed_power(np.cos(u), e2)
    y = axes[1] * _signed_power(np.cos(v), e1) * _signed_power(np.sin(u), e2)
    z = axes[2] * _signed_power(np.sin(v), e1)
    taper = rng.uniform(-0.6, 0.6) if rng.uniform() < 0.5 else 0.0
    scale = 1.0 + taper * z / axes[2]
    points = np.stack([x * scale, y * scale, z], -1)
    uvs = np.stack([u / (2 * np.pi), (v + np.pi / 2) / np.pi], -1)
    return _grid(points, uvs)


def extrusion(rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random star-shaped polygon (convex or not, maybe elongated) extruded: flat tools, lids."""
    n = int(rng.integers(5, 15))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, n))
    radii = rng.uniform(0.35, 1.0, n) if rng.uniform() < 0.6 else rng.uniform(0.85, 1.0, n)
    polygon = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    polygon[:, 0] *= np.exp(rng.uniform(0.0, np.log(4.0)))
    polygon *= size / 2 / np.abs(polygon).max()
    thickness = size * rng.uniform(0.05, 0.4)
    bottom = np.concatenate([polygon, np.zeros((n, 1))], 1)
    top = bottom + [0.0, 0.0, thickness]
    perimeter = np.linspace(0.0, 1.0, n, endpoint=False)
    side_uv = np.stack([np.stack([perimeter, np.zeros(n)], 1), np.stack([perimeter, np.ones(n)], 1)])
    side = _grid(np.stack([bottom, top]), side_uv)
    return _merge(side, _cap(bottom), _cap(top))


def compound(rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A body with one or two attached parts (a handle, a cap, a head), each a simple family."""
    simple = (lathe, superquadric, extrusion)
    body = simple[rng.integers(len(simple))](rng, size * rng.uniform(0.6, 1.0))
    parts = [body]
    for _ in range(int(rng.integers(1, 3))):
        part = simple[rng.integers(len(simple))](rng, size * rng.uniform(0.25, 0.7))
        vertices = part[0] - part[0].mean(axis=0)
        anchor = body[0][rng.integers(len(body[0]))]
        parts.append((vertices @ _random_rotation(rng).T + anchor, part[1], part[2]))
    return _merge(*parts)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


FAMILIES = (lathe, superquadric, extrusion, compound)


def random_mesh(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (N, 3) with the lowest point at z=0, UVs (N, 2) and triangles (F, 3)."""
    size = float(np.exp(rng.uniform(*np.log(_SIZE))))
    family = FAMILIES[rng.integers(len(FAMILIES))]
    vertices, uvs, faces = _double_sided(family(rng, size))
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    vertices = vertices - [centre[0], centre[1], vertices[:, 2].min()]
    return vertices, uvs, faces
