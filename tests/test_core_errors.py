"""Every bad input fails with the documented exception and a helpful message."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import FloatArray, assert_same_future, losses_of, make_opt, run_cycles

from zg_asktell import ZeroGrads, ZeroGradsConfig, preset
from zg_asktell._optimizer import STATE_FORMAT

NAN, INF = math.nan, math.inf
X0 = np.zeros(3)


def _case(call: Callable[[], object], error: type[BaseException], match: str, name: str, **marks: Any) -> Any:
    return pytest.param(call, error, match, id=name, **marks)


# ----------------------------------------------------------------- constructor inputs
CONSTRUCTOR_CASES = [
    _case(
        lambda: ZeroGrads(np.zeros((2, 2))),
        ValueError,
        r"x0 must be a non-empty 1-D array, got shape \(2, 2\)",
        "x0-2d",
    ),
    _case(
        lambda: ZeroGrads([]), ValueError, r"x0 must be a non-empty 1-D array, got shape \(0,\)", "x0-empty"
    ),
    _case(
        lambda: ZeroGrads(1.5), ValueError, r"x0 must be a non-empty 1-D array, got shape \(\)", "x0-scalar"
    ),
    _case(lambda: ZeroGrads(["a", "b"]), TypeError, r"x0 must be a numeric array, got list", "x0-strings"),
    _case(lambda: ZeroGrads([1 + 2j, 0]), TypeError, r"x0 must be a numeric array", "x0-complex"),
    _case(lambda: ZeroGrads([0.0, NAN]), ValueError, r"x0 contains NaN or inf", "x0-nan"),
    _case(lambda: ZeroGrads([0.0, -INF]), ValueError, r"x0 contains NaN or inf", "x0-inf"),
    _case(
        lambda: ZeroGrads(X0, np.ones(2)),
        ValueError,
        r"sigma has shape \(2,\); give a scalar or shape \(3,\)",
        "sigma-shape",
    ),
    _case(lambda: ZeroGrads(X0, np.ones((3, 1))), ValueError, r"sigma has shape \(3, 1\)", "sigma-2d"),
    _case(lambda: ZeroGrads(X0, 0.0), ValueError, r"sigma must be positive and finite", "sigma-zero"),
    _case(
        lambda: ZeroGrads(X0, [1.0, -1.0, 1.0]),
        ValueError,
        r"sigma must be positive and finite",
        "sigma-negative",
    ),
    _case(lambda: ZeroGrads(X0, INF), ValueError, r"sigma must be positive and finite", "sigma-inf"),
    _case(lambda: ZeroGrads(X0, NAN), ValueError, r"sigma contains NaN", "sigma-nan"),
    _case(
        lambda: ZeroGrads(X0, "wide"),
        TypeError,
        r"sigma must be a number or a numeric array of length 3",
        "sigma-str",
    ),
    _case(lambda: ZeroGrads(X0, lower=np.zeros(2) - 1), ValueError, r"lower has shape \(2,\)", "lower-shape"),
    _case(
        lambda: ZeroGrads(X0, upper=np.ones((1, 3))), ValueError, r"upper has shape \(1, 3\)", "upper-shape"
    ),
    _case(
        lambda: ZeroGrads(X0, lower=[-1, NAN, -1]), ValueError, r"lower contains NaN; use \+-inf", "lower-nan"
    ),
    _case(
        lambda: ZeroGrads(X0, lower="low"),
        TypeError,
        r"lower must be a number or a numeric array",
        "lower-str",
    ),
    _case(
        lambda: ZeroGrads(X0, lower=1.0, upper=1.0),
        ValueError,
        r"lower\[0\]=1\.0 must be below upper\[0\]=1\.0",
        "bounds-equal",
    ),
    _case(
        lambda: ZeroGrads(X0, lower=[-1, -1, 2], upper=[1, 1, 1]),
        ValueError,
        r"lower\[2\]=2\.0 must be below upper\[2\]=1\.0",
        "bounds-crossed",
    ),
    _case(
        lambda: ZeroGrads([0, 0.5, 0], lower=-1, upper=0.25),
        ValueError,
        r"x0\[1\]=0\.5 lies outside the bounds",
        "x0-above",
    ),
    _case(
        lambda: ZeroGrads(X0, lower=[-1, -1, 0.1]),
        ValueError,
        r"x0\[2\]=0\.0 lies outside the bounds",
        "x0-below",
    ),
    _case(
        lambda: ZeroGrads(X0, config={"lr": 0.1}),
        TypeError,
        r"config must be a ZeroGradsConfig, got dict",
        "config-dict",
    ),
    _case(
        lambda: ZeroGrads(X0, learning_rate=0.1),
        TypeError,
        r"unknown option\(s\) \['learning_rate'\]",
        "unknown-option",
    ),
]
for bad in (0, -3, 2.5, True, "10", np.nan):
    CONSTRUCTOR_CASES.append(
        _case(
            lambda b=bad: ZeroGrads(X0, budget=b),
            ValueError,
            r"budget=.* must be a positive integer or None",
            f"budget-{bad!r}",
        )
    )
for bad in (-1, 1.5, True, "0", 2**64, 2**70):
    CONSTRUCTOR_CASES.append(
        _case(
            lambda b=bad: ZeroGrads(X0, seed=b),
            ValueError,
            r"seed=.* must be an integer in \[0, 2\*\*64\) or None",
            f"seed-{bad!r}",
        )
    )


# ---------------------------------------------------------------------- config values
def _config_case(field: str, value: object, match: str, **marks: Any) -> Any:
    return _case(lambda: ZeroGradsConfig(**{field: value}), ValueError, match, f"{field}={value!r}", **marks)


INT_FIELDS = {
    "batch_size": 2,
    "hidden_width": 1,
    "hidden_layers": 1,
    "ensemble_size": 1,
    "encoding_frequencies": 0,
    "fit_steps": 1,
    "theta_steps": 1,
    "threads": 1,
}
POSITIVE_FLOATS = ("lr", "lr_surrogate", "sigma_final")
NONNEGATIVE_FLOATS = ("jitter", "weight_decay")
CHOICES = {
    "estimator": "ES",
    "nonfinite_policy": "zero",
    "recommendation": "last",
    "dtype": "float16",
    "loss_scale": "fixed",
}
BOOL_FIELDS = ("antithetic", "zero_init_output", "fit_before_step", "step_follows_sigma")

CONFIG_CASES = []
for field, low in INT_FIELDS.items():
    optional = field in ("hidden_width", "threads")  # None: chosen from the dimension, torch's own
    for value in (low - 1, -5, float(low + 2), NAN, INF, "4", True) + (() if optional else (None,)):
        CONFIG_CASES.append(_config_case(field, value, rf"{field}=.* must be an integer >= {low}"))
for field in POSITIVE_FLOATS:
    for value in (0.0, -0.1, NAN, INF, -INF, "0.1", True) + ((None,) if field != "lr" else ()):
        CONFIG_CASES.append(_config_case(field, value, rf"{field}=.* must be a finite number > 0\.0"))
for field in NONNEGATIVE_FLOATS:
    for value in (-1e-9, NAN, INF, "0", False):
        CONFIG_CASES.append(_config_case(field, value, rf"{field}=.* must be a finite number >= 0\.0"))
for field in ("gradient_averaging", "sigma_hold"):
    for value in (-0.1, 1.0, 1.5, NAN, INF, "0.9"):
        CONFIG_CASES.append(
            _config_case(field, value, rf"{field}=.* must be a finite number >= 0\.0 and < 1\.0")
        )
for field, value in CHOICES.items():
    for bad in (value, 1, None):
        CONFIG_CASES.append(_config_case(field, bad, rf"{field}=.* must be one of \["))
for value in ("", 0, None):
    CONFIG_CASES.append(_config_case("device", value, r"device=.* must be a torch device name like 'cpu'"))
for field in BOOL_FIELDS:
    for value in ("no", None):
        CONFIG_CASES.append(_config_case(field, value, rf"{field}=.* must be True or False"))
CONFIG_CASES += [
    _config_case("sigma_final", 1.5, r"sigma_final=1\.5 must be at most 1"),
    _case(
        lambda: ZeroGradsConfig(batch_size=5),
        ValueError,
        r"batch_size=5 must be even with antithetic=True",
        "odd-batch-antithetic",
    ),
    _case(
        lambda: ZeroGradsConfig(batch_size=1),
        ValueError,
        r"batch_size=1 must be an integer >= 2",
        "batch1-antithetic",
    ),
    _case(
        lambda: ZeroGradsConfig(batch_size=0, antithetic=False),
        ValueError,
        r"batch_size=0 must be an integer >= 1",
        "batch0-plain",
    ),
    _case(
        lambda: ZeroGradsConfig(estimator="es", theta_steps=2),
        ValueError,
        r"theta_steps=2 needs estimator='surrogate' .* with estimator='es' use theta_steps=1",
        "es-theta-steps",
    ),
    _case(
        lambda: ZeroGradsConfig(theta_steps=2),
        ValueError,
        r"theta_steps=2 needs estimator='surrogate' .* with estimator='control-variate' use theta_steps=1",
        "control-variate-theta-steps",
    ),
    _case(
        lambda: ZeroGrads(X0, estimator="es", theta_steps=3),
        ValueError,
        r"theta_steps=3 needs estimator='surrogate'",
        "es-theta-steps-kw",
    ),
    _case(
        lambda: preset("es", theta_steps=2),
        ValueError,
        r"theta_steps=2 needs estimator='surrogate'",
        "preset-es-theta-steps",
    ),
    _case(lambda: ZeroGrads(X0, batch_size=7), ValueError, r"batch_size=7 must be even", "odd-batch-kw"),
    _case(
        lambda: ZeroGradsConfig(learning_rate=0.1),
        TypeError,
        r"unexpected keyword argument 'learning_rate'",
        "config-unknown",
    ),
    _case(
        lambda: ZeroGradsConfig().replace(lr=0.1, foo=1),
        ValueError,
        r"unknown ZeroGradsConfig option\(s\): \['foo'\]",
        "replace-unknown",
    ),
    _case(
        lambda: ZeroGradsConfig().replace(lr=-1.0),
        ValueError,
        r"lr=-1\.0 must be a finite number > 0\.0",
        "replace-invalid",
    ),
    _case(
        lambda: ZeroGradsConfig.from_dict({"lr": 0.1, "momentum": 0.9}),
        ValueError,
        r"unknown ZeroGradsConfig option\(s\): \['momentum'\]",
        "from-dict-unknown",
    ),
    _case(lambda: ZeroGradsConfig(16), TypeError, r"positional argument", "config-positional"),  # type: ignore[misc]
    _case(
        lambda: preset("nope"),
        ValueError,
        r"unknown preset 'nope'; choose one of \['default', ",
        "preset-unknown",
    ),
    _case(
        lambda: preset("es", momentum=0.9),
        ValueError,
        r"unknown ZeroGradsConfig option\(s\): \['momentum'\]",
        "preset-unknown-change",
    ),
    _case(
        lambda: preset("default", lr=0.0),
        ValueError,
        r"lr=0\.0 must be a finite number > 0\.0",
        "preset-bad-change",
    ),
    _case(
        lambda: setattr(ZeroGradsConfig(), "lr", 1.0),
        dataclasses.FrozenInstanceError,
        r"cannot assign to field 'lr'",
        "config-frozen",
    ),
]


# ------------------------------------------------------------------------ ask / tell
def _ask(n: object) -> object:
    return make_opt().ask(n)  # type: ignore[arg-type]


ASK_CASES = [
    _case(
        lambda b=bad: _ask(b),
        ValueError,
        r"n=.* must be a positive integer \(candidates to ask\)",
        f"ask-{bad!r}",
    )
    for bad in (0, -1, 2.5, True, "4")
]

# Bad tells built from the still pending rows P (4, 3) of a half-told batch: every bad
# call names real pending rows, so a half-recorded call would show in the counters.
BadTell = Callable[[FloatArray], tuple[Any, Any]]
BAD_TELLS: list[tuple[str, BadTell, type[BaseException], str]] = [
    (
        "X-columns",
        lambda P: (P[:, :2], losses_of(P)),
        ValueError,
        r"X has shape \(2, 2\) but the optimizer has dimension 3",
    ),
    (
        "X-1d-short",
        lambda P: (P[0, :2], [1.0]),
        ValueError,
        r"X has shape \(2,\) but the optimizer has dimension 3",
    ),
    ("X-3d", lambda P: (P[None], losses_of(P)), ValueError, r"X has shape \(1, 2, 3\)"),
    (
        "X-strings",
        lambda P: (P.astype(str), losses_of(P)),
        TypeError,
        r"X must be a numeric array of candidates",
    ),
    ("X-complex", lambda P: (P + 0j, losses_of(P)), TypeError, r"X must be a numeric array of candidates"),
    (
        "X-nan",
        lambda P: (np.vstack([P, [[NAN, 0, 0]]]), [*losses_of(P), 1.0]),
        ValueError,
        r"X contains NaN or inf",
    ),
    (
        "X-inf",
        lambda P: (np.vstack([P, [[0, INF, 0]]]), [*losses_of(P), 1.0]),
        ValueError,
        r"X contains NaN or inf",
    ),
    ("too-few-losses", lambda P: (P, losses_of(P)[:1]), ValueError, r"got 1 losses for 2 candidates"),
    ("too-many-losses", lambda P: (P, [*losses_of(P), 0.0]), ValueError, r"got 3 losses for 2 candidates"),
    ("scalar-loss-many-rows", lambda P: (P, 1.0), TypeError, r"losses must be a sequence of 2 numbers"),
    ("losses-string", lambda P: (P, "12"), TypeError, r"losses must be a sequence of 2 numbers"),
    (
        "loss-str",
        lambda P: (P, [1.0, "2.0"]),
        TypeError,
        r"loss #1 is '2\.0' \(str\): losses must be real numbers",
    ),
    ("loss-complex", lambda P: (P, [1.0, 2 + 0j]), TypeError, r"loss #1 is \(2\+0j\) \(complex\)"),
    (
        "loss-np-complex",
        lambda P: (P, [1.0, np.complex128(2.0)]),
        TypeError,
        r"loss #1 is complex \(np\.complex128\(2\+0j\)\)",
    ),
    (
        "losses-complex-array",
        lambda P: (P, np.array([1.0, 2.0]) + 0j),
        TypeError,
        r"loss #0 is \(1\+0j\) \(complex\)",
    ),
    ("loss-bool", lambda P: (P, [1.0, True]), TypeError, r"loss #1 is True \(bool\)"),
    (
        "loss-np-bool",
        lambda P: (P, np.array([False, True])),
        TypeError,
        r"loss #0 is .*False.*losses must be real numbers",
    ),
    ("loss-list", lambda P: (P, [1.0, [2.0, 3.0]]), TypeError, r"loss #1 is \[2\.0, 3\.0\]"),
]


def _half_told(seed: int = 0) -> tuple[ZeroGrads, FloatArray]:
    """An optimizer after one update with half a batch told; returns it and the 2 pending rows."""
    opt = make_opt(seed=seed)
    run_cycles(opt, 1)
    X = opt.ask()
    opt.tell(X[:2], losses_of(X[:2]))
    return opt, X[2:]


@pytest.mark.parametrize(("call", "error", "match"), CONSTRUCTOR_CASES + CONFIG_CASES + ASK_CASES)
def test_bad_input_raises(call: Callable[[], object], error: type[BaseException], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    ("bad_tell", "error", "match"), [t[1:] for t in BAD_TELLS], ids=[t[0] for t in BAD_TELLS]
)
def test_bad_tell_raises_and_loses_nothing(bad_tell: BadTell, error: type[BaseException], match: str) -> None:
    opt, pending = _half_told()
    reference, reference_pending = _half_told()
    X, losses = bad_tell(pending.copy())
    with pytest.raises(error, match=match):
        opt.tell(X, losses)
    assert (opt.evaluations, opt.n_pending, opt.n_failed, opt.iteration) == (6, 2, 0, 1)
    opt.tell(pending, losses_of(pending))
    reference.tell(reference_pending, losses_of(reference_pending))
    assert opt.iteration == 2
    assert_same_future(opt, reference)


# --------------------------------------------------------------------- device and state
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
@pytest.mark.parametrize(
    "call",
    [
        lambda path: ZeroGrads(X0, device="cuda"),
        lambda path: ZeroGrads(X0, config=preset("es", device="cuda:0")),
        lambda path: ZeroGrads.from_state_dict(make_opt().state_dict(), device="cuda"),
        lambda path: (make_opt().save(path), ZeroGrads.load(path, device="cuda")),
    ],
    ids=["constructor", "config", "from_state_dict", "load"],
)
def test_cuda_without_gpu(call: Callable[[Path], object], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"device='cuda(:0)?' but torch sees no CUDA GPU; use 'cpu'"):
        call(tmp_path / "state.pt")


def test_load_state_dict_of_other_dimension() -> None:
    with pytest.raises(
        ValueError,
        match=r"the state has dimension 2 but this optimizer has 3; use ZeroGrads\.from_state_dict",
    ):
        make_opt(3).load_state_dict(make_opt(2).state_dict())


@pytest.mark.parametrize(
    "state",
    [{}, {"format": "zg_asktell.ZeroGrads/0"}, {"x0": torch.zeros(3)}, [STATE_FORMAT], None],
    ids=["empty", "other-version", "no-format", "list", "none"],
)
def test_foreign_state_dict(state: Any) -> None:
    with pytest.raises(
        ValueError, match=r"not a ZeroGrads state \(expected format 'zg_asktell\.ZeroGrads/1'\)"
    ):
        ZeroGrads.from_state_dict(state)
    with pytest.raises(ValueError, match=r"not a ZeroGrads state"):
        make_opt().load_state_dict(state)


UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Tripwire:
    """Pickles to a call of :func:`_record_unpickling`: loading it must never run code."""

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return _record_unpickling, ("tripwire",)


def _write_corrupt(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4)


def _write_truncated(path: Path) -> None:
    make_opt().save(path)
    path.write_bytes(path.read_bytes()[:200])


def _write_text(path: Path) -> None:
    path.write_text("theta: [0, 0, 0]\n")


def _write_plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"format": STATE_FORMAT}, protocol=2))


def _write_arbitrary_object(path: Path) -> None:
    torch.save({"format": STATE_FORMAT, "payload": Tripwire()}, path)


@pytest.mark.parametrize(
    "write",
    [_write_corrupt, _write_truncated, _write_text, _write_plain_pickle, _write_arbitrary_object],
    ids=["random-bytes", "truncated", "text", "plain-pickle", "arbitrary-object"],
)
def test_load_unreadable_file(write: Callable[[Path], None], tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    write(path)
    with pytest.raises(ValueError, match=r"is not a readable ZeroGrads save file"):
        ZeroGrads.load(path)
    assert UNPICKLED == []


@pytest.mark.parametrize(
    "content",
    [
        torch.zeros(3),
        {"theta": torch.zeros(3)},
        {"format": "zg_asktell.ZeroGrads/2", "x0": torch.zeros(3)},
        [1, 2],
    ],
    ids=["tensor", "weights-dict", "future-format", "list"],
)
def test_load_foreign_torch_file(content: Any, tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=r"not a ZeroGrads state"):
        ZeroGrads.load(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ZeroGrads.load(tmp_path / "missing.pt")
