"""zg_asktell: ask/tell optimization of non-differentiable black boxes (ZeroGrads)."""

from ._config import PRESETS, ZeroGradsConfig, preset
from ._optimizer import ZeroGrads

__all__ = ["PRESETS", "ZeroGrads", "ZeroGradsConfig", "preset"]
__version__ = "0.1.0"
