"""LearnedSmoothing: a black box inside a torch model, differentiable through a learned surrogate."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from zg_asktell.amortised import LearnedSmoothing

MATRIX = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])  # a linear black box R^3 -> R^2


def linear(x: np.ndarray) -> np.ndarray:
    return np.asarray(x @ MATRIX)


def test_learns_the_jacobian_of_a_smooth_function() -> None:
    layer = LearnedSmoothing(linear, 3, 2, sigma=0.3, seed=0)
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(300):
        layer(x)
    probe = x.clone().requires_grad_(True)
    layer(probe)[:, 0].sum().backward()
    assert probe.grad is not None
    learned = probe.grad.mean(0).numpy()
    cosine = learned @ MATRIX[:, 0] / np.linalg.norm(learned) / np.linalg.norm(MATRIX[:, 0])
    assert cosine > 0.95


def test_evaluates_once_per_row_at_jittered_inputs_and_keeps_the_outputs() -> None:
    calls: list[np.ndarray] = []

    def recorded(x: np.ndarray) -> np.ndarray:
        calls.append(x.copy())
        return linear(x)

    layer = LearnedSmoothing(recorded, 3, 2, sigma=0.1, seed=0)
    x = torch.zeros(5, 3)
    layer(x)
    assert len(calls) == 1 and calls[0].shape == (5, 3)
    assert 0 < np.abs(calls[0]).max() < 1.0  # jittered around 0 by sigma
    np.testing.assert_allclose(layer.evaluated.numpy(), linear(calls[0]), rtol=1e-6)


def test_gradient_reaches_the_input_and_never_the_surrogate() -> None:
    layer = LearnedSmoothing(linear, 3, 2, seed=0)
    x = torch.ones(4, 3, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.shape == (4, 3)
    assert all(weight.grad is None for weight in layer.parameters())


def test_same_seed_same_outputs_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        layer = LearnedSmoothing(linear, 3, 2, seed=7)
        x = torch.linspace(-1, 1, 12).reshape(4, 3)
        runs.append([layer(x).detach() for _ in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"in_dim": 0}, r"in_dim=0 must be an integer >= 1"),
        ({"out_dim": 2.5}, r"out_dim=2.5 must be an integer >= 1"),
        ({"sigma": 0.0}, r"sigma=0.0 must be a finite number > 0"),
        ({"lr": float("nan")}, r"lr=nan must be a finite number > 0"),
        ({"frequencies": -1}, r"frequencies=-1 must be an integer >= 0"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    arguments = {"in_dim": 3, "out_dim": 2, **options}
    with pytest.raises(ValueError, match=message):
        LearnedSmoothing(linear, **arguments)  # type: ignore[arg-type]


def test_bad_input_and_bad_outputs_are_named() -> None:
    layer = LearnedSmoothing(linear, 3, 2, seed=0)
    with pytest.raises(ValueError, match=r"input has shape \(4, 2\); expected \(n, 3\)"):
        layer(torch.zeros(4, 2))
    broken = LearnedSmoothing(lambda x: np.full((len(x), 2), np.nan), 3, 2, seed=0)
    with pytest.raises(
        ValueError, match=r"shape \(4, 2\) with 8 non-finite values; expected \(4, 2\) finite"
    ):
        broken(torch.zeros(4, 3))
    assert len(broken.inputs) == 0  # nothing recorded from a failed call


def test_a_saved_and_loaded_copy_continues_exactly_as_the_original() -> None:
    x = torch.linspace(-1, 1, 12).reshape(4, 3)
    original = LearnedSmoothing(linear, 3, 2, memory=8, fit_batch=4, seed=3)
    for _ in range(5):
        original(x)
    saved = io.BytesIO()
    torch.save(original.state_dict(), saved)
    saved.seek(0)
    resumed = LearnedSmoothing(linear, 3, 2, memory=8, fit_batch=4, seed=99)
    resumed.load_state_dict(torch.load(saved))
    for _ in range(3):
        assert torch.equal(resumed(x), original(x))
    assert torch.equal(resumed.inputs, original.inputs)
