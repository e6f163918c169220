//! The report files: `gavat simulate --html` and `gavat experiment run|compare --html` write
//! one self-contained HTML file each — its sections and inline charts, nothing fetched, no
//! NaN — the same bytes for the same seed, and nothing at all when the output is refused.

use std::path::Path;

use super::common::{gavat, s, simulate_json, temp_dir};

const EXPERIMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/send_hours.toml");

/// Runs gavat, failing with its stderr.
fn ok(args: &[&str]) -> Result<(), String> {
    let out = gavat(args);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("gavat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// What every report file must be: a whole document with inline charts and styles, no
/// script, no fetched resource, no NaN or infinity; returns its text.
fn self_contained(path: &Path) -> Result<String, String> {
    let html = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let checks = [
        (html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"), "a whole document"),
        (html.contains("<style>"), "the stylesheet inline"),
        (html.contains("<svg class=\"chart\""), "an inline chart"),
        (!html.contains("<script"), "no script"),
        (!html.contains("<link") && !html.contains("src=") && !html.contains("href="), "no fetched resource"),
        (!html.contains("NaN") && !html.contains("inf<") && !html.contains("=\"inf"), "no NaN or infinity"),
        (!html.contains("wall time"), "no wall time"),
    ];
    for (holds, what) in checks {
        if !holds {
            return Err(format!("{}: not {what}", path.display()));
        }
    }
    // A URL may appear in text, never as a reference.
    for scheme in ["http://", "https://"] {
        for (i, _) in html.match_indices(scheme) {
            let before = &html[..i];
            if before.ends_with('"') || before.ends_with('\'') || before.ends_with("url(") {
                return Err(format!("{}: a reference to {}", path.display(), &html[i..(i + 40).min(html.len())]));
            }
        }
    }
    Ok(html)
}

fn contains_all(html: &str, parts: &[&str]) -> Result<(), String> {
    match parts.iter().find(|p| !html.contains(*p)) {
        Some(missing) => Err(format!("the report lacks {missing:?}")),
        None => Ok(()),
    }
}

/// `simulate --html` writes the run's header, the segment table, the daily chart, the
/// suppressions and the response-rate intervals; the same seed gives the same bytes and
/// another seed other bytes.
#[test]
fn simulate_writes_one_self_contained_report() -> Result<(), String> {
    let dir = temp_dir();
    let run = |name: &str, seed: &str| -> Result<String, String> {
        let path = dir.path().join(name);
        ok(&["simulate", "--users", "300", "--days", "7", "--seed", seed, "--html", s(&path)])?;
        self_contained(&path)
    };
    let a = run("a.html", "7")?;
    contains_all(
        &a,
        &[
            "<h1>Simulation: 300 users × 7 days, seed 7</h1>",
            "<h2>Segments</h2>",
            "<td><strong>TOTAL</strong></td>",
            "Sends, responses, conversions and opt-outs per day",
            "Response rate by segment, 95% Wilson intervals",
            "<h2>Suppressed sends</h2>",
            "No send broke a cap",
            "<td>2026-01-07</td>",
        ],
    )?;
    assert_eq!(a.matches("<svg class=\"chart\"").count(), 4, "two daily charts, the intervals, the suppressions");
    let b = run("b.html", "7")?;
    assert!(a == b, "the same seed wrote different reports");
    let c = run("c.html", "8")?;
    assert!(a != c, "another seed wrote the same report");
    Ok(())
}

/// The JSON report's daily series covers every simulated day, adds up to the totals, and is
/// the same for the same seed.
#[test]
fn the_daily_series_adds_up_and_repeats() -> Result<(), String> {
    let args = ["--users", "300", "--days", "7", "--seed", "7"];
    let a = simulate_json(&args);
    let days = a["daily"]["total"].as_array().ok_or("no daily.total")?;
    assert_eq!(days.len(), 7, "{days:?}");
    assert_eq!(days[0]["date"], "2026-01-01");
    for field in ["sent", "responses", "conversions", "opt_outs"] {
        let sum: u64 = days.iter().map(|d| d[field].as_u64().unwrap_or(0)).sum();
        assert_eq!(sum, a["total"][field].as_u64().ok_or("no total")?, "{field} per day does not add up");
    }
    let sent_by_segment: u64 = a["daily"]["segments"]
        .as_array()
        .ok_or("no daily.segments")?
        .iter()
        .flat_map(|seg| seg["days"].as_array().into_iter().flatten())
        .map(|d| d["sent"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sent_by_segment, a["total"]["sent"].as_u64().ok_or("no total")?);
    assert_eq!(a["daily"], simulate_json(&args)["daily"], "the same seed gave another series");
    Ok(())
}

/// `experiment run --html` and `experiment compare --html` write the verdict, the arms'
/// table and charts, the lift and the checks; the same seed and file give the same bytes.
#[test]
fn experiment_run_and_compare_write_reports() -> Result<(), String> {
    let dir = temp_dir();
    let results = dir.path().join("results.csv");
    let run = |name: &str| -> Result<String, String> {
        let path = dir.path().join(name);
        ok(&[
            "experiment",
            "run",
            EXPERIMENT,
            "--users",
            "600",
            "--days",
            "5",
            "--seed",
            "3",
            "--pre-period-days",
            "0",
            "--out",
            s(&results),
            "--html",
            s(&path),
        ])?;
        self_contained(&path)
    };
    let sections = [
        "<h2>Verdict</h2>",
        "<h2>Arms</h2>",
        "<th class=\"num\">mSPRT p</th>",
        "<th class=\"num\">P(beat control)</th>",
        "<h2>Lift over control</h2>",
        "Relative lift, 95% intervals",
        "<h2>Checks</h2>",
        "Sample ratio:",
        "opt_out_rate",
    ];
    let first = run("run-a.html")?;
    contains_all(&first, &sections)?;
    contains_all(&first, &["<h1>Experiment send-hour-test</h1>", "<td>evening</td>"])?;
    assert!(first == run("run-b.html")?, "the same seed wrote different reports");

    let compared = |name: &str| -> Result<String, String> {
        let path = dir.path().join(name);
        ok(&["experiment", "compare", s(&results), "--experiment", EXPERIMENT, "--html", s(&path)])?;
        self_contained(&path)
    };
    let a = compared("compare-a.html")?;
    contains_all(&a, &sections)?;
    contains_all(&a, &["<h1>Experiment comparison</h1>", "users read"])?;
    assert!(a == compared("compare-b.html")?, "one results file gave two reports");
    Ok(())
}

/// An HTML output that is an input, or in a missing directory, is refused before the run
/// (exit 2) and nothing is written.
#[test]
fn a_bad_html_path_is_refused_before_the_run() -> Result<(), String> {
    let dir = temp_dir();
    let missing = dir.path().join("no/such/dir/report.html");
    let out = gavat(&["simulate", "--users", "50", "--days", "1", "--seed", "1", "--html", s(&missing)]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--html"));
    let results = dir.path().join("results.csv");
    let csv = "user,arm,messages,responses,conversions,opted_out,engagement\n1,control,2,1,0,false,100\n2,evening,2,0,0,false,0\n";
    std::fs::write(&results, csv).map_err(|e| e.to_string())?;
    let out = gavat(&["experiment", "compare", s(&results), "--experiment", EXPERIMENT, "--html", EXPERIMENT]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--html"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(EXPERIMENT).map_err(|e| e.to_string())?.contains("[["), "the input is intact");
    assert_eq!(std::fs::read_dir(dir.path()).map_err(|e| e.to_string())?.count(), 1, "nothing but the input");
    Ok(())
}
