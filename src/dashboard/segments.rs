//! The Segments pages: every segment's performance with 95% intervals, a segment's members
//! by confidence, and one user — what `gavat users analyze` shows, plus `gavat preview`'s
//! next message ([`crate::inspect`], the same code).

use std::fmt::Write as _;

use gavat_experiments::stats::wilson;

use crate::domain::{Segment, UserId};
use crate::html::charts::{IntervalRow, intervals};
use crate::html::escape;
use crate::html::page::Nav;
use crate::inspect::{InspectError, analyze_user, preview_message};
use crate::store::SegmentCounts;

use super::Dashboard;
use super::format::{grouped, percent_interval, time, time_or};
use super::routes::{PageError, Rendered};

/// The most members a segment page lists.
const MEMBERS_SHOWN: usize = 200;

/// `successes / n` with its Wilson 95% interval, or `—` without sends.
pub(super) fn rate_cell(successes: u64, n: u64) -> String {
    match wilson(successes, n, 0.05) {
        Ok(i) => escape(&percent_interval(&i)),
        Err(_) => "—".into(),
    }
}

/// One row of a segment-performance table (the `<tr>` with `data-segment`).
pub(super) fn segment_row(segment: Segment, c: &SegmentCounts, link: bool) -> String {
    let name = segment.as_str();
    let label = if link { format!("<a href=\"/segments/{name}\">{name}</a>") } else { name.to_string() };
    format!(
        "<tr data-segment=\"{name}\"><td>{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
        grouped(c.users),
        grouped(c.sent),
        rate_cell(c.responses, c.sent),
        rate_cell(c.conversions, c.sent),
        rate_cell(c.opt_outs, c.sent),
    )
}

/// Each segment's response rate with its Wilson 95% interval, as a chart (segments without
/// sends are left out and named in the chart's caption by its maker).
pub(super) fn response_chart(counts: &[(Segment, SegmentCounts)]) -> String {
    let rows: Vec<IntervalRow> = counts
        .iter()
        .filter_map(|(segment, c)| {
            let i = wilson(c.responses, c.sent, 0.05).ok()?;
            Some(IntervalRow {
                label: segment.as_str().to_string(),
                estimate: i.estimate * 100.0,
                low: i.low * 100.0,
                high: i.high * 100.0,
                note: Some(format!("{} sent", grouped(c.sent))),
            })
        })
        .collect();
    intervals("Response rate per message by segment, Wilson 95% intervals", &rows, None, "%")
}

/// The header of a segment-performance table.
pub(super) const SEGMENT_HEADER: &str = "<tr><th>segment</th><th class=\"num\">users</th><th class=\"num\">sent</th>\
     <th class=\"num\">response rate (95%)</th><th class=\"num\">conversion rate (95%)</th>\
     <th class=\"num\">opt-out rate (95%)</th></tr>\n";

/// `GET /segments`.
pub(super) fn list(d: &Dashboard) -> Result<Rendered, PageError> {
    let counts = d.source.reader().segment_counts(None)?;
    let mut body = String::from(
        "<p class=\"note\">Every segment over the store's whole log: users it governs now, messages sent \
         under its strategy, and each rate per message with its Wilson 95% interval. Users hold several \
         segments; the one with the highest priority governs.</p>\n<section class=\"card\">\
         <table id=\"segments\">\n",
    );
    body.push_str(SEGMENT_HEADER);
    for (segment, c) in &counts {
        body.push_str(&segment_row(*segment, c, true));
    }
    body.push_str("</table></section>\n");
    body.push_str("<section class=\"card\">");
    body.push_str(&response_chart(&counts));
    body.push_str("</section>\n");
    Ok(Rendered { title: "Segments".into(), nav: Nav::Segments, body, live: false })
}

/// `GET /segments/{SEGMENT}`.
pub(super) fn members(d: &Dashboard, name: &str) -> Result<Rendered, PageError> {
    let segment: Segment = name.parse().map_err(|_| {
        let known: Vec<&str> = Segment::ALL.iter().map(|s| s.as_str()).collect();
        PageError::NotFound(format!("no segment {name:?}; the segments are {}", known.join(", ")))
    })?;
    let reader = d.source.reader();
    let members = reader.segment_members(segment, 0.0, MEMBERS_SHOWN)?;
    let counts = reader.segment_counts(None)?;
    let mut body = String::from("<section class=\"card\"><table id=\"segment-summary\">\n");
    body.push_str(SEGMENT_HEADER);
    if let Some((_, c)) = counts.iter().find(|(s, _)| *s == segment) {
        body.push_str(&segment_row(segment, c, false));
    }
    body.push_str("</table></section>\n");
    if let Some(s) = reader.strategies_in_force()?.into_iter().find(|s| s.segment == segment) {
        let st = &s.strategy;
        let _ = writeln!(
            body,
            "<p class=\"note\">Strategy in force (version {}): priority {}, {}, at most {} a day, {:.1} h cooldown, \
             allowed hours {}, best hours {}. <a href=\"/strategies\">History</a></p>",
            s.version,
            st.priority,
            escape(st.frequency.as_str()),
            st.daily_limit,
            st.cooldown_secs as f64 / 3600.0,
            escape(&st.allowed_hours.to_string()),
            escape(&st.optimal_hours.to_string()),
        );
    }
    let _ = write!(
        body,
        "<h2>Members, highest confidence first</h2>\n<p class=\"note\">{} shown (at most {MEMBERS_SHOWN}).</p>\n\
         <section class=\"card\"><table id=\"members\">\n<tr><th>user</th><th class=\"num\">confidence</th>\
         <th>why</th></tr>\n",
        members.len()
    );
    for (user, confidence, reasons) in &members {
        let _ = writeln!(
            body,
            "<tr data-user=\"{u}\"><td><a href=\"/users/{u}\">{u}</a></td><td class=\"num\">{confidence:.2}</td>\
             <td>{}</td></tr>",
            escape(&reasons.join("; ")),
            u = user.0,
        );
    }
    if members.is_empty() {
        body.push_str("<tr><td colspan=\"3\" class=\"muted\">No user holds this segment.</td></tr>\n");
    }
    body.push_str("</table></section>\n");
    Ok(Rendered { title: segment.as_str().into(), nav: Nav::Segments, body, live: false })
}

/// `GET /users/{id}`.
pub(super) fn user(d: &Dashboard, id: &str) -> Result<Rendered, PageError> {
    let id: u64 = id.parse().map_err(|_| PageError::BadRequest(format!("{id:?} is not a user id (a number)")))?;
    let now = d.now()?;
    let reader = d.source.reader();
    let Some(a) = analyze_user(reader, UserId(id), now)? else {
        return Err(PageError::NotFound(format!("no user {id} in {}", d.name)));
    };
    let mut body = String::new();
    let opted = if a.opted_out { "<p class=\"flash error\">Opted out: never messaged again.</p>\n" } else { "" };
    let _ = write!(
        body,
        "{opted}<section class=\"card\" id=\"user-summary\"><table>\n\
         <tr><th>as of</th><td>{}</td></tr>\n\
         <tr><th>joined</th><td>{}</td></tr>\n\
         <tr><th>time zone</th><td>{} (UTC{:+.1} h now)</td></tr>\n\
         <tr><th>bots followed</th><td>{}</td></tr>\n\
         <tr><th>purchases</th><td>{}</td></tr>\n\
         <tr><th>sessions, last active</th><td>{}, {}</td></tr>\n\
         <tr><th>before the run</th><td>{} messages received, {} answered</td></tr>\n\
         <tr><th>during the run</th><td>{} messages received, {} answered</td></tr>\n\
         <tr><th>caps in force</th><td>{} a day, {:.1} h cooldown, hours {} local, send days {} apart</td></tr>\n\
         <tr><th>last sent</th><td>{}</td></tr>\n\
         <tr><th>next planned send</th><td>{}</td></tr>\n\
         </table></section>\n",
        time(a.now),
        time(a.joined_at),
        escape(&a.time_zone),
        f64::from(a.utc_offset_minutes) / 60.0,
        a.bots_followed,
        a.purchases,
        a.sessions,
        time(a.last_active),
        a.before_the_run.messages_received,
        a.before_the_run.responses,
        a.during_the_run.messages_received,
        a.during_the_run.responses,
        a.caps.daily_limit,
        a.caps.cooldown_hours,
        escape(&a.caps.allowed_hours),
        a.caps.period_days,
        time_or(a.last_sent, "never"),
        time_or(a.next_planned_send, "none"),
    );
    let _ = write!(
        body,
        "<h2>Segments (by {})</h2>\n<section class=\"card\"><table id=\"user-segments\">\n\
         <tr><th>segment</th><th class=\"num\">confidence</th><th>why</th></tr>\n",
        escape(a.segmented_by.as_deref().unwrap_or("nobody yet"))
    );
    for s in &a.segments {
        let governs = if Some(s.segment) == a.governing { " <strong>governs</strong>" } else { "" };
        let _ = writeln!(
            body,
            "<tr><td><a href=\"/segments/{n}\">{n}</a>{governs}</td><td class=\"num\">{:.2}</td><td>{}</td></tr>",
            s.confidence,
            escape(&s.reasons.join("; ")),
            n = s.segment.as_str(),
        );
    }
    body.push_str("</table></section>\n");
    body.push_str(&preview_section(d, UserId(id), now)?);
    body.push_str(
        "<h2>Recent activity</h2>\n<section class=\"card\"><table id=\"recent-events\">\n\
         <tr><th>when</th><th>what</th><th>segment</th><th>content</th><th>outcome</th></tr>\n",
    );
    for e in &a.recent {
        let group = e.group.map(|g| format!(" (group {g})")).unwrap_or_default();
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(e.at),
            escape(&e.kind),
            escape(&group),
            escape(e.segment.as_deref().unwrap_or("—")),
            escape(e.content.as_deref().unwrap_or("")),
            escape(e.outcome.as_deref().unwrap_or("")),
        );
    }
    if a.recent.is_empty() {
        body.push_str("<tr><td colspan=\"5\" class=\"muted\">Nothing in the log yet.</td></tr>\n");
    }
    body.push_str("</table></section>\n");
    Ok(Rendered { title: format!("User {id}"), nav: Nav::Segments, body, live: false })
}

/// The next message the user would get, and when (`gavat preview`).
fn preview_section(d: &Dashboard, id: UserId, now: crate::domain::Timestamp) -> Result<String, PageError> {
    let preview = preview_message(d.source.reader(), id, now, &d.messages, d.source.contacts(), "the store's contacts")
        .map_err(|e| match e {
            InspectError::Store(e) => PageError::from(e),
            other => PageError::Unavailable(format!("the next message cannot be previewed: {other}")),
        })?
        .ok_or_else(|| PageError::NotFound(format!("no user {} in {}", id.0, d.name)))?;
    let when = match (preview.earliest, preview.not_sooner_because) {
        (None, Some(rule)) => format!("never ({})", rule.as_str()),
        (None, None) => "never (no allowed time)".into(),
        (Some(_), None) => "now: no rule holds it back".into(),
        (Some(t), Some(rule)) => format!("not before {}: {} holds it back until then", time(t), rule.as_str()),
    };
    let mut out = String::from("<h2>Next message</h2>\n<section class=\"card\" id=\"preview\">\n");
    let _ = writeln!(out, "<p id=\"preview-when\"><strong>When:</strong> {}</p>", escape(&when));
    if let (Some(planned), Some(earliest)) = (preview.planned, preview.earliest)
        && planned != earliest
    {
        let _ = writeln!(out, "<p><strong>Planned:</strong> {} (the strategy's best hours)</p>", time(planned));
    }
    match &preview.message {
        None => out.push_str(
            "<p id=\"preview-text\" class=\"muted\">No message: the user holds no segment, so no strategy messages \
             them.</p>\n",
        ),
        Some(m) => {
            let _ = writeln!(
                out,
                "<p class=\"note\">Segment {}, content {}, bot {}, language {} ({}), template [{}].{} in {}.</p>",
                escape(preview.segment.map_or("—", Segment::as_str)),
                escape(preview.content.unwrap_or("—")),
                escape(preview.bot.as_ref().map_or("—", |b| b.name.as_str())),
                escape(&m.language),
                escape(&m.language_reason.to_string()),
                escape(m.template.table),
                escape(m.template.kind),
                escape(&m.template.file),
            );
            let _ = writeln!(out, "<pre class=\"message\" id=\"preview-text\">{}</pre>", escape(&m.plain));
            for label in &m.button_labels {
                let _ = writeln!(out, "<p><button type=\"button\" disabled>{}</button></p>", escape(label));
            }
        }
    }
    out.push_str("</section>\n");
    Ok(out)
}
