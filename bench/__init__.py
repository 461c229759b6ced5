"""Benchmark suite of zg_asktell (issue 4): ``python -m bench.run`` and ``python -m bench.scaling``.

``bench.problems`` holds the problems, ``bench.peers`` the optimizers behind one batch
ask/tell interface, ``bench.run`` the harness and reports; see docs/benchmarks.md.
"""
