"""--profile: where each proxy spends its time, per request.

For every measured run: `perf stat` counts the proxy's system calls and
context switches (divided by the requests served), and for halb `perf
record` samples the stacks. The result is a pointer for optimisation, not
a benchmark: perf itself costs CPU, so throughput in this mode is lower.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from . import procs
from .cases import Case

EVENTS = "raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_*"


class Profiler:
    def __init__(self, processes: procs.Processes, out_dir: Path, cpus: str, tmp: Path):
        self.procs = processes
        self.out = out_dir
        self.cpus = cpus
        self.tmp = tmp
        self.running: list[procs.Started] = []
        self.stat_file: Path | None = None
        self.record_file: Path | None = None
        # (case id, proxy) -> {"syscalls": n, "context-switches": n, "per syscall": {...}}
        self.per_request: dict[tuple[str, str], dict] = {}
        self.reports: list[Path] = []

    def begin(self, proxy: str, case: Case, pids: list[int]) -> None:
        pid_list = ",".join(map(str, pids))
        self.stat_file = self.tmp / f"perf-stat-{proxy}-{case.id}.csv"
        self.running = [
            self.procs.start(
                "perf-stat",
                ["perf", "stat", "-x", ",", "-o", str(self.stat_file), "-e", EVENTS, "-p", pid_list],
                cpus=self.cpus, log=self.tmp / "perf.log",
            )
        ]
        self.record_file = None
        if proxy == "halb":
            self.record_file = self.out / f"perf-halb-{case.id}.data"
            self.running.append(
                self.procs.start(
                    "perf-record",
                    ["perf", "record", "-q", "-F", "999", "--call-graph", "dwarf,16384",
                     "-o", str(self.record_file), "-p", pid_list],
                    cpus=self.cpus, log=self.tmp / "perf.log",
                )
            )

    def end(self, proxy: str, case: Case, requests: int) -> None:
        for started in self.running:
            self.procs.stop(started, grace=60, first=signal.SIGINT)
        self.running = []
        counts = parse_stat(self.stat_file) if self.stat_file else {}
        n = max(requests, 1)
        self.per_request[(case.id, proxy)] = {
            "syscalls": counts.pop("raw_syscalls:sys_enter", 0) / n,
            "context-switches": counts.pop("context-switches", 0) / n,
            "per syscall": {
                k.removeprefix("syscalls:sys_enter_"): v / n
                for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
                if v / n >= 0.01
            },
        }
        if self.record_file and self.record_file.exists():
            self.reports.append(self.write_report(case))

    def write_report(self, case: Case) -> Path:
        text = self.out / f"perf-halb-{case.id}.txt"
        with text.open("w") as f:
            for title, extra in (
                ("self time per symbol", ["--no-children"]),
                ("inclusive time (children) per symbol", ["--children"]),
            ):
                out = subprocess.run(
                    ["perf", "report", "-i", str(self.record_file), "--stdio", "-g", "none",
                     "--percent-limit", "1", "--sort", "symbol", *extra],
                    capture_output=True, text=True, timeout=600,
                ).stdout
                body = [
                    line.rstrip()
                    for line in out.splitlines()
                    if line.strip() and not line.startswith("# (Tip")
                ]
                f.write(f"## halb, {case.id}: {title}\n\n" + "\n".join(body) + "\n\n")
        return text

    def markdown(self) -> str:
        lines = [
            "# Per-request system calls and context switches (perf stat)",
            "",
            "| case | proxy | syscalls/req | ctx switches/req | top syscalls per request |",
            "|---|---|---:|---:|---|",
        ]
        for (case, proxy), m in self.per_request.items():
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(m["per syscall"].items())[:6])
            lines.append(
                f"| {case} | {proxy} | {m['syscalls']:.2f} | {m['context-switches']:.3f} | {top} |"
            )
        if self.reports:
            lines += ["", "halb CPU profiles (perf report; open the .data with `perf report -i`):", ""]
            lines += [f"- {p}" for p in self.reports]
        return "\n".join(lines) + "\n"


def parse_stat(path: Path) -> dict[str, float]:
    counts: dict[str, float] = {}
    try:
        text = path.read_text()
    except OSError:
        return counts
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or line.startswith("#"):
            continue
        try:
            counts[fields[2]] = float(fields[0])
        except ValueError:
            continue
    return counts
