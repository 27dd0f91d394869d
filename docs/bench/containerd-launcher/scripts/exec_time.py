#!/usr/bin/env python3
# Usage: OLD_BIN=/path/to/old/containerd-shim-wisp-v1 NEW_DIR=target/release RUNS=200 python3 THIS (as root)
"""Median wall time of spawn+exit for each command (runs interleaved)."""
import os, sys, time, statistics, tempfile
runs = int(os.environ.get("RUNS", "30"))
R = os.path.abspath(os.environ.get("NEW_DIR", "target/release"))  # the launcher and its daemon
B = os.environ["OLD_BIN"]  # a single-binary shim from before the launcher
bundle = tempfile.mkdtemp(prefix="wisp-bundle-")
cmds = {
    "/bin/true": ["/bin/true"],
    "old single binary -v": [B, "-v"],
    "new launcher -v": [R + "/containerd-shim-wisp-v1", "-v"],
    "new daemon binary -v": [R + "/containerd-shim-wisp-v1-daemon", "-v"],
    "old single binary delete": [B, "-namespace", "x", "-id", "c", "-address", "/nonexistent", "delete"],
    "new launcher delete": [R + "/containerd-shim-wisp-v1", "-namespace", "x", "-id", "c", "-address", "/nonexistent", "delete"],
}
env = dict(os.environ, TTRPC_ADDRESS="/nonexistent.ttrpc")
devnull = os.open(os.devnull, os.O_WRONLY)
times = {k: [] for k in cmds}
for _ in range(runs):
    for k, argv in cmds.items():
        fa = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        os.chdir(bundle)
        t = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=fa)
        _, st = os.waitpid(pid, 0)
        times[k].append((time.perf_counter() - t) * 1e3)
for k, v in times.items():
    print(f"{k:28} median {statistics.median(v):6.2f} ms  (min {min(v):.2f}, n={len(v)})")
