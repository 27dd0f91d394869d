#!/usr/bin/env python3
# Usage: OLD_BIN=/path/to/old/containerd-shim-wisp-v1 NEW_DIR=target/release RUNS=200 python3 THIS (as root)
"""Median wall time of `<shim> start` when the node's shared daemon is alive
(a listener on its socket stands in for it: `start` only connects), old
single binary against the launcher, interleaved."""
import os, sys, time, statistics, tempfile, socket, hashlib
runs = int(os.environ.get("RUNS", "100"))
R = os.path.abspath(os.environ.get("NEW_DIR", "target/release"))  # the launcher and its daemon
cmds = {"old single binary start": os.environ["OLD_BIN"],
        "new launcher start": R + "/containerd-shim-wisp-v1"}
ctd, ns = "/tmp/wisp-measure-ctd.sock", "measure"
path = os.path.join(ctd, ns, "wisp-node")
sock_path = "/run/containerd/s/" + hashlib.sha256(path.encode()).hexdigest()
os.makedirs("/run/containerd/s", exist_ok=True)
if os.path.exists(sock_path): os.unlink(sock_path)
srv = socket.socket(socket.AF_UNIX); srv.bind(sock_path); srv.listen(1024)
bundle = tempfile.mkdtemp(prefix="wisp-bundle-")
open(os.path.join(bundle, "config.json"), "w").write('{"process":{"env":["PATH=/bin"]},"annotations":{}}')
env = dict(os.environ, TTRPC_ADDRESS=ctd + ".ttrpc")
env.pop("WISP_SHIM_GROUP", None)
times = {k: [] for k in cmds}
os.chdir(bundle)
for _ in range(runs):
    for k, exe in cmds.items():
        r, w = os.pipe()
        argv = [exe, "-namespace", ns, "-address", ctd, "-publish-binary", "/usr/bin/containerd", "-id", "c1", "start"]
        t = time.perf_counter()
        pid = os.posix_spawn(exe, argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
        os.close(w)
        out = b""
        while chunk := os.read(r, 4096): out += chunk
        _, st = os.waitpid(pid, 0)
        times[k].append((time.perf_counter() - t) * 1e3)
        os.close(r)
        assert st == 0 and out.decode() == "unix://" + sock_path, (k, st, out)
        while True:  # drain the liveness connections
            srv.settimeout(0)
            try: srv.accept()[0].close()
            except OSError: break
for k, v in times.items():
    print(f"{k:26} median {statistics.median(v):6.2f} ms  (min {min(v):.2f}, n={len(v)})")
os.unlink(sock_path)
os.unlink(sock_path + ".lock")  # the launcher's StartLock file
