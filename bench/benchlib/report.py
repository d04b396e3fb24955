"""Turn the runs into a markdown report (medians, min–max, ratios) and a plot."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .cases import Case
from .runner import DIRECT, PROXIES, Result

LABEL = {"halb": "halb", "haproxy": "HAProxy", "nginx": "NGINX", DIRECT: "direct"}
COLOR = {"halb": "#d1495b", "haproxy": "#00798c", "nginx": "#66a182", DIRECT: "#8d96a3"}


def headline_key(case: Case) -> str:
    """The one number a case is judged on."""
    if case.kind == "idle":
        return "rss_after_request_mib"
    return "mibps" if case.mib else "rps"


def values(results: list[Result], case: Case, proxy: str, key: str) -> list[float]:
    return [
        r.metrics[key]
        for r in results
        if r.case == case.id and r.proxy == proxy and r.ok and key in r.metrics
        and not math.isnan(r.metrics[key])
    ]


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def digits_for(key: str) -> int:
    return {"p50_ms": 2, "p99_ms": 2, "cpu_us_per_req": 1, "hwm_mib": 1}.get(
        key, 1 if key.endswith("mib") or key.startswith("kib") else 0
    )


def spread(xs: list[float], key: str) -> str:
    d = digits_for(key)
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt(xs[0], d)
    return f"{fmt(median(xs), d)} ({fmt(min(xs), d)}–{fmt(max(xs), d)})"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def proxies_in(results: list[Result], case: Case) -> list[str]:
    order = [DIRECT, *PROXIES]
    present = {r.proxy for r in results if r.case == case.id}
    return [p for p in order if p in present]


def summary_table(results: list[Result], cases: list[Case]) -> list[str]:
    lines = [
        "| case | unit | halb | HAProxy | NGINX | direct | halb/HAProxy | halb/NGINX |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        key = headline_key(case)
        med = {p: median(values(results, case, p, key)) for p in (*PROXIES, DIRECT)}
        cells = [spread(values(results, case, p, key), key) for p in (*PROXIES, DIRECT)]
        unit = case.unit + (" (lower is better)" if case.kind == "idle" else "")
        lines.append(
            f"| {case.id} | {unit} | " + " | ".join(cells)
            + f" | {ratio(med['halb'], med['haproxy'])} | {ratio(med['halb'], med['nginx'])} |"
        )
    return lines


def cpu_table(results: list[Result], cases: list[Case]) -> list[str]:
    """CPU per request: steadier than throughput when the machine is shared."""
    lines = [
        "| case | halb | HAProxy | NGINX | halb/HAProxy | halb/NGINX |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    key = "cpu_us_per_req"
    for case in cases:
        if case.kind == "idle":
            continue
        med = {p: median(values(results, case, p, key)) for p in PROXIES}
        cells = [spread(values(results, case, p, key), key) for p in PROXIES]
        lines.append(
            f"| {case.id} | " + " | ".join(cells)
            + f" | {ratio(med['halb'], med['haproxy'])} | {ratio(med['halb'], med['nginx'])} |"
        )
    return lines


LOAD_COLUMNS = [
    ("rps", "req/s"),
    ("mibps", "MiB/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("cpu_pct", "CPU %"),
    ("cpu_us_per_req", "CPU µs/req"),
    ("proxy_core_pct", "proxy core busy %"),
    ("load_core_pct", "load core busy %"),
    ("hwm_mib", "peak RSS MiB"),
]
IDLE_COLUMNS = [
    ("rss_start_mib", "RSS at start MiB"),
    ("rss_connected_mib", "RSS connected MiB"),
    ("rss_after_request_mib", "RSS after 1 request each MiB"),
    ("kib_per_conn_after_request", "KiB/conn"),
    ("hwm_mib", "peak RSS MiB"),
]


def detail_table(results: list[Result], case: Case) -> list[str]:
    columns = IDLE_COLUMNS if case.kind == "idle" else LOAD_COLUMNS
    lines = [
        "| proxy | " + " | ".join(label for _, label in columns) + " | runs | notes |",
        "|---|" + "---:|" * len(columns) + "---:|---|",
    ]
    for proxy in proxies_in(results, case):
        runs = [r for r in results if r.case == case.id and r.proxy == proxy]
        cells = [spread(values(results, case, proxy, k), k) for k, _ in columns]
        notes = "; ".join(sorted({r.note for r in runs if r.note}))
        good = sum(r.ok for r in runs)
        lines.append(
            f"| {LABEL[proxy]} | " + " | ".join(cells) + f" | {good}/{len(runs)} | {notes} |"
        )
    return lines


def markdown(results: list[Result], cases: list[Case], header: list[str]) -> str:
    out = [*header, "", "## Summary (median, min–max in brackets)", ""]
    out += summary_table(results, cases)
    out += ["", "## Proxy CPU µs per request (lower is better; below 1× = halb cheaper)", ""]
    out += cpu_table(results, cases)
    out += ["", "## Per case", ""]
    for case in cases:
        out += [f"### {case.id}: {case.title}", ""]
        out += detail_table(results, case)
        out.append("")
    return "\n".join(out) + "\n"


def write_json(path: Path, results: list[Result], meta: dict) -> None:
    path.write_text(
        json.dumps(
            {"meta": meta, "runs": [r.__dict__ for r in results]}, indent=1, default=str
        )
    )


def plot(path: Path, results: list[Result], cases: list[Case], title: str) -> bool:
    """A bar per proxy and case (median, min–max whiskers). False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cols = 3
    rows = math.ceil(len(cases) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, case in zip(axes.flat, cases):
        key = headline_key(case)
        names, meds, lo, hi, colors = [], [], [], [], []
        for proxy in proxies_in(results, case):
            xs = values(results, case, proxy, key)
            if not xs:
                continue
            m = median(xs)
            names.append(LABEL[proxy])
            meds.append(m)
            lo.append(m - min(xs))
            hi.append(max(xs) - m)
            colors.append(COLOR[proxy])
        ax.bar(names, meds, yerr=[lo, hi], color=colors, capsize=3)
        ax.set_title(case.id, fontsize=10)
        ax.set_ylabel(case.unit + (" (lower better)" if case.kind == "idle" else ""), fontsize=8)
        ax.tick_params(labelsize=8)
        for i, m in enumerate(meds):
            ax.annotate(fmt(m, 1 if m < 100 else 0), (i, m), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
