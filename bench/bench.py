#!/usr/bin/env python3
"""halb side by side with HAProxy and NGINX on this machine.

Usually started through bench/run.sh (which installs the tools and builds
halb); see bench/README.md. Everything runs on 127.0.0.1 and everything
started here is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import cases as case_list
from benchlib import cgroup, procs, profile, report
from benchlib.runner import (DIRECT, EQUAL_CPU, MODES, PROXIES, UNCAPPED, Bench, Cpus, Result,
                             Settings)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PROFILE_CASES = "ka-5B-256,close-5B,ka-1MiB"
# The smoke run proves the equal-CPU mode works with one case, not all.
SMOKE_EQUAL_CPU_CASES = ("ka-5B-64",)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5, help="seconds measured per run (default 5)")
    p.add_argument("--repeat", type=int, default=3, help="runs per case and proxy (default 3)")
    p.add_argument("--warmup", type=float, default=1, help="unmeasured seconds before each run (default 1)")
    p.add_argument("--cases", help="comma-separated case ids (default: all): "
                   + ", ".join(c.id for c in case_list.CASES))
    p.add_argument("--proxies", default=",".join(PROXIES), help="default: halb,haproxy,nginx")
    p.add_argument("--no-baseline", action="store_true", help="skip the backend-direct runs")
    p.add_argument("--idle-connections", type=int, default=10_000)
    p.add_argument("--smoke", action="store_true",
                   help="every case once for ~1 s, 1,000 idle connections; for CI, numbers meaningless")
    p.add_argument("--halb", type=Path, default=REPO / "target" / "release" / "halb")
    p.add_argument("--halb-bin", action="append", default=[], metavar="LABEL=PATH",
                   help="another halb binary to measure beside --halb, as proxy halb-LABEL "
                   "(e.g. a build of an older commit); repeatable")
    p.add_argument("--modes", default=",".join(MODES),
                   help="uncapped (the proxy alone on its core), equal-cpu (each proxy under the "
                   "same CPU quota); default both")
    p.add_argument("--cpu-quota", type=float, default=0.4, metavar="CORES",
                   help="the equal-CPU mode's quota per proxy, in cores (default 0.4)")
    p.add_argument("--load", type=Path, default=REPO / "target" / "release" / "halb-load",
                   help="the client for the MiB/s cases (default target/release/halb-load)")
    p.add_argument("--wrk-only", action="store_true",
                   help="measure the MiB/s cases with wrk too (8 KiB reads) instead of halb-load")
    p.add_argument("--out", type=Path, help="results directory (default bench/results, "
                   "bench/results/tmp for --smoke)")
    p.add_argument("--proxy-cpus", default="0", help="CPUs of the proxy in 1-worker cases (default 0)")
    p.add_argument("--load-cpus", default="1", help="CPUs of wrk and the backends (default 1)")
    p.add_argument("--multi-cpus", default="0,1", help="CPUs of the proxy in 2-worker cases (default 0,1)")
    p.add_argument("--profile", action="store_true",
                   help="perf: syscalls and context switches per request for each proxy, and a halb "
                   "CPU profile, into bench/results/tmp/profile/ (default cases: "
                   + PROFILE_CASES + "; repeat 1)")
    p.add_argument("--from-json", type=Path, metavar="RUN.json",
                   help="measure nothing: write the .md and .png again from a run's .json")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs and logs for inspection")
    args = p.parse_args()
    if args.smoke:
        args.duration, args.repeat, args.warmup = 1, 1, 0
        args.idle_connections = min(args.idle_connections, 1000)
    if args.profile:
        args.repeat, args.no_baseline = 1, True
        args.cases = args.cases or PROFILE_CASES
        if "idle-10k" in args.cases.split(","):
            raise SystemExit("--profile measures load cases; idle-10k has no requests")
    return args


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def git_revision() -> str:
    rev = version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "crates"],
                           capture_output=True, text=True).stdout.strip()
    return rev + (" + uncommitted changes in crates/" if dirty else "")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def load_average() -> str:
    """Other work on a shared machine shows here; the numbers are noisier then."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def check_tools(args: argparse.Namespace) -> None:
    tools = ["haproxy", "nginx", "wrk", "taskset"]
    cases = case_list.select(args.cases)
    if any(c.tls for c in cases):
        tools.append("openssl")
    if any(c.kind == "h2" for c in cases):
        tools.append("h2load")
    missing = [t for t in tools if shutil.which(t) is None]
    if not args.halb.is_file():
        missing.append(f"halb ({args.halb}; cargo build --release -p halb)")
    if not args.wrk_only and not args.load.is_file():
        missing.append(f"halb-load ({args.load}; cargo build --release -p halb-load)")
    if missing:
        raise SystemExit("missing: " + ", ".join(missing) + " (bench/run.sh installs them)")


def rerender(path: Path) -> int:
    data = json.loads(path.read_text())
    results = [Result(**run) for run in data["runs"]]
    ids = list(dict.fromkeys(r.case for r in results))
    cases = [c for c in case_list.CASES if c.id in ids]
    md = report.markdown(results, cases, header_lines(data["meta"], data["meta"].get("mode") == "smoke"))
    path.with_suffix(".md").write_text(md)
    report.plot(path.with_suffix(".png"), results, cases, plot_title(data["meta"]))
    print(f"wrote {path.with_suffix('.md')}, {path.with_suffix('.png')}")
    return 0


def main() -> int:
    args = parse_args()
    if args.from_json:
        return rerender(args.from_json)
    check_tools(args)
    cases = case_list.select(args.cases)
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    variants = parse_halb_bins(args.halb_bin)
    proxies += [v for v in variants if v not in proxies]
    for p in proxies:
        if p not in (*PROXIES, *variants):
            raise SystemExit(f"unknown proxy {p}; known: {', '.join((*PROXIES, *variants))}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"unknown mode {m}; known: {', '.join(MODES)}")
    if args.profile:
        modes = [UNCAPPED]
    groups = None
    if EQUAL_CPU in modes:
        try:
            groups = cgroup.CpuGroups(args.cpu_quota)
        except (cgroup.CgroupError, OSError) as e:
            if not args.smoke:
                raise SystemExit(f"equal-CPU mode: {e} (run as root, or --modes uncapped)")
            print(f"WARNING: equal-CPU mode not measured in this smoke run: {e}")
            modes.remove(EQUAL_CPU)
    nofile = raise_fd_limit()
    if nofile < args.idle_connections + 1000:
        print(f"note: fd limit {nofile}; idle case limited to {nofile - 1000} connections")
        args.idle_connections = max(100, nofile - 1000)
    if (os.cpu_count() or 1) < 2:
        print("note: one CPU only: proxy, load and backends share it")
        args.proxy_cpus = args.load_cpus = args.multi_cpus = "0"

    cpus = Cpus(proxy=args.proxy_cpus, load=args.load_cpus, proxy_multi=args.multi_cpus)
    settings = Settings(duration=args.duration, warmup=args.warmup,
                        idle_connections=args.idle_connections, halb=args.halb.resolve(), cpus=cpus,
                        load=None if args.wrk_only else args.load.resolve(),
                        halb_variants={name: path.resolve() for name, path in variants.items()})
    default_out = "tmp/profile" if args.profile else "tmp" if args.smoke else ""
    out_dir = args.out or (BENCH_DIR / "results" / default_out)
    out_dir.mkdir(parents=True, exist_ok=True)

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    meta = {
        "date": stamp,
        "mode": "profile" if args.profile else "smoke" if args.smoke else "full",
        "cpu": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "kernel": platform.release(),
        "halb": f"{version([str(args.halb), '--version'])} ({git_revision()})",
        "haproxy": version(["haproxy", "-v"]),
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "--version"]),
        "clients": ("wrk for every case but TLS handshakes and h2" if args.wrk_only else
                    "halb-load (bench/load: 256 KiB reads, rustls) for the MiB/s cases and TLS "
                    "handshakes, h2load for h2, wrk for the others"),
        "cpu split": (f"proxy on CPU {cpus.proxy} (1-worker cases) / CPUs {cpus.proxy_multi} "
                      f"(2-worker cases); load clients, backends and idle clients on CPU {cpus.load}"),
        "per run": (f"{args.warmup:g} s warm-up + {args.duration:g} s measured, repeat {args.repeat}, "
                    f"proxies alternated, a fresh proxy process per run"),
        "idle connections": args.idle_connections,
        "TLS": ("TLS 1.3, X25519, one self-signed ECDSA P-256 certificate made with openssl; "
                "halb rustls (ring), HAProxy and NGINX OpenSSL, session tickets on in all three"),
        "h2load": version(["h2load", "--version"]),
        "modes": ", ".join(modes),
        "load average at start": load_average(),
    }
    if groups is not None and EQUAL_CPU in modes:
        meta["equal CPU"] = groups.describe()
    for name, path in variants.items():
        meta[name] = f"{version([str(path), '--version'])} ({path})"
    print("halb benchmark" + (" — SMOKE MODE (numbers meaningless, proves it runs)" if args.smoke else ""))
    for k, v in meta.items():
        print(f"  {k}: {v}")

    # SIGINT too: a shell that starts us in the background would have it ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="halb-bench-"))
    processes = procs.Processes()
    results: list[Result] = []
    started_at = time.monotonic()
    try:
        # Private copies: a rebuild of target/release during the run must not
        # change the binary under test, or the client, half-way.
        shutil.copy2(settings.halb, tmp / "halb")
        settings.halb = tmp / "halb"
        if settings.load is not None:
            shutil.copy2(settings.load, tmp / "halb-load")
            settings.load = tmp / "halb-load"
        for name, path in settings.halb_variants.items():
            shutil.copy2(path, tmp / name)
            settings.halb_variants[name] = tmp / name
        bench = Bench(settings, tmp, processes)
        bench.groups = groups
        if args.profile:
            bench.profiler = profile.Profiler(processes, out_dir, cpus.load, tmp)
        bench.start_backends()
        print(f"  backends: nginx on 127.0.0.1:{', '.join(map(str, bench.backend_ports))}")
        plan = run_plan(cases, proxies, modes, args)
        width = max(len(report.label(p)) for p in proxies + [DIRECT])
        for n, (mode, case, rep, proxy) in enumerate(plan, 1):
            where = " @cpu" if mode == EQUAL_CPU else ""
            prefix = f"[{n}/{len(plan)}] {case.id}{where} #{rep} {report.label(proxy):<{width}}"
            try:
                if case.kind == "idle":
                    result = bench.run_idle(proxy, case, rep)
                else:
                    result = bench.run_load(proxy, case, rep, mode)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                result = Result(case.id, proxy, rep, ok=False, note=str(e).splitlines()[0],
                                mode=mode)
            results.append(result)
            print(prefix, describe(result), flush=True)
    finally:
        processes.stop_all()
        if groups is not None:
            groups.remove_all()
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - started_at
    meta["wall time"] = f"{elapsed:.0f} s"
    meta["load average at end"] = load_average()
    if args.profile:
        (out_dir / "profile.md").write_text(bench.profiler.markdown())
        print(bench.profiler.markdown())
        print(f"wrote {out_dir / 'profile.md'}")
    else:
        write_outputs(results, cases, meta, out_dir, args.smoke)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} run(s) failed:")
        for r in failed:
            print(f"  {r.case} #{r.rep} {r.proxy}: {r.note}")
        return 1
    return 0


def parse_halb_bins(specs: list[str]) -> dict[str, Path]:
    """--halb-bin LABEL=PATH -> {"halb-LABEL": PATH}."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or not all(c.isalnum() or c in "-_." for c in name):
            raise SystemExit(f"--halb-bin {spec}: expected LABEL=PATH (LABEL: letters, digits, -_.)")
        if not Path(path).is_file():
            raise SystemExit(f"--halb-bin {spec}: no file {path}")
        out[f"halb-{name}"] = Path(path)
    return out


def run_plan(cases, proxies: list[str], modes: list[str], args) -> list:
    """(mode, case, rep, proxy) in the order run: the proxies alternate
    within each repeat, so drift on a shared machine spreads over all."""
    plan = []
    for mode in modes:
        for case in cases:
            if mode == EQUAL_CPU:
                # A quota is a per-proxy budget for the load cases; RSS with
                # idle connections and the 2-worker cases are measured uncapped.
                if case.kind == "idle" or case.workers != 1:
                    continue
                if args.smoke and not args.cases and case.id not in SMOKE_EQUAL_CPU_CASES:
                    continue
                order = proxies
            else:
                order = ([DIRECT] if case.baseline and not args.no_baseline else []) + proxies
            for rep in range(1, args.repeat + 1):
                # ABBA: every other repeat runs the proxies in reverse order,
                # so that none always runs first (or right after the baseline).
                turn = order if rep % 2 else order[::-1]
                plan += [(mode, case, rep, proxy) for proxy in turn]
    return plan


def describe(r: Result) -> str:
    m = r.metrics
    if not r.ok:
        return f"FAILED: {r.note}"
    if "rss_connected_mib" in m:
        text = (f"{m['connected']} conns: RSS {m['rss_start_mib']:.1f} -> {m['rss_connected_mib']:.1f} "
                f"-> {m['rss_after_request_mib']:.1f} MiB after 1 request each")
    else:
        text = (f"{m['rps']:>9,.0f} req/s {m['mibps']:>7,.0f} MiB/s  p50 {m['p50_ms']:.2f} ms  "
                f"p99 {m['p99_ms']:.2f} ms  CPU {m['cpu_pct']:.0f}% {m['cpu_us_per_req']:.1f} µs/req  "
                f"peak RSS {m['hwm_mib']:.1f} MiB")
        if "throttled_pct" in m:
            text += f"  throttled {m['throttled_pct']:.0f}%"
    return text + (f"  ({r.note})" if r.note else "")


def header_lines(meta: dict, smoke: bool) -> list[str]:
    header = ["# halb vs HAProxy vs NGINX" + (" (smoke run: numbers meaningless)" if smoke else ""), ""]
    header += [f"- {k}: {v}" for k, v in meta.items()]
    header += ["", "Ratios compare medians; above 1× means halb is ahead, except for the "
               "idle-10k row (RSS: below 1× is better). CPU µs/req is the proxy's user+system "
               "CPU time divided by the requests served. On a busy machine (see the load "
               "average) throughput is noisy; CPU µs/req is the steadier comparison. "
               "Uncapped: each proxy has a core to itself and in the small-request cases the "
               "load core (client and backends) is the limit; equal CPU: each proxy is capped "
               "at the same CPU quota (a cgroup each) so that the proxy is the limit "
               "(bench/README.md)."]
    return header


def plot_title(meta: dict) -> str:
    title = f"halb vs HAProxy vs NGINX — {meta['date']} — proxy on 1 core unless mc-*"
    if "equal CPU" in meta:
        title += "; equal CPU: " + meta["equal CPU"].split(" (")[0]
    return title


def write_outputs(results, cases, meta, out_dir: Path, smoke: bool) -> None:
    text = report.markdown(results, cases, header_lines(meta, smoke))
    names = ["smoke"] if smoke else ["latest", "runs/" + meta["date"].replace(" ", "_").replace(":", "")]
    title = plot_title(meta)
    for name in names:
        md = out_dir / f"{name}.md"
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(text)
        report.write_json(out_dir / f"{name}.json", results, meta)
        png = out_dir / f"{name}.png"
        if report.plot(png, results, cases, title):
            print(f"wrote {md}, {png}")
        else:
            print(f"wrote {md} (no plot: matplotlib not available)")
    print()
    for mode in (UNCAPPED, EQUAL_CPU):
        subset = report.in_mode(results, mode)
        if subset:
            print(f"{mode}:")
            print("\n".join(report.summary_table(subset, cases, with_direct=mode == UNCAPPED)))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
