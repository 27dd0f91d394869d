#!/bin/bash
# The before/after runs of docs/benchmarks.md ("The shim's launcher"): the
# launcher build, a single-binary shim from before it, the launcher again.
# Usage: OLD_BIN=/path/to/old/containerd-shim-wisp-v1 bench-aba.sh OUT_DIR   (as root)
set -eux
R=${CARGO_TARGET_DIR:-target}/release
for run in after1:$R/containerd-shim-wisp-v1 before1:$OLD_BIN after2:$R/containerd-shim-wisp-v1; do
  date -u
  flock /work/bench.lock nice -n -10 "$R/wisp" bench --scenario containerd \
    --out "$1/${run%%:*}" --shim-bin "${run#*:}"
done
