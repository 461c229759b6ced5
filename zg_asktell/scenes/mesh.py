"""Mesh from silhouettes: a tessellated sphere deformed until its silhouettes match a target's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zg_asktell.problems import FloatArray, Problem

IntArray = npt.NDArray[np.intp]
EXTENT = 1.6  # the views see [-EXTENT, EXTENT]^2


def icosphere(subdivisions: int) -> tuple[FloatArray, IntArray]:
    """Unit vertices (v, 3) and faces (f, 3) of an icosahedron whose every triangle was split
    into four ``subdivisions`` times: 12, 42, 162, 642, 2562 ... vertices."""
    if subdivisions < 0:
        raise ValueError(f"subdivisions={subdivisions} must be >= 0")
    t = (1 + math.sqrt(5)) / 2
    vertices = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64
    )  # fmt: skip
    faces = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.intp
    )  # fmt: skip
    for _ in range(subdivisions):
        edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        vertices = np.vstack([vertices, (vertices[unique[:, 0]] + vertices[unique[:, 1]]) / 2])
        ab, bc, ca = (len(vertices) - len(unique) + inverse.reshape(-1, 3)).T
        a, b, c = faces.T
        split = ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))  # four triangles per face
        faces = np.concatenate([np.stack(corners, 1) for corners in split])
    return vertices / np.linalg.norm(vertices, axis=1, keepdims=True), faces


def view_rotations(views: int) -> FloatArray:
    """(views, 3, 3): cameras on a ring at 25 degrees elevation, evenly spaced over half a
    turn (an orthographic view and its opposite share a silhouette), the last looking down."""
    rotations = []
    for k in range(views):
        azimuth = math.pi * k / max(views - 1, 1)
        elevation = math.pi / 2 if k == views - 1 else math.radians(25)
        ca, sa, ce, se = math.cos(azimuth), math.sin(azimuth), math.cos(elevation), math.sin(elevation)
        spin = np.array([[ca, 0, -sa], [0, 1, 0], [sa, 0, ca]])
        tilt = np.array([[1, 0, 0], [0, ce, -se], [0, se, ce]])
        rotations.append(tilt @ spin)
    return np.array(rotations)


@dataclass
class SilhouetteMesh(Problem):
    """A sphere tessellated as an icosphere; each vertex moves along its direction by its
    parameter (radius ``1 + x``, in [-0.5, 1]). The loss is the fraction of pixels where the
    mesh's silhouettes differ from the target's: each view projects the mesh orthographically
    and a pixel is covered when its centre lies inside a projected triangle (hard coverage:
    the loss is a step function of every vertex)."""

    directions: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 3)))
    faces: IntArray = field(repr=False, default_factory=lambda: np.zeros((1, 3), np.intp))
    rotations: FloatArray = field(repr=False, default_factory=lambda: np.eye(3)[None])
    target: FloatArray = field(repr=False, default_factory=lambda: np.zeros((1, 1, 1)))
    size: int = 32

    @classmethod
    def make(cls, subdivisions: int = 2, views: int = 5, size: int = 32) -> SilhouetteMesh:
        """The unit sphere as the start; the target a rounded box (radius ``1 / ||d / s||_4``
        along direction ``d``, ``s`` = (1.3, 0.75, 0.95)) on the same tessellation, so the
        best loss is 0; ``views`` silhouettes of ``size`` x ``size`` pixels."""
        directions, faces = icosphere(subdivisions)
        dim = len(directions)
        problem = cls(
            name=f"silhouette-mesh-{dim}",
            x0=np.zeros(dim),
            lower=np.full(dim, -0.5),
            upper=np.full(dim, 1.0),
            directions=directions,
            faces=faces,
            rotations=view_rotations(views),
            size=size,
        )
        radius = 1 / np.linalg.norm(directions / [1.3, 0.75, 0.95], ord=4, axis=1)
        problem.target = problem.render(radius - 1)[0]
        return problem

    def vertices(self, x: npt.ArrayLike) -> FloatArray:
        """(n, v, 3) vertex positions of the rows of ``x`` (n, dim) or of one vector."""
        radius = 1 + np.clip(np.atleast_2d(np.asarray(x, dtype=np.float64)), self.lower, self.upper)
        return radius[..., None] * self.directions

    def render(self, x: npt.ArrayLike) -> FloatArray:
        """(n, views, size, size) silhouettes (0 or 1) of the rows of ``x``."""
        projected = np.einsum("rij,nvj->nrvi", self.rotations, self.vertices(x))[..., :2]
        pixel = (projected + EXTENT) * (self.size / (2 * EXTENT)) - 0.5  # pixel-centre units
        n, views = pixel.shape[:2]
        corners = pixel[:, :, self.faces].astype(np.float32).reshape(-1, 3, 2)  # every triangle
        low = np.floor(corners.min(1)).astype(np.intp) + 1  # its box's first pixel centre
        spans = np.maximum(np.ceil(corners.max(1)) - low + 1, 1).max(1).astype(np.intp)  # box sides
        margin = int(spans.max())
        low = np.clip(low, -margin, self.size)  # boxes wholly outside the image stay outside
        canvas = self.size + 2 * margin  # the image with a margin on each side
        image = np.repeat(np.arange(n * views), len(self.faces)) * canvas**2
        first = image + (low[:, 1] + margin) * canvas + low[:, 0] + margin  # flat index of ``low``
        covered = np.zeros(n * views * canvas**2)
        for width in 2 ** np.arange(int(np.log2(margin)) + 2):  # boxes up to 1, 2, 4, ... pixels
            pick = np.nonzero((spans <= width) & (spans > width // 2))[0]
            if not len(pick):
                continue
            ox, oy = (a.ravel() for a in np.meshgrid(np.arange(width), np.arange(width)))
            at, along = corners[pick], np.roll(corners[pick], -1, axis=1) - corners[pick]
            start = low[pick, None, :] - at
            at_low = along[..., 0] * start[..., 1] - along[..., 1] * start[..., 0]  # edge functions
            edge = at_low[:, None, :] + along[:, None, :, 0] * oy[:, None]
            edge -= along[:, None, :, 1] * ox[:, None]  # (picked, width^2, 3 edges)
            inside = (edge.min(-1) >= 0) | (edge.max(-1) <= 0)  # either winding: a silhouette
            covered[(first[pick, None] + oy * canvas + ox)[inside]] = 1.0
        side = slice(margin, margin + self.size)
        return covered.reshape(n, views, canvas, canvas)[:, :, side, side]

    def losses(self, X: npt.ArrayLike) -> FloatArray:
        result: FloatArray = np.mean(self.render(X) != self.target, axis=(1, 2, 3))
        return result

    def __call__(self, x: npt.ArrayLike) -> float:
        return float(self.losses(x)[0])
