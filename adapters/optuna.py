"""Optuna backend: ZeroGrads as an Optuna sampler, for studies in one or many processes.

:class:`ZeroGradsSampler` samples the study's float and int parameters together (relative
sampling) with one :class:`zg_asktell.ZeroGrads` working in the unit cube that Optuna's
search-space transform maps them to (log scales and steps included; integers and stepped
values are rounded by the transform, and the optimizer is told the continuous point it
asked). Categorical parameters go to an independent sampler.

The optimizer's state lives in the study, not in the sampler object: each update writes
``ZeroGrads.state_dict()`` (``torch.save`` bytes, base64, read back with
``torch.load(weights_only=True)``: no pickle) into the system attributes of the trial
that made it, and each trial records the candidate it was given. Workers in other threads,
processes or machines that share the study's storage (SQLite or another database, a
journal file) therefore continue one run. See ``docs/hpo.md``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

try:
    import optuna  # noqa: F401  (the install hint below)
except ImportError as error:  # pragma: no cover - the extra is installed in the tests
    raise ImportError("zg_asktell.adapters.optuna needs Optuna: pip install 'zg_asktell[optuna]'") from error
from optuna._transform import _SearchSpaceTransform
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution, distribution_to_json
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.storages import InMemoryStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

import zg_asktell

__all__ = ["ZeroGradsSampler"]

FloatArray = npt.NDArray[np.float64]

_KEY = "zg_asktell"
_RECORD = f"{_KEY}:record"  # header of a saved optimizer state; its chunks are f"{_RECORD}:{i}"
_TAG = f"{_KEY}:candidate"  # the candidate a trial was given
# One system attribute holds at most this many characters: MySQL's TEXT column takes
# 65,535 bytes (SQLite, PostgreSQL and journal files have no limit).
_CHUNK_CHARS = 60_000
# Every update adds one state to the study; above this size per state the storage would
# grow by gigabytes over a study, so the sampler refuses (see _encode).
_MAX_STATE_CHARS = 16 * 2**20
# Batch fitted to the budget (see _batch_size): updates wanted per run, smallest batch.
_MIN_UPDATES = 6
_MIN_BATCH = 4
_CACHE_SIZE = 4  # restored states kept per sampler
_CLAIM_TRIES = 4  # candidates tried when other processes claim the same one
_ROUNDING = 1e-9  # parameters this far outside the unit cube are inside it, rounded


@dataclass
class _Space:
    """The sampled numeric parameters, mapped to the unit cube by Optuna's transform."""

    distributions: dict[str, BaseDistribution]
    transform: _SearchSpaceTransform = field(init=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self.transform = _SearchSpaceTransform(self.distributions, transform_0_1=True)
        text = json.dumps([[name, distribution_to_json(d)] for name, d in self.distributions.items()])
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]

    def point(self, trial: FrozenTrial) -> FloatArray | None:
        """The trial's parameters in the unit cube, or None if it lacks one of ours.

        None too for values outside the distribution (an enqueued point Optuna accepted
        with a warning): they are not in the optimizer's box.
        """
        if any(trial.distributions.get(name) != d for name, d in self.distributions.items()):
            return None
        point: FloatArray = self.transform.transform(trial.params)
        if np.any(point < -_ROUNDING) or np.any(point > 1 + _ROUNDING):
            return None
        return np.clip(point, 0.0, 1.0)


@dataclass
class _Record:
    """One saved optimizer state: generation ``generation`` of search space ``lineage``."""

    lineage: str
    generation: int
    state: dict[str, Any]
    told: set[int]  # numbers of the trials told so far (or skipped as not comparable)
    nonce: str = field(default_factory=lambda: os.urandom(8).hex())
    number: int | None = None  # trial holding it; None until written
    rows: FloatArray | None = None  # candidates asked from ``state`` (cached)

    def candidate(self, index: int, batch_size: int) -> FloatArray:
        """Candidate ``index`` asked from the state: the same in every process."""
        if self.rows is None or len(self.rows) <= index:
            wanted = -(-(index + 1) // batch_size) * batch_size
            self.rows = zg_asktell.ZeroGrads.from_state_dict(self.state).ask(wanted)
        row: FloatArray = self.rows[index].copy()
        return row


class ZeroGradsSampler(BaseSampler):
    """ZeroGrads as an Optuna sampler: float and int parameters sampled together.

    Args:
        seed: seed of the optimizer and of the default independent sampler; the same seed
            gives the same trials in a sequential study.
        sigma: initial smoothing width in the unit cube (1 = a parameter's whole range,
            on its log scale for log parameters).
        budget: trials planned; sigma is annealed and the step set over it, and it picks
            the batch (held sigma and a fixed step without one).
        preset: name of a :data:`zg_asktell.PRESETS` configuration.
        independent_sampler: samples categorical parameters and every parameter while no
            trial has finished; defaults to ``RandomSampler(seed=seed)``.
        options: :class:`zg_asktell.ZeroGradsConfig` fields overriding the preset.

    Failed trials are told as failed evaluations (``None``) and so are pruned ones: with
    the default ``nonfinite_policy="worst"`` each counts as the worst loss of its update.
    Trials whose parameters the sampler did not choose (``enqueue_trial``, ``add_trial``,
    trials from before a change of search space) are told as never-asked points.

    Example:
        >>> import optuna
        >>> from zg_asktell.adapters.optuna import ZeroGradsSampler
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(sampler=ZeroGradsSampler(seed=0, budget=60))
        >>> study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 1) ** 2, n_trials=60)
        >>> study.best_value < 0.5
        True
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        sigma: float = 0.2,
        budget: int | None = None,
        preset: str = "default",
        independent_sampler: BaseSampler | None = None,
        **options: Any,
    ) -> None:
        if seed is not None and (not zg_asktell._config.is_integer(seed) or seed < 0):
            raise ValueError(f"seed={seed!r} must be a non-negative integer or None")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= 1:
            raise ValueError(f"sigma={sigma!r} must be a number in (0, 1]: a width in the unit cube")
        if budget is not None and (not zg_asktell._config.is_integer(budget) or budget < 1):
            raise ValueError(f"budget={budget!r} must be a positive integer (trials planned) or None")
        if independent_sampler is not None and not isinstance(independent_sampler, BaseSampler):
            raise TypeError(
                f"independent_sampler must be an Optuna sampler, got {type(independent_sampler).__name__}"
            )
        self._config = zg_asktell.preset(preset, **options)
        if "batch_size" not in options:
            self._config = self._config.replace(batch_size=_batch_size(budget, self._config.antithetic))
        self._seed = seed
        self._sigma = float(sigma)
        self._budget = budget
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._cache: dict[str, _Record] = {}  # restored states by nonce
        self._handed: dict[str, int] = {}  # candidates this process handed out, by nonce

    @property
    def config(self) -> zg_asktell.ZeroGradsConfig:
        """The optimizer's configuration (batch fitted to the budget)."""
        return self._config

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]  # a lock cannot be pickled; the study holds the optimizer
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def optimizer(self, study: Study) -> zg_asktell.ZeroGrads | None:
        """The study's optimizer as of its last update (a copy), or None before any.

        Read from the storage, so any worker of the study sees the same one; its
        ``theta`` and ``recommend()`` are in the unit cube of the sampled parameters.
        """
        trials = study.get_trials(deepcopy=False)
        holders = [t for t in trials if isinstance(t.system_attrs.get(_RECORD), dict)]
        if not holders:
            return None
        lineage = holders[-1].system_attrs[_RECORD]["lineage"]
        with self._lock:
            record = self._latest(trials, lineage)
        return None if record is None else zg_asktell.ZeroGrads.from_state_dict(record.state)

    def reseed_rng(self) -> None:
        # The optimizer's own generator lives in the study's state; only the independent
        # sampler (categorical parameters) is reseeded, as Optuna's samplers do.
        self._independent.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {
            name: d
            for name, d in self._search_space.calculate(study).items()
            if isinstance(d, (FloatDistribution, IntDistribution)) and not d.single()
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._raise_error_if_multi_objective(study)
        numeric: dict[str, BaseDistribution] = {
            name: d
            for name, d in search_space.items()
            if isinstance(d, (FloatDistribution, IntDistribution)) and not d.single()
        }
        params: dict[str, Any] = {}
        if numeric:
            with self._lock:
                params = self._sample(study, trial, _Space(numeric))
        for name, distribution in search_space.items():
            if name not in params:
                params[name] = self._independent.sample_independent(study, trial, name, distribution)
        return params

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        self._raise_error_if_multi_objective(study)
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._independent.after_trial(study, trial, state, values)

    # ------------------------------------------------------------------------ internals
    def _sample(self, study: Study, trial: FrozenTrial, space: _Space) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False)
        record = self._latest(trials, space.fingerprint) or self._first(space)
        points, losses, numbers = self._untold(study, trials, space, record)
        if len(points) >= self._config.batch_size:
            record = self._update(record, trials, space, points, losses, numbers)
        if record.number is None:
            if _RECORD in trial.system_attrs:  # the trial holds a state already (sampled twice)
                return {}
            self._write(study, trial, record)
            index = 0  # a state's first candidate goes to the trial holding it
        else:
            index = self._next_index(trials, record)
        x = self._claim(study, trial, record, index)
        params: dict[str, Any] = space.transform.untransform(x)
        return params

    def _claim(self, study: Study, trial: FrozenTrial, record: _Record, index: int) -> FloatArray:
        """Give the trial candidate ``index`` of the record, or a later one if taken.

        Workers in other processes may read the study between our reading and writing,
        or make the same update at once: after writing, a point also given to another
        trial is given up for the record's next candidate.
        """
        for _ in range(_CLAIM_TRIES):
            x = record.candidate(index, self._config.batch_size)
            self._handed[record.nonce] = index + 1
            tag = {"lineage": record.lineage, "record": record.nonce, "index": index, "x": x.tolist()}
            study._storage.set_trial_system_attr(trial._trial_id, _TAG, tag)
            if isinstance(study._storage, InMemoryStorage):  # one process: the lock suffices
                break
            trials = study.get_trials(deepcopy=False)
            if not any(_same_candidate(t, tag) and t.number != trial.number for t in trials):
                break
            index = self._next_index(trials, record)
        return x

    def _latest(self, trials: list[FrozenTrial], lineage: str) -> _Record | None:
        """The newest saved state of search space ``lineage`` (ties: the earliest trial's)."""
        headers = [
            (t.system_attrs[_RECORD], t)
            for t in trials
            if t.system_attrs.get(_RECORD, {}).get("lineage") == lineage
        ]
        if not headers:
            return None
        header, holder = max(headers, key=lambda pair: (pair[0]["generation"], -pair[1].number))
        record = self._cache.get(header["nonce"])
        if record is None:
            text = "".join(holder.system_attrs[f"{_RECORD}:{i}"] for i in range(header["chunks"]))
            payload = torch.load(io.BytesIO(base64.b64decode(text)), map_location="cpu", weights_only=True)
            record = _Record(
                lineage,
                header["generation"],
                payload["state"],
                set(payload["told"].tolist()),
                header["nonce"],
                holder.number,
            )
            self._remember(record)
        return record

    def _first(self, space: _Space) -> _Record:
        """Generation 0 of a search space: a fresh optimizer at the cube's centre."""
        dim = len(space.distributions)
        seed = self._seed if self._seed is not None else int(self._rng.integers(2**31))
        core = zg_asktell.ZeroGrads(
            np.full(dim, 0.5),
            self._sigma,
            lower=0.0,
            upper=1.0,
            budget=self._budget,
            config=self._config,
            seed=seed,
        )
        return _Record(space.fingerprint, 0, core.state_dict(), set())

    def _untold(
        self, study: Study, trials: list[FrozenTrial], space: _Space, record: _Record
    ) -> tuple[list[FloatArray], list[float | None], list[int]]:
        """Finished trials not told yet: their points in the cube, losses, numbers.

        A trial's point is the candidate it was given when its parameters are that
        candidate's, else its own parameters (a never-asked point); trials without all
        the space's parameters are skipped, and listed in ``numbers`` all the same.
        """
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        points: list[FloatArray] = []
        losses: list[float | None] = []
        numbers = []
        for t in trials:
            if not t.state.is_finished() or t.number in record.told:
                continue
            numbers.append(t.number)
            point = _point(t, space)
            if point is None:
                continue
            points.append(point)
            value = t.value if t.state == TrialState.COMPLETE else None
            losses.append(None if value is None else sign * value)
        return points, losses, numbers

    def _update(
        self,
        record: _Record,
        trials: list[FrozenTrial],
        space: _Space,
        points: list[FloatArray],
        losses: list[float | None],
        numbers: list[int],
    ) -> _Record:
        """Tell the finished trials to the record's optimizer: the next generation.

        The core counts each candidate once: trials given the same point (workers that
        raced for it) are told as one row with the mean of their losses, and a point told
        in an earlier update is not told again.
        """
        core = zg_asktell.ZeroGrads.from_state_dict(record.state)
        handed = self._next_index(trials, record)
        if handed:
            core.ask(handed)  # the candidates handed out, so the told ones are known as asked
        told = {_key(p) for t in trials if t.number in record.told and (p := _point(t, space)) is not None}
        rows: dict[bytes, tuple[FloatArray, list[float]]] = {}
        for point, loss in zip(points, losses):
            if _key(point) not in told:
                row = rows.setdefault(_key(point), (point, []))
                row[1].extend([] if loss is None or not math.isfinite(loss) else [loss])
        if rows:
            X = np.stack([point for point, _ in rows.values()])
            core.tell(X, [float(np.mean(values)) if values else None for _, values in rows.values()])
        return _Record(record.lineage, record.generation + 1, core.state_dict(), record.told | set(numbers))

    def _write(self, study: Study, trial: FrozenTrial, record: _Record) -> None:
        """Save the record in the trial's system attributes, its header last."""
        text = _encode({"state": record.state, "told": torch.tensor(sorted(record.told), dtype=torch.int64)})
        chunks = [text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)]
        for i, chunk in enumerate(chunks):
            study._storage.set_trial_system_attr(trial._trial_id, f"{_RECORD}:{i}", chunk)
        header: dict[str, Any] = {
            "lineage": record.lineage,
            "generation": record.generation,
            "chunks": len(chunks),
            "nonce": record.nonce,
        }
        study._storage.set_trial_system_attr(trial._trial_id, _RECORD, header)
        record.number = trial.number
        self._remember(record)

    def _next_index(self, trials: list[FrozenTrial], record: _Record) -> int:
        """Candidates of the record handed out so far, in any process that told the study."""
        seen = [int(_tag(t)["index"]) + 1 for t in trials if _tag(t).get("record") == record.nonce]
        held = 0 if record.number is None else 1  # the holder took the first
        return max([held, self._handed.get(record.nonce, 0), *seen])

    def _remember(self, record: _Record) -> None:
        if len(self._cache) >= _CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[record.nonce] = record


def _tag(trial: FrozenTrial) -> dict[str, Any]:
    tag = trial.system_attrs.get(_TAG)
    return tag if isinstance(tag, dict) else {}


def _same_candidate(trial: FrozenTrial, tag: dict[str, Any]) -> bool:
    """The trial was given the point of ``tag`` (by any state of its search space)."""
    other = _tag(trial)
    return bool(other.get("lineage") == tag["lineage"] and other.get("x") == tag["x"])


def _point(trial: FrozenTrial, space: _Space) -> FloatArray | None:
    """Where the trial was evaluated, in the cube: its candidate or its own parameters."""
    point = _asked_point(trial, space)
    return space.point(trial) if point is None else point


def _key(point: FloatArray) -> bytes:
    """The point as the core identifies candidates (float32 rounding)."""
    return np.asarray(point, dtype=np.float32).tobytes()


def _asked_point(trial: FrozenTrial, space: _Space) -> FloatArray | None:
    """The candidate the trial was given, if its parameters are that candidate's."""
    tag = _tag(trial)
    if tag.get("lineage") != space.fingerprint:
        return None
    x = np.array(tag["x"], dtype=np.float64)
    chosen = space.transform.untransform(x)
    if any(trial.params.get(name, value) != value for name, value in chosen.items()):
        return None  # parameters fixed by the user (enqueue_trial, PartialFixedSampler)
    return x


def _encode(payload: dict[str, Any]) -> str:
    """``torch.save`` bytes as base64 text (read back weights-only), size checked."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    text = base64.b64encode(buffer.getvalue()).decode("ascii")
    if len(text) > _MAX_STATE_CHARS:
        raise ValueError(
            f"the ZeroGrads state is {len(text) / 2**20:.1f} MiB, over the "
            f"{_MAX_STATE_CHARS / 2**20:.0f} MiB that ZeroGradsSampler writes to the study's "
            "storage at each update; use a smaller surrogate (hidden_width=16, "
            "encoding_frequencies=0), preset='es' (no surrogate), or zg_asktell.ZeroGrads "
            "directly with Optuna's ask/tell interface"
        )
    return text


def _batch_size(budget: int | None, antithetic: bool) -> int:
    """The core's batch (16) unless the budget allows fewer than ``_MIN_UPDATES`` updates.

    At 100 trials, batches of 16 (6 updates) beat batches of 8 and 4 on all three
    problems of ``bench.hpo`` (docs/hpo.md): few, steadier steps pay at small budgets.
    """
    default = zg_asktell.ZeroGradsConfig().batch_size
    if budget is None:
        return default
    pair = 2 if antithetic else 1
    return max(_MIN_BATCH, min(default, budget // _MIN_UPDATES // pair * pair))
