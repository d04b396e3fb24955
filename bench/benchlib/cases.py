"""The benchmark cases: what the load client (wrk, halb-load or the idle-connection client) does."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024

# Files the backends serve besides /hello (5 bytes); name -> size.
BODIES = {"16k": 16 * 1024, "1m": MiB}


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    kind: str = "http"  # "http", "tcp" (proxies in TCP mode) or "idle"
    path: str = "/hello"
    connections: int = 64
    close: bool = False  # a new connection per request
    workers: int = 1  # proxy threads/processes; 1 = the per-core comparison
    mib: bool = False  # report MiB/s rather than requests/s

    @property
    def baseline(self) -> bool:
        """The backend measured directly, without a proxy, as a ceiling."""
        return self.kind == "http" and self.workers == 1

    @property
    def protocol(self) -> str:
        return "tcp" if self.kind == "tcp" else "http"

    @property
    def unit(self) -> str:
        if self.kind == "idle":
            return "MiB RSS"
        return "MiB/s" if self.mib else "req/s"


CASES = [
    Case("ka-5B-64", "keep-alive, 5 B body, 64 conns"),
    Case("ka-5B-256", "keep-alive, 5 B body, 256 conns", connections=256),
    Case("ka-16KiB", "keep-alive, 16 KiB body, 64 conns", path="/16k"),
    Case("ka-1MiB", "keep-alive, 1 MiB body, 64 conns", path="/1m", mib=True),
    Case("close-5B", "new connection per request, 5 B body, 64 conns", close=True),
    Case("tcp-1MiB", "TCP mode, 1 MiB body, 64 conns", kind="tcp", path="/1m", mib=True),
    Case("idle-10k", "RSS with idle client connections", kind="idle"),
    Case(
        "mc-ka-5B-256",
        "2 workers: keep-alive, 5 B body, 256 conns",
        connections=256,
        workers=2,
    ),
    Case(
        "mc-ka-1MiB",
        "2 workers: keep-alive, 1 MiB body, 64 conns",
        path="/1m",
        mib=True,
        workers=2,
    ),
]


def select(ids: str | None) -> list[Case]:
    if not ids:
        return list(CASES)
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    known = {c.id: c for c in CASES}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise SystemExit(
            f"unknown case(s): {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return [known[i] for i in wanted]
