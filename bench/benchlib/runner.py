"""One measurement: start a proxy (or none, for the baseline), load it, read
its CPU time and memory from /proc, stop it.

Each run starts a fresh proxy process, so CPU time and peak RSS belong to
that run alone.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cgroup, configs, procs
from .cases import BODIES, MiB, Case

PROXIES = ("halb", "haproxy", "nginx")
DIRECT = "direct"
# Modes: the proxy alone on a core, or each proxy under the same CPU quota.
UNCAPPED = "uncapped"
EQUAL_CPU = "equal-cpu"
MODES = (UNCAPPED, EQUAL_CPU)


def is_halb(proxy: str) -> bool:
    """`halb`, or another halb binary under test (`halb-<label>`, --halb-bin)."""
    return proxy == "halb" or proxy.startswith("halb-")
BENCH_DIR = Path(__file__).resolve().parent.parent
WRK_SCRIPT = BENCH_DIR / "wrk_report.lua"
IDLE_CLIENT = BENCH_DIR / "idle_clients.py"


@dataclass
class Cpus:
    """The CPU split: the proxy alone on one core, load and backends on the other."""

    proxy: str
    load: str
    proxy_multi: str

    def for_case(self, case: Case) -> str:
        return self.proxy if case.workers == 1 else self.proxy_multi


@dataclass
class Settings:
    duration: float
    warmup: float
    idle_connections: int
    halb: Path
    cpus: Cpus
    # The client for cases that report MiB/s (see `Bench.client`); None: wrk.
    load: Path | None = None
    wrk_threads: int = 1
    # Further halb binaries measured beside `halb`: proxy name -> binary.
    halb_variants: dict[str, Path] = field(default_factory=dict)

    def halb_binary(self, proxy: str) -> Path:
        return self.halb if proxy == "halb" else self.halb_variants[proxy]


@dataclass
class Result:
    case: str
    proxy: str
    rep: int
    ok: bool = True
    note: str = ""
    metrics: dict = field(default_factory=dict)
    mode: str = UNCAPPED


class Bench:
    def __init__(self, settings: Settings, tmp: Path, processes: procs.Processes):
        self.s = settings
        self.tmp = tmp
        self.procs = processes
        self.backend_ports: list[int] = []
        self.backends: list[procs.Started] = []
        # Optional: watches the proxy during each measured run (--profile).
        self.profiler = None
        # The equal-CPU mode's cgroups (None: that mode is not run).
        self.groups: cgroup.CpuGroups | None = None
        # The certificate of the TLS and h2 cases (made on first use).
        self.tls: configs.Tls | None = None

    def certificate(self) -> configs.Tls:
        if self.tls is None:
            self.tls = configs.make_certificate(self.tmp)
        return self.tls

    # --- backends -------------------------------------------------------
    def start_backends(self) -> None:
        docroot = self.tmp / "docroot"
        docroot.mkdir()
        for name, size in BODIES.items():
            (docroot / name).write_bytes(os.urandom(size))
            (docroot / name).chmod(0o644)
        # nginx workers run as nobody: they must be able to read the files.
        for d in (self.tmp, docroot):
            d.chmod(0o755)
        for i in range(3):
            port = procs.free_port()
            name = f"backend{i + 1}"
            conf = self.tmp / f"{name}.conf"
            conf.write_text(configs.backend_nginx(self.tmp, name, port, docroot))
            started = self.procs.start(
                name,
                ["nginx", "-p", str(self.tmp), "-e", str(self.tmp / f"{name}.stderr.log"),
                 "-c", str(conf), "-g", "daemon off; master_process on;"],
                cpus=self.s.cpus.load,
                log=self.tmp / f"{name}.log",
            )
            self.backend_ports.append(port)
            self.backends.append(started)
        for port, started in zip(self.backend_ports, self.backends):
            procs.wait_http(port, "/hello", started)
            procs.wait_http(port, "/1m", started)

    # --- proxies --------------------------------------------------------
    def start_proxy(
        self, proxy: str, case: Case, group: cgroup.CpuGroup | None = None
    ) -> tuple[procs.Started, int]:
        if proxy == DIRECT:
            return self.backends[0], self.backend_ports[0]
        port = procs.free_port()
        workers, protocol, backends = case.workers, case.protocol, self.backend_ports
        tag = f"{proxy}-{case.id}"
        conf = self.tmp / f"{tag}.conf"
        log = self.tmp / f"{tag}.log"
        env = None
        tls = self.certificate() if case.tls else None
        if is_halb(proxy):
            conf.write_text(configs.halb(port, backends, workers, protocol, tls))
            argv = [str(self.s.halb_binary(proxy)), "run", "--config", str(conf)]
            env = {"RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        elif proxy == "haproxy":
            conf.write_text(configs.haproxy(port, backends, workers, protocol, tls))
            argv = ["haproxy", "-db", "-f", str(conf)]
        elif proxy == "nginx":
            conf.write_text(configs.nginx_proxy(self.tmp, port, backends, workers, protocol,
                                                 tls))
            argv = ["nginx", "-p", str(self.tmp), "-e", str(self.tmp / "proxy.stderr.log"),
                    "-c", str(conf), "-g", "daemon off; master_process on;"]
        else:
            raise ValueError(proxy)
        started = self.procs.start(proxy, argv, cpus=self.s.cpus.for_case(case), log=log, env=env,
                                   cgroup_procs=group.procs_file if group else None)
        procs.wait_http(port, "/hello", started, tls=case.tls)
        return started, port

    def stop_proxy(self, proxy: str, started: procs.Started) -> None:
        if proxy != DIRECT:
            self.procs.stop(started)

    # --- load -----------------------------------------------------------
    def client(self, case: Case) -> str:
        """`halb-load` for large bodies (it reads 256 KiB at a time where wrk
        reads 8 KiB, which made the load core the limit) and for TLS
        handshakes (wrk cannot resume a session), h2load for h2, wrk
        otherwise."""
        if case.kind == "h2":
            return "h2load"
        if case.handshakes or (case.mib and self.s.load is not None):
            return "halb-load"
        return "wrk"

    def load(self, case: Case, port: int, seconds: float, report: bool) -> dict | None:
        argv = ["taskset", "-c", self.s.cpus.load]
        scheme = "https" if case.tls else "http"
        url = f"{scheme}://127.0.0.1:{port}{case.path}"
        h2log = self.tmp / "h2load.log"
        if self.client(case) == "h2load":
            argv += ["h2load", "-t1", f"-c{case.connections}", f"-m{case.streams}",
                     "-D", str(max(1, round(seconds))), "--log-file", str(h2log), url]
        elif self.client(case) == "halb-load":
            if self.s.load is None:
                raise RuntimeError(f"{case.id} needs halb-load (not with --wrk-only)")
            argv += [str(self.s.load), "-c", str(case.connections), "-d", str(max(1, round(seconds))),
                     "--timeout", "10"]
            if case.close:
                argv.append("--close")
            if not case.resume:
                argv.append("--no-resume")
        else:
            argv += [
                "wrk", f"-t{min(self.s.wrk_threads, case.connections)}",
                f"-c{case.connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            ]
            if report:
                argv += ["--latency", "-s", str(WRK_SCRIPT)]
            if case.close:
                argv += ["-H", "Connection: close"]
        if self.client(case) != "h2load":
            argv.append(url)
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60,
            stdin=subprocess.DEVNULL, preexec_fn=procs.child_setup,
        )
        if not report:
            return None
        if self.client(case) == "h2load":
            return h2load_report(out.stdout, out.stderr, h2log)
        for line in out.stdout.splitlines():
            if line.startswith("WRKJSON "):
                return json.loads(line[len("WRKJSON "):])
        raise RuntimeError(f"{self.client(case)} gave no report (exit {out.returncode}): {out.stderr.strip()}")

    def run_load(self, proxy: str, case: Case, rep: int, mode: str = UNCAPPED) -> Result:
        group = None
        if mode == EQUAL_CPU:
            if self.groups is None or proxy == DIRECT:
                raise ValueError(f"equal-CPU run of {proxy} without cgroups")
            group = self.groups.create(f"{proxy}-{case.id}")
        try:
            return self._run_load(proxy, case, rep, mode, group)
        finally:
            if group is not None:
                self.groups.remove(group)

    def _run_load(self, proxy: str, case: Case, rep: int, mode: str,
                  group: cgroup.CpuGroup | None) -> Result:
        started, port = self.start_proxy(proxy, case, group)
        try:
            if self.s.warmup > 0:
                self.load(case, port, self.s.warmup, report=False)
            if self.profiler:
                self.profiler.begin(proxy, case, procs.tree(started.pid))
            proxy_cores = procs.cpu_list(self.s.cpus.for_case(case))
            load_cores = procs.cpu_list(self.s.cpus.load)
            cores0 = procs.core_jiffies(proxy_cores), procs.core_jiffies(load_cores)
            cpu0 = procs.cpu_seconds(started.pid)
            throttle0 = group.stat() if group else {}
            w = self.load(case, port, self.s.duration, report=True)
            throttle1 = group.stat() if group else {}
            cpu1 = procs.cpu_seconds(started.pid)
            cores1 = procs.core_jiffies(proxy_cores), procs.core_jiffies(load_cores)
            if self.profiler:
                self.profiler.end(proxy, case, w["requests"])
            hwm = procs.memory_kib(started.pid, "VmHWM")
            alive = started.popen.poll() is None
        finally:
            self.stop_proxy(proxy, started)
        seconds = w["duration_us"] / 1e6
        requests = w["requests"]
        errors = sum(w[k] for k in ("connect_errors", "read_errors", "write_errors",
                                    "status_errors", "timeouts"))
        cpu = cpu1 - cpu0
        metrics = {
            "rps": requests / seconds,
            "mibps": w["bytes"] / seconds / MiB,
            "p50_ms": w["p50_us"] / 1000,
            "p99_ms": w["p99_us"] / 1000,
            "cpu_pct": 100 * cpu / seconds,
            "cpu_us_per_req": 1e6 * cpu / requests if requests else float("nan"),
            # How busy the cores were, whoever kept them busy: a load core
            # near 100 % means the client and backends, not the proxy, set
            # the pace.
            "proxy_core_pct": procs.core_busy_pct(cores0[0], cores1[0]),
            "load_core_pct": procs.core_busy_pct(cores0[1], cores1[1]),
            "hwm_mib": hwm / 1024,
            "requests": requests,
            "errors": errors,
            "status_errors": w["status_errors"],
        }
        if group is not None:
            # The share of CFS periods in which the proxy used up its quota:
            # near 100 % means the quota, not the load, set the pace.
            periods = throttle1.get("nr_periods", 0) - throttle0.get("nr_periods", 0)
            throttled = throttle1.get("nr_throttled", 0) - throttle0.get("nr_throttled", 0)
            metrics["quota_cores"] = group.cores
            metrics["throttled_pct"] = 100 * throttled / periods if periods else float("nan")
        if case.handshakes:
            # Proof of what was measured: resumed handshakes, or none.
            metrics["resumed_pct"] = 100 * w.get("resumed", 0) / max(w.get("handshakes", 0), 1)
        result = Result(case.id, proxy, rep, metrics=metrics, mode=mode)
        if case.handshakes and case.resume and metrics["resumed_pct"] < 90:
            result.note = f"only {metrics['resumed_pct']:.0f} % of handshakes resumed"
        if requests == 0:
            result.ok, result.note = False, "no request completed"
        elif not alive:
            result.ok, result.note = False, "proxy exited during the run"
        elif errors:
            result.note = f"{errors} errors ({w['status_errors']} non-2xx/3xx)"
        return result

    # --- idle connections -------------------------------------------------
    def run_idle(self, proxy: str, case: Case, rep: int) -> Result:
        started, port = self.start_proxy(proxy, case)
        client = None
        try:
            time.sleep(0.2)
            rss0 = procs.memory_kib(started.pid, "VmRSS")
            client = self.procs.start(
                "idle-clients",
                ["python3", str(IDLE_CLIENT), "--port", str(port),
                 "--count", str(self.s.idle_connections)],
                cpus=self.s.cpus.load, log=self.tmp / "idle-clients.log",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )
            connected = _expect(client, "CONNECTED", 180)
            time.sleep(0.5)
            rss1 = procs.memory_kib(started.pid, "VmRSS")
            client.popen.stdin.write(b"REQUEST\n")
            client.popen.stdin.flush()
            requested = _expect(client, "REQUESTED", 180)
            time.sleep(0.5)
            rss2 = procs.memory_kib(started.pid, "VmRSS")
            hwm = procs.memory_kib(started.pid, "VmHWM")
            alive = started.popen.poll() is None
            client.popen.stdin.write(b"QUIT\n")
            client.popen.stdin.flush()
            client.popen.wait(timeout=30)
        finally:
            if client is not None:
                self.procs.stop(client, grace=1.0)
            self.stop_proxy(proxy, started)
        n = max(connected[0], 1)
        metrics = {
            "rss_start_mib": rss0 / 1024,
            "rss_connected_mib": rss1 / 1024,
            "rss_after_request_mib": rss2 / 1024,
            "kib_per_conn_connected": (rss1 - rss0) / n,
            "kib_per_conn_after_request": (rss2 - rss0) / n,
            "hwm_mib": hwm / 1024,
            "connected": connected[0],
            "connect_failed": connected[1],
            "requests_ok": requested[0],
            "requests_failed": requested[1],
        }
        result = Result(case.id, proxy, rep, metrics=metrics)
        if connected[0] == 0 or not alive:
            result.ok = False
            result.note = "proxy exited" if not alive else "no connection opened"
        elif connected[1] or requested[1]:
            result.note = (f"{connected[1]} connects failed, "
                           f"{requested[1]} requests failed")
        return result


def h2load_report(stdout: str, stderr: str, log: Path) -> dict:
    """h2load's totals, and percentiles from its per-request log
    (start µs, status, duration µs), as the same dict as wrk's report."""
    def field(pattern: str) -> re.Match:
        m = re.search(pattern, stdout)
        if m is None:
            raise RuntimeError(f"h2load gave no report: {stderr.strip() or stdout.strip()}"[:300])
        return m

    finished = field(r"finished in ([\d.]+)(m?s)")
    seconds = float(finished[1]) / (1000 if finished[2] == "ms" else 1)
    req = field(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                r"(\d+) failed, (\d+) errored, (\d+) timeout")
    codes = field(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
    traffic = field(r"traffic: \S+ \((\d+)\) total")
    latencies = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines()
                       if line.count("\t") >= 2)
    log.unlink()

    def pct(p: float) -> int:
        if not latencies:
            return 0
        return latencies[min(len(latencies), max(1, -(-len(latencies) * p // 100))) - 1]

    return {
        "requests": sum(int(codes[i]) for i in range(1, 5)),
        "bytes": int(traffic[1]),
        "duration_us": int(seconds * 1e6),
        "connect_errors": 0,
        "read_errors": int(req[6]),
        "write_errors": 0,
        "status_errors": int(codes[3]) + int(codes[4]),
        "timeouts": int(req[7]),
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "max_us": latencies[-1] if latencies else 0,
    }


def _expect(client: procs.Started, word: str, timeout: float) -> tuple[int, int]:
    """Read the idle client's next status line, `WORD ok failed`."""
    stdout = client.popen.stdout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stdout], [], [], 0.5)
        if ready:
            line = stdout.readline().decode().split()
            if not line:
                break
            if line[0] == word:
                return int(line[1]), int(line[2])
        elif client.popen.poll() is not None:
            break
    raise RuntimeError(f"idle client: no {word} line; log: {client.log}\n{procs.tail(client.log)}")
