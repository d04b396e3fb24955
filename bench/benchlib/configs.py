"""Config files for the backends and for the three proxies under test.

The proxies get equivalent settings: round robin over the same three
backends, pooled keep-alive connections to them, the same forwarding
headers added (halb always adds X-Forwarded-For, X-Forwarded-Proto and
Forwarded, so the others are told to add them too, and the backends parse
the same requests from all three), no access log, the same client timeouts, and an
explicit number of worker threads/processes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Client-side timeouts, equal for all three: long enough that the idle
# connection case (10,000 connections opened in batches) is never cut short.
CLIENT_TIMEOUT_S = 120
# Room for 10,000 idle client connections plus backend connections.
MAX_CONNECTIONS = 10_500
NOFILE = 20_000
# Debian builds nginx's stream (TCP) proxy as a module (libnginx-mod-stream).
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def nginx_common(tmp: Path, name: str) -> str:
    """The top of an nginx config: foreground-safe paths inside `tmp`."""
    return f"""\
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log crit;
worker_rlimit_nofile {NOFILE};
"""


def nginx_http_temp_paths(tmp: Path, name: str) -> str:
    return "".join(
        f"    {kind}_temp_path {tmp}/{name}.{kind}_temp;\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def backend_nginx(tmp: Path, name: str, port: int, docroot: Path) -> str:
    """A backend: `/hello` answers 5 bytes, other paths are static files."""
    return f"""\
{nginx_common(tmp, name)}
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
{nginx_http_temp_paths(tmp, name)}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {docroot};
        location = /hello {{
            default_type text/plain;
            return 200 "hello";
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Tls:
    """The certificate all three proxies serve in the TLS and h2 cases:
    `cert` and `key` as PEM files, and both in one file for HAProxy."""

    cert: Path
    key: Path
    combined: Path


def make_certificate(tmp: Path) -> Tls:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1, made with openssl."""
    cert, key, combined = tmp / "bench-cert.pem", tmp / "bench-key.pem", tmp / "bench-combined.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "7", "-subj", "/CN=bench.local",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:bench.local"],
        check=True, capture_output=True,
    )
    combined.write_text(cert.read_text() + key.read_text())
    for f in (cert, key, combined):
        f.chmod(0o644)
    return Tls(cert, key, combined)


def halb(port: int, backends: list[int], workers: int, protocol: str,
         tls: Tls | None = None) -> str:
    tls_section = (f'\n[listener.tls]\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
                   if tls else "")
    servers = "".join(
        f'\n[[pool.backend]]\naddress = "127.0.0.1:{b}"\n' for b in backends
    )
    return f"""\
[runtime]
workers = {workers}

[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
protocol = "{protocol}"
pool = "app"
request_head_timeout = "{CLIENT_TIMEOUT_S}s"
idle_timeout = "{CLIENT_TIMEOUT_S}s"
max_connections = {MAX_CONNECTIONS}
{tls_section}
[[pool]]
name = "app"
algorithm = "round_robin"
{servers}"""


def haproxy(port: int, backends: list[int], workers: int, protocol: str,
            tls: Tls | None = None) -> str:
    scheme = "https" if tls else "http"
    # OpenSSL with its defaults: TLS 1.2-1.3, session cache and tickets on.
    ssl = f" ssl crt {tls.combined} alpn h2,http/1.1" if tls else ""
    servers = "".join(
        f"    server s{i} 127.0.0.1:{b}\n" for i, b in enumerate(backends, 1)
    )
    if protocol == "http":
        http = """\
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout http-request {t}s
    timeout http-keep-alive {t}s
""".format(t=CLIENT_TIMEOUT_S)
        # The headers halb adds beside X-Forwarded-For (not allowed in an
        # anonymous defaults section).
        rules = f"""\
    http-request set-header X-Forwarded-Proto {scheme}
    http-request add-header Forwarded "for=%[src];proto={scheme}"
"""
    else:
        http = rules = ""
    return f"""\
global
    nbthread {workers}
    maxconn {MAX_CONNECTIONS}
    # It would want 2 fds per connection (21,000) but the hard limit is lower;
    # 10,000 idle client connections need only one each: warn, do not fail.
    no strict-limits

defaults
    mode {protocol}
    timeout connect 1s
    timeout client {CLIENT_TIMEOUT_S}s
    timeout server 30s
{http}
frontend fe
    bind 127.0.0.1:{port}{ssl}
{rules}    default_backend be

backend be
    balance roundrobin
{servers}"""


def nginx_proxy(
    tmp: Path, port: int, backends: list[int], workers: int, protocol: str,
    tls: Tls | None = None,
) -> str:
    # nginx 1.22 enables h2 on the listen line; OpenSSL's tickets are on by
    # default, and a shared session cache matches HAProxy's.
    listen_tls = " ssl http2" if tls else ""
    tls_lines = (f"""\
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
""" if tls else "")
    servers = "".join(f"        server 127.0.0.1:{b};\n" for b in backends)
    head = f"""\
{nginx_common(tmp, "proxy")}
worker_processes {workers};
events {{ worker_connections {NOFILE - 1000}; }}
"""
    if protocol == "tcp":
        return (
            f"load_module {STREAM_MODULE};\n"
            + head
            + f"""\
stream {{
    upstream app {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        proxy_pass app;
        proxy_connect_timeout 1s;
        proxy_timeout {CLIENT_TIMEOUT_S}s;
    }}
}}
"""
        )
    # proxy_max_temp_file_size 0: nginx buffers responses in memory but never
    # spills a 1 MiB body to a temp file on disk (the others stream it).
    return (
        head
        + f"""\
http {{
    access_log off;
    keepalive_timeout {CLIENT_TIMEOUT_S}s;
    keepalive_requests 100000000;
    client_header_timeout {CLIENT_TIMEOUT_S}s;
{nginx_http_temp_paths(tmp, "proxy")}
    upstream app {{
{servers}        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port}{listen_tls} backlog=4096;
{tls_lines}        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme";
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""
    )
