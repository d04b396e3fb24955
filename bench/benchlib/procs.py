"""Starting, watching and stopping the processes of a benchmark.

Every process is started pinned with `taskset`, in its own process group,
and with a parent-death signal, and is recorded in a `Processes` registry
whose `stop_all()` the orchestrator calls in a `finally`: nothing outlives
the benchmark, whether it ends normally, on an error or on Ctrl-C.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import cgroup

PR_SET_PDEATHSIG = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc: no parent-death signal, the finally still cleans up
    _libc = None


def child_setup() -> None:
    """In the child before exec: die with the orchestrator, own group."""
    os.setpgid(0, 0)
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _setup_in(procs_file: str) -> None:
    child_setup()
    cgroup.join(procs_file)


@dataclass
class Started:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


class Processes:
    """A registry of everything started; `stop_all` ends each group."""

    def __init__(self) -> None:
        self.running: list[Started] = []

    def start(
        self,
        name: str,
        argv: list[str],
        cpus: str,
        log: Path,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
        cgroup_procs: str | None = None,
    ) -> Started:
        """`cgroup_procs`: a `cgroup.procs` file the process enters before exec."""
        log_file = open(log, "ab")
        try:
            popen = subprocess.Popen(
                ["taskset", "-c", cpus, *argv],
                stdin=stdin,
                stdout=stdout if stdout is not None else log_file,
                stderr=log_file,
                env={**os.environ, **(env or {})},
                preexec_fn=(child_setup if cgroup_procs is None
                            else lambda: _setup_in(cgroup_procs)),
                close_fds=True,
            )
        finally:
            log_file.close()
        started = Started(name, popen, log)
        self.running.append(started)
        return started

    def stop(
        self, started: Started, grace: float = 3.0, first: int = signal.SIGTERM
    ) -> None:
        """Signal the process group (SIGTERM), SIGKILL it if it lingers."""
        if started in self.running:
            self.running.remove(started)
        pgid = started.popen.pid
        for sig, wait in ((first, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if started.popen.poll() is not None and not _group_alive(pgid):
                    return
                time.sleep(0.02)
        started.popen.poll()

    def stop_all(self) -> None:
        for started in list(reversed(self.running)):
            self.stop(started, grace=1.0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of the group still answer signal 0 until reaped; look closer.
    for pid in tree(pgid):
        try:
            state = _stat_fields(pid)[0]
        except OSError:
            continue
        if state != "Z":
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, proc: Started, timeout: float = 15.0,
              tls: bool = False) -> None:
    """Wait until GET `path` through `port` (over TLS, unverified) answers 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}; log: {proc.log}\n"
                + tail(proc.log)
            )
        if tls:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            last = f"status {response.status}"
        except OSError as e:
            last = str(e)
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready on port {port}: {last}; log: {proc.log}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (state is [0])."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """`root` and all its descendants (nginx: master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """utime + stime of `root` and its live descendants, all threads."""
    total = 0
    for pid in tree(root):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12).
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def cpu_list(spec: str) -> list[int]:
    """CPU numbers of a taskset list such as "0", "0,1" or "0-3"."""
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def core_jiffies(cpus: list[int]) -> tuple[int, int]:
    """(busy, total) jiffies of `cpus` since boot, from /proc/stat: all of
    each core's time, whoever spent it (processes, interrupts, softirqs)."""
    busy = total = 0
    wanted = {f"cpu{n}" for n in cpus}
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in wanted:
                ticks = [int(x) for x in fields[1:9]]
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]  # idle, iowait
    return busy, total


def core_busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return 100 * busy / total if total else float("nan")


def memory_kib(root: int, key: str) -> int:
    """Sum of a /proc/PID/status memory field (VmRSS, VmHWM) over the tree."""
    total = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total
