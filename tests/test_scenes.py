"""The scenes of the paper's demonstrations (zg_asktell.scenes): batches agree with single
calls, the hidden answers score 0, and the renderers conserve what they should."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zg_asktell.problems import PosterizedTexture, Problem
from zg_asktell.scenes.caustic import Caustic, spline_bases
from zg_asktell.scenes.led import LedDisplay

SCENES: dict[str, Problem] = {
    "caustic": Caustic.make(controls=8, pixels=8, photons_per_pixel=2),
    "led-ring": LedDisplay.ring(6, 7),
    "led-random": LedDisplay.make(48, seed=1),
    "texture": PosterizedTexture.make(4, 5),
}


@pytest.mark.parametrize("name", sorted(SCENES))
@given(seed=st.integers(0, 2**32 - 1))
def test_batch_losses_equal_single_calls(name: str, seed: int) -> None:
    problem = SCENES[name]
    X = np.random.default_rng(seed).uniform(problem.lower, problem.upper, (5, problem.dim))
    assert np.allclose(problem.losses(X), [problem(x) for x in X])


@given(controls=st.integers(4, 40), samples=st.integers(1, 200))
def test_spline_basis_sums_to_one_and_its_derivative_to_zero(controls: int, samples: int) -> None:
    basis, derivative = spline_bases(controls, samples)
    assert np.allclose(basis.sum(axis=1), 1) and np.allclose(derivative.sum(axis=1), 0)


CAUSTIC = Caustic.make(controls=16, pixels=16, photons_per_pixel=2)


def test_flat_glass_lights_every_pixel_equally_and_the_hidden_surface_scores_zero() -> None:
    scene = CAUSTIC
    assert np.array_equal(scene.render(scene.x0), np.ones((16, 16)))
    assert scene(scene.hidden) == 0.0 and scene(scene.x0) > 0


def test_caustic_loses_the_photons_that_leave_the_screen() -> None:
    # A wedge of slope 2 * 13/15 (13 spans) moves every photon 0.28 pixels towards column 0:
    # of the 2 per pixel and row, those at a quarter pixel from the left move one pixel left.
    wedge = np.tile(np.linspace(-1, 1, 16), 16)
    image = CAUSTIC.render(wedge)
    assert np.all(image[:, :-1] == 1) and np.all(image[:, -1] == 0.5)  # the last has no right neighbour


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: spline_bases(3, 10), "at least 4 control points, got 3"),
        (lambda: Caustic.make(pixels=1), "pixels >= 2"),
        (lambda: LedDisplay.blank(0, 5), "rows, cols >= 1, got 0 x 5"),
    ],
)
def test_bad_scene_sizes_are_rejected(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_the_ring_display_is_reachable_and_on_off_is_by_sign() -> None:
    display = LedDisplay.ring(6, 7)
    lit = display.target.max()
    assert lit > 0 and display(display.x0) > 0
    on = np.array([display(np.where(np.arange(42) == k, 1.0, -1.0)) for k in range(42)])
    assert on.min() < display(display.x0)  # lighting one LED of the ring helps
    assert display(np.full(42, 1e-9)) == display(np.ones(42))  # only the sign counts
