//! The Experiments pages: every experiment the dashboard was given, compared from the
//! store's log exactly as `gavat experiment export` + `gavat experiment compare` would —
//! each arm's rate with its interval, each treatment's difference and relative lift with
//! intervals, raw and adjusted p, the always-valid (mSPRT) p-value, the sample-ratio check,
//! guardrails and the plain-language verdict.

use std::fmt::Write as _;

use gavat_experiments::compare::monitoring::{Look, running};
use gavat_experiments::compare::{Accumulator, Report, Settings, compare, lift_is_meaningful};
use gavat_experiments::design::Experiment;

use crate::domain::{DAY, Timestamp};
use crate::html::charts::{IntervalRow, Series, intervals, time_series};
use crate::html::escape;
use crate::html::page::Nav;
use crate::live::results::LiveResultsError;

use super::Dashboard;
use super::format::{grouped, p_value, percent_interval, signed_interval, signed_percent_interval, time};
use super::routes::{PageError, Rendered};

/// The comparison of `design` over the store's log up to `until` (all of it with `None`), or
/// why there is none (in words).
pub(super) fn report_of(
    d: &Dashboard,
    design: &Experiment,
    until: Option<Timestamp>,
) -> Result<Result<Report, String>, PageError> {
    let rows = match d.source.experiment_rows(design, until) {
        Ok(rows) => rows,
        Err(LiveResultsError::Store(e)) => return Err(e.into()),
        Err(other) => return Ok(Err(other.to_string())),
    };
    let mut acc = Accumulator::with_arms(design.group_names());
    for row in &rows {
        acc.add(row);
    }
    let weights = design.assignment_weights();
    let settings = Settings::of_experiment(design, &weights);
    Ok(compare(&acc, &settings).map_err(|e| e.to_string()))
}

/// Daily looks the evolution of the always-valid p-value goes back.
const MAX_LOOKS: i64 = 30;

/// The experiment as a live monitor would have seen it: a look at every UTC midnight of the
/// last [`MAX_LOOKS`] days and one now, each compared from the log up to it, with the
/// running minimum of each treatment's mSPRT p-value — the always-valid p-value to report
/// however often one looked (docs/statistics.md). Looks before the experiment's first send
/// are left out.
fn evolution(d: &Dashboard, design: &Experiment, now: Timestamp) -> Result<String, PageError> {
    let today = now.secs().div_euclid(DAY) * DAY;
    let mut cut_offs: Vec<Timestamp> = (0..MAX_LOOKS).rev().map(|k| Timestamp(today - k * DAY)).collect();
    if now.secs() > today {
        cut_offs.push(now);
    }
    let mut looks: Vec<(Timestamp, Look)> = Vec::new();
    for at in cut_offs {
        if let Ok(report) = report_of(d, design, Some(at))? {
            looks.push((at, Look::of(&report, &design.name, &at.to_rfc3339())));
        }
    }
    let mut out = String::from("<h2>The always-valid p-value over time</h2>\n<section class=\"card\">");
    if looks.is_empty() {
        out.push_str("<p class=\"muted\">No look yet.</p></section>\n");
        return Ok(out);
    }
    let just_looks: Vec<Look> = looks.iter().map(|(_, l)| l.clone()).collect();
    let mut series: Vec<Series> = Vec::new();
    let mut table = String::from(
        "<table id=\"msprt-history\">\n<tr><th>look</th><th>treatment</th><th class=\"num\">mSPRT p at the look</th>\
         <th class=\"num\">running minimum (always valid)</th></tr>\n",
    );
    for (k, (at, look)) in looks.iter().enumerate() {
        let running_now = running(&just_looks[..=k]);
        for arm in &look.arms {
            let min = running_now.iter().find(|r| r.arm == arm.arm).and_then(|r| r.msprt_p_min);
            let name_now = format!("{}: at the look", arm.arm);
            let name_min = format!("{}: running minimum", arm.arm);
            for (name, value) in [(name_now, arm.msprt_p), (name_min, min)] {
                let Some(value) = value else { continue };
                match series.iter_mut().find(|s| s.name == name) {
                    Some(s) => s.points.push((at.secs(), value)),
                    None => series.push(Series { name, points: vec![(at.secs(), value)] }),
                }
            }
            let _ = writeln!(
                table,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                time(*at),
                escape(&arm.arm),
                arm.msprt_p.map_or_else(|| "undefined".into(), p_value),
                min.map_or_else(|| "undefined".into(), p_value),
            );
        }
    }
    table.push_str("</table>\n");
    out.push_str(&time_series("mSPRT p-value at each daily look, and its running minimum", "p", &series));
    let _ = writeln!(
        out,
        "<p class=\"note\">Looking every day does not inflate the error of the running minimum: it is below \
         alpha = {} with probability at most alpha under no effect, however often it is checked. A fixed-horizon \
         p-value watched this way would be.</p>",
        design.alpha
    );
    out.push_str(&table);
    out.push_str("</section>\n");
    Ok(out)
}

/// `GET /experiments`.
pub(super) fn list(d: &Dashboard) -> Result<Rendered, PageError> {
    let mut body = String::new();
    if d.experiments.is_empty() {
        body.push_str(
            "<p id=\"no-experiments\" class=\"note\">No experiment given. Start <code>gavat run --experiment FILE</code>, \
             or <code>gavat dashboard --experiment FILE</code> to compare an experiment that ran on this store.</p>\n",
        );
        return Ok(Rendered { title: "Experiments".into(), nav: Nav::Experiments, body, live: false });
    }
    body.push_str(
        "<section class=\"card\"><table id=\"experiments\">\n<tr><th>experiment</th><th>metric</th><th>arms</th>\
         <th class=\"num\">users</th><th>sample ratio</th><th>verdict</th></tr>\n",
    );
    for design in &d.experiments {
        let name = escape(&design.name);
        let arms: Vec<&str> = design.group_names().collect();
        let (users, srm, verdict) = match report_of(d, design, None)? {
            Ok(r) => (
                grouped(r.arms.iter().map(|a| a.users).sum()),
                if r.srm.mismatch { "<span class=\"bad\">mismatch</span>" } else { "ok" }.to_string(),
                escape(r.verdict.first().map_or("", String::as_str)),
            ),
            Err(why) => ("—".into(), "—".into(), format!("<span class=\"muted\">{}</span>", escape(&why))),
        };
        let _ = writeln!(
            body,
            "<tr data-experiment=\"{name}\"><td><a href=\"/experiments/{href}\">{name}</a></td><td>{}</td><td>{}</td>\
             <td class=\"num\">{users}</td><td>{srm}</td><td>{verdict}</td></tr>",
            escape(design.primary_metric.as_str()),
            escape(&arms.join(", ")),
            href = escape(&url_segment(&design.name)),
        );
    }
    body.push_str("</table></section>\n");
    Ok(Rendered { title: "Experiments".into(), nav: Nav::Experiments, body, live: false })
}

/// `name` percent-encoded for a path segment.
fn url_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `GET /experiments/{name}`.
pub(super) fn detail(d: &Dashboard, name: &str) -> Result<Rendered, PageError> {
    let Some(design) = d.experiments.iter().find(|e| e.name == name) else {
        return Err(PageError::NotFound(format!("no experiment {name:?} on this dashboard")));
    };
    let report = match report_of(d, design, None)? {
        Ok(r) => r,
        Err(why) => {
            let body = format!("<div id=\"flash\" class=\"flash error\">Not comparable yet: {}</div>\n", escape(&why));
            return Ok(Rendered { title: design.name.clone(), nav: Nav::Experiments, body, live: false });
        }
    };
    let mut body = report_body(&report);
    body.push_str(&evolution(d, design, d.now()?)?);
    Ok(Rendered { title: design.name.clone(), nav: Nav::Experiments, body, live: false })
}

/// The comparison as HTML: verdict, arms, comparisons, sample ratio, guardrails, family.
fn report_body(r: &Report) -> String {
    let mut body = String::new();
    let confidence = format!("{}%", ((1.0 - r.alpha) * 100.0).round());
    body.push_str("<section class=\"card\" id=\"verdict\">\n");
    for line in &r.verdict {
        let _ = writeln!(body, "<p class=\"verdict\">{}</p>", escape(line));
    }
    body.push_str("</section>\n");
    let _ = write!(
        body,
        "<h2>Arms · {metric}, {confidence} intervals</h2>\n<section class=\"card\"><table id=\"arms\">\n\
         <tr><th>arm</th><th class=\"num\">users</th><th class=\"num\">{metric} [{confidence}]</th></tr>\n",
        metric = escape(r.metric.as_str()),
    );
    for a in &r.arms {
        let estimate = match a.estimate.value() {
            Some(i) if r.metric.is_share() => escape(&percent_interval(&i)),
            Some(i) => escape(&format!("{:.4} [{:.4}, {:.4}]", i.estimate, i.low, i.high)),
            None => "undefined (no users)".into(),
        };
        let _ = writeln!(
            body,
            "<tr data-arm=\"{n}\"><td>{n}</td><td class=\"num\">{}</td><td class=\"num\">{estimate}</td></tr>",
            grouped(a.users),
            n = escape(&a.arm),
        );
    }
    body.push_str("</table></section>\n");
    body.push_str(&charts(r));
    body.push_str(&comparisons("Against control", "comparisons", &r.comparisons, r));
    if !r.holdout.is_empty() {
        body.push_str(&comparisons(
            "Incremental effect of messaging at all (against the holdout, outside the family)",
            "holdout",
            &r.holdout,
            r,
        ));
    }
    let srm = &r.srm;
    let _ = writeln!(
        body,
        "<h2>Sample ratio</h2>\n<section class=\"card\" id=\"srm\"><p class=\"{}\">{}: χ² = {:.3}, df = {}, p = {}{}</p>{}</section>",
        if srm.mismatch { "bad" } else { "good" },
        if srm.mismatch {
            "Mismatch — the split is not what was planned; do not trust the comparison"
        } else {
            "As planned"
        },
        srm.check.statistic,
        srm.check.df,
        p_value(srm.check.p_value),
        if srm.missing_arms.is_empty() {
            String::new()
        } else {
            format!("; arms with no users: {}", escape(&srm.missing_arms.join(", ")))
        },
        srm.note.as_deref().map(|n| format!("<p class=\"note\">{}</p>", escape(n))).unwrap_or_default(),
    );
    let _ = writeln!(body, "<p class=\"note\">{}.</p>", escape(r.family.statement.trim_end_matches('.')));
    if let Some(note) = &r.guardrail_note {
        let _ = writeln!(body, "<p class=\"note\">{}.</p>", escape(note.trim_end_matches('.')));
    }
    body
}

/// Each arm's estimate (control's as the reference line) and each treatment's relative lift
/// (0 as the reference), with their intervals; a metric without a meaningful relative lift
/// (engagement) shows the absolute difference instead.
fn charts(r: &Report) -> String {
    let share = r.metric.is_share();
    let (scale, unit) = if share { (100.0, "%") } else { (1.0, "") };
    let arms: Vec<IntervalRow> = r
        .arms
        .iter()
        .filter_map(|a| {
            let i = a.estimate.value()?;
            Some(IntervalRow {
                label: a.arm.clone(),
                estimate: i.estimate * scale,
                low: i.low * scale,
                high: i.high * scale,
                note: Some(format!("n = {}", a.users)),
            })
        })
        .collect();
    let control = r.arms.first().and_then(|a| a.estimate.value()).map(|i| i.estimate * scale);
    let confidence = ((1.0 - r.alpha) * 100.0).round();
    let mut out = String::from("<div class=\"grid2\">\n<section class=\"card\">");
    out.push_str(&intervals(&format!("{} by arm, {confidence}% intervals", r.metric.as_str()), &arms, control, unit));
    out.push_str("</section>\n<section class=\"card\">");
    let lifts: Vec<IntervalRow> = r
        .comparisons
        .iter()
        .filter_map(|c| {
            // A relative lift where it means something (undefined ones are in the table
            // with their reason), else the absolute difference.
            let (i, scale) =
                if lift_is_meaningful(r.metric) { (c.lift.value()?, 100.0) } else { (c.difference, scale) };
            Some(IntervalRow {
                label: format!("{} vs {}", c.arm, c.reference),
                estimate: i.estimate * scale,
                low: i.low * scale,
                high: i.high * scale,
                note: c.p_adjusted.value().map(|p| format!("adjusted p = {}", p_value(p))),
            })
        })
        .collect();
    let title = if lift_is_meaningful(r.metric) {
        format!("Relative lift over control, {confidence}% intervals")
    } else {
        format!("Difference from control, {confidence}% intervals")
    };
    let lift_unit = if lift_is_meaningful(r.metric) { "%" } else { unit };
    out.push_str(&intervals(&title, &lifts, Some(0.0), lift_unit));
    out.push_str("</section>\n</div>\n");
    out
}

/// A table of arm-versus-reference comparisons.
fn comparisons(title: &str, id: &str, rows: &[gavat_experiments::compare::ArmComparison], r: &Report) -> String {
    let mut out = format!(
        "<h2>{}</h2>\n<section class=\"card\"><table id=\"{id}\">\n<tr><th>arm</th><th class=\"num\">difference</th>\
         <th class=\"num\">relative lift</th><th class=\"num\">p</th><th class=\"num\">adjusted p</th>\
         <th class=\"num\">always-valid p (mSPRT)</th><th class=\"num\">chance to beat</th><th>guardrails</th></tr>\n",
        escape(title)
    );
    let share = r.metric.is_share();
    for c in rows {
        let difference = if share {
            let i = c.difference;
            let pts = |v: f64| format!("{:+.2} pts", v * 100.0);
            format!("{} [{}, {}]", pts(i.estimate), pts(i.low), pts(i.high))
        } else {
            signed_interval(&c.difference, 4)
        };
        let lift = c.lift.value().map_or_else(|| "undefined".to_string(), |i| signed_percent_interval(&i));
        let guardrails: Vec<String> = c
            .guardrails
            .iter()
            .map(|g| {
                format!(
                    "{} {}",
                    g.metric.as_str(),
                    serde_json::to_value(g.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr data-comparison=\"{a}\"><td>{a} vs {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td>\
             <td>{}</td></tr>",
            escape(&c.reference),
            escape(&difference),
            escape(&lift),
            c.p_value.value().map_or_else(|| "undefined".into(), p_value),
            c.p_adjusted.value().map_or_else(|| "undefined".into(), p_value),
            c.p_always_valid.value().map_or_else(|| "undefined".into(), p_value),
            c.prob_beat_reference * 100.0,
            escape(&guardrails.join(", ")),
            a = escape(&c.arm),
        );
    }
    out.push_str("</table></section>\n");
    out
}
