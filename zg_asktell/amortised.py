"""Deprecated home of the black-box layer: ``LearnedSmoothing`` is now
:class:`zg_asktell.torch.BlackBox` (same arguments, plus ``correction``)."""

from __future__ import annotations

import warnings

from .torch import BlackBox


def __getattr__(name: str) -> type[BlackBox]:
    if name == "LearnedSmoothing":
        warnings.warn(
            "zg_asktell.amortised.LearnedSmoothing is deprecated; use zg_asktell.torch.BlackBox "
            "(same arguments; its state_dict layout differs, so old checkpoints do not load)",
            DeprecationWarning,
            stacklevel=2,
        )
        return BlackBox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
