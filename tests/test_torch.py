"""zg_asktell.torch.BlackBox: a black box inside a torch model, with a learned gradient."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zg_asktell.torch import BlackBox

MATRIX = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])  # a linear black box R^3 -> R^2
ROOT = Path(__file__).resolve().parents[1]


def linear(x: np.ndarray) -> np.ndarray:
    return np.asarray(x @ MATRIX)


def first_output_gradient(layer: BlackBox, x: torch.Tensor) -> np.ndarray:
    """Mean gradient of the layer's first output over the rows of ``x``."""
    probe = x.clone().requires_grad_(True)
    layer(probe)[:, 0].sum().backward()
    assert probe.grad is not None
    return probe.grad.mean(0).numpy()


def test_the_surrogate_learns_the_jacobian_of_a_smooth_function() -> None:
    layer = BlackBox(linear, 3, 2, sigma=0.3, correction=0.0, seed=0)
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(300):
        layer(x)
    learned = first_output_gradient(layer, x)
    cosine = learned @ MATRIX[:, 0] / np.linalg.norm(learned) / np.linalg.norm(MATRIX[:, 0])
    assert cosine > 0.95


def test_the_correction_makes_the_gradient_unbiased_whatever_the_surrogate() -> None:
    # A surrogate that cannot learn (lr ~ 0) is wrong everywhere; the corrected gradient
    # still averages to the true Jacobian, the uncorrected one does not.
    x = torch.zeros(20000, 3)
    for correction, right in ((1.0, True), (0.0, False)):
        layer = BlackBox(linear, 3, 2, sigma=0.5, correction=correction, lr=1e-12, seed=0)
        layer(x[:64])
        error = np.abs(first_output_gradient(layer, x) - MATRIX[:, 0]).max()
        assert (error < 0.1) == right, (correction, error)


def test_evaluates_once_per_call_at_jittered_rows_and_keeps_the_real_outputs() -> None:
    calls: list[np.ndarray] = []

    def recorded(x: np.ndarray) -> torch.Tensor:  # a tensor is accepted too
        calls.append(x.copy())
        return torch.as_tensor(linear(x))

    layer = BlackBox(recorded, 3, 2, sigma=0.1, seed=0)
    x = torch.zeros(2, 5, 3, dtype=torch.float64)  # leading axes are batched into one call
    y = layer(x)
    assert len(calls) == 1 and calls[0].shape == (10, 3)
    assert 0 < np.abs(calls[0]).max() < 1.0  # jittered around 0 by sigma
    assert y.shape == layer.evaluated.shape == (2, 5, 2) and layer.asked.shape == (2, 5, 3)
    assert y.dtype == layer.evaluated.dtype == torch.float64  # the input's dtype and device
    np.testing.assert_allclose(layer.evaluated.reshape(10, 2).numpy(), linear(calls[0]), rtol=1e-6)
    np.testing.assert_allclose(layer.asked.reshape(10, 3).numpy(), calls[0])


def test_gradient_reaches_the_input_and_never_the_surrogate() -> None:
    layer = BlackBox(linear, 3, 2, seed=0, device=torch.device("cpu"))
    x = torch.ones(4, 3, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.shape == (4, 3) and bool(torch.isfinite(x.grad).all())
    assert all(weight.grad is None for weight in layer.parameters())


def test_same_seed_same_outputs_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        layer = BlackBox(linear, 3, 2, seed=7)
        x = torch.linspace(-1, 1, 12).reshape(4, 3)
        runs.append([layer(x).detach() for _ in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"in_dim": 0}, r"in_dim=0 must be an integer >= 1"),
        ({"out_dim": 2.5}, r"out_dim=2.5 must be an integer >= 1"),
        ({"memory": True}, r"memory=True must be an integer >= 1"),
        ({"sigma": 0.0}, r"sigma=0.0 must be a finite number > 0"),
        ({"lr": float("nan")}, r"lr=nan must be a finite number > 0"),
        ({"frequencies": -1}, r"frequencies=-1 must be an integer >= 0"),
        ({"correction": 1.5}, r"correction=1.5 must be a number in \[0, 1\]"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    arguments = {"in_dim": 3, "out_dim": 2, **options}
    with pytest.raises(ValueError, match=message):
        BlackBox(linear, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(4, 2), r"input is \(4, 2\); expected a float tensor of shape \(\.\.\., 3\)"),
        (torch.zeros(4, 3, dtype=torch.int64), r"input is \(4, 3\); expected a float tensor"),
        (np.zeros((4, 3)), r"input is ndarray; expected a float tensor"),
        (torch.full((4, 3), float("inf")), r"input has non-finite values"),
    ],
)
def test_bad_input_is_named(x: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BlackBox(linear, 3, 2, seed=0)(x)  # type: ignore[arg-type]


def test_bad_outputs_are_named_and_nothing_is_recorded() -> None:
    broken = BlackBox(lambda x: np.full((len(x), 2), np.nan), 3, 2, seed=0)
    message = r"shape \(4, 2\) with 8 non-finite values; expected \(4, 2\) finite"
    with pytest.raises(ValueError, match=message):
        broken(torch.zeros(4, 3))
    narrow = BlackBox(lambda x: np.zeros((len(x), 1)), 3, 2, seed=0)
    with pytest.raises(ValueError, match=r"shape \(4, 1\) with 0 non-finite values; expected \(4, 2\)"):
        narrow(torch.zeros(4, 3))
    assert broken.stored == narrow.stored == 0


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=0, max_size=2), st.integers(1, 4))
def test_any_leading_shape_maps_to_the_same_shape_with_out_dim(leading: list[int], out_dim: int) -> None:
    layer = BlackBox(lambda x: np.tile(x[:, :1], out_dim), 3, out_dim, width=8, seed=0)
    y = layer(torch.rand(*leading, 3))
    assert y.shape == (*leading, out_dim) and bool(torch.isfinite(y).all())


def test_a_saved_and_loaded_copy_continues_exactly_as_the_original() -> None:
    x = torch.linspace(-1, 1, 12).reshape(4, 3)
    original = BlackBox(linear, 3, 2, memory=10, fit_batch=4, seed=3)
    for _ in range(5):  # 20 pairs through a memory of 10: the ring has wrapped
        original(x)
    saved = io.BytesIO()
    torch.save(original.state_dict(), saved)
    saved.seek(0)
    resumed = BlackBox(linear, 3, 2, memory=10, fit_batch=4, seed=99)
    resumed.load_state_dict(torch.load(saved))
    for _ in range(3):
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        assert torch.equal(resumed(a), original(b))
        resumed(a).sum().backward()
        original(b).sum().backward()
        assert torch.equal(a.grad, b.grad)  # type: ignore[arg-type]
    assert torch.equal(resumed.features, original.features) and resumed.coefficient == original.coefficient


def test_the_old_name_still_imports_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"use zg_asktell\.torch\.BlackBox"):
        from zg_asktell.amortised import LearnedSmoothing
    assert LearnedSmoothing is BlackBox


def guide_example() -> dict[str, object]:
    """Run the training example of docs/torch.md and return its namespace."""
    block = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "torch.md").read_text(), re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "docs/torch.md", "exec"), namespace)
    return namespace


@pytest.mark.slow
def test_the_guide_example_trains_the_encoder_through_the_hard_edged_renderer() -> None:
    namespace = guide_example()  # 3,000 steps of 32 images: about a minute
    held_out = namespace["held_out"]
    assert isinstance(held_out, float) and held_out < 0.01  # drawing nothing: 0.137
