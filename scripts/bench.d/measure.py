#!/usr/bin/env python3
"""measure.py — scripts/bench's stopwatch and table. `run` starts one migration client, stamps
its "==> step" / "    ok step" stderr lines as they arrive and takes its peak RSS from wait4();
`report` prints the pdsmove-vs-reference table (and writes it as JSON). Python 3 stdlib only.

  measure.py run --out RESULT.json --log STDERR.log --stdout OUT [--echo PREFIX] -- CMD ARGS...
  measure.py report --mode loopback|wan --pdsmove R1.json --reference R2.json [--pdsmove-car N]
                    [--wire-pdsmove N --wire-reference N] [--json OUT] [--commit C]
"""
import argparse
import json
import os
import re
import signal
import sys
import threading
import time

STEP_START = re.compile(r"^==> (\S+)\s*$")
STEP_OK = re.compile(r"^    ok (\S+?)(?::\s(.*))?$")
STEP_FAILED = re.compile(r"^    FAILED (\S+)")


def read_report(path):
    """The client's final JSON report on stdout: pdsmove --json prints one event per line and
    ends with {"event":"report",...} (older builds: one indented object); the reference prints
    one line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if isinstance(j, dict) and j.get("event", "report") == "report":
            return j
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        return None


def cmd_run(a):
    argv = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not argv:
        sys.exit("measure.py run: no command given")
    steps = {}  # name -> {start, end, detail, failed}
    order = []
    log = open(a.log, "w", encoding="utf-8")
    out = open(a.stdout, "wb")
    r_err, w_err = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: stdout to the file, stderr to our pipe
        try:
            os.close(r_err)
            os.dup2(out.fileno(), 1)
            os.dup2(w_err, 2)
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, f"measure.py: cannot run {argv[0]}: {e}\n".encode())
        os._exit(127)
    os.close(w_err)
    out.close()

    def forward(sig, _frame):  # scripts/bench's cleanup ends us: end the client too
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    def reader():
        with os.fdopen(r_err, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                t = time.monotonic() - t0
                line = line.rstrip("\n")
                log.write(f"{t:9.3f} {line}\n")
                log.flush()
                if a.echo is not None:
                    sys.stderr.write(f"{a.echo}{t:8.2f}s  {line}\n")
                    sys.stderr.flush()
                m = STEP_START.match(line)
                if m:
                    name = m.group(1)
                    if name not in steps:
                        order.append(name)
                        steps[name] = {"start": t}
                    else:  # a step shown again (a retry): keep the first start
                        steps[name].pop("end", None)
                    continue
                m = STEP_OK.match(line)
                if m and m.group(1) in steps:
                    steps[m.group(1)]["end"] = t
                    if m.group(2):
                        steps[m.group(1)]["detail"] = m.group(2)
                    continue
                m = STEP_FAILED.match(line)
                if m and m.group(1) in steps:
                    steps[m.group(1)]["failed"] = t

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    while True:
        try:
            _, status, ru = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    wall = time.monotonic() - t0
    th.join(timeout=30)
    log.close()
    code = os.waitstatus_to_exitcode(status)  # negative: killed by that signal
    res = {
        "command": os.path.basename(argv[0]),
        "exit": code,
        "wall_s": round(wall, 3),
        "maxrss_kib": ru.ru_maxrss,
        "user_s": round(ru.ru_utime, 3),
        "sys_s": round(ru.ru_stime, 3),
        "steps": [{"name": n, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in steps[n].items()}} for n in order],
    }
    res["stdout"] = os.path.abspath(a.stdout)
    res["report"] = read_report(a.stdout)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)
    sys.exit(0 if code == 0 else 1)


def fmt_s(v):
    return "-" if v is None else f"{v:.2f} s"


def fmt_mib(v):
    return "-" if v is None else f"{v / 1048576:.1f} MiB"


def ratio(a, b):
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.2f}"


def dur(res, name):
    for s in res["steps"]:
        if s["name"] == name and "end" in s:
            return s["end"] - s["start"]
    return None


def cmd_report(a):
    pm = json.load(open(a.pdsmove, encoding="utf-8"))
    ref = json.load(open(a.reference, encoding="utf-8"))
    names = []
    for res in (pm, ref):
        for s in res["steps"]:
            if s["name"] not in names:
                names.append(s["name"])
    pm_rep = pm.get("report") or read_report(pm.get("stdout", a.pdsmove.replace(".result.json", ".out"))) or {}
    ref_rep = ref.get("report") or {}
    target_ratio = 0.5 if a.mode == "wan" else 0.8
    rows = []
    first = lambda res: res["steps"][0]["start"] if res["steps"] else None  # noqa: E731
    rows.append(("(start-up)", fmt_s(first(pm)), fmt_s(first(ref)), ratio(first(pm), first(ref))))
    for n in names:
        p, r = dur(pm, n), dur(ref, n)
        rows.append((n, fmt_s(p), fmt_s(r), ratio(p, r)))
    rows.append(("TOTAL (wall)", fmt_s(pm["wall_s"]), fmt_s(ref["wall_s"]), ratio(pm["wall_s"], ref["wall_s"])))

    def blob_time(res):
        """Seconds during which some blob step ran (blobs-fetch, blobs, ...; overlaps counted once)."""
        spans = sorted((s["start"], s["end"]) for s in res["steps"] if s["name"].startswith("blobs") and "end" in s)
        total, cur = 0.0, None
        for b, e in spans:
            if cur and b <= cur[1]:
                cur = (cur[0], max(cur[1], e))
                continue
            if cur:
                total += cur[1] - cur[0]
            cur = (b, e)
        return total + (cur[1] - cur[0] if cur else 0.0)

    def blob_rate(res, rep):
        d = blob_time(res)
        n = rep.get("blobs_done", rep.get("blobs"))
        return None if not d or n is None else n / d

    pm_car = a.pdsmove_car
    if pm_car is None:  # from the export step's detail, "... 14.3 MiB, ..."
        for s in pm["steps"]:
            m = re.search(r"([0-9.]+) MiB", s.get("detail", "")) if s["name"] == "export" else None
            if m:
                pm_car = float(m.group(1)) * 1048576
    ref_car = ref_rep.get("car_bytes")
    pm_blob_bytes = pm_rep.get("blob_bytes")
    ref_blob_bytes = ref_rep.get("blob_bytes")
    br_p, br_r = blob_rate(pm, pm_rep), blob_rate(ref, ref_rep)
    facts = [
        ("repo CAR", fmt_mib(pm_car), fmt_mib(ref_car), ""),
        ("blobs", str(pm_rep.get("blobs_done", pm_rep.get("blobs", "-"))), str(ref_rep.get("blobs", "-")), ""),
        ("blob bytes", fmt_mib(pm_blob_bytes), fmt_mib(ref_blob_bytes), ""),
        ("blobs/s (while a blob step ran)", "-" if br_p is None else f"{br_p:.1f}", "-" if br_r is None else f"{br_r:.1f}",
         "-" if not br_p or not br_r else f"{br_p / br_r:.2f}"),
        ("peak RSS", f"{pm['maxrss_kib'] / 1024:.1f} MiB", f"{ref['maxrss_kib'] / 1024:.1f} MiB",
         ratio(pm["maxrss_kib"], ref["maxrss_kib"])),
        ("CPU user+sys", fmt_s(pm["user_s"] + pm["sys_s"]), fmt_s(ref["user_s"] + ref["sys_s"]),
         ratio(pm["user_s"] + pm["sys_s"], ref["user_s"] + ref["sys_s"])),
    ]
    if a.wire_pdsmove is not None and a.wire_reference is not None:
        facts.append(("bytes through the proxies", fmt_mib(a.wire_pdsmove), fmt_mib(a.wire_reference),
                      ratio(a.wire_pdsmove, a.wire_reference)))

    w = max(len(r[0]) for r in rows + facts) + 2
    head = f"{'step':<{w}}{'pdsmove':>14}{'reference':>14}{'ratio':>8}"
    title = "plain loopback" if a.mode == "loopback" else "emulated WAN (20 ms each way, 100 Mbit/s per PDS link)"
    print(f"\n== pdsmove vs the official flow on @atproto/api — {title}")
    if a.commit:
        print(f"   pdsmove at commit {a.commit}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r[0]:<{w}}{r[1]:>14}{r[2]:>14}{r[3]:>8}")
    print("-" * len(head))
    for r in facts:
        print(f"{r[0]:<{w}}{r[1]:>14}{r[2]:>14}{r[3]:>8}")
    print("(steps may overlap, so their sum can exceed the wall time; '-' = the client has no such step)")

    for label, res in (("pdsmove", pm), ("reference", ref)):
        if res["exit"] != 0:
            print(f"\n{label} FAILED (exit status {res['exit']}): its figures stop where it failed; see its stderr log")
    rss_ok = pm["maxrss_kib"] < 64 * 1024
    t_ratio = pm["wall_s"] / ref["wall_s"] if ref["wall_s"] > 0 else None
    time_ok = t_ratio is not None and t_ratio <= target_ratio and pm["exit"] == 0 and ref["exit"] == 0
    print(f"\ntarget: pdsmove peak RSS < 64 MiB ............ {'MET' if rss_ok else 'MISSED'} ({pm['maxrss_kib'] / 1024:.1f} MiB)")
    print(f"target: wall time <= {target_ratio} x reference ........ {'MET' if time_ok else 'MISSED'} ({t_ratio:.2f} x)")
    longest = max(((n, dur(pm, n) or 0) for n in names), key=lambda x: x[1])
    print(f"pdsmove's longest step: {longest[0]} ({longest[1]:.2f} s of {pm['wall_s']:.2f} s)")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"mode": a.mode, "commit": a.commit, "pdsmove": pm, "reference": ref,
                       "targets": {"rss_lt_64mib": rss_ok, "time_ratio": t_ratio, "time_target": target_ratio,
                                   "time_ok": time_ok}}, f, indent=2)


def main():
    ap = argparse.ArgumentParser(prog="measure.py")
    sub = ap.add_subparsers(dest="cmd_name", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--log", required=True)
    r.add_argument("--stdout", required=True)
    r.add_argument("--echo", default=None, help="echo stderr lines live with this prefix")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("report")
    p.add_argument("--mode", choices=["loopback", "wan"], required=True)
    p.add_argument("--pdsmove", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--pdsmove-car", type=int, help="size of the CAR pdsmove exported (bytes)")
    p.add_argument("--wire-pdsmove", type=int, help="bytes both ways through the WAN proxies")
    p.add_argument("--wire-reference", type=int)
    p.add_argument("--json")
    p.add_argument("--commit")
    a = ap.parse_args()
    cmd_run(a) if a.cmd_name == "run" else cmd_report(a)


if __name__ == "__main__":
    main()
