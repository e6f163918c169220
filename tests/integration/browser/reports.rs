//! The HTML report files in the browser: `gavat simulate --html` and `gavat experiment
//! compare --html` write one file each that opens from disk with its charts drawn and
//! fetches nothing.

use std::path::Path;

use super::{Browser, Error, TestResult, charts_drawn};
use crate::common::{gavat, s, temp_dir};

/// Runs `gavat args`, failing with its stderr when it fails.
fn run(args: &[&str]) -> Result<(), Error> {
    let out = gavat(args);
    if !out.status.success() {
        return Err(format!("gavat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// Opens the report `file` and checks it is a page with a title, its charts drawn (at
/// least one) and nothing fetched from anywhere; saves screenshot `name`.
fn open_report(browser: &Browser, file: &Path, name: &str) -> Result<usize, Error> {
    browser.goto(&format!("file://{}", file.display()))?;
    let title = browser.execute("return document.title;", vec![])?;
    assert!(title.as_str().is_some_and(|t| !t.trim().is_empty()), "{name}: the report has a title: {title}");
    let charts = charts_drawn(browser, 1).map_err(|e| format!("{name}: {e}"))?;
    // Self-contained: no resource was loaded (stylesheet and charts are inline) and no
    // element points at another host.
    let fetched = browser.execute(
        "return performance.getEntriesByType('resource').map(e => e.name)\
           .concat([...document.querySelectorAll('[src], link[href]')]\
             .map(e => e.getAttribute('src') || e.getAttribute('href')));",
        vec![],
    )?;
    assert_eq!(fetched, serde_json::json!([]), "{name}: a report file loads nothing");
    browser.screenshot(name)?;
    Ok(charts)
}

/// `simulate --html` and `experiment compare --html` (on a results file `experiment run`
/// wrote) open in Chromium from disk, each with a title and its SVG charts drawn — nonzero
/// size, shapes inside — and nothing fetched; screenshots `report-simulate` and
/// `report-experiment`.
#[test]
fn html_reports_open_with_their_charts_drawn() -> TestResult {
    let dir = temp_dir();
    let simulation = dir.path().join("simulation.html");
    run(&["simulate", "--users", "300", "--days", "7", "--seed", "7", "--html", s(&simulation)])?;
    let results = dir.path().join("results.csv");
    let design = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/cooldown.toml");
    run(&["experiment", "run", design, "--users", "400", "--days", "7", "--seed", "4", "--out", s(&results)])?;
    let comparison = dir.path().join("experiment.html");
    run(&["experiment", "compare", s(&results), "--experiment", design, "--html", s(&comparison)])?;

    let browser = Browser::start()?;
    open_report(&browser, &simulation, "report-simulate")?;
    open_report(&browser, &comparison, "report-experiment")?;
    Ok(())
}
