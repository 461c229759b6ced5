"""The ZeroGrads ask/tell optimizer."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ._checkpoint import check_state, read_state, write_state
from ._config import ZeroGradsConfig, is_integer
from ._control import Observation, make_controller
from ._estimators import ControlVariateEstimator, ESEstimator, GradientEstimator, SurrogateEstimator
from ._targets import LossScaler, ties
from ._validation import (
    ToldKeys,
    as_vector,
    broadcast,
    check_bounds,
    check_device,
    check_tell,
    initial_sigma,
    losses_list,
    numeric,
    warn_past_budget,
)

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike
STATE_FORMAT = "zg_asktell.ZeroGrads/1"
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_BOX_FRACTION = 0.25  # the adaptive sigma stays below this fraction of the box's width
_PENDING_LIMIT = 64  # batches: candidates asked longer ago and never told are forgotten
_FOREIGN = 2**62  # order of never-asked points: after every asked one


@dataclass
class _Sample:
    """One candidate: regression input and unit offset in normalised space, its sigma."""

    z: npt.NDArray[Any]
    offset: npt.NDArray[Any]  # NaN for points the optimizer never asked
    sigma: float | npt.NDArray[Any]  # per coordinate when the width has a shape
    order: int  # ask order (never-asked points after all asked ones): fixes the update's row order


class ZeroGrads:
    """Ask/tell minimizer of black-box losses with zero or undefined gradients.

    Candidates are drawn around the current parameters ``theta`` from a Gaussian of
    width ``sigma``; their losses fit a warm-started neural surrogate of the smoothed
    loss, whose gradient at ``theta`` drives an Adam step (Fischer & Ritschel, ZeroGrads).

    Args:
        x0: starting point, shape (d,).
        sigma: initial smoothing width in parameter units, scalar or shape (d,): a first
            guess that the default controller adapts, per coordinate. Defaults to 0.1 of the
            box width with finite bounds, else 1.
        lower, upper: optional box bounds (scalars or shape (d,)); every asked candidate
            and ``theta`` stay inside.
        budget: evaluations planned (optional): a long run spreads the width's adaptation
            over it, and ``recommend()`` returns the best point once it is spent.
        config: a :class:`ZeroGradsConfig` (e.g. ``preset("es")``); keyword ``options``
            override its fields.
        seed: seed of the optimizer's own torch generator (global RNGs are not touched).

    Example:
        >>> import numpy as np
        >>> from zg_asktell import ZeroGrads
        >>> opt = ZeroGrads(np.full(20, 3.0), sigma=1.0, budget=4000, seed=0)
        >>> for _ in range(250):
        ...     X = opt.ask()
        ...     opt.tell(X, [float(np.sum(np.round(x) ** 2)) for x in X])
        >>> opt.best_loss < 20.0
        True
    """

    def __init__(
        self,
        x0: ArrayLike,
        sigma: ArrayLike | None = None,
        *,
        lower: ArrayLike | None = None,
        upper: ArrayLike | None = None,
        budget: int | None = None,
        config: ZeroGradsConfig | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self._config = _with_options(config or ZeroGradsConfig(), options)
        x0_array = as_vector(x0, "x0")
        dim = x0_array.size
        self._lower = None if lower is None else broadcast(lower, dim, "lower")
        self._upper = None if upper is None else broadcast(upper, dim, "upper")
        check_bounds(x0_array, self._lower, self._upper)
        self._x0 = x0_array
        self._scale = initial_sigma(sigma, dim, self._lower, self._upper)
        if budget is not None and (not is_integer(budget) or budget < 1):
            raise ValueError(f"budget={budget!r} must be a positive integer or None")
        self._budget = None if budget is None else int(budget)
        if seed is not None and (not is_integer(seed) or not 0 <= seed < 2**64):
            raise ValueError(f"seed={seed!r} must be an integer in [0, 2**64) or None")
        self._generator = torch.Generator()
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))
        try:
            self._device = torch.device(self._config.device)
        except RuntimeError as error:
            raise ValueError(f"device={self._config.device!r} is not a torch device: {error}") from error
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self._config.device!r} but torch sees no CUDA GPU; use 'cpu'")
        check_device(self._device, self._config.device)
        self._dtype = getattr(torch, self._config.dtype)
        self._np_dtype = np.dtype(self._config.dtype)  # of the stored samples
        self._z_lower = None if self._lower is None else (self._lower - self._x0) / self._scale
        self._z_upper = None if self._upper is None else (self._upper - self._x0) / self._scale
        self._theta = torch.zeros(dim, device=self._device, dtype=self._dtype)
        self._adam_m = torch.zeros_like(self._theta)
        self._adam_v = torch.zeros_like(self._theta)
        self._gradient_average: torch.Tensor | None = None
        self._last_step: torch.Tensor | None = None
        self._history: list[tuple[float, float, float]] = []  # per update: told, sigma and lr factors
        box = _max_sigma(self._scale, self._lower, self._upper, dim)
        self._control = make_controller(self._config, dim, self._budget, box)
        self._targets = LossScaler(self._config.loss_scale)
        self._estimator = self._new_estimator()
        self._queue: list[tuple[FloatArray, _Sample]] = []
        self._pending: dict[bytes, list[_Sample]] = {}
        self._told = ToldKeys(_PENDING_LIMIT * self._config.batch_size)  # asked and told: not again
        self._buffer: list[tuple[_Sample, float]] = []
        self._counters = {
            "asked": 0,
            "told": 0,
            "updates": 0,
            "failed": 0,
            "foreign": 0,
            "resets": 0,
            "adam_steps": 0,
            "sampled": 0,
        }
        self._best_x: FloatArray | None = None
        self._best_loss = math.inf

    # ----------------------------------------------------------------- read-only state
    @property
    def config(self) -> ZeroGradsConfig:
        return self._config

    @property
    def dim(self) -> int:
        return self._x0.size

    @property
    def budget(self) -> int | None:
        return self._budget

    @property
    def theta(self) -> FloatArray:
        """Current parameters (the centre of the sampling Gaussian), a copy."""
        return self._to_x(self._theta.cpu().double().numpy())

    @property
    def sigma(self) -> FloatArray:
        """Current smoothing width per coordinate in parameter units."""
        return self._scale * self._widths(np.float64)

    @property
    def step_size(self) -> FloatArray:
        """Current Adam step size per coordinate in parameter units (a step moves each
        coordinate by about this much when its gradient's sign is steady, less on noise)."""
        shape = self._control.shape()
        lr = self._control.lr(self._counters["told"])
        return self._scale * (lr if shape is None else lr * shape.numpy())

    @property
    def history(self) -> FloatArray:
        """One row per update (evaluations told, then the sigma and the step size it left:
        their factors' geometric means over coordinates times the median of the sigma
        given); shape (updates, 3)."""
        rows: FloatArray = np.array(self._history, dtype=np.float64).reshape(-1, 3)
        scaled: FloatArray = rows * np.array([1.0, *[float(np.median(self._scale))] * 2])
        return scaled

    @property
    def iteration(self) -> int:
        """Updates (surrogate fit + Adam step) taken so far."""
        return self._counters["updates"]

    @property
    def evaluations(self) -> int:
        """Losses told so far, failed ones included."""
        return self._counters["told"]

    @property
    def n_asked(self) -> int:
        return self._counters["asked"]

    @property
    def n_failed(self) -> int:
        """Losses told as NaN, inf or None."""
        return self._counters["failed"]

    @property
    def n_resets(self) -> int:
        """Times a diverged surrogate (non-finite gradient) was replaced by a fresh one."""
        return self._counters["resets"]

    @property
    def surrogate_explained(self) -> float | None:
        """Share in [0, 1] of the last ~10 batches' antithetic loss differences that the
        surrogate predicted before it was fit on them: about the share of plain ES's
        gradient variance the control variate removes. Near 0 all run long on a loss
        without plateaus, preset ``"es"`` does as well for a fraction of the time. None
        unless ``estimator="control-variate"``."""
        estimator = self._estimator
        return estimator.explained if isinstance(estimator, ControlVariateEstimator) else None

    @property
    def n_pending(self) -> int:
        """Candidates asked and not told yet."""
        return sum(len(samples) for samples in self._pending.values())

    @property
    def best_x(self) -> FloatArray | None:
        """Best evaluated point so far (a copy), or None before any finite loss."""
        return None if self._best_x is None else self._best_x.copy()

    @property
    def best_loss(self) -> float:
        """Lowest finite loss told so far (inf before any)."""
        return self._best_loss

    def recommend(self) -> FloatArray:
        """The current theta or the best evaluated point, as ``recommendation`` says."""
        choice = self._config.recommendation
        spent = self._budget is not None and self._counters["told"] >= self._budget
        if self._best_x is not None and (choice == "best" or (choice == "auto" and spent)):
            return self._best_x.copy()
        return self.theta

    # ----------------------------------------------------------------------- ask/tell
    def ask(self, n: int | None = None) -> FloatArray:
        """Return ``n`` candidates (default: ``batch_size``) as an (n, d) array.

        Antithetic partners are kept for the next call, so asking one at a time still
        yields ``+eps, -eps`` pairs.
        """
        if n is None:
            n = self._config.batch_size
        if not is_integer(n) or n < 1:
            raise ValueError(f"n={n!r} must be a positive integer (candidates to ask)")
        n = int(n)
        if len(self._queue) < n:
            with _torch_threads(self._config.threads):
                while len(self._queue) < n:
                    self._queue.extend(self._sample_batch())
            self._forget_stale()  # only new samples make old candidates stale
        rows = []
        for x, sample in self._queue[:n]:
            self._pending.setdefault(_key(x), []).append(sample)
            rows.append(x)
        del self._queue[:n]
        self._counters["asked"] += n
        return np.stack(rows)

    def tell(self, X: ArrayLike, losses: ArrayLike | Sequence[float | None]) -> None:
        """Record the losses of candidates (rows of ``X``); update when a batch is full.

        Rows may come in any order, in parts, or be points never asked (used as extra
        data). A loss of NaN, inf or None counts as a failed evaluation and is handled by
        ``nonfinite_policy``. Inputs are validated before anything is recorded.
        """
        points = np.array(X, dtype=np.float64, copy=True) if numeric(X) else None
        if points is None:
            raise TypeError("X must be a numeric array of candidates, shape (n, d)")
        if points.ndim == 1 and points.size == self.dim:
            points = points[None]
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise ValueError(
                f"X has shape {points.shape} but the optimizer has dimension {self.dim}: "
                f"pass an (n, {self.dim}) array, e.g. the rows returned by ask()"
            )
        if not np.all(np.isfinite(points)):
            raise ValueError("X contains NaN or inf: tell the candidates exactly as asked")
        values = losses_list(losses, len(points))
        check_tell(points, _key, self._pending, self._told, self._lower, self._upper)
        warn_past_budget(self._budget, self._counters["told"], len(points))
        for x, loss in zip(points, values):
            self._record(x, loss)
        with _torch_threads(self._config.threads):
            while len(self._buffer) >= self._config.batch_size:
                batch = self._buffer[: self._config.batch_size]
                del self._buffer[: self._config.batch_size]
                self._update(batch)

    # ----------------------------------------------------------------------- internals
    def _new_estimator(self) -> GradientEstimator:
        if self._config.estimator == "es":
            return ESEstimator()
        kind = ControlVariateEstimator if self._config.estimator == "control-variate" else SurrogateEstimator
        return kind(self.dim, self._config, self._generator, self._device, self._dtype)

    def _sigma_factor(self) -> float:
        return self._control.sigma(self._counters["told"])

    def _widths(self, dtype: npt.DTypeLike) -> float | npt.NDArray[Any]:
        """The sampling width as a factor of the user's sigma: a float when it is the same in
        every coordinate, else one per coordinate (an array of ``dtype``)."""
        shape = self._control.shape()
        sigma = self._sigma_factor()
        return sigma if shape is None else (sigma * shape).numpy().astype(dtype)

    def _to_x(self, z: FloatArray) -> FloatArray:
        x = self._x0 + self._scale * z
        if self._lower is not None or self._upper is not None:
            x = np.clip(x, self._lower, self._upper)
        return x

    def _clip_z(self, z: torch.Tensor) -> torch.Tensor:
        if self._z_lower is None and self._z_upper is None:
            return z
        return torch.clamp(z, _tensor_like(self._z_lower, z), _tensor_like(self._z_upper, z))

    def _sample_batch(self) -> list[tuple[FloatArray, _Sample]]:
        cfg = self._config
        sigma = self._widths(self._np_dtype)
        n_draws = cfg.batch_size // 2 if cfg.antithetic else cfg.batch_size
        noise = _standard_normal((n_draws, self.dim), self._generator)
        if cfg.antithetic:
            noise = torch.stack([noise, -noise], dim=1).reshape(-1, self.dim)
        theta = self._theta.cpu().double()
        first = self._counters["sampled"]
        last = -1 if self._budget is None else self._budget - 1 - first
        theta_rows = [last] if 0 <= last < len(noise) else []  # the budget's last candidate is theta
        noise[theta_rows] = 0.0
        width = torch.as_tensor(sigma, dtype=torch.float64)
        inputs = self._clip_z(theta + width * noise)
        offsets = (inputs - theta) / width
        asked = inputs
        if cfg.jitter > 0:
            jitter = _standard_normal(inputs.shape, self._generator)
            jitter[theta_rows] = 0.0
            asked = self._clip_z(inputs + cfg.jitter * width * jitter)
        self._counters["sampled"] += len(inputs)
        return [
            (
                self._to_x(a.numpy()),
                _Sample(z.numpy().astype(self._np_dtype), u.numpy().astype(self._np_dtype), sigma, first + i),
            )
            for i, (a, z, u) in enumerate(zip(asked, inputs, offsets))
        ]

    def _forget_stale(self) -> None:
        oldest = self._counters["sampled"] - _PENDING_LIMIT * self._config.batch_size
        for key in [key for key, samples in self._pending.items() if samples[0].order < oldest]:
            kept = [sample for sample in self._pending[key] if sample.order >= oldest]
            if kept:
                self._pending[key] = kept
            else:
                del self._pending[key]

    def _record(self, x: FloatArray, loss: float) -> None:
        key = _key(x)
        samples = self._pending.get(key)
        if samples:
            sample = samples.pop(0)
            self._told.add(key)
            if not samples:
                del self._pending[key]
        else:
            z = (x - self._x0) / self._scale
            nan = np.full(self.dim, np.nan, dtype=self._np_dtype)
            sample = _Sample(
                z.astype(self._np_dtype), nan, self._sigma_factor(), _FOREIGN + self._counters["foreign"]
            )
            self._counters["foreign"] += 1
        self._counters["told"] += 1
        if math.isfinite(loss):
            if loss < self._best_loss:
                self._best_loss, self._best_x = loss, x.copy()
        else:
            self._counters["failed"] += 1
        self._buffer.append((sample, loss))

    def _update(self, batch: list[tuple[_Sample, float]]) -> None:
        batch = sorted(batch, key=lambda item: item[0].order)  # the same update whatever the tell order
        losses = np.array([loss for _, loss in batch])
        finite = np.isfinite(losses)
        if not finite.any():
            if self._best_x is not None:  # every evaluation failed: go back to the best point
                best = (self._best_x - self._x0) / self._scale
                self._theta = torch.as_tensor(best, device=self._device, dtype=self._dtype)
            return
        if self._config.nonfinite_policy == "worst":
            losses = np.where(finite, losses, losses[finite].max())
        else:
            batch = [item for item, ok in zip(batch, finite) if ok]
            losses = losses[finite]
        inputs = self._tensor(np.stack([s.z for s, _ in batch]))
        offsets = self._tensor(np.stack([s.offset for s, _ in batch]))
        sigmas = self._tensor(np.stack([np.broadcast_to(s.sigma, (self.dim,)) for s, _ in batch]))
        targets = self._tensor(self._targets.targets(losses))
        fit_first = self._config.fit_before_step or self._config.estimator != "surrogate"
        if fit_first:
            self._estimator.fit(inputs, offsets, sigmas, targets)
        for step in range(self._config.theta_steps):
            gradient = self._estimator.gradient(self._theta)
            if not bool(torch.isfinite(gradient).all()):
                # A diverged surrogate: start a fresh one rather than step on garbage.
                self._estimator = self._new_estimator()
                self._counters["resets"] += 1
                break
            if self._control.scaled_gradient:
                gradient = gradient * self._tensor(np.asarray(self._widths(np.float64)))
            if step == 0:
                self._observe(losses, offsets, targets, gradient)
            self._adam_step(gradient)
        if not fit_first:
            self._estimator.fit(inputs, offsets, sigmas, targets)
        self._counters["updates"] += 1
        told = self._counters["told"]
        self._history.append((told, self._control.sigma(told), self._control.lr(told)))
        self._queue.clear()  # fresh candidates around the new theta

    def _observe(
        self,
        losses: FloatArray,
        offsets: torch.Tensor,
        targets: torch.Tensor,
        gradient: torch.Tensor,
    ) -> None:
        asked = ~torch.isnan(offsets[:, 0])
        step = self._counters["adam_steps"]
        spread = (self._adam_v / (1 - _ADAM_BETAS[1] ** step)).sqrt() if step else torch.zeros_like(gradient)
        observation = Observation(
            offsets=offsets[asked],
            targets=targets[asked],
            ties=ties(losses[asked.cpu().numpy()]),
            gradient=gradient,
            spread=spread,
            last_step=self._last_step,
        )
        self._control.observe(observation)

    def _tensor(self, array: npt.NDArray[Any]) -> torch.Tensor:
        return torch.as_tensor(array, device=self._device, dtype=self._dtype)

    def _adam_step(self, gradient: torch.Tensor) -> None:
        rho = self._config.gradient_averaging
        if rho > 0:
            if self._gradient_average is None:
                self._gradient_average = gradient.clone()
            else:
                self._gradient_average.mul_(rho).add_(gradient, alpha=1 - rho)
            gradient = self._gradient_average
        beta1, beta2 = _ADAM_BETAS
        self._adam_m.mul_(beta1).add_(gradient, alpha=1 - beta1)
        self._adam_v.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        self._counters["adam_steps"] += 1
        step = self._counters["adam_steps"]
        lr: Any = self._control.lr(self._counters["told"])
        shape = self._control.shape()
        if shape is not None:
            lr = lr * self._tensor(shape.numpy())
        m_hat = self._adam_m / (1 - beta1**step)
        v_hat = self._adam_v / (1 - beta2**step)
        theta = self._clip_z(self._theta - lr * m_hat / (v_hat.sqrt() + _ADAM_EPS))
        self._last_step = theta - self._theta
        self._theta = theta

    # -------------------------------------------------------------------- save/resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: tensors and plain values only (a copy)."""

        def sigmas(values: list[npt.NDArray[np.float64]]) -> torch.Tensor:
            if any(value.ndim for value in values):  # a width with a shape: one per coordinate
                values = [np.broadcast_to(value, (self.dim,)) for value in values]
            return torch.as_tensor(np.stack(values)) if values else torch.zeros(0)

        def samples(items: list[_Sample]) -> dict[str, torch.Tensor]:
            return {
                "z": torch.as_tensor(np.stack([s.z for s in items])) if items else torch.zeros(0),
                "offset": torch.as_tensor(np.stack([s.offset for s in items])) if items else torch.zeros(0),
                "sigma": sigmas([np.asarray(s.sigma, dtype=np.float64) for s in items]),
                "order": torch.tensor([s.order for s in items], dtype=torch.int64),
            }

        pending = [(key, s) for key, items in self._pending.items() for s in items]
        state = {
            "format": STATE_FORMAT,
            "config": self._config.to_dict(),
            "budget": self._budget,
            "x0": torch.as_tensor(self._x0),
            "scale": torch.as_tensor(self._scale),
            "lower": _tensor_or_none(self._lower),
            "upper": _tensor_or_none(self._upper),
            "theta": self._theta.cpu(),
            "adam_m": self._adam_m.cpu(),
            "adam_v": self._adam_v.cpu(),
            "gradient_average": _tensor_or_none(
                None if self._gradient_average is None else self._gradient_average.cpu()
            ),
            "estimator": self._estimator.state_dict(),
            "generator": self._generator.get_state(),
            "queue_x": torch.as_tensor(np.stack([x for x, _ in self._queue]))
            if self._queue
            else torch.zeros(0),
            "queue": samples([s for _, s in self._queue]),
            "pending_keys": [key for key, _ in pending],
            "pending": samples([s for _, s in pending]),
            "buffer": samples([s for s, _ in self._buffer]),
            "buffer_losses": torch.tensor([loss for _, loss in self._buffer], dtype=torch.float64),
            "targets": self._targets.state_dict(),
            "control": self._control.state_dict(),
            "last_step": None if self._last_step is None else self._last_step.cpu(),
            "history": torch.tensor(self._history, dtype=torch.float64).reshape(-1, 3),
            "counters": dict(self._counters),
            "best_x": _tensor_or_none(self._best_x),
            "best_loss": self._best_loss,
        }
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the object must have the same dimension."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"not a ZeroGrads state (expected format {STATE_FORMAT!r}); "
                "pass what ZeroGrads.state_dict() returned"
            )
        check_state(state)
        if int(state["x0"].numel()) != self.dim:
            raise ValueError(
                f"the state has dimension {int(state['x0'].numel())} but this optimizer has "
                f"{self.dim}; use ZeroGrads.from_state_dict(state) to build a matching one"
            )
        fresh = ZeroGrads.from_state_dict(state, device=self._config.device)
        self.__dict__.update(fresh.__dict__)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | None = None) -> ZeroGrads:
        """A new optimizer resumed from ``state``; ``device`` overrides the saved one."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"not a ZeroGrads state (expected format {STATE_FORMAT!r}); "
                "pass what ZeroGrads.state_dict() returned"
            )
        check_state(state)
        state = copy.deepcopy(state)  # the new optimizer must not share tensors with the caller
        config = ZeroGradsConfig.from_dict(state["config"])
        if device is not None:
            config = config.replace(device=device)
        opt = cls(
            state["x0"].numpy(),
            state["scale"].numpy(),
            lower=_array_or_none(state["lower"]),
            upper=_array_or_none(state["upper"]),
            budget=state["budget"],
            config=config,
            seed=0,
        )
        opt._theta = state["theta"].to(opt._device, opt._dtype)
        opt._adam_m = state["adam_m"].to(opt._device, opt._dtype)
        opt._adam_v = state["adam_v"].to(opt._device, opt._dtype)
        if state["gradient_average"] is not None:
            opt._gradient_average = state["gradient_average"].to(opt._device, opt._dtype)
        opt._estimator.load_state_dict(state["estimator"])
        opt._generator.set_state(state["generator"])
        opt._queue = list(zip(state["queue_x"].numpy(), _unpack(state["queue"])))
        for key, sample in zip(state["pending_keys"], _unpack(state["pending"])):
            opt._pending.setdefault(key, []).append(sample)
        opt._buffer = list(zip(_unpack(state["buffer"]), state["buffer_losses"].tolist()))
        opt._targets.load_state_dict(state["targets"])
        opt._control.load_state_dict(state["control"])
        if state["last_step"] is not None:
            opt._last_step = state["last_step"].to(opt._device, opt._dtype)
        opt._history = [(told, sigma, lr) for told, sigma, lr in state["history"].tolist()]
        opt._counters = dict(state["counters"])
        opt._best_x = _array_or_none(state["best_x"])
        opt._best_loss = float(state["best_loss"])
        return opt

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` to ``path`` (a torch file that loads weights-only)."""
        write_state(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | None = None) -> ZeroGrads:
        """Resume from a file written by :meth:`save` (no arbitrary unpickling)."""
        return cls.from_state_dict(read_state(path), device=device)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None: left alone), restored on exit."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _standard_normal(shape: tuple[int, ...] | torch.Size, generator: torch.Generator) -> torch.Tensor:
    # Drawn in float32, 6x faster than float64 on CPU (1.1 -> 0.2 ms for 80,000 draws).
    return torch.randn(shape, generator=generator, dtype=torch.float32).double()


def _tensor_like(array: npt.NDArray[Any] | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if array is None else torch.as_tensor(array, dtype=like.dtype, device=like.device)


def _tensor_or_none(value: npt.NDArray[Any] | torch.Tensor | None) -> torch.Tensor | None:
    return None if value is None else torch.as_tensor(value)


def _array_or_none(tensor: torch.Tensor | None) -> FloatArray | None:
    return None if tensor is None else tensor.numpy().copy()


def _unpack(tensors: dict[str, torch.Tensor]) -> list[_Sample]:
    sigmas = [s if isinstance(s, float) else np.asarray(s) for s in tensors["sigma"].tolist()]
    if not sigmas:
        return []
    return [
        _Sample(z.numpy().copy(), u.numpy().copy(), s, o)
        for z, u, s, o in zip(tensors["z"], tensors["offset"], sigmas, tensors["order"].tolist())
    ]


def _max_sigma(
    scale: FloatArray, lower: FloatArray | None, upper: FloatArray | None, dim: int
) -> torch.Tensor:
    """The widest sigma factor worth sampling in each coordinate: a quarter of its box's width
    (CMA-ES's advice for a start; wider samples mostly land clipped on the box), inf where
    the box is open."""
    if lower is None or upper is None:
        return torch.full((dim,), math.inf, dtype=torch.float64)
    return torch.as_tensor(_BOX_FRACTION * (upper - lower) / scale, dtype=torch.float64)


def _key(x: FloatArray) -> bytes:
    # float32 rounding: rows told back as float32 still find their asked candidate.
    return np.asarray(x, dtype=np.float32).tobytes()


def _with_options(config: ZeroGradsConfig, options: dict[str, Any]) -> ZeroGradsConfig:
    if not isinstance(config, ZeroGradsConfig):
        raise TypeError(f"config must be a ZeroGradsConfig, got {type(config).__name__}")
    valid = {f.name for f in dataclasses.fields(ZeroGradsConfig)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; valid options: {sorted(valid)}")
    return config.replace(**options) if options else config
