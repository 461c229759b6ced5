"""zg_asktell: ask/tell optimization of non-differentiable black boxes (ZeroGrads)."""

from ._config import PRESETS, ZeroGradsConfig, preset
from ._minimize import FailedRunWarning, MinimizeResult, minimize
from ._optimizer import ZeroGrads

__all__ = [
    "PRESETS",
    "FailedRunWarning",
    "MinimizeResult",
    "ZeroGrads",
    "ZeroGradsConfig",
    "minimize",
    "preset",
]
__version__ = "0.2.0.dev0"
