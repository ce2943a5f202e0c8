"""Pinhole cameras in one convention, and the per-pixel rays every stage derives from them.

Convention (nerfstudio's `transforms.json`): camera-to-world 4x4 matrices with OpenGL camera axes, x right, y up,
the camera looking along -z. Pixel (u, v) has u to the right and v down; its centre sits at (u + 0.5, v + 0.5).
The SRN ShapeNet layout stores OpenCV axes (y down, z forward); `to_opencv`/`from_opencv` convert.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from scenes.errors import InvalidInputError

# Flipping y and z turns OpenGL camera axes into OpenCV ones and back (the matrix is its own inverse).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, shared by all cameras of a scene."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def resized(self, width: int, height: int) -> Intrinsics:
        """The same field of view at another image size."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def as_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """[4] float32 tensor (fx, fy, cx, cy)."""
        return torch.tensor([self.fx, self.fy, self.cx, self.cy], dtype=torch.float32, device=device)


@dataclass(frozen=True)
class Cameras:
    """N cameras: camera-to-world matrices [N, 4, 4] (float64, OpenGL axes) and one `Intrinsics`."""

    c2w: np.ndarray
    intrinsics: Intrinsics

    def __post_init__(self):
        c2w = np.asarray(self.c2w, dtype=np.float64)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
            raise InvalidInputError("camera poses", f"expected shape [N, 4, 4], got {list(c2w.shape)}",
                                    "pass camera-to-world 4x4 matrices")
        object.__setattr__(self, "c2w", c2w)

    def __len__(self) -> int:
        return len(self.c2w)

    def __getitem__(self, index) -> Cameras:
        """Cameras at an int, slice, list of ints or boolean mask."""
        return replace(self, c2w=self.c2w[np.atleast_1d(np.arange(len(self))[index])])

    @property
    def centers(self) -> np.ndarray:
        """[N, 3] camera positions in world coordinates."""
        return self.c2w[:, :3, 3]

    def to_opencv(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world matrices with OpenCV axes (x right, y down, z forward)."""
        return self.c2w @ OPENGL_TO_OPENCV

    @classmethod
    def from_opencv(cls, c2w_opencv: np.ndarray, intrinsics: Intrinsics) -> Cameras:
        return cls(np.asarray(c2w_opencv, dtype=np.float64) @ OPENGL_TO_OPENCV, intrinsics)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [N, P, 2] (u right, v down) and depths [N, P] along the viewing axis of world points [P, 3]."""
        w2c = np.linalg.inv(self.to_opencv())
        homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
        in_camera = np.einsum("nij,pj->npi", w2c, homogeneous)[..., :3]
        depth = in_camera[..., 2]
        k = self.intrinsics
        u = k.fx * in_camera[..., 0] / depth + k.cx
        v = k.fy * in_camera[..., 1] / depth + k.cy
        return np.stack([u, v], axis=-1), depth

    def c2w_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """[N, 4, 4] float32 tensor of the camera-to-world matrices."""
        return torch.as_tensor(self.c2w, dtype=torch.float32, device=device)


def check_rigid(c2w: np.ndarray, source: str, tolerance: float = 1e-3) -> None:
    """Raise `InvalidInputError` naming `source` unless `c2w` [4, 4] is a rotation plus translation."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4):
        raise InvalidInputError(source, f"expected a 4x4 matrix, got shape {list(c2w.shape)}",
                                "write the camera-to-world matrix as 4 rows of 4 numbers")
    if not np.all(np.isfinite(c2w)):
        raise InvalidInputError(source, "the 4x4 matrix holds NaN or infinite entries",
                                "write the camera-to-world matrix as 4 rows of 4 finite numbers")
    rotation = c2w[:3, :3]
    orthogonality = np.abs(rotation @ rotation.T - np.eye(3)).max()
    if orthogonality > tolerance or abs(np.linalg.det(rotation) - 1.0) > tolerance:
        raise InvalidInputError(source, f"not a rigid transform (|R R^T - I| = {orthogonality:.3g}, "
                                        f"det R = {np.linalg.det(rotation):.4f})",
                                "store an orthonormal rotation with determinant +1 and no scale")
    if np.abs(c2w[3] - [0, 0, 0, 1]).max() > tolerance:
        raise InvalidInputError(source, f"last row is {c2w[3].tolist()}, not [0, 0, 0, 1]",
                                "store a camera-to-world matrix whose last row is 0 0 0 1")


def camera_rays(c2w: torch.Tensor, intrinsics: torch.Tensor, height: int, width: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions [B, H, W, 3] in world space for every pixel centre.

    c2w: [B, 4, 4] camera-to-world (OpenGL axes); intrinsics: [B, 4] or [4] as (fx, fy, cx, cy).
    Computed on the device of `c2w`, so models can build ray conditioning without a trip to the CPU.
    """
    device, dtype = c2w.device, c2w.dtype
    intrinsics = intrinsics.to(device=device, dtype=dtype).expand(c2w.shape[0], 4)
    fx, fy, cx, cy = (intrinsics[:, i, None, None] for i in range(4))
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                          torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    # OpenGL camera: +x right, +y up, looking along -z, so image-down v maps to -y.
    x, y = (u - cx) / fx, -(v - cy) / fy
    local = torch.stack([x, y, -torch.ones_like(x)], dim=-1)
    directions = torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], local)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = c2w[:, None, None, :3, 3].expand_as(directions)
    return origins, directions


def look_at(eye: np.ndarray, target: np.ndarray = np.zeros(3), up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """[4, 4] camera-to-world (OpenGL axes) for a camera at `eye` looking at `target`, world `up` (z) kept upright."""
    eye = np.asarray(eye, dtype=np.float64)
    backward = eye - target
    backward /= np.linalg.norm(backward)
    right = np.cross(up, backward)
    if np.linalg.norm(right) < 1e-8:  # looking straight along `up`: any right vector is valid
        right = np.cross(np.array([0.0, 1.0, 0.0]), backward)
    right /= np.linalg.norm(right)
    true_up = np.cross(backward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, backward, eye
    return c2w
