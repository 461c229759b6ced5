"""Hydra plugin: registers ZeroGrads in Nevergrad's optimizer registry at Hydra's start-up.

Hydra loads its plugins before it composes the config, both the modules of its
``hydra_plugins`` namespace package (regular installs) and the ``hydra.plugins`` entry
points (also editable installs, from Hydra 1.4). Loading this module imports
:mod:`zg_asktell.adapters.nevergrad`, so ``hydra.sweeper.optim.optimizer: ZeroGrads`` (or
another registered variant) works with Hydra's Nevergrad sweeper and no user code.
"""

from __future__ import annotations

from importlib.util import find_spec

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

if find_spec("nevergrad") is not None:  # without Nevergrad there is no sweeper to serve
    import zg_asktell.adapters.nevergrad  # noqa: F401  (registers the names)


class RegisterZeroGrads(SearchPathPlugin):
    """The class Hydra's entry-point loader needs; it leaves the config search path alone."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Add nothing: the plugin exists for the registration its module makes."""
