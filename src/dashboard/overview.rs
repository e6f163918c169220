//! The Overview page: what the engine is doing now — its state (running, paused and why,
//! or a read-only view of a store), the totals the event stream refreshes, each segment's
//! rates with 95% intervals, the queue and the sends due within the hour, and sends held
//! back by reason.

use std::fmt::Write as _;

use crate::api::SendCounts;
use crate::domain::DAY;
use crate::html::charts::bars;
use crate::html::escape;
use crate::html::page::Nav;

use super::Dashboard;
use super::format::grouped;
use super::live::{Reads, activity_chart, snapshot};
use super::routes::{PageError, Rendered};
use super::segments::{SEGMENT_HEADER, response_chart, segment_row};

/// `GET /`.
pub(super) fn page(d: &Dashboard) -> Result<Rendered, PageError> {
    let reads = Reads::of(d)?;
    let figures = snapshot(d, &reads)?;
    let now = reads.now;
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
    body.push_str(&control_forms(d));
    let _ = writeln!(
        body,
        "<section class=\"card\" id=\"activity\" data-html=\"activity_chart\">{}</section>",
        figures.activity_chart
    );
    if let Some(sends) = figures.transport {
        body.push_str(&transport_table(&sends));
    }

    let counts = &reads.counts;
    body.push_str("<h2>Segments</h2>\n<section class=\"card\"><table id=\"segment-rates\">\n");
    body.push_str(SEGMENT_HEADER);
    for (segment, c) in counts {
        body.push_str(&segment_row(*segment, c, true));
    }
    body.push_str("</table></section>\n<section class=\"card\">");
    body.push_str(&response_chart(counts));
    body.push_str("</section>\n");

    let queue = &reads.queue;
    body.push_str(
        "<div class=\"grid2\">\n<section class=\"card\"><h2>Queue</h2><table id=\"queue\">\n\
         <tr><th>segment</th><th class=\"num\">planned</th><th class=\"num\">due within the hour</th></tr>\n",
    );
    for (segment, queued, due) in queue {
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
    let _ = writeln!(
        body,
        "<section class=\"card\">{}</section>",
        activity_chart(d, "The whole log, per day", DAY, None, now)?
    );
    Ok(Rendered { title: "Overview".into(), nav: Nav::Overview, body, live: true })
}

/// The pause and resume buttons of a live run (with the API token), or why there are none.
fn control_forms(d: &Dashboard) -> String {
    let Some(live) = &d.live else { return String::new() };
    if live.token.is_none() {
        return "<p class=\"note\">Writes are off: start <code>gavat run</code> with <code>GAVAT_API_TOKEN</code> set \
                to pause or resume sending here.</p>\n"
            .into();
    }
    let csrf = escape(d.form.value());
    let token = "<input type=\"password\" name=\"token\" placeholder=\"API token\" autocomplete=\"off\" required>";
    if live.control.is_paused() {
        format!(
            "<section class=\"card\"><form id=\"resume\" class=\"inline\" method=\"post\" action=\"/control/resume\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{token}\
             <button type=\"submit\">Resume sending</button></form></section>\n"
        )
    } else {
        format!(
            "<section class=\"card\"><form id=\"pause\" class=\"inline\" method=\"post\" action=\"/control/pause\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"text\" name=\"reason\" placeholder=\"why (optional)\" maxlength=\"{}\">{token}\
             <button type=\"submit\" class=\"danger\">Pause sending</button></form> <span class=\"muted\">Nothing is \
             sent while paused; planned sends wait and go out after the resume, within every cap.</span></section>\n",
            crate::api::MAX_REASON_CHARS
        )
    }
}

/// What the transport answered since the engine started, refreshed by the event stream.
fn transport_table(sends: &SendCounts) -> String {
    let mut out = String::from(
        "<section class=\"card\"><h2>Transport outcomes since the start</h2><table id=\"transport-outcomes\">\n\
         <tr><th>outcome</th><th class=\"num\">sends</th></tr>\n",
    );
    for (label, field, value) in [
        ("delivered", "delivered", sends.delivered),
        ("unknown (may have gone out; never resent)", "unknown", sends.unknown),
        ("rate limited (429: planned again after the wait)", "failed_rate_limited", sends.failed_rate_limited),
        ("failed, transient (planned again)", "failed_transient", sends.failed_transient),
        ("failed: blocked (an opt-out)", "failed_blocked", sends.failed_blocked),
        ("failed for good", "failed_fatal", sends.failed_fatal),
    ] {
        let _ = writeln!(
            out,
            "<tr data-outcome=\"{field}\"><td>{label}</td><td class=\"num\" data-field=\"transport.{field}\">{value}</td></tr>"
        );
    }
    out.push_str("</table></section>\n");
    out
}

/// Sends held back by reason: in this run (a live engine's counters) and in the store's
/// last saved run.
fn suppressions(d: &Dashboard) -> Result<String, PageError> {
    let held = d.source.reader().suppressions()?;
    let mut by_reason: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, reason, n) in &held {
        *by_reason.entry(reason.as_str()).or_default() += n;
    }
    let mut out = String::from("<section class=\"card\"><h2>Held back</h2>");
    if let Some(live) = &d.live {
        out.push_str(
            "<p class=\"note\">In this run, by reason.</p><table id=\"suppressions-now\">\n\
             <tr><th>reason</th><th class=\"num\">sends</th></tr>\n",
        );
        for r in live.metrics.snapshot().suppressions.iter().filter(|r| r.count > 0) {
            let _ = writeln!(out, "<tr><td>{}</td><td class=\"num\">{}</td></tr>", escape(r.reason), grouped(r.count));
        }
        out.push_str("</table>\n");
    }
    out.push_str(
        "<p class=\"note\">In the store's last saved run, by reason.</p><table id=\"suppressions\">\n\
         <tr><th>reason</th><th class=\"num\">sends</th></tr>\n",
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
