"""The problems and experiments behind docs/surrogate.md behave as the page says."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.calibrate import PROBLEMS, SWEEPS, table  # noqa: E402
from bench.problems import AdditiveNoise, HardEdge1D, LedDisplay, MonteCarloRaster, Sphere  # noqa: E402


def test_hard_edge_1d_is_zero_at_the_goal_and_flat_once_the_boxes_part() -> None:
    problem = HardEdge1D.make(1)
    assert problem([HardEdge1D.goal]) == 0.0
    assert problem([-0.6]) == problem([-0.7]) > 0  # no overlap: a plateau
    with pytest.raises(ValueError, match="one parameter"):
        HardEdge1D.make(2)


def test_led_display_depends_only_on_which_leds_are_on() -> None:
    problem = LedDisplay.make(336, seed=0)
    x = np.random.default_rng(1).uniform(-1, 1, 336)
    assert problem(x) == problem(x * 0.5)  # same signs, same LEDs
    pattern = np.random.default_rng(0).uniform(-1, 1, 336) * (np.arange(336) % 3 == 0)  # make()'s
    assert problem(pattern) == 0.0
    assert problem(problem.x0) > 0


def test_monte_carlo_raster_is_noisy_and_its_expected_loss_is_not() -> None:
    problem = MonteCarloRaster.noisy(10, samples=1, seed=0)
    calls = {problem(problem.x0) for _ in range(4)}
    assert len(calls) == 4
    assert problem.expected(problem.x0) == problem.expected(problem.x0)
    assert abs(np.mean(list(calls)) - problem.expected(problem.x0)) < 0.1 * problem.expected(problem.x0)


def test_additive_noise_scales_with_the_start_loss() -> None:
    base = Sphere.make(5)
    problem = AdditiveNoise.around(base, 0.1, seed=0)
    values = [problem(base.x0) for _ in range(400)]
    assert problem.expected(base.x0) == base(base.x0)
    assert np.std(values) == pytest.approx(0.1 * base(base.x0), rel=0.15)


def test_every_sweep_names_known_problems_and_valid_presets() -> None:
    from zg_asktell import preset

    for rows in SWEEPS.values():
        for problem_name, preset_name, changes in rows:
            assert problem_name in PROBLEMS
            preset(preset_name, **changes)  # raises on a bad option


def test_table_prints_ratios_to_es_and_names_zeros() -> None:
    medians = np.array([[0.2, 0.0], [0.08, 0.0], [0.1, 0.0], [0.1, 0.0], [0.05, 0.0]])  # ESTIMATORS' order
    text = table("paper", [3000, 30000], np.vstack([medians] * 5), seeds=3)
    assert "| hard-edge-1d (0.391) | default | - | 0.08 (0.80x) | 0 (both 0) |" in text
    assert "| hard-edge-1d (0.391) | surrogate | - | 0.1 (1.00x) | 0 (both 0) |" in text
    assert "| hard-edge-1d (0.391) | reference | - | 0.2 (2.00x) | 0 (both 0) |" in text


def test_stroke_renderer_draws_hard_edged_ink_along_the_polyline() -> None:
    from bench.amortised import STROKE_POINTS, strokes

    diagonal = np.linspace(0.2, 0.8, STROKE_POINTS).repeat(2)[None]  # points on the diagonal
    image = strokes(diagonal).reshape(16, 16)
    assert set(np.unique(image)) == {0.0, 1.0}
    assert np.all(np.diag(image)[4:12] == 1) and image[0, 15] == image[15, 0] == 0
    assert np.array_equal(strokes(diagonal + 1e-4), strokes(diagonal))  # flat almost everywhere


def test_bar_renderer_draws_one_hard_edged_bar_whose_angle_wraps() -> None:
    from bench.amortised import bars

    p = np.array([[0.5, 0.5, 0.0, 0.5, 0.5, 1.0]])  # centred, horizontal, full ink
    image = bars(p).reshape(24, 24)
    assert set(np.unique(image)) == {0.0, 1.0} and image[12, 12] == 1 and image[0, 0] == 0
    assert np.array_equal(bars(p + [1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 0]), bars(p))  # flat in the geometry
    assert bars(p * [1, 1, 1, 1, 1, 0]).max() == 0.3  # the ink scales the bar's value
    turned = p.copy()
    turned[0, 2] = 1.0  # 180 degrees: the same bar
    np.testing.assert_array_equal(bars(turned), bars(p))
    assert not np.array_equal(bars(p + [0, 0, 0.25, 0, 0, 0]), bars(p))  # 45 degrees differs


def test_amortised_scores_give_held_out_and_training_losses_of_one_run() -> None:
    from bench.amortised import _bars, scores, train

    few = _bars(0, images=512)  # bars-large: the same with 32,768
    assert len(few.inputs) == 512 and few.held_out == 256
    held_out, training, seconds = scores("bars", "es", 0.05, 1e-3, [64, 6400], seed=0)
    assert seconds > 0 and len(held_out) == len(training) == 2
    assert training[1] < 0.9 * training[0] and training != held_out  # other images, both learnt
    assert train("bars", "es", 0.05, 1e-3, [64, 6400], seed=0)[0] == held_out


@pytest.mark.parametrize("name", ["discs-mc", "strokes-mc"])
def test_monte_carlo_tasks_render_noisy_images_that_average_to_their_scored_image(name: str) -> None:
    from bench.amortised import TASKS

    task = TASKS[name](0)
    assert task.scored is not None
    params = np.linspace(0.3, 0.7, task.params)[None]
    renders = np.concatenate([task.render(params) for _ in range(400)])
    assert len({row.tobytes() for row in renders[:4]}) == 4  # every render draws new sub-pixel samples
    assert np.array_equal(task.scored(params), task.scored(params))
    np.testing.assert_allclose(renders.mean(0), task.scored(params)[0], atol=0.1)  # 400 samples: 4 sd
    assert 0 < np.abs(renders - task.scored(params)).mean() < 0.05  # noise only along the edge


def test_stroke_vae_samples_its_code_in_training_and_decodes_the_mean_in_eval() -> None:
    from bench.amortised import StrokeVAE

    torch.manual_seed(0)
    vae, images = StrokeVAE(64), torch.randn(5, 64)
    assert not torch.equal(vae(images), vae(images))  # a fresh latent sample per call
    assert float(vae.kl.detach()) > 0
    vae.eval()
    assert torch.equal(vae(images), vae(images))
    with torch.no_grad():  # codes distributed exactly as the prior: no KL
        vae.encode[-1].weight.zero_()
        vae.encode[-1].bias.zero_()
    vae(images)
    assert float(vae.kl.detach()) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "sigma", "nothing_drawn"),
    [
        ("discs", 0.1, 0.123),
        ("discs-mc", 0.1, 0.113),
        ("strokes", 0.05, 0.240),
        ("strokes-mc", 0.05, 0.240),
        ("vae-strokes-mc", 0.05, 0.240),
    ],
)
def test_amortised_training_learns_with_both_estimators(
    task: str, sigma: float, nothing_drawn: float
) -> None:
    from bench.amortised import train

    for method in ("es", "surrogate"):
        losses, seconds = train(task, method, sigma, 3e-3, [640, 6400], seed=0)
        assert seconds > 0
        assert all(math.isfinite(v) for v in losses)
        assert losses[1] < 0.9 * nothing_drawn


def test_explained_shares_cover_each_quarter_and_the_table_shows_the_ratio_to_es() -> None:
    from bench.explained import QUARTERS, shares, table

    quarters, loss = shares("rosenbrock-2", 320, seed=0)
    assert len(quarters) == QUARTERS and all(0.0 <= q <= 1.0 for q in quarters)
    assert math.isfinite(loss)
    text = table(["rosenbrock-2"], [320], 1, [([0.1, 0.2, 0.3, 0.4], 0.5)], [2.0])
    assert "| rosenbrock-2 (2) | 320 | 0.100 | 0.200 | 0.300 | 0.400 | 0.25x |" in text
