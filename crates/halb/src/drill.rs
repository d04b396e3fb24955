//! `halb drill --scenario FILE [--report DIR] [--dry-run]`: reads and checks
//! the scenario, prints the plan or runs it, and writes the report.
//! Exit 0: SLO met and every step done; 1: SLO missed or a step failed;
//! 2: the drill could not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use halb_chaos::drill;

/// `YYYYmmddTHHMMSSZ` for a Unix time, for report directory names.
fn utc_stamp(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn fail(message: String) -> ExitCode {
    eprintln!("halb drill: {message}");
    ExitCode::from(2)
}

/// Runs `halb drill`.
pub fn drill(scenario: &Path, report_dir: Option<PathBuf>, dry_run: bool) -> ExitCode {
    let text = match std::fs::read_to_string(scenario) {
        Ok(text) => text,
        Err(e) => return fail(format!("{}: {e}", scenario.display())),
    };
    let parsed = match halb_chaos::scenario::parse(&text) {
        Ok(parsed) => parsed,
        Err(e) => return fail(format!("{}: {e}", scenario.display())),
    };
    let plan = drill::plan(parsed);
    if dry_run {
        print!("{}", drill::describe(&plan));
        println!("dry run: nothing was run");
        return ExitCode::SUCCESS;
    }
    let dir = report_dir.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("drill-reports").join(format!("{}-{}", plan.scenario.name, utc_stamp(now)))
    });
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return fail(format!("report directory {}: {e}", dir.display()));
    }
    eprint!("{}", drill::describe(&plan));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let report = runtime.block_on(drill::run(plan, &scenario.display().to_string(), true));
    let json = match serde_json::to_string_pretty(&report) {
        Ok(json) => json,
        Err(e) => return fail(format!("cannot encode the report: {e}")),
    };
    for (name, contents) in [
        ("report.json", json + "\n"),
        ("report.html", drill::html::render(&report)),
    ] {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, contents) {
            return fail(format!("{}: {e}", path.display()));
        }
    }
    println!(
        "{}: {} requests, {} failed ({:.4} answered), p50 {:.1} ms, p99 {:.1} ms, longest stretch below the SLO {:.1} s, {} state changes",
        report.drill.name,
        report.requests,
        report.failed,
        report.success_ratio,
        report.p50_ms,
        report.p99_ms,
        report.rto_s,
        report.detections.len()
    );
    for step in report.steps.iter().filter(|s| !s.ok) {
        println!(
            "step at {:.2}s did not succeed: {} {}: {}",
            step.at_s, step.kind, step.did, step.result
        );
    }
    println!("report: {}", dir.join("report.html").display());
    if report.slo_met {
        println!("SLO met");
    } else {
        println!("SLO missed: {}", report.slo_missed.join("; "));
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(super::utc_stamp(0), "19700101T000000Z");
        assert_eq!(super::utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(super::utc_stamp(1_796_638_245), "20261207T101045Z");
    }
}
