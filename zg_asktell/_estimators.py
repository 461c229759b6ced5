"""Gradient estimators of the Gaussian-smoothed loss: plain ES, the learned surrogate, and
ES with the surrogate as a control variate.

All work in the normalised space and see one update's data: the regression inputs
``inputs`` (n, d), the unit-normal offsets ``offsets`` (n, d) that produced them (rows of
points the optimizer never asked are NaN and ignored by ES), their widths ``sigmas`` ((n,),
or (n, d) when the width differs between coordinates), and the centred, scaled losses
``targets`` (n,).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ._config import ZeroGradsConfig, surrogate_width


class GradientEstimator(Protocol):
    def fit(self, inputs: Tensor, offsets: Tensor, sigmas: Tensor, targets: Tensor) -> None:
        """Take in one update's data."""

    def gradient(self, theta: Tensor) -> Tensor:
        """Estimated gradient of the smoothed loss at ``theta`` (d,)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def positional_encoding(z: Tensor, frequencies: int) -> Tensor:
    """``[z, sin(2^k z) for k < frequencies, cos(2^k z) for k < frequencies]`` along the last
    axis (NeRF). Octaves after the first come from the double-angle formulas: products cost
    less than sines, forward and backward."""
    if frequencies == 0:
        return z
    sines, cosines = [torch.sin(z)], [torch.cos(z)]
    for _ in range(frequencies - 1):
        sine, cosine = sines[-1], cosines[-1]
        sines.append(2 * sine * cosine)
        cosines.append(1 - 2 * sine * sine)
    return torch.cat([z, *sines, *cosines], dim=-1)


class SurrogateMLP(nn.Module):
    """Leaky-ReLU MLP ``h_phi`` on positionally encoded inputs, scalar output."""

    def __init__(
        self,
        dim: int,
        config: ZeroGradsConfig,
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.frequencies = config.encoding_frequencies
        widths = [dim * (1 + 2 * self.frequencies)]
        widths += [surrogate_width(config, dim)] * config.hidden_layers + [1]
        # Built on the meta device and filled from our generator: nn.Linear's own
        # initialisation would draw from torch's global RNG.
        layers = [
            nn.Linear(w_in, w_out, device="meta", dtype=dtype) for w_in, w_out in zip(widths[:-1], widths[1:])
        ]
        self.layers = nn.ModuleList(layers).to_empty(device=device)
        with torch.no_grad():
            for layer in layers:
                bound = 1.0 / math.sqrt(layer.in_features)
                for param in (layer.weight, layer.bias):
                    noise = torch.rand(param.shape, generator=generator, dtype=dtype)
                    param.copy_((2 * noise - 1) * bound)  # PyTorch's default bounds
            if config.zero_init_output:
                layers[-1].weight.zero_()
                layers[-1].bias.zero_()

    def forward(self, z: Tensor) -> Tensor:
        return self.head(positional_encoding(z, self.frequencies))

    def head(self, features: Tensor) -> Tensor:
        """The network on already encoded inputs (a fit encodes its batch once)."""
        h = features
        for layer in self.layers[:-1]:
            h = nn.functional.leaky_relu(layer(h), 0.01)
        out: Tensor = self.layers[-1](h)
        return out.squeeze(-1)


class SurrogateEnsemble(nn.Module):
    """The mean of independently initialised :class:`SurrogateMLP` members."""

    def __init__(self, members: list[SurrogateMLP]) -> None:
        super().__init__()
        self.frequencies = members[0].frequencies
        self.members: list[SurrogateMLP] = nn.ModuleList(members)  # type: ignore[assignment]

    def forward(self, z: Tensor) -> Tensor:
        return self.head(positional_encoding(z, self.frequencies)).mean(0)

    def head(self, features: Tensor) -> Tensor:
        """Every member's output on encoded inputs, stacked along a new first axis."""
        return torch.stack([member.head(features) for member in self.members])


class SurrogateEstimator:
    """ZeroGrads: a warm-started MLP fit online; its input gradient drives the step."""

    def __init__(
        self,
        dim: int,
        config: ZeroGradsConfig,
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.config = config
        self.model = SurrogateEnsemble(
            [SurrogateMLP(dim, config, generator, device, dtype) for _ in range(config.ensemble_size)]
        )
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr_surrogate, weight_decay=config.weight_decay, fused=True
        )  # fused: one kernel for all parameters, 3x faster fits at d = 10,000 on CPU

    def fit(self, inputs: Tensor, offsets: Tensor, sigmas: Tensor, targets: Tensor) -> None:
        self._fit(positional_encoding(inputs, self.model.frequencies), targets)

    def _fit(self, features: Tensor, targets: Tensor, first: Tensor | None = None) -> None:
        """``fit_steps`` Adam steps on the weights for encoded inputs ``features``; ``first``,
        the members' outputs on them with their graph, saves the first step's forward pass.
        Each member is fit to the targets on its own."""
        parameters = list(self.model.parameters())
        for _ in range(self.config.fit_steps):
            predictions = self.model.head(features) if first is None else first
            first = None
            self.optimizer.zero_grad(set_to_none=True)
            # summed over members: each gets exactly the gradient it would get alone
            loss = nn.functional.mse_loss(predictions, targets.expand_as(predictions)) * len(predictions)
            loss.backward(inputs=parameters)  # type: ignore[no-untyped-call]
            self.optimizer.step()

    def gradient(self, theta: Tensor) -> Tensor:
        point = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(point), point)
        return grad

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        model = state["model"]
        if any(key.startswith("layers.") for key in model):  # saved before ensembles: one network
            model = {f"members.0.{key}": value for key, value in model.items()}
        self.model.load_state_dict(model)
        self.optimizer.load_state_dict(state["optimizer"])


class ControlVariateEstimator(SurrogateEstimator):
    """ES on what the surrogate does not predict, plus the surrogate's own smoothed gradient.

    ``grad = mean_i((t_i - c h(z_i)) u_i / sigma_i + c grad h(z_i))``, with ``h`` fit on
    earlier updates only, is unbiased for the smoothed loss's gradient whatever ``h`` is; its
    variance shrinks with the share of the loss ``h`` predicts. ``c`` is the running
    regression coefficient of fresh targets on ``h``'s predictions, clipped to [0, 1]: 0
    (plain ES) until the surrogate predicts samples it has not seen. With antithetic pairs
    it regresses the pairs' differences ``t+ - t-`` on ``h+ - h-``: ES sees only that odd
    part, so a surrogate that fits the even part (a bowl's curvature) well earns no weight.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._covariance = 0.0
        self._variance = 0.0
        self._total = 0.0
        self._gradient: Tensor | None = None

    @property
    def explained(self) -> float:
        """Share of the recent targets (with antithetic pairs, their differences) that
        ``c h`` predicted before the fit saw them: about the share of ES's variance the
        control variate removes."""
        if self._total <= 0:
            return 0.0
        c = self._coefficient()
        return max(0.0, 2 * c * self._covariance - c * c * self._variance) / self._total

    def _coefficient(self) -> float:
        return min(1.0, max(0.0, self._covariance / self._variance)) if self._variance > 0 else 0.0

    def fit(self, inputs: Tensor, offsets: Tensor, sigmas: Tensor, targets: Tensor) -> None:
        points = inputs.detach().requires_grad_(True)
        features = positional_encoding(points, self.model.frequencies)
        members = self.model.head(features)  # before the fit: h has not seen this batch
        predictions = members.mean(0)
        asked = _asked(offsets)
        if bool(asked.any()):
            (pathwise,) = torch.autograd.grad(predictions[asked].sum(), points, retain_graph=True)
            pathwise = pathwise[asked]
            h = predictions.detach()[asked]
            h = h - h.mean()
            t = targets[asked]
            c = self._coefficient()
            self._gradient = _stein_gradient(t - c * h, offsets[asked], sigmas[asked])
            if c > 0:
                self._gradient = self._gradient + c * pathwise.mean(0)
            if self.config.antithetic and len(t) % 2 == 0:  # asked rows keep their +/- pair order
                h, t = h[0::2] - h[1::2], t[0::2] - t[1::2]
            self._covariance = _COEFFICIENT_DECAY * self._covariance + float(h @ t)
            self._variance = _COEFFICIENT_DECAY * self._variance + float(h @ h)
            self._total = _COEFFICIENT_DECAY * self._total + float(t @ t)
        self._fit(features.detach(), targets, first=members)

    def gradient(self, theta: Tensor) -> Tensor:
        return torch.zeros_like(theta) if self._gradient is None else self._gradient

    def state_dict(self) -> dict[str, Any]:
        moments = {"covariance": self._covariance, "variance": self._variance, "total": self._total}
        return {**super().state_dict(), **moments, "gradient": self._gradient}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._covariance, self._variance = state["covariance"], state["variance"]
        self._total = state.get("total", 0.0)  # saved before ``explained`` existed: refills in ~10 updates
        self._gradient = state["gradient"]


_COEFFICIENT_DECAY = 0.9  # memory of the control-variate coefficient, in updates: about 10


class ESEstimator:
    """Antithetic Gaussian-smoothing (Stein) estimator, rebuilt from each update.

    ``grad = mean_i(t_i * u_i / sigma_i)`` over the asked rows: with centred targets an
    antithetic pair contributes exactly ``(t+ - t-) u / sigma``.
    """

    def __init__(self) -> None:
        self._gradient: Tensor | None = None

    def fit(self, inputs: Tensor, offsets: Tensor, sigmas: Tensor, targets: Tensor) -> None:
        asked = _asked(offsets)
        if bool(asked.any()):
            self._gradient = _stein_gradient(targets[asked], offsets[asked], sigmas[asked])

    def gradient(self, theta: Tensor) -> Tensor:
        if self._gradient is None:
            return torch.zeros_like(theta)
        return self._gradient

    def state_dict(self) -> dict[str, Any]:
        return {"gradient": self._gradient}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gradient = state["gradient"]


def _asked(offsets: Tensor) -> Tensor:
    """Rows the optimizer sampled (points told but never asked have NaN offsets)."""
    return ~torch.isnan(offsets[:, 0])


def _stein_gradient(targets: Tensor, offsets: Tensor, sigmas: Tensor) -> Tensor:
    """``mean_i((t_i - mean t) u_i / sigma_i)``, per coordinate when ``sigmas`` is (n, d): the
    Gaussian-smoothing gradient estimate."""
    centred = targets - targets.mean()
    return (centred[:, None] / sigmas.reshape(len(targets), -1) * offsets).sum(0) / len(targets)
