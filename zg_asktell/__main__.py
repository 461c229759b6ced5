"""Command line: ``python -m zg_asktell demo [--budget N] [--discs N] [--seed S] [--out PNG]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zg_asktell", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit hard-edged discs to an image; compare with CMA")
    demo.add_argument("--budget", type=int, default=10000, help="evaluations per optimizer")
    demo.add_argument("--discs", type=int, default=40, help="discs to fit (6 parameters each)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="demo.png", help="PNG to write")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as run_demo

        run_demo(budget=args.budget, discs=args.discs, seed=args.seed, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
