"""Turn the runs into a markdown report (medians, min–max, ratios) and a plot."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .cases import Case
from .runner import DIRECT, EQUAL_CPU, PROXIES, UNCAPPED, Result, is_halb

LABEL = {"halb": "halb", "haproxy": "HAProxy", "nginx": "NGINX", DIRECT: "direct"}
COLOR = {"halb": "#d1495b", "haproxy": "#00798c", "nginx": "#66a182", DIRECT: "#8d96a3"}
VARIANT_COLOR = "#edae49"


def label(proxy: str) -> str:
    return LABEL.get(proxy, proxy)


def color(proxy: str) -> str:
    return COLOR.get(proxy, VARIANT_COLOR)


def variants(results: list[Result]) -> list[str]:
    """Other halb binaries in the run (--halb-bin), in the order first seen."""
    return list(dict.fromkeys(r.proxy for r in results if is_halb(r.proxy) and r.proxy != "halb"))


def in_mode(results: list[Result], mode: str) -> list[Result]:
    return [r for r in results if r.mode == mode]


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
    order = [DIRECT, *PROXIES, *variants(results)]
    present = {r.proxy for r in results if r.case == case.id}
    return [p for p in order if p in present]


def _columns(results: list[Result], with_direct: bool) -> list[str]:
    present = {r.proxy for r in results}
    cols = [p for p in (*PROXIES, *variants(results)) if p in present]
    return cols + ([DIRECT] if with_direct and DIRECT in present else [])


def _ratio_columns(results: list[Result]) -> list[str]:
    """halb against each other proxy (and each other halb binary) in the run."""
    present = {r.proxy for r in results}
    return [p for p in ("haproxy", "nginx", *variants(results)) if p in present]


def _table(results: list[Result], cases: list[Case], key_of, with_direct: bool,
           unit: bool = True) -> list[str]:
    cols = _columns(results, with_direct)
    against = _ratio_columns(results)
    head = (["case"] + (["unit"] if unit else []) + [label(p) for p in cols]
            + [f"halb/{label(p)}" for p in against])
    lines = ["| " + " | ".join(head) + " |", "|---|" + ("---|" if unit else "") + "---:|" * (len(head) - 1 - unit)]
    for case in cases:
        key = key_of(case)
        if key is None or not any(r.case == case.id for r in results):
            continue
        med = {p: median(values(results, case, p, key)) for p in cols + against}
        cells = [spread(values(results, case, p, key), key) for p in cols]
        ratios = [ratio(med["halb"], med[p]) for p in against]
        first = [case.id] + ([case.unit + (" (lower is better)" if case.kind == "idle" else "")]
                             if unit else [])
        lines.append("| " + " | ".join(first + cells + ratios) + " |")
    return lines


def summary_table(results: list[Result], cases: list[Case], with_direct: bool = True) -> list[str]:
    return _table(results, cases, headline_key, with_direct)


def cpu_table(results: list[Result], cases: list[Case]) -> list[str]:
    """CPU per request: steadier than throughput when the machine is shared."""
    return _table(results, cases, lambda c: None if c.kind == "idle" else "cpu_us_per_req",
                  with_direct=False, unit=False)


def latency_table(results: list[Result], cases: list[Case]) -> list[str]:
    """p50 / p99 per proxy: at equal CPU a proxy that queues shows it here."""
    cols = _columns(results, with_direct=False)
    against = _ratio_columns(results)
    lines = ["| case | " + " | ".join(f"{label(p)} p50 / p99" for p in cols)
             + "".join(f" | halb/{label(p)} p99" for p in against) + " |",
             "|---|" + "---:|" * (len(cols) + len(against))]
    for case in cases:
        if case.kind == "idle" or not any(r.case == case.id for r in results):
            continue
        cells = []
        for p in cols:
            p50, p99 = (median(values(results, case, p, k)) for k in ("p50_ms", "p99_ms"))
            cells.append(f"{fmt(p50, 2)} / {fmt(p99, 2)}")
        p99 = {p: median(values(results, case, p, "p99_ms")) for p in ["halb", *against]}
        cells += [ratio(p99["halb"], p99[p]) for p in against]
        lines.append(f"| {case.id} | " + " | ".join(cells) + " |")
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
# At equal CPU the proxy core's busy share says little (the quota caps it);
# the share of throttled CFS periods says whether the quota was the limit.
EQUAL_CPU_COLUMNS = [c for c in LOAD_COLUMNS if c[0] != "proxy_core_pct"] + [
    ("throttled_pct", "throttled periods %"),
]
IDLE_COLUMNS = [
    ("rss_start_mib", "RSS at start MiB"),
    ("rss_connected_mib", "RSS connected MiB"),
    ("rss_after_request_mib", "RSS after 1 request each MiB"),
    ("kib_per_conn_after_request", "KiB/conn"),
    ("hwm_mib", "peak RSS MiB"),
]


def detail_table(results: list[Result], case: Case) -> list[str]:
    if case.kind == "idle":
        columns = IDLE_COLUMNS
    elif results and results[0].mode == EQUAL_CPU:
        columns = EQUAL_CPU_COLUMNS
    else:
        columns = LOAD_COLUMNS
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
            f"| {label(proxy)} | " + " | ".join(cells) + f" | {good}/{len(runs)} | {notes} |"
        )
    return lines


def markdown(results: list[Result], cases: list[Case], header: list[str]) -> str:
    out = list(header)
    uncapped, capped = in_mode(results, UNCAPPED), in_mode(results, EQUAL_CPU)
    if uncapped:
        out += ["", "## Summary (median, min–max in brackets)", ""]
        out += summary_table(uncapped, cases)
        out += ["", "## Proxy CPU µs per request (lower is better; below 1× = halb cheaper)", ""]
        out += cpu_table(uncapped, cases)
    if capped:
        cores = capped[0].metrics.get("quota_cores")
        quota = f"{cores:g} core" if cores else "the same quota"
        out += ["", f"## Equal CPU: each proxy capped at {quota} (median, min–max in brackets)", ""]
        out += summary_table(capped, cases, with_direct=False)
        out += ["", "### Equal CPU: p50 / p99 ms (medians)", ""]
        out += latency_table(capped, cases)
        out += ["", "### Equal CPU: proxy CPU µs per request (lower is better)", ""]
        out += cpu_table(capped, cases)
    for subset, heading, suffix in ((uncapped, "Per case", ""), (capped, "Per case at equal CPU", " at equal CPU")):
        if not subset:
            continue
        out += ["", f"## {heading}", ""]
        for case in cases:
            if any(r.case == case.id for r in subset):
                out += [f"### {case.id}{suffix}: {case.title}", ""]
                out += detail_table(subset, case)
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
    panels = []
    for mode, suffix in ((UNCAPPED, ""), (EQUAL_CPU, " at equal CPU")):
        subset = in_mode(results, mode)
        panels += [(case, subset, case.id + suffix) for case in cases
                   if any(r.case == case.id for r in subset)]
    cols = 3
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (case, subset, name) in zip(axes.flat, panels):
        key = headline_key(case)
        names, meds, lo, hi, colors = [], [], [], [], []
        for proxy in proxies_in(subset, case):
            xs = values(subset, case, proxy, key)
            if not xs:
                continue
            m = median(xs)
            names.append(label(proxy))
            meds.append(m)
            lo.append(m - min(xs))
            hi.append(max(xs) - m)
            colors.append(color(proxy))
        ax.bar(names, meds, yerr=[lo, hi], color=colors, capsize=3)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(case.unit + (" (lower better)" if case.kind == "idle" else ""), fontsize=8)
        ax.tick_params(labelsize=8)
        for i, m in enumerate(meds):
            ax.annotate(fmt(m, 1 if m < 100 else 0), (i, m), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
