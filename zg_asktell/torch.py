"""A black box inside a torch model: :class:`BlackBox`, a layer with a learned gradient.

Training a network whose output goes through a non-differentiable function (a renderer, a
simulator) needs that function's gradient at every call. :class:`BlackBox` evaluates the
function once per input row at a point jittered by ``sigma``, fits one warm-started MLP to
the recent (input, output) pairs of every call (a Gaussian-smoothed surrogate shared by all
calls) and returns the surrogate's prediction at the input, whose gradient flows back.
Optionally (``correction``) a per-row ES term on what the surrogate did not predict makes
that gradient unbiased (a control variate, as the core's default): docs/torch.md has the
measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from ._estimators import _COEFFICIENT_DECAY, positional_encoding

__all__ = ["BlackBox"]

Function = Callable[[npt.NDArray[np.float64]], "npt.ArrayLike | Tensor"]


class BlackBox(nn.Module):
    """Wrap ``function``, a map from (n, in_dim) to (n, out_dim) arrays, as a torch layer.

    A call on ``x`` of shape (..., in_dim) evaluates ``function`` once, on every row of ``x``
    jittered by ``sigma`` (the rows of all leading axes in one batch), adds the pairs to the
    fit memory, takes ``fit_steps`` Adam steps on the surrogate, and returns its prediction of
    the smoothed function at ``x``, shape (..., out_dim), on ``x``'s device and dtype.
    Gradients reach ``x`` only, never the surrogate's weights (it has its own optimizer).

    The gradient is ``c J_h(x + sigma eps) + correction * (f(x + sigma eps) - h(x) - c
    (h(x + sigma eps) - h(x))) eps / sigma`` per row, with ``h`` the surrogate before it saw
    the row and ``c`` the running regression coefficient of fresh outputs on ``h``'s
    predictions (clipped to [0, 1]). With ``correction=0`` (the default) it is the
    surrogate's gradient alone (low variance, biased by the fit's error); with 1 it is
    unbiased for the smoothed function's gradient whatever that error, at a variance that
    measured worse up to 400,000 renders (docs/torch.md).

    Args:
        function: the black box, called with a float64 numpy array of jittered inputs;
            returns one row of ``out_dim`` finite numbers per input row (array or tensor).
        in_dim, out_dim: its input and output widths.
        sigma: jitter (smoothing width) in input units.
        correction: weight in [0, 1] of the ES correction (see above).
        width, layers, frequencies: the surrogate MLP (hidden width, hidden layers,
            positional-encoding octaves of ``pi * x``).
        memory: most recent (input, output) pairs kept for fitting.
        fit_batch, fit_steps, lr: pairs per fit step, Adam fit steps per call, their step size.
        seed: seed of the jitter and of the surrogate's initialisation (global RNGs untouched).
        device: torch device of the surrogate and its memory.

    Attributes:
        evaluated: the last call's real outputs (..., out_dim), e.g. to log the true loss.
        asked: the jittered inputs they were evaluated at (..., in_dim).

    ``state_dict()`` / ``load_state_dict()`` save and resume it exactly: weights, fit memory,
    the fitter's moments, the control variate's statistics and the jitter's RNG.

    Example:
        >>> import numpy as np, torch
        >>> step = BlackBox(lambda x: (x > 0).astype(float), 1, 1, sigma=0.5, seed=0)
        >>> p = torch.zeros(64, 1, requires_grad=True)
        >>> for _ in range(50):
        ...     _ = step(p)  # every call evaluates and trains the smoothed step
        >>> step(p).sum().backward()
        >>> bool(p.grad.mean() > 0)  # the smoothed step rises through 0
        True
    """

    def __init__(
        self,
        function: Function,
        in_dim: int,
        out_dim: int,
        *,
        sigma: float = 0.1,
        correction: float = 0.0,
        width: int = 256,
        layers: int = 2,
        frequencies: int = 4,
        memory: int = 4096,
        fit_batch: int = 64,
        fit_steps: int = 1,
        lr: float = 1e-3,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        counts = {"in_dim": in_dim, "out_dim": out_dim, "width": width, "layers": layers}
        counts |= {"memory": memory, "fit_batch": fit_batch, "fit_steps": fit_steps}
        for name, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if not isinstance(frequencies, int) or isinstance(frequencies, bool) or frequencies < 0:
            raise ValueError(f"frequencies={frequencies!r} must be an integer >= 0")
        for name, number in (("sigma", sigma), ("lr", lr)):
            if not isinstance(number, (int, float)) or not math.isfinite(number) or number <= 0:
                raise ValueError(f"{name}={number!r} must be a finite number > 0")
        if not isinstance(correction, (int, float)) or not 0 <= correction <= 1:
            raise ValueError(f"correction={correction!r} must be a number in [0, 1]")
        self.function, self.in_dim, self.out_dim = function, in_dim, out_dim
        self.sigma, self.correction, self.frequencies = float(sigma), float(correction), frequencies
        self.fit_batch, self.fit_steps = fit_batch, fit_steps
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        sizes = [in_dim * (1 + 2 * frequencies), *[width] * layers, out_dim]
        # Built on the meta device and filled from our generator: nn.Linear's own
        # initialisation would draw from torch's global RNG.
        linears = [nn.Linear(a, b, device="meta") for a, b in zip(sizes[:-1], sizes[1:])]
        self.surrogate = nn.ModuleList(linears).to_empty(device=device)
        with torch.no_grad():  # PyTorch's default bounds
            for layer in linears:
                for weight in (layer.weight, layer.bias):
                    noise = torch.rand(weight.shape, generator=self.generator)
                    weight.copy_((2 * noise - 1) / math.sqrt(layer.in_features))
        self.fitter = torch.optim.Adam(self.surrogate.parameters(), lr=lr, fused=True)
        self.features: Tensor  # ring buffers of the fit memory: encoded inputs, outputs
        self.outputs: Tensor
        self.register_buffer("features", torch.zeros(memory, sizes[0], device=device))
        self.register_buffer("outputs", torch.zeros(memory, out_dim, device=device))
        self.stored = 0  # pairs written so far; the newest is at (stored - 1) % memory
        self.moments = [0.0, 0.0]  # decayed sums of h * t and h * h (the coefficient c)
        self.evaluated = torch.zeros(0, out_dim)
        self.asked = torch.zeros(0, in_dim)

    @property
    def coefficient(self) -> float:
        """``c``: the running regression coefficient of fresh outputs on the surrogate's
        predictions before it saw them, in [0, 1]."""
        covariance, variance = self.moments
        return min(1.0, max(0.0, covariance / variance)) if variance > 0 else 0.0

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate ``function`` at ``x`` + jitter, fit the surrogate, and return its
        prediction at ``x``, differentiable with respect to ``x`` only."""
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[-1] != self.in_dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"input is {shape}; expected a float tensor of shape (..., {self.in_dim})")
        rows = x.reshape(-1, self.in_dim)
        if not bool(torch.isfinite(rows).all()):
            raise ValueError("input has non-finite values; the black box needs finite inputs")
        eps = torch.randn(rows.shape, generator=self.generator, dtype=torch.float64)
        asked = rows.detach().cpu().double() + self.sigma * eps
        values = self._evaluate(asked)
        device = self.features.device
        self.evaluated = values.to(x.device, x.dtype).reshape(*x.shape[:-1], self.out_dim)
        self.asked = asked.to(x.device, x.dtype).reshape(x.shape)
        weights = [w.detach().clone() for w in self.surrogate.parameters()]  # the fit changes them
        centre = rows.to(device, torch.float32)
        jittered = centre + (self.sigma * eps).to(device, torch.float32)
        features = self._encode(jittered)
        h_centre = self._head(self._encode(centre.detach()), weights).detach()
        h_jittered = self._head(features, weights)
        t = values.to(device) - h_centre
        h = h_jittered.detach() - h_centre
        c = self.coefficient
        self.moments = [
            _COEFFICIENT_DECAY * self.moments[0] + float((h * t).sum()),
            _COEFFICIENT_DECAY * self.moments[1] + float((h * h).sum()),
        ]
        output = h_centre + c * (h_jittered - h_jittered.detach())  # c J_h(x + sigma eps)
        if self.correction > 0:  # (t - c h) eps / sigma, as a term whose value is zero
            probe = ((centre - centre.detach()) * (eps / self.sigma).to(device, torch.float32)).sum(-1)
            output = output + self.correction * (t - c * h) * probe[:, None]
        self._remember(features.detach(), values.to(device))
        self._fit()
        return output.to(x.device, x.dtype).reshape(*x.shape[:-1], self.out_dim)

    def _evaluate(self, asked: Tensor) -> Tensor:
        """The black box's outputs at ``asked`` (n, in_dim) as a float32 (n, out_dim) tensor."""
        returned = self.function(asked.numpy())
        if isinstance(returned, Tensor):
            returned = returned.detach().cpu()
        values = np.asarray(returned, dtype=np.float64)
        if values.size != len(asked) * self.out_dim or not np.all(np.isfinite(values)):
            raise ValueError(
                f"function returned shape {values.shape} with {np.count_nonzero(~np.isfinite(values))} "
                f"non-finite values; expected ({len(asked)}, {self.out_dim}) finite numbers"
            )
        return torch.as_tensor(values.reshape(len(asked), self.out_dim), dtype=torch.float32)

    def _encode(self, x: Tensor) -> Tensor:
        return positional_encoding(torch.pi * x, self.frequencies)

    def _head(self, features: Tensor, weights: list[Tensor] | None = None) -> Tensor:
        """The surrogate on encoded inputs, with its own weights or ``weights`` (a copy)."""
        weights = list(self.surrogate.parameters()) if weights is None else weights
        h = features
        for k in range(0, len(weights) - 2, 2):
            h = nn.functional.leaky_relu(nn.functional.linear(h, weights[k], weights[k + 1]), 0.01)
        return nn.functional.linear(h, weights[-2], weights[-1])

    def _remember(self, features: Tensor, outputs: Tensor) -> None:
        """Write the newest pairs into the ring buffers (the oldest are overwritten)."""
        memory = len(self.features)
        if len(features) > memory:
            features, outputs = features[-memory:], outputs[-memory:]
        slots = (self.stored + torch.arange(len(features), device=features.device)) % memory
        self.features[slots], self.outputs[slots] = features, outputs
        self.stored += len(features)

    def _fit(self) -> None:
        parameters = list(self.surrogate.parameters())
        size = min(self.stored, len(self.features))
        for _ in range(self.fit_steps):
            pick = torch.randint(size, (self.fit_batch,), generator=self.generator).to(self.features.device)
            loss = nn.functional.mse_loss(self._head(self.features[pick]), self.outputs[pick])
            self.fitter.zero_grad(set_to_none=True)
            loss.backward(inputs=parameters)  # type: ignore[no-untyped-call]
            self.fitter.step()
        self.fitter.zero_grad(set_to_none=True)

    def get_extra_state(self) -> dict[str, Any]:
        """What ``state_dict()`` holds beyond weights and memory, so that a loaded copy
        continues exactly as the original would: the fitter, counters and the RNG."""
        counters = {"stored": self.stored, "moments": list(self.moments)}
        return {**counters, "fitter": self.fitter.state_dict(), "generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.stored, self.moments = int(state["stored"]), [float(m) for m in state["moments"]]
        self.fitter.load_state_dict(state["fitter"])
        self.generator.set_state(state["generator"])
