#!/usr/bin/env python3
"""VRRP takeover times: a halb pair beside a keepalived pair, measured the same way.

Each run builds a fresh network-namespace lab (a bridge namespace that is
the "switch" and runs the backend at 198.18.0.1, two node namespaces at
198.18.0.11 and .12 with eth0 on the bridge, a client namespace at
198.18.0.50; 198.18.0.0/24, names carrying the pid and a counter), starts
one pair, waits until node 1 (priority 150) is master and node 2 (100) is
backup and the client is served through the virtual IP 198.18.0.100, then
fails the master and measures from that instant:

- `vip`: until node 2 has the VIP on its eth0 (polled every 5 ms);
- `served`: until the first request through the VIP is answered by node 2
  (the client opens a new connection every 10 ms, each with a 1 s timeout);
- `gone` (SIGKILL only): until the dead node's VIP is off its interface
  (watched for 4 s; "kept" if it is still there then).

The failure comes at a random moment of the master's advert cycle: a
backup counts its master-down interval (3 x 100 ms + skew, 0.36 s at
priority 100) from the last advert it heard, so the time from the failure
is between 0.26 s and 0.36 s.

The failures: `cut` takes the master's port on the bridge down (its cable
pulled out of the switch); `kill` sends SIGKILL to the master's VRRP
process (halb; keepalived's VRRP child and its parent together).

Both pairs have the same data path: a halb listener on port 8080 in each
node in front of the backend, which answers with the address of the node
that forwarded the request. halb: `[vrrp]` in that same process, 100 ms
adverts, the listener on the VIP (IP_FREEBIND). keepalived: 2.2, VRRPv3,
`advert_int 0.1`, default gratuitous ARP settings, beside a halb without
`[vrrp]` listening on 0.0.0.0:8080.

Run as root: `bench/vrrp_takeover.py [--runs 5] [--halb target/release/halb]`.
Namespaces and processes are removed on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BRIDGE_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.50"
VIP = "198.18.0.100"
PORT = 8080
BACKEND_PORT = 9000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
POLL = 0.005
REQUEST_EVERY = 0.010
WATCH_FOR = 4.0

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def node_ip(n: int) -> str:
    return f"198.18.0.{10 + n}"


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def enter(ns: str) -> None:
    """Move the calling thread into network namespace `ns`."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def child_setup() -> None:
    os.setpgid(0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


BACKEND = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


class Lab:
    """The namespaces and processes of one run; `close` removes them all."""

    counter = 0

    def __init__(self, tmp: Path) -> None:
        Lab.counter += 1
        self.prefix = f"hvt{os.getpid()}x{Lab.counter}"
        self.tmp = tmp
        self.namespaces: list[str] = []
        self.children: list[subprocess.Popen] = []
        self.extra_pids: list[int] = []
        br = self.ns("br")
        self._add_ns(br)
        ip("-n", br, "link", "add", "br0", "type", "bridge")
        ip("-n", br, "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0")
        ip("-n", br, "link", "set", "br0", "up")
        for n in (1, 2):
            self._attach(f"n{n}", node_ip(n), f"p{n}")
        self._attach("cl", CLIENT_IP, "pcl")

    def ns(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def _add_ns(self, ns: str) -> None:
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")

    def _attach(self, short: str, address: str, port: str) -> None:
        ns, br = self.ns(short), self.ns("br")
        self._add_ns(ns)
        ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", br)
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", br, "link", "set", port, "master", "br0")
        ip("-n", br, "link", "set", port, "up")

    def spawn(self, short: str, argv: list[str], log: str) -> subprocess.Popen:
        out = open(self.tmp / log, "wb")
        child = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(short), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=child_setup,
        )
        out.close()
        self.children.append(child)
        return child

    def set_link(self, n: int, up: bool) -> None:
        ip("-n", self.ns("br"), "link", "set", f"p{n}", "up" if up else "down")

    def holds(self, n: int, address: str = VIP) -> bool:
        out = subprocess.run(
            ["ip", "-n", self.ns(f"n{n}"), "-4", "-o", "addr", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
        ).stdout
        return f" {address}/" in out

    def close(self) -> None:
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in self.children:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in self.children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()


def get(address: str, timeout: float) -> str | None:
    """One GET on a new connection: the body of a 200, else None."""
    try:
        conn = http.client.HTTPConnection(address, PORT, timeout=timeout)
        conn.request("GET", "/", headers={"connection": "close"})
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        return body if response.status == 200 else None
    except OSError:
        return None
    except http.client.HTTPException:
        return None


def in_ns(ns: str, f):
    """Run `f` on a thread inside `ns`; its result."""
    result: list = []

    def body() -> None:
        enter(ns)
        result.append(f())

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return result[0]


class Client:
    """New connections to the VIP every 10 ms from the client namespace;
    records when each answer arrived and which node forwarded it."""

    def __init__(self, lab: Lab) -> None:
        self.ns = lab.ns("cl")
        self.lock = threading.Lock()
        self.answers: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _attempt(self) -> None:
        enter(self.ns)
        body = get(VIP, 1.0)
        if body is not None:
            with self.lock:
                self.answers.append((time.monotonic(), body))

    def _run(self) -> None:
        while not self.stop.is_set():
            threading.Thread(target=self._attempt, daemon=True).start()
            time.sleep(REQUEST_EVERY)

    def first_from(self, node: str, since: float) -> float | None:
        with self.lock:
            times = [t for t, body in self.answers if body == node and t >= since]
        return min(times) - since if times else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class Watch:
    """`condition` polled on a thread of its own: when it first held,
    in seconds from `start`, or None within `limit`."""

    def __init__(self, start: float, limit: float, condition) -> None:
        self.at: float | None = None

        def run() -> None:
            if wait_until(limit - (time.monotonic() - start), condition) is not None:
                self.at = time.monotonic() - start

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> float | None:
        self.thread.join()
        return self.at


def wait_until(limit: float, condition) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if condition():
            return time.monotonic() - start
        time.sleep(POLL)
    return None


# ---- the two pairs ---------------------------------------------------------

def halb_config(n: int, priority: int, with_vrrp: bool) -> str:
    bind = f"{VIP}:{PORT}" if with_vrrp else f"0.0.0.0:{PORT}"
    text = f"""[admin]
bind = "127.0.0.1:9900"

[[listener]]
name = "web"
bind = "{bind}"
pool = "app"

[[pool]]
name = "app"
connect_timeout = "200ms"
[[pool.backend]]
address = "{BRIDGE_IP}:{BACKEND_PORT}"
"""
    if with_vrrp:
        text += f"""
[vrrp]
interface = "eth0"
[[vrrp.instance]]
name = "front"
vrid = 51
priority = {priority}
advert_interval = "100ms"
virtual_ips = ["{VIP}/24"]
"""
    return text


KEEPALIVED = """global_defs {{
  vrrp_version 3
}}
vrrp_instance front {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {priority}
  advert_int 0.1
  virtual_ipaddress {{
    {vip}/24
  }}
}}
"""


class Pair:
    """Node 1 (priority 150) and node 2 (100) of one kind, started in a lab."""

    def __init__(self, kind: str, lab: Lab, halb: str) -> None:
        self.kind, self.lab, self.halb = kind, lab, halb
        self.vrrp: dict[int, subprocess.Popen] = {}
        for n, priority in ((1, 150), (2, 100)):
            self._start(n, priority)

    def _start(self, n: int, priority: int) -> None:
        tmp = self.lab.tmp
        config = tmp / f"{self.kind}-n{n}.toml"
        config.write_text(halb_config(n, priority, self.kind == "halb"))
        halb = self.lab.spawn(f"n{n}", [self.halb, "run", "--config", str(config)], f"halb-n{n}.log")
        if self.kind == "halb":
            self.vrrp[n] = halb
            return
        conf = tmp / f"keepalived-n{n}.conf"
        conf.write_text(KEEPALIVED.format(priority=priority, vip=VIP))
        self.vrrp[n] = self.lab.spawn(
            f"n{n}",
            ["keepalived", "-n", "-l", "-P", "-f", str(conf),
             "-p", str(tmp / f"ka-n{n}.pid"), "-r", str(tmp / f"ka-vrrp-n{n}.pid")],
            f"keepalived-n{n}.log",
        )

    def backup_ready(self) -> bool:
        if self.kind == "halb":
            def state() -> str:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", 9900, timeout=1)
                    conn.request("GET", "/api/v1/status")
                    status = json.loads(conn.getresponse().read())
                    return status["vrrp"][0]["state"]
                except (OSError, ValueError, KeyError, IndexError):
                    return ""
            return in_ns(self.lab.ns("n2"), state) == "backup"
        log = (self.lab.tmp / "keepalived-n2.log").read_text(errors="replace")
        return "Entering BACKUP STATE" in log

    def kill_master(self) -> None:
        if self.kind == "halb":
            os.kill(self.vrrp[1].pid, signal.SIGKILL)
            return
        # The VRRP child first: a parent left alive would start a new one,
        # and the child must not get its parent-death SIGTERM (a clean stop).
        child = int((self.lab.tmp / "ka-vrrp-n1.pid").read_text().strip())
        os.kill(child, signal.SIGKILL)
        os.kill(self.vrrp[1].pid, signal.SIGKILL)


def settle(pair: Pair, lab: Lab) -> None:
    def ready() -> bool:
        return (
            lab.holds(1)
            and not lab.holds(2)
            and pair.backup_ready()
            and in_ns(lab.ns("cl"), lambda: get(VIP, 1.0)) == node_ip(1)
        )

    if wait_until(15, ready) is None:
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(lab.tmp.glob("*.log"))
        )
        raise RuntimeError(f"{pair.kind}: no master/backup pair after 15 s\n{logs}")
    time.sleep(1.0)


def one_run(kind: str, failure: str, halb: str, tmp_root: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(dir=tmp_root))
    lab = Lab(tmp)
    client = None
    try:
        backend = lab.spawn("br", [sys.executable, "-c", BACKEND, BRIDGE_IP, str(BACKEND_PORT)], "backend.log")
        del backend
        pair = Pair(kind, lab, halb)
        settle(pair, lab)
        client = Client(lab)
        # A random moment in the master's advert cycle: the takeover time
        # depends on how long before the failure the last advert went out,
        # and a fixed delay after settling would always hit the same phase.
        time.sleep(0.3 + random.uniform(0.0, 1.0))
        start = time.monotonic()
        if failure == "cut":
            lab.set_link(1, False)
        else:
            pair.kill_master()
        # The watches run side by side, each timed from the failure.
        vip = Watch(start, 3.0, lambda: lab.holds(2))
        gone = Watch(start, WATCH_FOR, lambda: not lab.holds(1)) if failure == "kill" else None
        wait_until(3.0, lambda: client.first_from(node_ip(2), start) is not None)
        served = client.first_from(node_ip(2), start)
        vip = vip.result()
        kept = None
        if gone is not None:
            gone = gone.result()
            kept = gone is None
        return {"kind": kind, "failure": failure, "vip": vip, "served": served, "gone": gone, "kept": kept}
    finally:
        if client is not None:
            client.close()
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- report ------------------------------------------------------------------

def summary(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "never"
    text = f"{statistics.median(got):.2f} s ({min(got):.2f}–{max(got):.2f})"
    missing = len(values) - len(got)
    return text + (f", {missing} never" if missing else "")


def gone_summary(runs: list[dict]) -> str:
    if all(r["kept"] for r in runs):
        return f"kept (still there after {WATCH_FOR:.0f} s)"
    return summary([r["gone"] for r in runs])


def report(results: list[dict], runs: int) -> str:
    rows = []
    for failure, label in (("cut", "link cut"), ("kill", "SIGKILL of the master")):
        for kind in ("halb", "keepalived"):
            these = [r for r in results if r["kind"] == kind and r["failure"] == failure]
            gone = gone_summary(these) if failure == "kill" else "–"
            rows.append(
                f"| {label} | {kind} | {summary([r['vip'] for r in these])} "
                f"| {summary([r['served'] for r in these])} | {gone} |"
            )
    head = (
        f"Median (min–max) of {runs} runs, 100 ms adverts, priorities 150/100:\n\n"
        "| failure | pair | VIP on the backup | first request served by the backup | dead master's VIP gone |\n"
        "|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per pair and failure (default 5)")
    parser.add_argument("--halb", default="target/release/halb", help="the halb binary")
    parser.add_argument("--json", help="also write every run's numbers here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    for tool in ("ip", "keepalived"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install iproute2 keepalived)", file=sys.stderr)
            return 2
    halb = os.path.abspath(args.halb)
    if not os.access(halb, os.X_OK):
        print(f"{halb}: not found; cargo build --release -p halb", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    tmp_root = Path(tempfile.mkdtemp(prefix="halb-vrrp-takeover-"))
    results = []
    try:
        for i in range(args.runs):
            # Alternate the pairs so drift on a shared machine hits both.
            for failure in ("cut", "kill"):
                for kind in ("halb", "keepalived"):
                    r = one_run(kind, failure, halb, tmp_root)
                    results.append(r)
                    fmt = lambda v: "never" if v is None else f"{v:.3f}"
                    extra = ""
                    if failure == "kill":
                        extra = "  gone kept" if r["kept"] else f"  gone {fmt(r['gone'])}"
                    print(
                        f"run {i + 1}/{args.runs} {kind:10} {failure:4}  vip {fmt(r['vip'])}  served {fmt(r['served'])}{extra}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    print()
    print(report(results, args.runs))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
