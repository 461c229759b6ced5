"""Overhead of :class:`zg_asktell.torch.BlackBox` per rendered row, against batch and output size.

``python -m bench.torch_overhead [--batches 32 128 512] [--outputs 16 256 1000] [--calls 50]
[--layer zg_asktell.torch:BlackBox] [--option name=value ...]``

Times a layer call plus the backward pass through it, in milliseconds per input row, with
a black box of 6 inputs that costs next to nothing (its own time is subtracted), on one
thread: what the layer adds to a training step whatever the renderer costs. ``--layer``
times another class with the same constructor (e.g. an older version, for before/after);
``--option`` passes keyword options to it (``fit_batch=64``).
"""

from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
import torch

from bench.amortised import parse_options

IN_DIM = 6


def overhead(
    layer_class: type[torch.nn.Module], batch: int, out_dim: int, calls: int, **options: float
) -> float:
    """Milliseconds per input row of a call and its backward pass, the black box's time excluded."""
    weights = np.random.default_rng(0).normal(size=(IN_DIM, out_dim))
    spent = [0.0]

    def function(x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        values = np.tanh(x @ weights)
        spent[0] += time.perf_counter() - start
        return values

    layer = layer_class(function, IN_DIM, out_dim, seed=0, **options)
    x = torch.rand(batch, IN_DIM, requires_grad=True)
    target = torch.zeros(batch, out_dim)
    for _ in range(5):  # warm-up: allocations, the optimizer's state
        ((layer(x) - target) ** 2).mean().backward()
    spent[0] = 0.0
    start = time.perf_counter()
    for _ in range(calls):
        ((layer(x) - target) ** 2).mean().backward()
    return (time.perf_counter() - start - spent[0]) / calls / batch * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--outputs", type=int, nargs="+", default=[16, 256, 1000])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--layer", default="zg_asktell.torch:BlackBox", help="module:class to time")
    parser.add_argument("--option", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    module, name = args.layer.split(":")
    layer_class = getattr(importlib.import_module(module), name)
    options = parse_options(args.option)
    command = " ".join(["python -m bench.torch_overhead --layer", args.layer, *args.option])
    print(f"`{command}`: milliseconds per row, one thread\n")
    print("| rows per call | " + " | ".join(f"{n} outputs" for n in args.outputs) + " |")
    print("|---|" + "---|" * len(args.outputs))
    for batch in args.batches:
        row = [overhead(layer_class, batch, n, args.calls, **options) for n in args.outputs]
        print(f"| {batch} | " + " | ".join(f"{ms:.3f}" for ms in row) + " |")


if __name__ == "__main__":
    main()
