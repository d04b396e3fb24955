"""CPU quotas for the equal-CPU mode: each proxy runs in a cgroup of its own
with the same CFS quota, so that the proxy, not the load core, sets the pace.

Works with the cgroup v1 `cpu` controller (`cpu.cfs_period_us` and
`cpu.cfs_quota_us`) where it is mounted, and with cgroup v2 (`cpu.max`)
otherwise. The period is short (10 ms) so that a capped proxy is throttled
in small slices rather than stalled for most of 100 ms, which would show as
latency of the cap, not of the proxy.

Each group has a unique name (`halb-bench-<pid>-<n>`), is created for one
run and removed after it; `CpuGroups.remove_all()` runs in the
orchestrator's `finally`, and groups left by an earlier benchmark that was
killed (its pid is gone) are swept when a new one starts.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

PERIOD_US = 10_000
PREFIX = "halb-bench-"


class CgroupError(RuntimeError):
    """No cpu controller this process can write to."""


@dataclass
class Hierarchy:
    version: int  # 1 or 2
    root: Path  # where our groups are created


def detect(mounts: str | None = None) -> Hierarchy:
    """The cpu controller's hierarchy: v1 `cpu` if mounted, else v2 with `cpu`."""
    if mounts is None:
        mounts = Path("/proc/mounts").read_text()
    v2 = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        path, fstype, options = Path(fields[1]), fields[2], fields[3].split(",")
        if fstype == "cgroup" and "cpu" in options:
            return Hierarchy(1, path)
        if fstype == "cgroup2" and v2 is None:
            v2 = path
    if v2 is not None:
        controllers = (v2 / "cgroup.controllers")
        if controllers.is_file() and "cpu" in controllers.read_text().split():
            return Hierarchy(2, v2)
    raise CgroupError("no cgroup cpu controller: neither a cgroup v1 'cpu' mount "
                      "nor cgroup v2 with 'cpu' in cgroup.controllers")


class CpuGroup:
    """One cgroup with a CPU quota; processes are put in it at their start."""

    def __init__(self, hierarchy: Hierarchy, name: str, cores: float):
        self.hierarchy = hierarchy
        self.path = hierarchy.root / name
        self.cores = cores
        self.path.mkdir()
        quota = max(1000, round(cores * PERIOD_US))
        if hierarchy.version == 1:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def stat(self) -> dict[str, int]:
        """cpu.stat: nr_periods, nr_throttled, and the throttled time in µs."""
        out: dict[str, int] = {}
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                out[key] = int(value)
        except (OSError, ValueError):
            return {}
        if "throttled_time" in out:  # v1: ns
            out["throttled_usec"] = out["throttled_time"] // 1000
        return out

    def remove(self) -> None:
        """rmdir once the processes are gone (exiting tasks take a moment)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def join(procs_file: str) -> None:
    """In a child before exec: enter the group, so that every process and
    thread the proxy starts (nginx's workers too) is under the quota."""
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)


class CpuGroups:
    """Creates a group per run and removes each one, also on error."""

    def __init__(self, cores: float):
        if not 0.01 <= cores <= (os.cpu_count() or 1):
            raise CgroupError(f"--cpu-quota {cores}: between 0.01 and the number of CPUs")
        self.cores = cores
        self.hierarchy = detect()
        self.live: list[CpuGroup] = []
        self.counter = 0
        if self.hierarchy.version == 2:
            self._enable_v2()
        self._sweep_stale()
        # Prove now that a group can be made and given a quota, so a missing
        # permission shows before the first run, not in the middle.
        self.remove(self.create("probe"))

    def describe(self) -> str:
        if self.hierarchy.version == 1:
            where = f"cgroup v1 {self.hierarchy.root}: cpu.cfs_quota_us/cpu.cfs_period_us"
        else:
            where = f"cgroup v2 {self.hierarchy.root}: cpu.max"
        return (f"{self.cores:g} core per proxy ({round(self.cores * PERIOD_US)} µs every "
                f"{PERIOD_US} µs, {where})")

    def create(self, tag: str) -> CpuGroup:
        self.counter += 1
        name = f"{PREFIX}{os.getpid()}-{self.counter}-{re.sub(r'[^A-Za-z0-9_.-]', '_', tag)}"
        try:
            group = CpuGroup(self.hierarchy, name, self.cores)
        except OSError as e:
            _rmdir_quietly(self.hierarchy.root / name)
            raise CgroupError(f"cannot create cgroup {self.hierarchy.root / name}: {e}") from e
        self.live.append(group)
        return group

    def remove(self, group: CpuGroup) -> None:
        if group in self.live:
            self.live.remove(group)
        group.remove()

    def remove_all(self) -> None:
        for group in list(self.live):
            try:
                self.remove(group)
            except OSError as e:
                print(f"warning: cgroup {group.path} not removed: {e}")

    def _enable_v2(self) -> None:
        control = self.hierarchy.root / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            try:
                control.write_text("+cpu")
            except OSError as e:
                raise CgroupError(f"cannot enable the cpu controller in {control}: {e}") from e

    def _sweep_stale(self) -> None:
        """Groups of a benchmark that was killed before its cleanup ran."""
        for entry in self.hierarchy.root.glob(PREFIX + "*"):
            match = re.match(PREFIX + r"(\d+)-", entry.name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                _rmdir_quietly(entry)


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
