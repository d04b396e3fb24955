#!/usr/bin/env python3
"""Instructions per request of one or more halb binaries, counted by callgrind.

Throughput and CPU time on a shared 2-core VM move by ±10 % from run to run,
and the VM has no hardware counters for `perf stat -e instructions`. The
number of instructions halb executes per request does not depend on what
else the machine does: callgrind counts them exactly. This is how a cost of
a few instructions (a check in the data path, say) is shown to be there or
not, where req/s cannot show it.

    bench/instructions.py --halb-bin prefault=/tmp/halb-prefault/target/release/halb \\
                          --halb-bin head=target/release/halb

Each binary serves, under `valgrind --tool=callgrind`, the benchmark's halb
config in front of three nginx backends; after a warm-up the counters are
zeroed (`callgrind_control -z`), a client sends --requests requests
(keep-alive on one connection, or a new connection per request with
--case close), the counters are dumped (`callgrind_control -d`) and the
total instruction count is divided by the requests. Binaries alternate,
repeated --repeat times; the median is printed. Needs valgrind
(`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from benchlib import configs, procs  # noqa: E402
from benchlib.runner import Bench, Cpus, Settings  # noqa: E402

CASES = {"ka": "keep-alive, GET /hello (5 B) on one connection",
         "close": "a new connection per GET /hello (Connection: close)"}


def send(port: int, case: str, count: int) -> None:
    if case == "ka":
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(count):
            conn.request("GET", "/hello")
            response = conn.getresponse()
            if response.read() != b"hello" or response.status != 200:
                raise RuntimeError(f"bad answer {response.status}")
        conn.close()
        return
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/hello", headers={"Connection": "close"})
        response = conn.getresponse()
        if response.read() != b"hello" or response.status != 200:
            raise RuntimeError(f"bad answer {response.status}")
        conn.close()


def control(flag: str, pid: int) -> None:
    out = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"callgrind_control {flag}: {out.stdout}{out.stderr}")


def measure(processes: procs.Processes, tmp: Path, binary: Path, backends: list[int], case: str,
            requests: int, warmup: int, tag: str) -> float:
    port = procs.free_port()
    conf = tmp / f"{tag}.toml"
    conf.write_text(configs.halb(port, backends, 1, "http"))
    out = tmp / f"callgrind.{tag}"
    started = processes.start(
        tag,
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(binary), "run",
         "--config", str(conf)],
        cpus="0", log=tmp / f"{tag}.log", env={"RUST_LOG": "warn"},
    )
    try:
        procs.wait_http(port, "/hello", started, timeout=120)
        send(port, case, warmup)
        control("-z", started.pid)
        send(port, case, requests)
        control("-d", started.pid)
    finally:
        processes.stop(started, grace=10)
    totals = 0
    for dump in tmp.glob(f"callgrind.{tag}*"):
        # The dump after -z holds what ran since: the requests measured.
        if dump.name == out.name:
            continue
        match = re.search(r"^(?:totals|summary): (\d+)", dump.read_text(errors="replace"), re.M)
        if match:
            totals = max(totals, int(match.group(1)))
    if not totals:
        raise RuntimeError(f"no callgrind dump for {tag}; log: {started.log}")
    return totals / requests


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--halb-bin", action="append", required=True, metavar="LABEL=PATH")
    p.add_argument("--case", choices=sorted(CASES), default="ka")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the callgrind dumps here (callgrind_annotate DIR/callgrind.LABEL-1.*)")
    args = p.parse_args()
    bins = {}
    for spec in args.halb_bin:
        label, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--halb-bin {spec}: expected LABEL=PATH of a file")
        bins[label] = Path(path).resolve()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind missing (apt-get install valgrind)")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="halb-instr-"))
    processes = procs.Processes()
    per_request: dict[str, list[float]] = {label: [] for label in bins}
    try:
        for label, path in bins.items():
            shutil.copy2(path, tmp / f"halb-{label}")
            bins[label] = tmp / f"halb-{label}"
        settings = Settings(duration=0, warmup=0, idle_connections=0, halb=next(iter(bins.values())),
                            cpus=Cpus(proxy="0", load="1", proxy_multi="0,1"))
        bench = Bench(settings, tmp, processes)
        bench.start_backends()
        print(f"case {args.case}: {CASES[args.case]}; {args.requests} requests measured after "
              f"{args.warmup} unmeasured, repeat {args.repeat}")
        labels = list(bins)
        for rep in range(1, args.repeat + 1):
            for label in labels if rep % 2 else labels[::-1]:
                ir = measure(processes, tmp, bins[label], bench.backend_ports, args.case,
                             args.requests, args.warmup, f"{label}-{rep}")
                per_request[label].append(ir)
                print(f"  #{rep} {label:<12} {ir:,.0f} instructions per request", flush=True)
    finally:
        processes.stop_all()
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in tmp.glob("callgrind.*"):
                shutil.copy2(dump, args.keep / dump.name)
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"| binary | instructions per request, median (min–max) | vs {labels[0]} |")
    print("|---|---:|---:|")
    base = statistics.median(per_request[labels[0]])
    for label in labels:
        xs = per_request[label]
        m = statistics.median(xs)
        print(f"| {label} | {m:,.0f} ({min(xs):,.0f}–{max(xs):,.0f}) | {m / base:.4f}× |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
