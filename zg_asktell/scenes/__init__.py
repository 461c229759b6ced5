"""Scenes of the paper's demonstrations: non-differentiable renderers as problems.

Each module holds one :class:`zg_asktell.problems.Problem` generated from a seed (no
downloads), numpy only, with a vectorised ``losses`` for a batch of candidates. The
examples (``examples/plot_*.py``) and the benchmark (``bench/problems.py``) both use them.
"""
