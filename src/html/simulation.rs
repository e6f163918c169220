//! A simulation's report as HTML (`gavat simulate --html`): the run's header, the segment
//! table, the outcomes per simulated day, suppressions by reason, each segment's response
//! rate with its 95% Wilson interval, the cap audit and the learner's changes.
//!
//! [`simulation_body`] is the inner markup (the dashboard embeds it); [`simulation_page`]
//! is the whole self-contained document. Wall time is left out, so that one seed gives
//! one file, byte for byte.

use std::fmt::Write as _;

use gavat_experiments::stats::wilson;

use super::charts::{IntervalRow, Series, bars, intervals, time_series};
use super::escape;
use super::fragments::{Cell, count, facts, note, percent, section, table};
use crate::learner::{Action, StrategyChange};
use crate::simulation::{DayRow, SegmentRow, SimulationReport};

/// Significance level of the segments' intervals (95%).
const ALPHA: f64 = 0.05;

/// Learner changes listed in full; the rest are counted.
const CHANGES_LISTED: usize = 50;

/// The whole report file: [`simulation_body`] in the shared document layout.
pub fn simulation_page(report: &SimulationReport) -> String {
    let title = format!("gavat simulate — seed {}, {} users × {} days", report.seed, report.users, report.days);
    super::page::document(&title, &simulation_body(report))
}

/// The report's inner markup: headings, tables and inline SVG charts, no document around.
pub fn simulation_body(report: &SimulationReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<h1>Simulation: {} users × {} days, seed {}</h1>", report.users, report.days, report.seed);
    out.push_str(&header(report));
    out.push_str(&tiles(report));
    out.push_str(&section("Segments", &segment_table(report)));
    out.push_str(&section("Outcomes per simulated day (UTC)", &daily(report)));
    out.push_str(&section("Response rate by segment", &response_rates(report)));
    out.push_str(&section("Suppressed sends", &suppressions(report)));
    out.push_str(&section("Caps and delivery", &caps_and_delivery(report)));
    if !report.strategy_changes.is_empty() || report.learner_effect.is_some() {
        out.push_str(&section("Learner", &learner(report)));
    }
    if let Some(faults) = &report.faults {
        out.push_str(&section("Faults", &format!("<pre>{}</pre>\n", escape(&faults.to_text()))));
    }
    out
}

fn header(report: &SimulationReport) -> String {
    facts(&[
        ("seed", report.seed.to_string()),
        ("users", count(report.users)),
        ("days", report.days.to_string()),
        ("simulated period", format!("{} → {}", report.start, report.end)),
        ("scenario", report.scenario.clone()),
        ("strategies", report.strategy.clone()),
        ("strategy file", report.sources.strategy.to_string()),
        ("scenario file", report.sources.scenario.to_string()),
        ("rules file", report.sources.rules.to_string()),
        ("reproduce", format!("gavat simulate --seed {} --users {} --days {}", report.seed, report.users, report.days)),
    ])
}

fn tiles(report: &SimulationReport) -> String {
    let t = &report.total;
    let tiles = [
        ("sent", count(t.sent)),
        ("responses", format!("{} ({})", count(t.responses), percent(t.response_rate, 2))),
        ("conversions", format!("{} ({})", count(t.conversions), percent(t.conversion_rate, 2))),
        ("opt-outs", format!("{} ({})", count(t.opt_outs), percent(t.opt_out_rate, 3))),
        ("cap violations", count(report.cap_violations)),
    ];
    let mut out = String::from("<div class=\"tiles\">\n");
    for (label, value) in tiles {
        let _ = writeln!(
            out,
            "<div class=\"tile\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>",
            escape(label),
            escape(&value)
        );
    }
    out.push_str("</div>\n");
    out
}

fn segment_row(r: &SegmentRow) -> Vec<Cell> {
    vec![
        Cell::text(&r.segment),
        Cell::num(count(r.users)),
        Cell::num(count(r.sent)),
        Cell::num(count(r.responses)),
        Cell::num(percent(r.response_rate, 2)),
        Cell::num(count(r.conversions)),
        Cell::num(percent(r.conversion_rate, 2)),
        Cell::num(count(r.opt_outs)),
        Cell::num(percent(r.opt_out_rate, 3)),
        Cell::num(format!("{:.1}", r.engagement)),
        Cell::num(count(r.sent_via_group)),
    ]
}

fn segment_table(report: &SimulationReport) -> String {
    let headers = [
        ("segment", false),
        ("users", true),
        ("sent", true),
        ("responses", true),
        ("resp %", true),
        ("conversions", true),
        ("conv %", true),
        ("opt-outs", true),
        ("opt-out %", true),
        ("engagement", true),
        ("via group", true),
    ];
    let rows: Vec<Vec<Cell>> = report.segments.iter().chain(std::iter::once(&report.total)).map(segment_row).collect();
    let mut out = table(&headers, &rows);
    out.push_str(&note(
        "users: governed by the segment at the end; sent: messages under its strategy, of which \"via group\" \
         reached the user through a group post; engagement: 100 × (responses + 2·conversions − 5·opt-outs) / sent.",
    ));
    out
}

/// A chart series of one count of the days.
fn series(name: &str, days: &[DayRow], pick: fn(&DayRow) -> u64) -> Series {
    Series { name: name.to_string(), points: days.iter().map(|d| (d.start, pick(d) as f64)).collect() }
}

fn daily(report: &SimulationReport) -> String {
    let days = &report.daily.total;
    let all = [
        series("sent", days, |d| d.sent),
        series("responses", days, |d| d.responses),
        series("conversions", days, |d| d.conversions),
        series("opt-outs", days, |d| d.opt_outs),
    ];
    let mut out = String::from("<div class=\"grid2\">\n");
    out.push_str(&time_series("Sends, responses, conversions and opt-outs per day", "per day", &all));
    out.push_str(&time_series("Reactions per day", "per day", &all[1..]));
    out.push_str("</div>\n");
    out.push_str(&note(
        "Each outcome counts on the UTC day it happened (a reply on the day of the reply); the first and last \
         days are partial when the run does not start at midnight.",
    ));
    let rows: Vec<Vec<Cell>> = days
        .iter()
        .map(|d| {
            vec![
                Cell::text(&d.date),
                Cell::num(count(d.sent)),
                Cell::num(count(d.responses)),
                Cell::num(count(d.conversions)),
                Cell::num(count(d.opt_outs)),
                Cell::num(count(d.suppressed)),
                Cell::num(count(d.failed)),
            ]
        })
        .collect();
    let headers = [
        ("day (UTC)", false),
        ("sent", true),
        ("responses", true),
        ("conversions", true),
        ("opt-outs", true),
        ("suppressed", true),
        ("failed", true),
    ];
    let _ = write!(out, "<details>\n<summary>The days as a table</summary>\n{}</details>\n", table(&headers, &rows));
    out
}

fn response_rates(report: &SimulationReport) -> String {
    let mut rows = Vec::new();
    let mut unsent = Vec::new();
    for r in &report.segments {
        if r.sent == 0 {
            unsent.push(r.segment.clone());
            continue;
        }
        let n = Some(format!("{} responses / {} sent", count(r.responses), count(r.sent)));
        rows.push(match wilson(r.responses, r.sent, ALPHA) {
            Ok(i) => IntervalRow {
                label: r.segment.clone(),
                estimate: 100.0 * i.estimate,
                low: 100.0 * i.low,
                high: 100.0 * i.high,
                note: n,
            },
            // More replies than messages: no binomial interval; the rate alone is drawn.
            Err(_) => IntervalRow {
                label: r.segment.clone(),
                estimate: 100.0 * r.response_rate,
                low: f64::NAN,
                high: f64::NAN,
                note: n,
            },
        });
    }
    let total = (report.total.sent > 0).then_some(100.0 * report.total.response_rate);
    let mut out = intervals("Response rate by segment, 95% Wilson intervals", &rows, total, "%");
    out.push_str(&note(
        "The dashed line is the rate over all segments. Replies count for the segment that governed the send.",
    ));
    if !unsent.is_empty() {
        out.push_str(&note(&format!("No message sent, so no rate: {}.", unsent.join(", "))));
    }
    out
}

fn suppressions(report: &SimulationReport) -> String {
    let held: Vec<(String, f64)> = report.total.suppressed.iter().map(|(k, v)| (k.to_string(), *v as f64)).collect();
    if held.is_empty() {
        return note("No send was held back by a rule.");
    }
    let mut out = bars("Sends held back, by reason", &held, "sends");
    let by_segment: Vec<Vec<Cell>> = report
        .segments
        .iter()
        .filter(|r| !r.suppressed.is_empty())
        .map(|r| {
            let reasons: Vec<String> = r.suppressed.iter().map(|(k, v)| format!("{k} {}", count(*v))).collect();
            vec![Cell::text(&r.segment), Cell::text(reasons.join(", "))]
        })
        .collect();
    out.push_str(&table(&[("segment", false), ("held back", false)], &by_segment));
    out
}

fn caps_and_delivery(report: &SimulationReport) -> String {
    let failed: Vec<String> =
        report.total.failed.iter().map(|(k, v)| format!("{} {}", k.as_str(), count(*v))).collect();
    let held: Vec<String> = report.group_posts_held.iter().map(|(k, v)| format!("{k} {}", count(*v))).collect();
    let none = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    let verdict = if report.cap_violations == 0 {
        "<p class=\"verdict good\">No send broke a cap (the independent audit found 0 violations).</p>\n".to_string()
    } else {
        format!(
            "<p class=\"verdict bad\">{} sends broke a cap (must be 0).</p>\n",
            escape(&count(report.cap_violations))
        )
    };
    let mut out = verdict;
    for example in &report.cap_violation_examples {
        let _ = writeln!(out, "<pre>{}</pre>", escape(example));
    }
    let t = &report.telegram;
    out.push_str(&facts(&[
        ("cap violations", count(report.cap_violations)),
        ("users opted out", count(report.opted_out_users)),
        ("transport failures", none(failed)),
        ("group posts", format!("{} sent, held back: {}", count(report.group_posts), none(held))),
        (
            "group exposure",
            format!(
                "at most {} group posts seen by one member in a local day (limit {})",
                report.max_group_posts_seen_per_day, report.member_exposure_limit
            ),
        ),
        (
            "telegram limits",
            format!(
                "busiest bot second {} messages; {} bot-seconds at the limit; platform 429s {}",
                t.busiest_bot_second, t.bot_seconds_at_limit, t.platform_429
            ),
        ),
    ]));
    out
}

fn change_row(c: &StrategyChange) -> Vec<Cell> {
    vec![
        Cell::num(c.id.to_string()),
        Cell::text(c.at.to_rfc3339()),
        Cell::text(c.segment.as_str()),
        Cell::text(c.action.as_str()),
        Cell::text(c.field),
        Cell::text(format!("{} → {}", c.before, c.after)),
        Cell::text(&c.evidence),
    ]
}

fn learner(report: &SimulationReport) -> String {
    let changes = &report.strategy_changes;
    let count_of = |a: Action| changes.iter().filter(|c| c.action == a).count();
    let mut out = format!(
        "<p>{} changes applied, {} kept after review, {} rolled back, {} proposals rejected.</p>\n",
        count_of(Action::Applied),
        count_of(Action::Kept),
        count_of(Action::RolledBack),
        count_of(Action::Rejected)
    );
    let effective: Vec<&StrategyChange> = changes.iter().filter(|c| c.action != Action::Rejected).collect();
    if !effective.is_empty() {
        let rows: Vec<Vec<Cell>> = effective.iter().take(CHANGES_LISTED).map(|c| change_row(c)).collect();
        out.push_str(&table(
            &[
                ("#", true),
                ("at", false),
                ("segment", false),
                ("action", false),
                ("field", false),
                ("change", false),
                ("evidence", false),
            ],
            &rows,
        ));
        if effective.len() > CHANGES_LISTED {
            out.push_str(&note(&format!(
                "… {} more changes (gavat simulate --json lists every one).",
                effective.len() - CHANGES_LISTED
            )));
        }
    }
    if let Some(effect) = &report.learner_effect {
        let _ = writeln!(out, "<pre>{}</pre>", escape(&effect.to_text()));
    }
    out
}
