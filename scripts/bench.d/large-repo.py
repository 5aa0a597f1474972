#!/usr/bin/env python3
"""large-repo.py — scripts/bench --large-repo: times `pdsmove car verify` and `car ls` on CARs of
50,000, 200,000 and 1,000,000 records (built once by build-car.mjs with the official
@atproto/repo, cached in $PDSMOVE_CACHE/bench-cars) against `sha256sum` and a one-shot
OpenSSL SHA-256 over the same bytes, and prints wall time, CPU time (user + sys) and peak RSS
of each, best of --runs. Python 3 stdlib only. Figures, not a test; see docs/benchmarks.md.

  large-repo.py --bin PDSMOVE --node NODE --cars DIR [--sizes 50000,200000,1000000] [--runs 3]
                [--json OUT]
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    """(wall s, cpu s, peak RSS KiB) of one run, stdout discarded. Wall and CPU (user + sys, its
    own and its children's) come from wait4 on GNU time, the peak RSS from GNU time's %M: wait4's
    own ru_maxrss would include the Python pages the child had before its exec."""
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"large-repo-time.{os.getpid()}")
    t0 = time.monotonic()
    p = subprocess.Popen(["/usr/bin/time", "-o", out, "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stderr.close()
    if p.returncode != 0:
        sys.exit(f"large-repo: {' '.join(cmd)} failed ({p.returncode}): {err.decode(errors='replace').strip()[:500]}")
    with open(out) as f:
        rss = int(f.read().split()[-1])
    os.unlink(out)
    return wall, ru.ru_utime + ru.ru_stime, rss


def best(cmd, runs):
    rs = [run(cmd) for _ in range(runs)]
    return {"wall_s": min(r[0] for r in rs), "cpu_s": min(r[1] for r in rs), "rss_kib": max(r[2] for r in rs)}


def openssl_sha(path):
    """CPU time of `openssl dgst -sha256` (OpenSSL's SHA-256, large reads) over the file."""
    return ["openssl", "dgst", "-sha256", path]


def ensure_car(node, cars, n):
    path = os.path.join(cars, f"repo-{n}.car")
    if os.path.exists(path):
        return path
    os.makedirs(cars, exist_ok=True)
    heap = max(2048, n // 1000 * 9)  # about 7 GB for 1M records
    print(f"== building {path} with @atproto/repo (nice 10, --max-old-space-size={heap}; 1M records takes minutes)", flush=True)
    subprocess.run(["nice", "-n", "10", node, f"--max-old-space-size={heap}", os.path.join(HERE, "build-car.mjs"), str(n), path],
                   check=True)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--cars", required=True)
    ap.add_argument("--sizes", default="50000,200000,1000000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        car = ensure_car(a.node, a.cars, n)
        size = os.path.getsize(car)
        r = {"records": n, "bytes": size}
        r["sha256sum"] = best(["sha256sum", car], a.runs)
        r["openssl"] = best(openssl_sha(car), a.runs)
        r["verify"] = best([a.bin, "car", "verify", car], a.runs)
        r["ls"] = best([a.bin, "car", "ls", car], a.runs)
        rows.append(r)
        print(f"-- {n} records done", flush=True)
    print()
    print(f"{'records':>9} {'MB':>6} | {'command':<16} {'wall s':>7} {'cpu s':>7} {'RSS MiB':>8} | {'cpu vs sha256sum':>16} {'cpu vs openssl':>14}")
    for r in rows:
        for name in ("sha256sum", "openssl", "verify", "ls"):
            m = r[name]
            label = {"verify": "car verify", "ls": "car ls", "openssl": "openssl dgst"}.get(name, name)
            vs = m["cpu_s"] / r["sha256sum"]["cpu_s"] if r["sha256sum"]["cpu_s"] else 0
            vo = m["cpu_s"] / r["openssl"]["cpu_s"] if r["openssl"]["cpu_s"] else 0
            print(f"{r['records']:>9} {r['bytes'] / 1e6:>6.1f} | {label:<16} {m['wall_s']:>7.2f} {m['cpu_s']:>7.2f} {m['rss_kib'] / 1024:>8.1f} |"
                  f" {vs:>15.2f}x {vo:>13.2f}x")
    print("\nwall/cpu: best of", a.runs, "runs; RSS: the largest peak (ru_maxrss). The 64 MiB target is on RSS;")
    print("the 2x target compares car verify with sha256sum over the same file.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
