#!/usr/bin/env python3
"""Replicated stick tables under load: N new sticky sessions per second on
node A of a pair, replicated to node B over the peer link.

Two halb nodes on loopback share a stick table on header X-User over peer
links; wrk sends requests to node A at a fixed rate, each with an X-User
never seen before (`peers_wrk.lua` paces them), so every request is a new
entry that A learns and sends to B. The same load runs on the same pair
without `[cluster.peers]` (the cost of replication is the difference), and
on two HAProxy processes with a `peers` section and a stick-table on
req.hdr(X-User), with and without the peers.

Per run: the rate achieved, the entries on A and on B at the end (B has
them all?), replication lag (halb: A's acknowledgement times of its
updates, p50/p99 of the last 4096; both: B's backlog behind A sampled every
50 ms during the load, as time at the achieved rate), wire bytes per entry
(halb's own counters, and the payload bytes of the peer sockets from `ss`
for both proxies), CPU seconds of each node and µs per entry. Medians over
the repeats; every run in the JSON.

    python3 bench/peers.py                     # 10,000/s for 10 s, 3 repeats
    python3 bench/peers.py --rate 20000 --duration 5 --repeat 5
    python3 bench/peers.py --smoke             # ~1 s per mode, output in results/tmp/
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchlib import configs, procs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WRK_SCRIPT = BENCH / "peers_wrk.lua"
SECRET = "bench-peers-secret-0b9d2c"
MODES = ("halb-peers", "halb-alone", "haproxy-peers", "haproxy-alone")
SAMPLE_EVERY = 0.05
# After HAProxy's peers first show established: time for a collision of
# their two dials to resolve (its reconnect timer is a few seconds).
SETTLE = 5.0


# --- configs -------------------------------------------------------------
def halb_conf(name: str, port: int, admin: int, backends: list[int],
              peer: int | None, other: int | None) -> str:
    cluster = f'[cluster]\nnode = "{name}"\n'
    if peer is not None:
        cluster += (f'\n[cluster.peers]\nbind = "127.0.0.1:{peer}"\n'
                    f'peers = ["127.0.0.1:{other}"]\nsecret = "{SECRET}"\n')
    servers = "".join(f'\n[[pool.backend]]\naddress = "127.0.0.1:{b}"\n' for b in backends)
    return f"""\
[runtime]
workers = 1

[admin]
bind = "127.0.0.1:{admin}"

{cluster}
[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
pool = "app"
request_head_timeout = "120s"
idle_timeout = "120s"

[[pool]]
name = "app"
algorithm = "round_robin"

[pool.sticky]
kind = "table"
key = "header:X-User"
ttl = "30m"
size = 1000000
{servers}"""


def haproxy_conf(name: str, port: int, sock: Path, backends: list[int],
                 peers: dict[str, int] | None) -> str:
    servers = "".join(f"    server s{i} 127.0.0.1:{b}\n" for i, b in enumerate(backends, 1))
    section = ""
    table_peers = ""
    if peers:
        section = "peers mesh\n" + "".join(
            f"    peer {n} 127.0.0.1:{p}\n" for n, p in peers.items()) + "\n"
        table_peers = " peers mesh"
    return f"""\
global
    nbthread 1
    maxconn 4096
    stats socket {sock} mode 600 level admin
    localpeer {name}

defaults
    mode http
    timeout connect 1s
    timeout client 120s
    timeout server 30s
    timeout http-request 120s
    timeout http-keep-alive 120s
    option http-keep-alive
    option forwardfor
    http-reuse always

{section}frontend fe
    bind 127.0.0.1:{port}
    http-request set-header X-Forwarded-Proto http
    http-request add-header Forwarded "for=%[src];proto=http"
    default_backend be

backend be
    balance roundrobin
    stick-table type string len 64 size 1m expire 30m{table_peers}
    stick on req.hdr(X-User)
{servers}"""


# --- reading the nodes ---------------------------------------------------
def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


class HalbNode:
    def __init__(self, started: procs.Started, port: int, admin: int, peer: int | None):
        self.started, self.port, self.admin, self.peer = started, port, admin, peer

    def entries(self) -> int:
        m = re.search(r'^halb_sticky_entries\{pool="app"\} (\S+)$',
                      http_get(self.admin, "/metrics"), re.M)
        return int(float(m.group(1))) if m else 0

    def links(self) -> list[dict]:
        return json.loads(http_get(self.admin, "/api/v1/status")).get("peers") or []


class HaproxyNode:
    def __init__(self, started: procs.Started, port: int, sock: Path, peer: int | None):
        self.started, self.port, self.sock, self.peer = started, port, sock, peer

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def entries(self) -> int:
        # `show table` without a name prints one header line per table.
        m = re.search(r"# table: be,.*used:(\d+)", self.command("show table"))
        return int(m.group(1)) if m else 0


def socket_bytes(ports: set[int]) -> int:
    """Payload bytes sent by every established TCP socket with a local or
    remote port in `ports` (both ends of each peer connection: both ways)."""
    out = subprocess.run(["ss", "-tinH", "state", "established"],
                         capture_output=True, text=True).stdout
    total, current = 0, False
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            fields = line.split()
            addrs = [f for f in fields if re.match(r"^[\d.]+:\d+$", f)]
            current = any(int(a.rsplit(":", 1)[1]) in ports for a in addrs[:2])
            continue
        if current:
            m = re.search(r"\bbytes_sent:(\d+)", line)
            if m:
                total += int(m.group(1))
    return total


# --- one run ---------------------------------------------------------------
class Runner:
    def __init__(self, args, tmp: Path, processes: procs.Processes):
        self.a, self.tmp, self.procs = args, tmp, processes
        self.backend_ports: list[int] = []

    def start_backends(self) -> None:
        docroot = self.tmp / "docroot"
        docroot.mkdir()
        for d in (self.tmp, docroot):
            d.chmod(0o755)
        started = []
        for i in range(2):
            port = procs.free_port()
            name = f"backend{i + 1}"
            conf = self.tmp / f"{name}.conf"
            conf.write_text(configs.backend_nginx(self.tmp, name, port, docroot))
            started.append(self.procs.start(
                name, ["nginx", "-p", str(self.tmp), "-e", str(self.tmp / f"{name}.stderr.log"),
                       "-c", str(conf), "-g", "daemon off; master_process on;"],
                cpus=self.a.load_cpus, log=self.tmp / f"{name}.log"))
            self.backend_ports.append(port)
        for port, s in zip(self.backend_ports, started):
            procs.wait_http(port, "/hello", s)

    def start_pair(self, mode: str, tag: str):
        proxy, linked = mode.split("-")[0], mode.endswith("-peers")
        ports = [procs.free_port(), procs.free_port()]
        peer_ports = [procs.free_port(), procs.free_port()] if linked else [None, None]
        cpus = [self.a.a_cpus, self.a.b_cpus]
        nodes = []
        for i in range(2):
            name = ("lb1", "lb2")[i] if proxy == "halb" else ("hap1", "hap2")[i]
            conf = self.tmp / f"{tag}-{name}.conf"
            log = self.tmp / f"{tag}-{name}.log"
            if proxy == "halb":
                admin = procs.free_port()
                conf.write_text(halb_conf(name, ports[i], admin, self.backend_ports,
                                          peer_ports[i], peer_ports[1 - i]))
                s = self.procs.start(name, [str(self.a.halb), "run", "--config", str(conf)],
                                     cpus=cpus[i], log=log,
                                     env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")})
                nodes.append(HalbNode(s, ports[i], admin, peer_ports[i]))
            else:
                sock = self.tmp / f"{tag}-{name}.sock"
                peers = ({"hap1": peer_ports[0], "hap2": peer_ports[1]} if linked else None)
                conf.write_text(haproxy_conf(name, ports[i], sock, self.backend_ports, peers))
                s = self.procs.start(name, ["haproxy", "-db", "-f", str(conf)],
                                     cpus=cpus[i], log=log)
                nodes.append(HaproxyNode(s, ports[i], sock, peer_ports[i]))
        for n in nodes:
            procs.wait_http(n.port, "/hello", n.started)
        if linked:
            self.wait_linked(proxy, nodes)
        return nodes

    def wait_linked(self, proxy: str, nodes) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proxy == "halb":
                if all(
                    (links := n.links()) and all(l["connected"] and l["inbound"] for l in links)
                    for n in nodes
                ):
                    return
            elif all(self.haproxy_linked(n) for n in nodes):
                # Both dial at once: HAProxy resolves the collision by closing
                # one connection and reconnecting seconds later (a stall of B's
                # updates, then a catch-up), which is not what is measured here.
                time.sleep(SETTLE)
                if all(self.haproxy_linked(n) for n in nodes):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{proxy} peers not linked within 15 s; logs in {self.tmp}")

    @staticmethod
    def haproxy_linked(node: "HaproxyNode") -> bool:
        """The remote peer's session is established and not reconnecting."""
        text = node.command("show peers")
        remote = re.search(r"\(remote,active\).*?last_status=(\S+).*?reconnect=(\S+)", text, re.S)
        return bool(remote and remote.group(1) == "ESTA" and "state=EST" in text)

    def wrk(self, port: int, seconds: float, rate: int, prefix: str) -> dict:
        argv = ["taskset", "-c", self.a.load_cpus, "wrk", f"-t{self.a.threads}",
                f"-c{self.a.connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                "--latency", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/hello",
                "--", str(rate), prefix, str(self.a.threads)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                             stdin=subprocess.DEVNULL, preexec_fn=procs.child_setup)
        for line in out.stdout.splitlines():
            if line.startswith("WRKJSON "):
                return json.loads(line[len("WRKJSON "):])
        raise RuntimeError(f"wrk gave no report (exit {out.returncode}): {out.stderr.strip()}")

    def run(self, mode: str, rep: int) -> dict:
        tag = f"{mode}-{rep}"
        nodes = self.start_pair(mode, tag)
        a, b = nodes
        linked = mode.endswith("-peers")
        try:
            # The first GETs (readiness) learned an entry or two; count from here.
            a0, b0 = a.entries(), b.entries()
            samples: list[tuple[float, int, int]] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    t = time.monotonic()
                    na1 = a.entries()
                    nb = b.entries()
                    na2 = a.entries()
                    samples.append((t, (na1 + na2) / 2, nb))
                    stop.wait(SAMPLE_EVERY)

            cpu0 = [procs.cpu_seconds(n.started.pid) for n in nodes]
            sampler = threading.Thread(target=sample, daemon=True)
            t0 = time.monotonic()
            sampler.start()
            w = self.wrk(a.port, self.a.duration, self.a.rate, f"r{rep}{mode[:2]}")
            t_load = time.monotonic()
            stop.set()
            sampler.join()
            acks = None
            if linked and isinstance(a, HalbNode):
                # A's link to B: acknowledgement times as the load ends.
                acks = (a.links() or [None])[0]
            # Let B catch up (or give up after 10 s).
            sent = a.entries() - a0
            b_at_end = b.entries() - b0
            caught_up = None
            if linked:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if b.entries() - b0 >= sent:
                        caught_up = time.monotonic() - t_load
                        break
                    time.sleep(0.01)
            cpu1 = [procs.cpu_seconds(n.started.pid) for n in nodes]
            got = b.entries() - b0
            wire = socket_bytes({n.peer for n in nodes}) if linked else 0
            link_a = a.links()[0] if linked and isinstance(a, HalbNode) else None
            link_b = b.links()[0] if linked and isinstance(b, HalbNode) else None
            alive = all(n.started.popen.poll() is None for n in nodes)
            show_peers = ([n.command("show peers") for n in nodes]
                          if linked and isinstance(a, HaproxyNode) else None)
        finally:
            for n in nodes:
                self.procs.stop(n.started)
        seconds = w["duration_us"] / 1e6
        errors = sum(w[k] for k in ("connect_errors", "read_errors", "write_errors",
                                    "status_errors", "timeouts"))
        rate = w["requests"] / seconds
        # B's backlog behind A while the load ran, as time at the achieved rate.
        backlog_ms = sorted(max(0.0, na - nb) / rate * 1000
                            for t, na, nb in samples if t - t0 > 0.5 and na > a0)
        cpu = [c1 - c0 for c0, c1 in zip(cpu0, cpu1)]
        m = {
            "mode": mode, "rep": rep, "alive": alive,
            "requests": w["requests"], "errors": errors, "seconds": seconds,
            "rate": rate, "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
            "entries_a": sent, "entries_b": got if linked else None,
            "b_behind_at_end": sent - b_at_end if linked else None,
            "caught_up_s": caught_up,
            "backlog_p50_ms": pct(backlog_ms, 0.5) if linked else None,
            "backlog_p99_ms": pct(backlog_ms, 0.99) if linked else None,
            "cpu_a_s": cpu[0], "cpu_b_s": cpu[1],
            "cpu_a_us": 1e6 * cpu[0] / sent if sent else None,
            "cpu_b_us": 1e6 * cpu[1] / sent if sent else None,
            "samples": [[round(t - t0, 3), na, nb] for t, na, nb in samples] if linked else None,
            "wire_bytes": wire if linked else None,
            "wire_bytes_per_entry": wire / sent if linked and sent else None,
        }
        if show_peers is not None:
            m["show_peers"] = show_peers
        if acks is not None:
            m["ack_p50_ms"], m["ack_p99_ms"] = acks["ack_p50_ms"], acks["ack_p99_ms"]
        if link_a is not None:
            m["link_a"] = link_a
            m["link_b"] = link_b
            m["halb_bytes_per_entry"] = (link_a["bytes_sent"] / link_a["updates_sent"]
                                         if link_a["updates_sent"] else None)
        return m


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    rank = max(1, min(len(values), int(-(-q * len(values) // 1))))
    return values[rank - 1]


# --- report ----------------------------------------------------------------
def med(runs: list[dict], key: str):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec: str = ".1f") -> str:
    if v is None:
        return "–"
    return format(v, spec)


def report(args, runs: list[dict], load: tuple[str, str], started: str) -> str:
    lines = [
        f"# Replicated stick tables: {args.rate:,} new sticky sessions/s for {args.duration:g} s",
        "",
        f"Run {started}; {args.repeat} repeat(s), medians. Node A on CPU {args.a_cpus}, "
        f"node B on CPU {args.b_cpus}, wrk ({args.connections} connections, "
        f"{args.threads} thread(s), paced by `peers_wrk.lua`) and two nginx backends "
        f"on CPU {args.load_cpus}. Load average at start {load[0]}, at end {load[1]} "
        f"(the machine is shared: {os.cpu_count()} cores).",
        "",
        "Command: `python3 bench/peers.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "| mode | sessions/s | errors | entries on A | on B | B caught up after load | "
        "lag: ack p50 / p99 (ms) | lag: B's backlog p50 / p99 (ms) | bytes/entry (halb counters) "
        "| bytes/entry (peer sockets, both ways) | CPU A s (µs/entry) | CPU B s (µs/entry) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        rs = [r for r in runs if r["mode"] == mode]
        if not rs:
            continue
        linked = mode.endswith("-peers")
        ack = (f"{fmt(med(rs, 'ack_p50_ms'), '.2f')} / {fmt(med(rs, 'ack_p99_ms'), '.2f')}"
               if mode == "halb-peers" else "–")
        backlog = (f"{fmt(med(rs, 'backlog_p50_ms'), '.0f')} / {fmt(med(rs, 'backlog_p99_ms'), '.0f')}"
                   if linked else "–")
        caught = med(rs, "caught_up_s")
        all_b = all(r["entries_b"] is not None and r["entries_b"] >= r["entries_a"] for r in rs)
        lines.append(
            f"| {mode} | {fmt(med(rs, 'rate'), ',.0f')} | {sum(r['errors'] for r in rs)} "
            f"| {fmt(med(rs, 'entries_a'), ',.0f')} "
            f"| {fmt(med(rs, 'entries_b'), ',.0f') if linked else '–'}"
            f"{(' (all, every run)' if all_b else ' (NOT all)') if linked else ''} "
            f"| {(fmt(caught * 1000, '.0f') + ' ms') if caught is not None else ('–' if not linked else 'no')} "
            f"| {ack} | {backlog} | {fmt(med(rs, 'halb_bytes_per_entry'), '.1f')} "
            f"| {fmt(med(rs, 'wire_bytes_per_entry'), '.1f')} "
            f"| {fmt(med(rs, 'cpu_a_s'), '.2f')} ({fmt(med(rs, 'cpu_a_us'), '.1f')}) "
            f"| {fmt(med(rs, 'cpu_b_s'), '.2f')} ({fmt(med(rs, 'cpu_b_us'), '.1f')}) |"
        )
    lines += ["", "The cost of replication (peers minus alone, medians, CPU µs per entry):", "",
              "| proxy | node A | node B | both |", "|---|---|---|---|"]
    for proxy in ("halb", "haproxy"):
        p = [r for r in runs if r["mode"] == f"{proxy}-peers"]
        q = [r for r in runs if r["mode"] == f"{proxy}-alone"]
        if not p or not q:
            continue
        da = med(p, "cpu_a_us") - med(q, "cpu_a_us")
        db = med(p, "cpu_b_us") - med(q, "cpu_b_us")
        lines.append(f"| {proxy} | {da:+.1f} | {db:+.1f} | {da + db:+.1f} |")
    lines += ["", "Columns: *sessions/s* is wrk's requests / duration (each one a new X-User); "
              "*entries* counted on each node (halb `halb_sticky_entries`, HAProxy `show table` "
              "`used`) minus those before the load; *B caught up* is the time after the load ended "
              "until B held as many new entries as A; *ack p50/p99* is A's link to B "
              "(`ack_p50_ms`/`ack_p99_ms`: send to acknowledgement of the last 4096 update "
              "messages, read when the load ends; halb only); *B's backlog* is (entries on A − "
              "entries on B) / rate, sampled every 50 ms during the load: how far B is behind, "
              "in time; *bytes/entry (halb counters)* is A's `bytes_sent / updates_sent` on "
              "its link; *peer sockets* is the TCP payload (`ss` bytes_sent) of every socket "
              "on the peer ports, both directions, divided by the entries; CPU is user + system "
              "time from `/proc` over the load and the catch-up, per entry learned on A.",
              "", "Every run:", "", "```json"]
    lines += [json.dumps({k: v for k, v in r.items() if k not in ("link_a", "link_b", "samples", "show_peers")})
              for r in runs]
    lines += ["```", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=10_000, help="new sessions per second (default 10000)")
    p.add_argument("--duration", type=float, default=10, help="seconds per run (default 10)")
    p.add_argument("--repeat", type=int, default=3, help="runs per mode (default 3)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    p.add_argument("--a-cpus", default="0")
    p.add_argument("--b-cpus", default="1")
    p.add_argument("--load-cpus", default="1")
    p.add_argument("--halb", type=Path, default=REPO / "target" / "release" / "halb")
    p.add_argument("--out", type=Path, default=None, help="markdown file (default results/peers.md)")
    p.add_argument("--smoke", action="store_true", help="1 s per mode, once, into results/tmp/")
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.duration, args.repeat = 1, 1
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}; modes: {', '.join(MODES)}")
    for tool in ("wrk", "nginx", "taskset", "ss") + (("haproxy",) if any(
            m.startswith("haproxy") for m in modes) else ()):
        if shutil.which(tool) is None:
            p.error(f"{tool} not found (bench/run.sh installs wrk, nginx and haproxy)")
    if not args.halb.exists():
        p.error(f"{args.halb} not found: cargo build --release -p halb")
    out = args.out or (BENCH / "results" / ("tmp/peers.md" if args.smoke else "peers.md"))
    out.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="halb-peers-bench-"))
    processes = procs.Processes()
    runs: list[dict] = []
    load0 = open("/proc/loadavg").read().split()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        r = Runner(args, tmp, processes)
        r.start_backends()
        for rep in range(args.repeat):
            for mode in modes:
                m = r.run(mode, rep)
                runs.append(m)
                print(json.dumps({k: v for k, v in m.items() if k not in ("link_a", "link_b", "samples", "show_peers")}),
                      flush=True)
    finally:
        processes.stop_all()
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load1 = open("/proc/loadavg").read().split()[0]
    text = report(args, runs, (load0, load1), started)
    out.write_text(text)
    (out.with_suffix(".json")).write_text(json.dumps(runs, indent=1))
    print(text)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
