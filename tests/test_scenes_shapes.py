"""zg_asktell.scenes: the digits MLP, the silhouette mesh and the stroke renderer's ES gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zg_asktell.scenes.digits import DigitsMLP
from zg_asktell.scenes.mesh import EXTENT, SilhouetteMesh, icosphere
from zg_asktell.scenes.strokes import es_gradient, image_loss


@pytest.mark.parametrize("subdivisions", [0, 1, 2, 3])
def test_icosphere_is_a_closed_unit_mesh_of_the_expected_size(subdivisions: int) -> None:
    vertices, faces = icosphere(subdivisions)
    assert len(vertices) == 10 * 4**subdivisions + 2 and len(faces) == 20 * 4**subdivisions
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 1.0)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert np.all(uses == 2)  # every edge between exactly two triangles: closed


def test_the_spheres_silhouettes_are_discs_and_the_target_is_reachable() -> None:
    mesh = SilhouetteMesh.make()
    pixel_area = (2 * EXTENT / mesh.size) ** 2
    areas = mesh.render(mesh.x0)[0].sum(axis=(1, 2)) * pixel_area
    np.testing.assert_allclose(areas, math.pi, rtol=0.06)  # an inscribed polyhedron: a bit less
    radius = 1 / np.linalg.norm(mesh.directions / [1.3, 0.75, 0.95], ord=4, axis=1)
    assert mesh(radius - 1) == 0.0 and mesh(mesh.x0) > 0.05


def test_mesh_losses_are_a_step_function_and_batch_as_single_calls() -> None:
    mesh = SilhouetteMesh.make()
    X = np.random.default_rng(0).normal(0, 0.1, (5, mesh.dim))
    np.testing.assert_array_equal(mesh.losses(X), [mesh(x) for x in X])
    assert mesh(X[0] + 1e-9) == mesh(X[0])  # flat almost everywhere


def test_digits_mlp_scores_chance_at_zero_weights_and_batches_as_single_calls() -> None:
    network = DigitsMLP.make(hidden=8)
    assert network.dim == 75 * 8 + 10
    assert network(np.zeros(network.dim)) == pytest.approx(math.log(10))  # uniform scores
    X = np.random.default_rng(1).uniform(-1, 1, (3, network.dim))
    np.testing.assert_allclose(network.losses(X), [network(x) for x in X])
    assert 0.0 <= network.accuracy(X[0]) <= 1.0
    with pytest.raises(ValueError, match="hidden=0"):
        DigitsMLP.make(hidden=0)


def test_es_gradient_is_unbiased_on_a_linear_renderer() -> None:
    # A linear renderer makes the loss quadratic: each antithetic pair is exact along its
    # direction, so the rows' estimates sum to the true gradient of the batch's mean loss.
    matrix = np.random.default_rng(2).normal(size=(12, 256))
    rows = 20_000
    params = torch.full((rows, 12), 0.5, requires_grad=True)
    targets = torch.zeros(rows, 256)
    torch.manual_seed(0)
    estimate = es_gradient(lambda p: p @ matrix, params, targets, sigma=0.05).sum(0)
    exact = torch.as_tensor(2 / 256 * (np.full(12, 0.5) @ matrix) @ matrix.T, dtype=torch.float32)
    assert float((estimate - exact).norm() / exact.norm()) < 0.1
    loss = image_loss(lambda p: p @ matrix, params[:1], targets[:1])
    assert float(loss) == pytest.approx(float(np.mean((np.full(12, 0.5) @ matrix) ** 2)), rel=1e-5)
