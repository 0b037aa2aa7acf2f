"""Seeded pybullet tabletop scenes with exact visible and amodal truth.

The amodal ground truth is exact because every object is rendered a second time alone,
with the same camera and light: the segmentation of that render is its whole silhouette
and its RGB is the whole object (pix2gestalt's training target, on white). Occluders are
placed between the camera and objects that are whole, as in the paper's recipe. A scene's
bodies exist only while it renders (TinyRenderer pays for every triangle in the world).

Objects are YCB models (``data/ycb.py`` says which and where) or procedural shapes
(``data/shapes.py``); meshes come from ``data/meshes.py``, textures from
``data/textures.py``, and ``data/writer.py`` writes scenes as an annotated dataset.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pybullet as pb

from gestalt_ros.data.meshes import Mesh, load_urdf_mesh
from gestalt_ros.data.shapes import random_mesh
from gestalt_ros.data.textures import procedural_texture, random_color
from gestalt_ros.data.ycb import bundled_ycb_root, check_models

if TYPE_CHECKING:
    from typing import Self

logger = logging.getLogger(__name__)

# Bodies not in the current render wait here: below the table and beyond the far plane.
_PARK = (0.0, 0.0, -50.0)
_IDENTITY = (0.0, 0.0, 0.0, 1.0)
_NEAR = 0.02
_TEXTURE_SIZE = 256
_FILE_TEXTURE_SIZE = 512
# Object names of this prefix and a pool index are procedural shapes, not YCB folders.
PROCEDURAL_PREFIX = "procedural:"


@dataclass
class SceneConfig:
    """Every random range of the scene generator (uniform unless said otherwise)."""

    image_size: int = 128
    min_objects: int = 2
    max_objects: int = 5
    fov_deg: tuple[float, float] = (35.0, 60.0)
    elevation_deg: tuple[float, float] = (15.0, 70.0)
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    # Median object width as a fraction of the image width; sets the camera distance.
    object_width_frac: tuple[float, float] = (0.15, 0.55)
    # Objects are laid out in a disc of this radius, as a fraction of the view width.
    layout_radius_frac: float = 0.25
    lying_prob: float = 0.3
    scale_prob: float = 0.5
    # Scaled objects use one of these factors (each factor is one cached visual shape).
    scales: tuple[float, ...] = (0.8, 0.9, 1.1, 1.2)
    keep_texture_prob: float = 0.8
    # Each non-occluder object is the target of an occluder with this probability.
    occluder_prob: float = 0.8
    max_occluders: int = 3
    occluder_kinds: tuple[str, ...] = (
        "ycb",
        "box",
        "cylinder",
        "sphere",
        "plank",
        "pole",
    )
    floating_prob: float = 0.3
    # Free space between target and occluder along the view ray, metres.
    occluder_gap: tuple[float, float] = (0.01, 0.12)
    # Sideways shift of the occluder, as a fraction of the target's radius.
    occluder_lateral: float = 0.9
    wall_prob: float = 0.8
    wall_distance: tuple[float, float] = (0.3, 1.5)
    n_textures: int = 64
    texture_seed: int = 0
    shadow_prob: float = 0.5
    light_elevation_deg: tuple[float, float] = (25.0, 90.0)
    light_ambient: tuple[float, float] = (0.3, 0.8)
    light_diffuse: tuple[float, float] = (0.3, 0.8)
    light_specular: tuple[float, float] = (0.0, 0.6)
    # Simplified meshes keep one vertex per cell of (largest extent / mesh_cells).
    mesh_cells: int = 32
    # Each object slot holds a procedural shape (``shapes.random_mesh``) instead of a YCB
    # object with this probability: training only, the evaluation sets keep YCB objects.
    procedural_prob: float = 0.0
    # Procedural shapes come from a pool of this many, each seeded by (procedural_seed, k).
    n_procedural: int = 512
    procedural_seed: int = 0
    # A procedural shape wears a pool texture with this probability (else a flat colour).
    procedural_texture_prob: float = 0.7


@dataclass(eq=False)
class SceneObject:
    """One object of a scene with its exact masks and its whole appearance (compared by identity)."""

    name: str | None
    visible: np.ndarray
    amodal: np.ndarray
    whole: np.ndarray
    is_occluder: bool
    depth: float

    @property
    def occlusion_ratio(self) -> float:
        """Hidden fraction of the amodal mask."""
        area = int(self.amodal.sum())
        return 1.0 - int(self.visible.sum()) / area if area else 0.0


@dataclass(eq=False)
class Scene:
    """The occluded image and every object in it (compared by identity)."""

    image: np.ndarray
    objects: list[SceneObject]
    seed: int


@dataclass
class _Body:
    """A body of the current scene and its bounding sphere (for placing others)."""

    name: str | None
    uid: int
    is_occluder: bool
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    center: np.ndarray
    radius: float
    reach: float  # radius of the footprint's bounding circle, around center[:2]


@dataclass(frozen=True)
class _Shape:
    """A body to place: how to create it and points that bound its geometry."""

    name: str | None
    visual: dict
    points: np.ndarray  # (K, 3) in the body frame
    texture: Path | None


@dataclass(frozen=True)
class _Camera:
    eye: np.ndarray
    target: np.ndarray
    view: tuple[float, ...]
    projection: tuple[float, ...]
    far: float


@contextlib.contextmanager
def _quiet_c_output() -> Iterator[None]:
    """Silence C-level stdout/stderr (pybullet prints mesh and texture warnings there)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _rotation(orientation: Sequence[float]) -> np.ndarray:
    return np.array(pb.getMatrixFromQuaternion(orientation)).reshape(3, 3)


def _euler(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    return tuple(pb.getQuaternionFromEuler((roll, pitch, yaw)))


class TabletopRenderer:
    """Renders seeded tabletop scenes; owns one pybullet DIRECT client and a temp dir."""

    def __init__(
        self,
        objects: Sequence[str],
        config: SceneConfig | None = None,
        ycb_root: Path | None = None,
    ) -> None:
        """``objects``: YCB model names under ``ycb_root`` (default: the bundled models)."""
        self.ycb_root = Path(ycb_root) if ycb_root is not None else bundled_ycb_root()
        self.objects = tuple(objects)
        self.config = config or SceneConfig()
        if not self.objects:
            raise ValueError("at least one object is needed")
        check_models(self.ycb_root, self.objects)
        self._tmp = tempfile.TemporaryDirectory(prefix="gestalt_synthetic_")
        self._client = pb.connect(pb.DIRECT)
        self._meshes: dict[str, Mesh] = {}
        # Visual shapes are cached per (object, scale): pybullet never frees them.
        self._visuals: dict[tuple[str, float], int] = {}
        self._textures: dict[int, int] = {}
        self._file_textures: dict[Path, int] = {}
        self._table = self._static_box((1.0, 1.0, 0.02))
        self._wall = self._static_box((0.01, 3.0, 2.0))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect the client and delete the texture files."""
        if self._client >= 0:
            pb.disconnect(physicsClientId=self._client)
            self._client = -1
            self._tmp.cleanup()

    # -- resources -------------------------------------------------------------------
    def _static_box(self, half_extents: tuple[float, float, float]) -> int:
        visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half_extents, physicsClientId=self._client)
        return pb.createMultiBody(
            baseVisualShapeIndex=visual,
            basePosition=_PARK,
            physicsClientId=self._client,
        )

    def _mesh(self, name: str) -> Mesh:
        if name not in self._meshes:
            if name.startswith(PROCEDURAL_PREFIX):
                k = int(name.removeprefix(PROCEDURAL_PREFIX))
                vertices, uvs, indices = random_mesh(np.random.default_rng((self.config.procedural_seed, k)))
                self._meshes[name] = Mesh(vertices, uvs, indices, None)
            else:
                self._meshes[name] = load_urdf_mesh(self.ycb_root / name, self.config.mesh_cells)
        return self._meshes[name]

    def _visual(self, name: str, scale: float) -> int:
        key = (name, scale)
        if key not in self._visuals:
            mesh = self._mesh(name)
            self._visuals[key] = pb.createVisualShape(
                pb.GEOM_MESH,
                vertices=(mesh.vertices * scale).tolist(),
                indices=mesh.indices.ravel().tolist(),
                uvs=mesh.uvs.tolist(),
                physicsClientId=self._client,
            )
        return self._visuals[key]

    def _procedural(self, k: int) -> int:
        """Texture k of the pool; it depends on (texture_seed, k) only, so order is moot."""
        if k not in self._textures:
            rng = np.random.default_rng((self.config.texture_seed, k))
            path = Path(self._tmp.name) / f"texture_{k:03d}.png"
            cv2.imwrite(
                str(path),
                cv2.cvtColor(procedural_texture(rng, _TEXTURE_SIZE), cv2.COLOR_RGB2BGR),
            )
            with _quiet_c_output():
                self._textures[k] = pb.loadTexture(str(path), physicsClientId=self._client)
        return self._textures[k]

    def _file_texture(self, path: Path) -> int:
        """A YCB texture shrunk to _FILE_TEXTURE_SIZE: applying a 4k texture costs ~0.1 s."""
        if path not in self._file_textures:
            small = Path(self._tmp.name) / f"{path.parent.name}_{path.name}"
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            cv2.imwrite(
                str(small),
                cv2.resize(image, (_FILE_TEXTURE_SIZE,) * 2, interpolation=cv2.INTER_AREA),
            )
            with _quiet_c_output():
                self._file_textures[path] = pb.loadTexture(str(small), physicsClientId=self._client)
        return self._file_textures[path]

    # -- scene building ----------------------------------------------------------------
    def _ycb_shape(self, name: str, rng: np.random.Generator) -> _Shape:
        cfg = self.config
        scale = float(rng.choice(cfg.scales)) if rng.uniform() < cfg.scale_prob else 1.0
        mesh = self._mesh(name)
        return _Shape(
            name,
            {"visual": self._visual(name, scale)},
            mesh.vertices * scale,
            mesh.texture,
        )

    def _primitive_shape(self, kind: str, size: float, rng: np.random.Generator) -> _Shape:
        """A primitive occluder sized relative to its target (size = target diameter)."""
        if kind in ("box", "plank"):
            if kind == "box":
                half = size * rng.uniform(0.15, 0.5, 3)
            else:
                half = np.array(
                    [
                        size * rng.uniform(0.4, 1.0),
                        rng.uniform(0.004, 0.012),
                        size * rng.uniform(0.1, 0.3),
                    ]
                )
            corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
            return _Shape(
                None,
                {"shapeType": pb.GEOM_BOX, "halfExtents": half.tolist()},
                corners,
                None,
            )
        if kind == "sphere":
            radius = size * rng.uniform(0.15, 0.4)
            dirs = np.concatenate([np.eye(3), -np.eye(3)])
            return _Shape(
                None,
                {"shapeType": pb.GEOM_SPHERE, "radius": radius},
                dirs * radius,
                None,
            )
        if kind == "cylinder":
            radius, length = (
                size * rng.uniform(0.12, 0.35),
                size * rng.uniform(0.4, 1.2),
            )
        else:  # pole
            radius, length = rng.uniform(0.004, 0.015), size * rng.uniform(1.0, 2.0)
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        rim = np.stack(
            [radius * np.cos(angles), radius * np.sin(angles), np.full(16, length / 2)],
            axis=1,
        )
        points = np.concatenate([rim, rim * [1, 1, -1]])
        return _Shape(
            None,
            {"shapeType": pb.GEOM_CYLINDER, "radius": radius, "length": length},
            points,
            None,
        )

    def _spawn(
        self,
        shape: _Shape,
        position: np.ndarray,
        orientation: tuple[float, ...],
        is_occluder: bool,
        rng: np.random.Generator,
    ) -> _Body:
        """Create the body; textured YCB objects keep their texture most of the time."""
        if "visual" in shape.visual:
            visual = shape.visual["visual"]
        else:
            visual = pb.createVisualShape(**shape.visual, physicsClientId=self._client)
        uid = pb.createMultiBody(
            baseVisualShapeIndex=visual,
            basePosition=position.tolist(),
            baseOrientation=orientation,
            physicsClientId=self._client,
        )
        texture = None
        if shape.texture is not None and rng.uniform() < self.config.keep_texture_prob:
            tint = [*rng.uniform(0.85, 1.0, 3), 1.0]
            texture = self._file_texture(shape.texture)
        elif (
            shape.name is not None
            and shape.name.startswith(PROCEDURAL_PREFIX)
            and rng.uniform() < self.config.procedural_texture_prob
        ):
            tint = [*rng.uniform(0.7, 1.0, 3), 1.0]
            texture = self._procedural(int(rng.integers(self.config.n_textures)))
        if texture is None:
            pb.changeVisualShape(uid, -1, rgbaColor=random_color(rng), physicsClientId=self._client)
        else:
            pb.changeVisualShape(uid, -1, rgbaColor=tint, textureUniqueId=texture, physicsClientId=self._client)
        points = shape.points @ _rotation(orientation).T + position
        lo, hi = points.min(axis=0), points.max(axis=0)
        center = (lo + hi) / 2
        radius = float(np.linalg.norm(points - center, axis=1).max())
        reach = float(np.linalg.norm(points[:, :2] - center[:2], axis=1).max())
        return _Body(
            shape.name,
            uid,
            is_occluder,
            tuple(position),
            orientation,
            center,
            radius,
            reach,
        )

    def _object_orientation(self, rng: np.random.Generator) -> tuple[float, ...]:
        yaw = rng.uniform(0, 2 * np.pi)
        if rng.uniform() < self.config.lying_prob:
            side = rng.choice([-np.pi / 2, np.pi / 2])
            return _euler(side, 0.0, yaw) if rng.uniform() < 0.5 else _euler(0.0, side, yaw)
        return _euler(0.0, 0.0, yaw)

    @staticmethod
    def _resting(shape: _Shape, orientation: tuple[float, ...], xy: np.ndarray) -> np.ndarray:
        """Body position putting the shape's xy box centre at xy and its lowest point on z=0."""
        points = shape.points @ _rotation(orientation).T
        centre_xy = (points[:, :2].min(axis=0) + points[:, :2].max(axis=0)) / 2
        return np.array([*(xy - centre_xy), -points[:, 2].min()])

    def _layout(self, rng: np.random.Generator, names: Sequence[str], radius: float) -> list[_Body]:
        """Non-overlapping objects (bounding circles) on the table within a disc."""
        bodies: list[_Body] = []
        for name in names:
            shape = self._ycb_shape(name, rng)
            orientation = self._object_orientation(rng)
            points = (shape.points @ _rotation(orientation).T)[:, :2]
            reach = float(np.linalg.norm(points - (points.min(axis=0) + points.max(axis=0)) / 2, axis=1).max())
            # The disc grows on every failed try, so crowded scenes spread out instead of
            # losing objects.
            for attempt in range(30):
                r = radius * 1.05**attempt * math.sqrt(rng.uniform())
                a = rng.uniform(0, 2 * np.pi)
                xy = np.array([r * math.cos(a), r * math.sin(a)])
                if all(np.linalg.norm(xy - b.center[:2]) > reach + b.reach + 0.005 for b in bodies):
                    position = self._resting(shape, orientation, xy)
                    bodies.append(self._spawn(shape, position, orientation, False, rng))
                    break
        return bodies

    def _camera(self, rng: np.random.Generator, target: np.ndarray, distance: float, fov: float) -> _Camera:
        cfg = self.config
        azimuth = math.radians(rng.uniform(*cfg.azimuth_deg))
        elevation = math.radians(rng.uniform(*cfg.elevation_deg))
        direction = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        eye = target + distance * direction
        far = distance + cfg.wall_distance[1] + 3.0
        view = pb.computeViewMatrix(eye.tolist(), target.tolist(), [0, 0, 1], physicsClientId=self._client)
        projection = pb.computeProjectionMatrixFOV(fov, 1.0, _NEAR, far, physicsClientId=self._client)
        return _Camera(eye, target, view, projection, far)

    def _add_occluder(
        self,
        rng: np.random.Generator,
        target: _Body,
        bodies: list[_Body],
        camera: _Camera,
        candidates: list[str],
    ) -> _Body | None:
        """An occluder on the segment from the target to the camera, or None if none fits."""
        cfg = self.config
        kind = cfg.occluder_kinds[rng.integers(len(cfg.occluder_kinds))]
        if kind == "ycb" and not candidates:
            kind = "box"
        to_camera = camera.eye - target.center
        distance = float(np.linalg.norm(to_camera))
        forward = to_camera / distance
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        view_yaw = math.atan2(forward[1], forward[0])
        if kind == "ycb":
            shape = self._ycb_shape(candidates[rng.integers(len(candidates))], rng)
            orientation = self._object_orientation(rng)
        else:
            shape = self._primitive_shape(kind, 2 * target.radius, rng)
            # Planks face the camera; poles stand or lie across the view; others spin freely.
            across = view_yaw + rng.uniform(-0.5, 0.5)
            if kind == "plank":
                orientation = _euler(0.0, 0.0, across + np.pi / 2)
            elif kind == "pole" and rng.uniform() < 0.5:
                orientation = _euler(np.pi / 2, 0.0, across)
            else:
                orientation = (
                    _euler(*rng.uniform(0, 2 * np.pi, 3))
                    if kind == "box"
                    else _euler(0.0, 0.0, rng.uniform(0, 2 * np.pi))
                )
        points = shape.points @ _rotation(orientation).T
        own_centre = (points.min(axis=0) + points.max(axis=0)) / 2
        own_radius = float(np.linalg.norm(points - own_centre, axis=1).max())
        own_reach = float(np.linalg.norm(points[:, :2] - own_centre[:2], axis=1).max())
        floating = rng.uniform() < cfg.floating_prob
        toward = forward[:2] / np.linalg.norm(forward[:2])
        for _ in range(16):
            gap = rng.uniform(*cfg.occluder_gap)
            lateral = rng.uniform(-cfg.occluder_lateral, cfg.occluder_lateral) * target.radius * right
            if floating:
                along = target.radius + own_radius + gap
                # Halfway to the camera at most: nearer, it would fill the view.
                if along + own_radius > 0.5 * distance:
                    continue
                centre = target.center + along * forward + lateral + rng.uniform(-0.5, 0.5) * target.radius * up
                position = centre - own_centre
                position[2] = max(position[2], -points[:, 2].min())
                centre = position + own_centre
                clear = all(np.linalg.norm(centre - b.center) > own_radius + b.radius for b in bodies)
            else:
                # Standing on the table in front of the target, between it and the camera.
                xy = target.center[:2] + (target.reach + own_reach + gap) * toward + lateral[:2]
                position = self._resting(shape, orientation, xy)
                clear = all(np.linalg.norm(xy - b.center[:2]) > own_reach + b.reach for b in bodies)
            if clear:
                if shape.name is not None:
                    candidates.remove(shape.name)
                return self._spawn(shape, position, orientation, True, rng)
        return None

    def _dress_room(self, rng: np.random.Generator, camera: _Camera) -> None:
        """Random table texture and a random wall behind the objects (or none)."""
        cfg, client = self.config, self._client
        pb.resetBasePositionAndOrientation(self._table, (0.0, 0.0, -0.02), _IDENTITY, physicsClientId=client)
        tint = [*rng.uniform(0.7, 1.0, 3), 1.0]
        texture = self._procedural(int(rng.integers(cfg.n_textures)))
        pb.changeVisualShape(
            self._table,
            -1,
            textureUniqueId=texture,
            rgbaColor=tint,
            physicsClientId=client,
        )
        if rng.uniform() < cfg.wall_prob:
            horizontal = camera.target[:2] - camera.eye[:2]
            horizontal /= np.linalg.norm(horizontal)
            centre = camera.target[:2] + horizontal * rng.uniform(*cfg.wall_distance)
            yaw = math.atan2(horizontal[1], horizontal[0])
            pb.resetBasePositionAndOrientation(
                self._wall,
                (*centre, 1.0),
                _euler(0.0, 0.0, yaw),
                physicsClientId=client,
            )
            texture = self._procedural(int(rng.integers(cfg.n_textures)))
            pb.changeVisualShape(
                self._wall,
                -1,
                textureUniqueId=texture,
                rgbaColor=random_color(rng),
                physicsClientId=client,
            )
        else:
            pb.resetBasePositionAndOrientation(self._wall, _PARK, _IDENTITY, physicsClientId=client)

    def _lighting(self, rng: np.random.Generator) -> dict:
        cfg = self.config
        azimuth = rng.uniform(0, 2 * np.pi)
        elevation = math.radians(rng.uniform(*cfg.light_elevation_deg))
        return {
            "lightDirection": [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ],
            "lightColor": rng.uniform(0.75, 1.0, 3).tolist(),
            "lightDistance": 2.0,
            "lightAmbientCoeff": rng.uniform(*cfg.light_ambient),
            "lightDiffuseCoeff": rng.uniform(*cfg.light_diffuse),
            "lightSpecularCoeff": rng.uniform(*cfg.light_specular),
            "shadow": int(rng.uniform() < cfg.shadow_prob),
        }

    # -- rendering -----------------------------------------------------------------------
    def _shoot(self, camera: _Camera, light: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB, metric depth and segmentation (body unique id per pixel, -1 for none)."""
        size = self.config.image_size
        _, _, rgba, depth, seg = pb.getCameraImage(
            size,
            size,
            camera.view,
            camera.projection,
            renderer=pb.ER_TINY_RENDERER,
            physicsClientId=self._client,
            **light,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()
        buffer = np.asarray(depth, dtype=np.float64).reshape(size, size)
        metric = camera.far * _NEAR / (camera.far - (camera.far - _NEAR) * buffer)
        # Without ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX the buffer holds the body id only.
        return rgb, metric, np.asarray(seg, dtype=np.int64).reshape(size, size)

    def render(self, seed: int) -> Scene:
        """The scene of this seed: same seed, same arrays."""
        rng = np.random.default_rng(seed)
        cfg = self.config
        count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        order = rng.permutation(len(self.objects))
        names = [self.objects[i] for i in order[:count]]
        candidates = [self.objects[i] for i in order[count:]]
        if cfg.procedural_prob > 0:  # no extra draws otherwise: YCB-only sets stay as they were
            names = [
                f"{PROCEDURAL_PREFIX}{rng.integers(cfg.n_procedural)}" if rng.uniform() < cfg.procedural_prob else n
                for n in names
            ]
        fov = rng.uniform(*cfg.fov_deg)
        width_frac = rng.uniform(*cfg.object_width_frac)
        bodies: list[_Body] = []
        try:
            sizes = [float(np.ptp(self._mesh(n).vertices[:, :2], axis=0).max()) for n in names]
            distance = float(np.median(sizes)) / (width_frac * 2 * math.tan(math.radians(fov) / 2))
            view_width = 2 * distance * math.tan(math.radians(fov) / 2)
            bodies = self._layout(rng, names, cfg.layout_radius_frac * view_width)
            target = np.mean([b.center for b in bodies], axis=0)
            # Back off until the whole layout fits the view: truncated objects are lost data.
            extent = max(float(np.linalg.norm(b.center - target)) + b.radius for b in bodies)
            distance = max(distance, extent / math.tan(math.radians(fov) / 2))
            camera = self._camera(rng, target, distance, fov)
            for body in list(bodies):
                if sum(b.is_occluder for b in bodies) < cfg.max_occluders and rng.uniform() < cfg.occluder_prob:
                    occluder = self._add_occluder(rng, body, bodies, camera, candidates)
                    if occluder is not None:
                        bodies.append(occluder)
            self._dress_room(rng, camera)
            light = self._lighting(rng)
            image, _, seg = self._shoot(camera, light)
            return Scene(image, self._objects_of(bodies, seg, camera, light), seed)
        finally:
            for body in bodies:
                pb.removeBody(body.uid, physicsClientId=self._client)

    def _objects_of(self, bodies: list[_Body], seg: np.ndarray, camera: _Camera, light: dict) -> list[SceneObject]:
        """Render each body alone (all others parked) for its amodal mask and whole RGB."""
        client = self._client
        for uid in [self._table, self._wall, *(b.uid for b in bodies)]:
            pb.resetBasePositionAndOrientation(uid, _PARK, _IDENTITY, physicsClientId=client)
        objects = []
        for body in bodies:
            pb.resetBasePositionAndOrientation(body.uid, body.position, body.orientation, physicsClientId=client)
            rgb, depth, alone = self._shoot(camera, light)
            pb.resetBasePositionAndOrientation(body.uid, _PARK, _IDENTITY, physicsClientId=client)
            amodal = alone == body.uid
            visible = seg == body.uid
            # TinyRenderer rasterises each render independently; guard against a stray
            # pixel that is visible in the scene but missed alone so amodal ⊇ visible holds.
            stray = int((visible & ~amodal).sum())
            if stray:
                logger.debug("%s: %d visible pixels outside the alone render", body.name, stray)
                amodal |= visible
            if not amodal.any():
                continue
            whole = np.where(amodal[..., None], rgb, np.uint8(255))
            objects.append(
                SceneObject(
                    body.name,
                    visible,
                    amodal,
                    whole,
                    body.is_occluder,
                    float(np.median(depth[amodal])),
                )
            )
        return objects


def iter_scenes(
    n: int,
    seed: int,
    objects: Sequence[str],
    config: SceneConfig | None = None,
    ycb_root: Path | None = None,
    start: int = 0,
) -> Iterator[Scene]:
    """Scenes start..start+n-1; scene i uses seed * 1_000_003 + i, so sets of different seeds
    never meet, and a set can be rendered in chunks (by worker processes) identically.

    Missing models raise here, at the call, not at the first scene.
    """
    renderer = TabletopRenderer(objects, config, ycb_root)

    def scenes() -> Iterator[Scene]:
        with renderer:
            for i in range(start, start + n):
                yield renderer.render(seed * 1_000_003 + i)

    return scenes()
