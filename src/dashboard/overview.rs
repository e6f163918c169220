//! The Overview page: what the engine is doing now — its state (running, paused and why,
//! or a read-only view of a store), the totals the event stream refreshes, each segment's
//! rates with 95% intervals, the queue and the sends due within the hour, and sends held
//! back by reason.

use std::fmt::Write as _;

use crate::domain::HOUR;
use crate::html::charts::bars;
use crate::html::escape;
use crate::html::page::Nav;

use super::Dashboard;
use super::format::grouped;
use super::live::snapshot;
use super::routes::{PageError, Rendered};
use super::segments::{SEGMENT_HEADER, response_chart, segment_row};

/// `GET /`.
pub(super) fn page(d: &Dashboard) -> Result<Rendered, PageError> {
    let figures = snapshot(d)?;
    let reader = d.source.reader();
    let now = d.now()?;
    let mut body = String::new();
    let state_class = figures.state.split([':', ' ']).next().unwrap_or("running");
    let _ = writeln!(
        body,
        "<p>Engine: <span id=\"engine-state\" class=\"state {state_class}\" data-field=\"state\" \
         data-state=\"state\">{}</span> <span class=\"muted\">as of <span data-field=\"at\">{}</span></span></p>",
        escape(&figures.state),
        escape(&figures.at),
    );
    let t = figures.totals;
    body.push_str("<div class=\"tiles\">\n");
    for (id, field, label, value) in [
        ("sent-total", "totals.sent", "messages sent", t.sent),
        ("responses-total", "totals.responses", "responses", t.responses),
        ("conversions-total", "totals.conversions", "conversions", t.conversions),
        ("opt-outs-total", "totals.opt_outs", "opt-outs", t.opt_outs),
        ("queue-depth", "planned", "planned sends", figures.planned),
        ("due-next-hour", "due_next_hour", "due within the hour", figures.due_next_hour),
    ] {
        let _ = writeln!(
            body,
            "<div class=\"tile\"><div class=\"label\">{label}</div>\
             <div class=\"value\" id=\"{id}\" data-field=\"{field}\">{value}</div></div>"
        );
    }
    body.push_str("</div>\n");

    let counts = reader.segment_counts(None)?;
    body.push_str("<h2>Segments</h2>\n<section class=\"card\"><table id=\"segment-rates\">\n");
    body.push_str(SEGMENT_HEADER);
    for (segment, c) in &counts {
        body.push_str(&segment_row(*segment, c, true));
    }
    body.push_str("</table></section>\n<section class=\"card\">");
    body.push_str(&response_chart(&counts));
    body.push_str("</section>\n");

    let queue = reader.queue(now.plus(HOUR))?;
    body.push_str(
        "<div class=\"grid2\">\n<section class=\"card\"><h2>Queue</h2><table id=\"queue\">\n\
         <tr><th>segment</th><th class=\"num\">planned</th><th class=\"num\">due within the hour</th></tr>\n",
    );
    for (segment, queued, due) in &queue {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(segment),
            grouped(*queued),
            grouped(*due)
        );
    }
    if queue.is_empty() {
        body.push_str("<tr><td colspan=\"3\" class=\"muted\">Nothing planned.</td></tr>\n");
    }
    body.push_str("</table></section>\n");
    body.push_str(&suppressions(d)?);
    body.push_str("</div>\n");
    Ok(Rendered { title: "Overview".into(), nav: Nav::Overview, body, live: true })
}

/// Sends held back by reason, as the store's last saved run recorded them.
fn suppressions(d: &Dashboard) -> Result<String, PageError> {
    let held = d.source.reader().suppressions()?;
    let mut by_reason: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, reason, n) in &held {
        *by_reason.entry(reason.as_str()).or_default() += n;
    }
    let mut out = String::from(
        "<section class=\"card\"><h2>Held back</h2><p class=\"note\">Sends a rule held back in the store's last \
         saved run, by reason.</p><table id=\"suppressions\">\n<tr><th>reason</th><th class=\"num\">sends</th></tr>\n",
    );
    for (reason, n) in &by_reason {
        let _ = writeln!(out, "<tr><td>{}</td><td class=\"num\">{}</td></tr>", escape(reason), grouped(*n));
    }
    if by_reason.is_empty() {
        out.push_str("<tr><td colspan=\"2\" class=\"muted\">None recorded.</td></tr>\n");
    }
    out.push_str("</table>");
    let bars_rows: Vec<(String, f64)> = by_reason.iter().map(|(r, n)| ((*r).to_string(), *n as f64)).collect();
    if !bars_rows.is_empty() {
        out.push_str(&bars("Held back by reason", &bars_rows, "sends"));
    }
    out.push_str("</section>\n");
    Ok(out)
}
