"""Triangle meshes for the renderer: read a URDF's visual OBJ, simplify it for TinyRenderer.

TinyRenderer's cost grows with the number of triangles in the world, and each YCB visual
mesh has ~16k triangles (far finer than a 128 px image resolves), so meshes are read once
and simplified by vertex clustering to a few thousand triangles.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The texture a URDF model folder may hold beside its mesh.
TEXTURE_FILE = "texture_map.png"


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (N, 3) metres, at scale 1
    uvs: np.ndarray  # (N, 2)
    indices: np.ndarray  # (F, 3)
    texture: Path | None


def visual_mesh_file(urdf: Path) -> tuple[Path, np.ndarray]:
    """The visual mesh a URDF names and its scale (its visual origin is not applied)."""
    mesh = ET.parse(urdf).getroot().find(".//visual/geometry/mesh")
    if mesh is None:
        raise ValueError(f"{urdf} has no visual mesh")
    scale = np.array(mesh.get("scale", "1 1 1").split(), dtype=float)
    return urdf.parent / mesh.get("filename", ""), scale


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, texture coordinates and (F, 3, 2) triangle corners (vertex, uv) of an OBJ."""
    vertices, uvs, faces = [], [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            vertices.append(line.split()[1:4])
        elif line.startswith("vt "):
            uvs.append(line.split()[1:3])
        elif line.startswith("f "):
            corners = []
            for token in line.split()[1:]:
                parts = token.split("/")
                uv = int(parts[1]) - 1 if len(parts) > 1 and parts[1] else 0
                corners.append((int(parts[0]) - 1, uv))
            faces.extend((corners[0], corners[k], corners[k + 1]) for k in range(1, len(corners) - 1))
    return (
        np.array(vertices, dtype=float),
        np.array(uvs, dtype=float).reshape(-1, 2),
        np.array(faces, dtype=np.int64),
    )


def simplify(
    vertices: np.ndarray, uvs: np.ndarray, faces: np.ndarray, cells: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex clustering: merge vertices per grid cell, keep UV seams, drop collapsed faces."""
    cell = float(np.ptp(vertices, axis=0).max()) / cells
    keys = np.floor((vertices - vertices.min(axis=0)) / cell).astype(np.int64)
    _, cluster = np.unique(keys, axis=0, return_inverse=True)
    cluster = cluster.ravel()
    counts = np.bincount(cluster)
    positions = np.zeros((counts.size, 3))
    np.add.at(positions, cluster, vertices)
    positions /= counts[:, None]
    corner_cluster = cluster[faces[..., 0]]
    keep = (
        (corner_cluster[:, 0] != corner_cluster[:, 1])
        & (corner_cluster[:, 1] != corner_cluster[:, 2])
        & (corner_cluster[:, 0] != corner_cluster[:, 2])
    )
    pairs = np.stack([corner_cluster[keep].ravel(), faces[keep][..., 1].ravel()], axis=1)
    unique_pairs, corner_index = np.unique(pairs, axis=0, return_inverse=True)
    return (
        positions[unique_pairs[:, 0]],
        uvs[unique_pairs[:, 1]],
        corner_index.reshape(-1, 3),
    )


def load_urdf_mesh(model_dir: Path, cells: int) -> Mesh:
    """The simplified visual mesh of a URDF model folder, with its texture if it can show one.

    Some YCB models ship a texture_map.png with a convex-hull visual mesh that has no UVs:
    textured, they would sample one texel and render black, so they stay untextured.
    """
    mesh_file, scale = visual_mesh_file(model_dir / "model.urdf")
    vertices, uvs, faces = read_obj(mesh_file)
    texture: Path | None = model_dir / TEXTURE_FILE
    if len(uvs) == 0 or not texture.is_file():
        texture, uvs = None, np.zeros((1, 2))
        faces[..., 1] = 0
    vertices, uvs, indices = simplify(vertices * scale, uvs, faces, cells)
    return Mesh(vertices, uvs, indices, texture)
