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
    # "http", "tcp" (proxies in TCP mode), "idle", "tls" (HTTP/1.1 over TLS)
    # or "h2" (HTTP/2 over TLS, ALPN h2)
    kind: str = "http"
    path: str = "/hello"
    connections: int = 64
    close: bool = False  # a new connection per request
    workers: int = 1  # proxy threads/processes; 1 = the per-core comparison
    mib: bool = False  # report MiB/s rather than requests/s
    resume: bool = True  # TLS with close: resume sessions (tickets) or full handshakes
    streams: int = 1  # h2: concurrent streams per connection (h2load -m)

    @property
    def baseline(self) -> bool:
        """The backend measured directly, without a proxy, as a ceiling."""
        return self.kind == "http" and self.workers == 1

    @property
    def tls(self) -> bool:
        """The proxy terminates TLS (the backends stay plain HTTP/1.1)."""
        return self.kind in ("tls", "h2")

    @property
    def handshakes(self) -> bool:
        """Each request is a new TLS connection: req/s are handshakes/s."""
        return self.kind == "tls" and self.close

    @property
    def protocol(self) -> str:
        return "tcp" if self.kind == "tcp" else "http"

    @property
    def unit(self) -> str:
        if self.kind == "idle":
            return "MiB RSS"
        if self.handshakes:
            return "handshakes/s"
        return "MiB/s" if self.mib else "req/s"


CASES = [
    Case("ka-5B-64", "keep-alive, 5 B body, 64 conns"),
    Case("ka-5B-256", "keep-alive, 5 B body, 256 conns", connections=256),
    Case("ka-16KiB", "keep-alive, 16 KiB body, 64 conns", path="/16k"),
    Case("ka-1MiB", "keep-alive, 1 MiB body, 64 conns", path="/1m", mib=True),
    Case("close-5B", "new connection per request, 5 B body, 64 conns", close=True),
    Case("tcp-1MiB", "TCP mode, 1 MiB body, 64 conns", kind="tcp", path="/1m", mib=True),
    Case("idle-10k", "RSS with idle client connections", kind="idle"),
    # TLS 1.3, an ECDSA P-256 certificate made by the bench (openssl).
    Case("tls-full", "TLS full handshake per request, 5 B body, 64 conns", kind="tls",
         close=True, resume=False),
    Case("tls-resumed", "TLS resumed handshake (ticket) per request, 5 B body, 64 conns",
         kind="tls", close=True),
    Case("tls-ka-5B", "TLS keep-alive, 5 B body, 64 conns", kind="tls"),
    Case("tls-1MiB", "TLS keep-alive, 1 MiB body, 64 conns", kind="tls", path="/1m", mib=True),
    Case("h2-1", "h2 over TLS, 1 stream per conn, 5 B body, 64 conns", kind="h2"),
    Case("h2-100", "h2 over TLS, 100 streams per conn, 5 B body, 16 conns", kind="h2",
         connections=16, streams=100),
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
