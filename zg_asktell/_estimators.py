"""Gradient estimators of the Gaussian-smoothed loss: the learned surrogate and plain ES.

Both work in the normalised space and see one update's data: the regression inputs
``inputs`` (n, d), the unit-normal offsets ``offsets`` (n, d) that produced them (rows of
points the optimizer never asked are NaN and ignored by ES), the per-row sigma, and the
centred, scaled losses ``targets`` (n,).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ._config import ZeroGradsConfig


class GradientEstimator(Protocol):
    def fit(self, inputs: Tensor, offsets: Tensor, sigmas: Tensor, targets: Tensor) -> None:
        """Take in one update's data."""

    def gradient(self, theta: Tensor) -> Tensor:
        """Estimated gradient of the smoothed loss at ``theta`` (d,)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def positional_encoding(z: Tensor, frequencies: int) -> Tensor:
    """``[z, sin(2^k z), cos(2^k z) for k < frequencies]`` along the last axis (NeRF)."""
    if frequencies == 0:
        return z
    scales = 2.0 ** torch.arange(frequencies, device=z.device, dtype=z.dtype)
    angles = (z[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([z, torch.sin(angles), torch.cos(angles)], dim=-1)


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
        widths += [config.hidden_width] * config.hidden_layers + [1]
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
        h = positional_encoding(z, self.frequencies)
        for layer in self.layers[:-1]:
            h = nn.functional.leaky_relu(layer(h), 0.01)
        out: Tensor = self.layers[-1](h)
        return out.squeeze(-1)


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
        self.model = SurrogateMLP(dim, config, generator, device, dtype)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr_surrogate, weight_decay=config.weight_decay, fused=True
        )  # fused: one kernel for all parameters, 3x faster fits at d = 10,000 on CPU
        self.fit_steps = config.fit_steps

    def fit(self, inputs: Tensor, offsets: Tensor, sigmas: Tensor, targets: Tensor) -> None:
        for _ in range(self.fit_steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(self.model(inputs), targets)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()

    def gradient(self, theta: Tensor) -> Tensor:
        point = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(point), point)
        return grad

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class ESEstimator:
    """Antithetic Gaussian-smoothing (Stein) estimator, rebuilt from each update.

    ``grad = mean_i(t_i * u_i / sigma_i)`` over the asked rows: with centred targets an
    antithetic pair contributes exactly ``(t+ - t-) u / sigma``.
    """

    def __init__(self) -> None:
        self._gradient: Tensor | None = None

    def fit(self, inputs: Tensor, offsets: Tensor, sigmas: Tensor, targets: Tensor) -> None:
        asked = ~torch.isnan(offsets[:, 0])
        if not bool(asked.any()):
            return
        t = targets[asked] - targets[asked].mean()
        weights = t / sigmas[asked]
        self._gradient = weights @ offsets[asked] / int(asked.sum())

    def gradient(self, theta: Tensor) -> Tensor:
        if self._gradient is None:
            return torch.zeros_like(theta)
        return self._gradient

    def state_dict(self) -> dict[str, Any]:
        return {"gradient": self._gradient}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gradient = state["gradient"]
