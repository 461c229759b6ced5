#!/usr/bin/env python3
"""A test simulator run as a separate process: prints the loss of the candidate in PARAMS.

usage: simulate.py PARAMS [--sleep S] [--faults KINDS] [--flaky DIR] [--loss-file PATH] [--ppid DIR]

The loss is a staircase (zero gradient almost everywhere) plus a small tilt. ``--faults``
makes a quarter of the candidates misbehave, chosen by a hash of the candidate so that
every run fails the same way: ``exit`` (status 3 with a message on stderr), ``garbage``
(a last stdout line that is not a number), ``hang`` (sleeps 30 s) or ``nan``.
``--flaky DIR`` crashes on the first try of one candidate in four (a marker file in DIR
remembers the try). ``--ppid DIR`` records the parent's pid (the evaluating process).
"""

import hashlib
import json
import os
import sys
import time


def read(path):
    if path.endswith(".npy"):
        import numpy

        return [float(v) for v in numpy.load(path)]
    with open(path) as file:
        text = file.read()
    if path.endswith(".json"):
        return [float(v) for v in json.loads(text)]
    return [float(v) for v in text.strip().split(",")]


def option(args, name):
    return args[args.index(name) + 1] if name in args else None


def main(args):
    x = read(args[0])
    loss = sum(round(2 * v - 1) ** 2 for v in x) + 0.01 * sum(x)
    digest = int(hashlib.sha256(repr(x).encode()).hexdigest(), 16)
    if option(args, "--ppid"):
        with open(os.path.join(option(args, "--ppid"), str(os.getpid())), "w") as file:
            file.write(str(os.getppid()))
    if option(args, "--sleep"):
        time.sleep(float(option(args, "--sleep")))
    kinds = (option(args, "--faults") or "").split(",")
    kind = ("exit", "garbage", "hang", "nan")[digest % 16] if digest % 16 < 4 else None
    if kind in kinds:
        if kind == "exit":
            sys.stderr.write("solver diverged\n")
            return 3
        if kind == "garbage":
            print("mesh ok")
            print("loss: oops")
            return 0
        if kind == "hang":
            time.sleep(30)
        loss = float("nan")
    if option(args, "--flaky") and digest % 4 == 0:
        marker = os.path.join(option(args, "--flaky"), str(digest % 10**12))
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.abort()  # a crash: killed by SIGABRT
    if option(args, "--loss-file"):
        with open(option(args, "--loss-file"), "w") as file:
            file.write(f"{loss!r}\n")
        print("done")
    else:
        print("solver converged")
        print(repr(loss))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
