#!/bin/sh
# A POSIX sh simulator: reads a one-line CSV candidate ($1), prints log lines, then the loss.
echo "reading $1"
awk -F, '{ s = 0; for (i = 1; i <= NF; i++) { d = int(2 * $i + 10) - 10; s += d * d }; printf "%.6f\n", s }' "$1"
