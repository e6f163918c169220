//! An experiment's comparison as HTML (`gavat experiment run|compare --html`): the verdict
//! in plain words, the arms' table (users, rate and interval, difference and lift with
//! intervals, raw and adjusted p, the always-valid mSPRT p, P(beat control), expected loss),
//! the charts of each arm's rate and of each treatment's lift, the sample-ratio check, the
//! guardrails, and the full text report.
//!
//! [`experiment_body`] is the comparison's inner markup (the dashboard embeds it);
//! [`run_page`] and [`compare_page`] are the whole self-contained documents of the two
//! commands. Wall time is left out: the same input gives the same file.

use std::fmt::Write as _;

use gavat_experiments::compare::{
    ArmComparison, Figure, GuardrailState, Report, confidence, lift_is_meaningful, p_text,
};
use gavat_experiments::design::Metric;
use gavat_experiments::stats::Interval;

use super::charts::{IntervalRow, intervals};
use super::escape;
use super::fragments::{Cell, count, facts, note, section, table};
use crate::experiment::ExperimentOutcome;

/// The document of `gavat experiment run --html`: the run's header (experiment, users,
/// days, seed), the comparison, the paired design's intervals and the learner's summary.
pub fn run_page(outcome: &ExperimentOutcome) -> String {
    let title = format!("gavat experiment {} — seed {}", outcome.experiment, outcome.seed);
    let mut body = format!("<h1>Experiment {}</h1>\n", escape(&outcome.experiment));
    body.push_str(&facts(&[
        ("experiment", outcome.experiment.clone()),
        ("users", count(outcome.users as u64)),
        ("days", outcome.days.to_string()),
        ("seed", outcome.seed.to_string()),
        ("primary metric", outcome.report.metric.as_str().to_string()),
        ("alpha", outcome.report.alpha.to_string()),
        ("control", outcome.report.control.clone()),
    ]));
    body.push_str(&experiment_body(&outcome.report));
    if let Some(paired) = &outcome.paired {
        let rows: Vec<Vec<Cell>> = paired
            .iter()
            .map(|p| {
                vec![
                    Cell::text(&p.arm),
                    Cell::num(interval_text(&p.split, 4)),
                    Cell::num(interval_text(&p.paired, 4)),
                    Cell::num(format!("{:.1}×", p.width_ratio)),
                ]
            })
            .collect();
        let mut html = table(
            &[("arm", false), ("split design", true), ("paired design", true), ("interval narrower", true)],
            &rows,
        );
        html.push_str(&note(
            "Paired: every user replayed under every arm with the same random streams (common random numbers).",
        ));
        body.push_str(&section("Paired design against the split design", &html));
    }
    if !outcome.learning.is_empty() {
        let rows: Vec<Vec<Cell>> = outcome
            .learning
            .iter()
            .map(|l| {
                vec![
                    Cell::text(&l.arm),
                    Cell::num(l.applied.to_string()),
                    Cell::num(l.kept.to_string()),
                    Cell::num(l.rolled_back.to_string()),
                    Cell::num(l.rejected.to_string()),
                ]
            })
            .collect();
        body.push_str(&section(
            "Learner",
            &table(
                &[("arm", false), ("applied", true), ("kept", true), ("rolled back", true), ("rejected", true)],
                &rows,
            ),
        ));
    }
    super::page::document(&title, &body)
}

/// The document of `gavat experiment compare --html`: which results file was compared
/// (as named on the command line) and how many users it held, then the comparison.
pub fn compare_page(results: &str, users: u64, report: &Report) -> String {
    let title = format!("gavat experiment compare — {results}");
    let mut body = String::from("<h1>Experiment comparison</h1>\n");
    body.push_str(&facts(&[
        ("results file", results.to_string()),
        ("users read", count(users)),
        ("primary metric", report.metric.as_str().to_string()),
        ("alpha", report.alpha.to_string()),
        ("control", report.control.clone()),
    ]));
    body.push_str(&experiment_body(report));
    super::page::document(&title, &body)
}

/// The comparison's inner markup: verdict, arms, charts, checks and the full text.
pub fn experiment_body(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&section("Verdict", &verdict(report)));
    out.push_str(&section("Arms", &arms(report)));
    out.push_str(&section("Lift over control", &lifts(report)));
    out.push_str(&section("Checks", &checks(report)));
    let _ = write!(
        out,
        "<details>\n<summary>The full comparison as text (confidence sequences, CUPED, the Bayesian model)</summary>\n\
         <pre>{}</pre>\n</details>\n",
        escape(&report.to_text())
    );
    out
}

/// Whether the metric is a share of users (shown in percent, differences in points).
fn is_share(metric: Metric) -> bool {
    matches!(metric, Metric::ResponseRate | Metric::ConversionRate | Metric::OptOutRate)
}

/// The factor and unit a value of the metric is shown in.
fn display_unit(metric: Metric) -> (f64, &'static str) {
    if is_share(metric) { (100.0, "%") } else { (1.0, "") }
}

fn interval_text(i: &Interval, decimals: usize) -> String {
    format!("{:.decimals$} [{:.decimals$}, {:.decimals$}]", i.estimate, i.low, i.high)
}

fn rate_text(metric: Metric, e: &Interval) -> String {
    if is_share(metric) {
        format!("{:.2}% [{:.2}, {:.2}]", 100.0 * e.estimate, 100.0 * e.low, 100.0 * e.high)
    } else {
        interval_text(e, 4)
    }
}

fn difference_text(metric: Metric, d: &Interval) -> String {
    if is_share(metric) {
        format!("{:+.2} pt [{:+.2}, {:+.2}]", 100.0 * d.estimate, 100.0 * d.low, 100.0 * d.high)
    } else {
        format!("{:+.4} [{:+.4}, {:+.4}]", d.estimate, d.low, d.high)
    }
}

fn lift_text(lift: &Figure<Interval>) -> String {
    match lift {
        Figure::Value(l) => format!("{:+.1}% [{:+.1}, {:+.1}]", 100.0 * l.estimate, 100.0 * l.low, 100.0 * l.high),
        Figure::Undefined { undefined } => format!("undefined ({undefined})"),
    }
}

fn p_figure(p: &Figure<f64>, alpha: f64) -> String {
    match p {
        Figure::Value(p) => p_text(*p, alpha),
        Figure::Undefined { undefined } => format!("undefined ({undefined})"),
    }
}

fn verdict(report: &Report) -> String {
    let mut out = String::new();
    for line in &report.verdict {
        let class = if line.starts_with("WARNING") || line.contains("GUARDRAIL BREACHED") {
            "verdict bad"
        } else if line.contains("not yet ruled out") {
            "verdict warn"
        } else {
            "verdict"
        };
        let _ = writeln!(out, "<p class=\"{class}\">{}</p>", escape(line));
    }
    out.push_str(&note(&format!("Family: {}", report.family.statement)));
    out
}

/// The comparison of `arm` with control, if it has one.
fn comparison_of<'a>(report: &'a Report, arm: &str) -> Option<&'a ArmComparison> {
    report.comparisons.iter().find(|c| c.arm == arm)
}

fn arms(report: &Report) -> String {
    let (metric, alpha) = (report.metric, report.alpha);
    let conf = confidence(alpha);
    let dash = || Cell::num("—");
    let rows: Vec<Vec<Cell>> = report
        .arms
        .iter()
        .map(|line| {
            let estimate = match &line.estimate {
                Figure::Value(e) => rate_text(metric, e),
                Figure::Undefined { undefined } => format!("undefined ({undefined})"),
            };
            let mut row = vec![Cell::text(&line.arm), Cell::num(count(line.users)), Cell::num(estimate)];
            match comparison_of(report, &line.arm) {
                Some(c) => row.extend([
                    Cell::num(difference_text(metric, &c.difference)),
                    Cell::num(lift_text(&c.lift)),
                    Cell::num(p_figure(&c.p_value, alpha)),
                    Cell::num(p_figure(&c.p_adjusted, alpha)),
                    Cell::num(p_figure(&c.p_always_valid, alpha)),
                    Cell::num(format!("{:.1}%", 100.0 * c.prob_beat_reference)),
                    Cell::num(format!("{:.3e}", c.expected_loss)),
                ]),
                None => {
                    let role = if line.arm == report.control {
                        "control"
                    } else if line.arm == gavat_experiments::design::HOLDOUT {
                        "reference of the holdout rows"
                    } else {
                        "not compared"
                    };
                    row.push(Cell::num(role));
                    row.extend(std::iter::repeat_with(dash).take(6));
                }
            }
            row
        })
        .collect();
    let what = metric.as_str().replace('_', " ");
    let estimate_header = format!("{what} [{conf}% CI]");
    let mut out = table(
        &[
            ("arm", false),
            ("users", true),
            (estimate_header.as_str(), true),
            ("difference", true),
            ("lift", true),
            ("p", true),
            ("adjusted p", true),
            ("mSPRT p", true),
            ("P(beat control)", true),
            ("expected loss", true),
        ],
        &rows,
    );
    out.push_str(&note(&format!(
        "Difference and lift against {} with {conf}% intervals; adjusted p over the family ({}); mSPRT p: \
         always valid, may be watched at every look; P(beat control): a posterior probability, not a p-value; \
         expected loss in {}.",
        report.control,
        report.family.adjustment.as_str(),
        report.expected_loss_unit
    )));
    let (factor, unit) = display_unit(metric);
    let rows: Vec<IntervalRow> = report
        .arms
        .iter()
        .map(|line| {
            let e = line.estimate.value();
            IntervalRow {
                label: line.arm.clone(),
                estimate: e.map_or(f64::NAN, |e| factor * e.estimate),
                low: e.map_or(f64::NAN, |e| factor * e.low),
                high: e.map_or(f64::NAN, |e| factor * e.high),
                note: Some(format!("{} users", count(line.users))),
            }
        })
        .collect();
    let control = report.arms.iter().find(|a| a.arm == report.control).and_then(|a| a.estimate.value());
    out.push_str(&intervals(
        &format!("{what} by arm, {conf}% intervals"),
        &rows,
        control.map(|c| factor * c.estimate),
        unit,
    ));
    out
}

fn lifts(report: &Report) -> String {
    let conf = confidence(report.alpha);
    let all: Vec<&ArmComparison> = report.comparisons.iter().chain(&report.holdout).collect();
    if all.is_empty() {
        return note("No treatment with users to compare with control.");
    }
    let row = |c: &ArmComparison, i: Option<Interval>, factor: f64| IntervalRow {
        label: format!("{} vs {}", c.arm, c.reference),
        estimate: i.map_or(f64::NAN, |i| factor * i.estimate),
        low: i.map_or(f64::NAN, |i| factor * i.low),
        high: i.map_or(f64::NAN, |i| factor * i.high),
        note: Some(format!("p = {}", p_figure(&c.p_value, report.alpha))),
    };
    if lift_is_meaningful(report.metric) {
        let rows: Vec<IntervalRow> = all.iter().map(|c| row(c, c.lift.value(), 100.0)).collect();
        let mut out = intervals(&format!("Relative lift, {conf}% intervals (Fieller)"), &rows, Some(0.0), "%");
        out.push_str(&note(
            "Arm ÷ reference − 1. An interval that does not cross 0 is a significant lift before adjustment; \
             the holdout rows (if any) are the incremental effect of messaging at all, outside the family.",
        ));
        out
    } else {
        let rows: Vec<IntervalRow> = all.iter().map(|c| row(c, Some(c.difference), 1.0)).collect();
        let mut out = intervals(&format!("Difference from the reference, {conf}% intervals"), &rows, Some(0.0), "");
        out.push_str(&note(&format!(
            "{} is reported as an absolute difference only: a relative lift has no meaning for it.",
            report.metric.as_str()
        )));
        out
    }
}

fn guardrail_state(state: GuardrailState) -> (&'static str, &'static str) {
    match state {
        GuardrailState::Held => ("held", "good"),
        GuardrailState::NotRuledOut => ("not ruled out", "warn"),
        GuardrailState::Breached => ("BREACHED", "bad"),
    }
}

fn checks(report: &Report) -> String {
    let srm = &report.srm;
    let weights = format!("the weights of {}", srm.weights.describe());
    let (state, class) = if srm.mismatch { ("MISMATCH: do not trust this comparison", "bad") } else { ("ok", "good") };
    let mut out = format!(
        "<p>Sample ratio: <strong class=\"{class}\">{}</strong> — chi-square {:.3}, df {}, p = {} against {}.</p>\n",
        escape(state),
        srm.check.statistic,
        srm.check.df,
        escape(&p_text(srm.check.p_value, gavat_experiments::compare::SRM_THRESHOLD)),
        escape(&weights)
    );
    if !srm.missing_arms.is_empty() {
        out.push_str(&note(&format!("Arms with a weight but no user: {}.", srm.missing_arms.join(", "))));
    }
    if let Some(n) = &srm.note {
        out.push_str(&note(n));
    }
    if let Some(o) = &report.omnibus {
        out.push_str(&note(&format!(
            "All arms equal (control and treatments)? chi-square {:.3}, df {}, p = {}.",
            o.statistic,
            o.df,
            p_text(o.p_value, report.alpha)
        )));
    }
    let guardrails: Vec<(&ArmComparison, _)> =
        report.comparisons.iter().flat_map(|c| c.guardrails.iter().map(move |g| (c, g))).collect();
    if guardrails.is_empty() {
        out.push_str(&note("No guardrail in the experiment."));
    } else {
        out.push_str(
            "<table>\n<thead><tr><th>arm</th><th>guardrail</th><th class=\"num\">increase [CI]</th>\
                      <th class=\"num\">allowed</th><th>state</th></tr></thead>\n<tbody>\n",
        );
        for (c, g) in guardrails {
            let (state, class) = guardrail_state(g.state);
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:+.4}</td>\
                 <td class=\"{class}\">{state}</td></tr>",
                escape(&c.arm),
                escape(g.metric.as_str()),
                escape(&format!("{:+.4} [{:+.4}, {:+.4}]", g.increase.estimate, g.increase.low, g.increase.high)),
                g.max_increase
            );
        }
        out.push_str("</tbody>\n</table>\n");
        if let Some(n) = &report.guardrail_note {
            out.push_str(&note(n));
        }
    }
    out
}
