//! `report.html`: one page with everything inline (SVG plots, styles, no
//! script, no font or image from anywhere), so it opens offline and can be
//! attached to a ticket as it is.

use std::fmt::Write;

use super::report::{Point, Report};

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 960.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 28.0;

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    value: fn(&Point) -> Option<f64>,
}

/// A line chart over the drill's time with step and detection markers.
fn chart(
    report: &Report,
    title: &str,
    unit: &str,
    y_max: f64,
    threshold: Option<(f64, &str)>,
    series: &[Series],
) -> String {
    let x = |t: f64| {
        LEFT + (W - LEFT - RIGHT) * (t / report.drill.duration_s.max(0.001)).clamp(0.0, 1.0)
    };
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    // Axes and grid.
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            trim(v),
            y = y(v)
        );
    }
    let step_s = nice_step(report.drill.duration_s);
    let mut t = 0.0;
    while t <= report.drill.duration_s + 1e-9 {
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
            x(t),
            H - 8.0,
            trim(t)
        );
        t += step_s;
    }
    if let Some((v, label)) = threshold.filter(|(v, _)| *v <= y_max) {
        let _ = write!(
            s,
            "<line class=\"slo\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"slolabel\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            W - RIGHT - 4.0,
            y(v) - 4.0,
            esc(label),
            y = y(v)
        );
    }
    // Steps: dashed lines, numbered.
    for (i, step) in report.steps.iter().enumerate() {
        let _ = write!(
            s,
            "<line class=\"step\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{}\"><title>step {} at {:.2}s: {} {}</title></line><text class=\"steplabel\" x=\"{:.1}\" y=\"{}\">{}</text>",
            H - BOTTOM,
            i + 1,
            step.ran_at_s,
            step.kind,
            esc(&step.did),
            x(step.ran_at_s) + 3.0,
            TOP - 5.0,
            i + 1,
            x = x(step.ran_at_s)
        );
    }
    // State changes: triangles on the top edge.
    for d in &report.detections {
        if d.at_s < 0.0 {
            continue;
        }
        let cx = x(d.at_s);
        let _ = write!(
            s,
            "<path class=\"detection\" d=\"M{:.1} {TOP} l5 -8 l-10 0 z\"><title>{:.2}s {}: {} {} → {}</title></path>",
            cx,
            d.at_s,
            esc(&d.node),
            esc(&d.what),
            esc(&d.from),
            esc(&d.to)
        );
    }
    for series in series {
        let mut path = String::new();
        let mut pen_down = false;
        for p in &report.timeline {
            match (series.value)(p) {
                Some(v) => {
                    let cmd = if pen_down { 'L' } else { 'M' };
                    let _ = write!(path, "{cmd}{:.1} {:.1} ", x(p.t_s + 0.05), y(v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            s,
            "<path fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\" d=\"{}\"><title>{}</title></path>",
            series.color,
            path.trim_end(),
            esc(series.label)
        );
    }
    s.push_str("</svg><div class=\"legend\">");
    for series in series {
        let _ = write!(
            s,
            "<span><i style=\"background:{}\"></i>{}</span>",
            series.color,
            esc(series.label)
        );
    }
    s.push_str("<span><i class=\"stepkey\"></i>step</span><span><i class=\"detkey\"></i>state change</span></div></figure>");
    s
}

fn trim(v: f64) -> String {
    let t = format!("{v:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn nice_step(duration_s: f64) -> f64 {
    let raw = duration_s / 10.0;
    [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ]
    .into_iter()
    .find(|s| *s >= raw)
    .unwrap_or(600.0)
}

/// A ceiling for the latency axis: the largest p99 point, rounded up (the
/// SLO's line is drawn only when it falls inside).
fn latency_ceiling(report: &Report) -> f64 {
    let top = report
        .timeline
        .iter()
        .filter_map(|p| p.p99_ms)
        .fold(0.0, f64::max)
        * 1.1;
    let mut decade = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if decade * m >= top {
                return decade * m;
            }
        }
        decade *= 10.0;
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1000px;color:#1d2433;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:600;color:#fff}
.met{background:#1f8a4c}.missed{background:#c0392b}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
td,th{border-bottom:1px solid #e3e6ee;padding:4px 8px;text-align:left;vertical-align:top}
th{font-weight:600;background:#f5f7fb}
.kpi{display:grid;grid-template-columns:repeat(4,1fr);gap:8px;margin:14px 0}
.kpi div{background:#f5f7fb;border-radius:6px;padding:8px 10px}.kpi b{display:block;font-size:20px}
figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}
svg{width:100%;height:auto;background:#fbfcfe;border:1px solid #e3e6ee;border-radius:4px}
.grid{stroke:#e3e6ee}.tick{font-size:11px;fill:#5b6478}
.step{stroke:#7b3fe4;stroke-dasharray:4 3;stroke-width:1.2}.steplabel{font-size:11px;fill:#7b3fe4}
.detection{fill:#e67e22}.slo{stroke:#c0392b;stroke-dasharray:2 4;stroke-width:1}.slolabel{font-size:11px;fill:#c0392b}
.legend span{margin-right:16px;font-size:12px}.legend i{display:inline-block;width:14px;height:4px;margin-right:5px;vertical-align:middle}
.stepkey{border-top:2px dashed #7b3fe4;height:0!important}.detkey{background:#e67e22;height:8px!important;width:8px!important}
code{font:12px ui-monospace,monospace;background:#f5f7fb;padding:1px 4px;border-radius:3px;word-break:break-all}
.bad{color:#c0392b}";

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let verdict = if report.slo_met {
        "<span class=\"verdict met\">SLO met</span>".to_owned()
    } else {
        format!(
            "<span class=\"verdict missed\">SLO missed</span> {}",
            esc(&report.slo_missed.join("; "))
        )
    };
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"><title>halb drill: {name}</title><meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head><body>\
<h1>Drill <code>{name}</code></h1><div>{verdict}</div>\
<p>{scenario}: {rate} requests/s for {dur}s over {conc} connections (open loop; latency from each request's due time); SLO: {slo_s} answered 2xx/3xx and p99 ≤ {slo_p} ms; seed {seed}.</p>\
<div class=\"kpi\"><div>requests<b>{req}</b></div><div>failed<b class=\"{fclass}\">{failed}</b></div><div>success ratio<b>{ratio:.4}</b></div><div>longest stretch below SLO<b>{rto:.1} s</b></div>\
<div>p50<b>{p50:.1} ms</b></div><div>p99<b>{p99:.1} ms</b></div><div>max<b>{max:.1} ms</b></div><div>state changes<b>{dets}</b></div></div>",
        name = esc(&report.drill.name),
        scenario = esc(&report.drill.scenario),
        rate = report.drill.rate,
        dur = trim(report.drill.duration_s),
        conc = report.drill.concurrency,
        slo_s = report.drill.slo.success,
        slo_p = trim(report.drill.slo.p99_ms),
        seed = report.drill.seed,
        req = report.requests,
        failed = report.failed,
        fclass = if report.failed > 0 { "bad" } else { "" },
        ratio = report.success_ratio,
        rto = report.rto_s,
        p50 = report.p50_ms,
        p99 = report.p99_ms,
        max = report.max_ms,
        dets = report.detections.len(),
    );
    s.push_str(&chart(
        report,
        "Success ratio per 100 ms",
        "",
        1.0,
        None,
        &[Series {
            label: "share answered 2xx/3xx",
            color: "#1f6feb",
            value: |p| p.success_ratio,
        }],
    ));
    s.push_str(&chart(
        report,
        "Latency per 100 ms",
        " ms",
        latency_ceiling(report),
        Some((report.drill.slo.p99_ms, "SLO p99")),
        &[
            Series {
                label: "p50",
                color: "#1f8a4c",
                value: |p| p.p50_ms,
            },
            Series {
                label: "p99",
                color: "#c0392b",
                value: |p| p.p99_ms,
            },
        ],
    ));
    if !report.failures.is_empty() {
        s.push_str("<h2>Failed requests</h2><table><tr><th>answer</th><th>requests</th></tr>");
        for (what, n) in &report.failures {
            let _ = write!(s, "<tr><td>{}</td><td>{n}</td></tr>", esc(what));
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Steps</h2><table><tr><th>#</th><th>at</th><th>ran</th><th>kind</th><th>did</th><th>result</th></tr>");
    for (i, step) in report.steps.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.2}s</td><td>{:.3}s</td><td>{}</td><td><code>{}</code>{}</td><td class=\"{}\">{}</td></tr>",
            i + 1,
            step.at_s,
            step.ran_at_s,
            step.kind,
            esc(&step.did),
            step.random
                .as_ref()
                .map(|r| format!(" (random: {})", esc(r)))
                .unwrap_or_default(),
            if step.ok { "" } else { "bad" },
            esc(&step.result)
        );
    }
    s.push_str("</table><h2>State changes seen on the nodes</h2><table><tr><th>at</th><th>after step</th><th>node</th><th>what</th><th>from</th><th>to</th></tr>");
    for d in &report.detections {
        let after = match (d.step, d.after_step_s) {
            (Some(i), Some(a)) => format!("{a:.3}s after {}", i + 1),
            _ => "-".to_owned(),
        };
        let _ = write!(
            s,
            "<tr><td>{:.3}s</td><td>{after}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.at_s,
            esc(&d.node),
            esc(&d.what),
            esc(&d.from),
            esc(&d.to)
        );
    }
    s.push_str("</table></body></html>\n");
    s
}
