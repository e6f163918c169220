//! The Strategies page: the strategies in force, the learner's audit trail with its
//! evidence, and — on a running engine's dashboard — a rollback button on every applied
//! change. A rollback is the same store write as `gavat strategy rollback` (recorded as an
//! `operator` change; the running engine picks it up from the store), allowed only from
//! the dashboard's own form ([`super::csrf`]) with the API token.

use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::html::escape;
use crate::html::page::Nav;
use crate::store::RollbackError;

use super::Dashboard;
use super::format::{time, time_or};
use super::routes::{PageError, Rendered, error_page, guarded};

/// `GET /strategies` (`?recorded=ID` after a rollback names the change it wrote).
pub(super) fn page(d: &Dashboard, query: &str) -> Result<Rendered, PageError> {
    let reader = d.source.reader();
    let changes = reader.strategy_changes(None)?;
    let mut body = String::new();
    let recorded = query.split('&').find_map(|pair| pair.strip_prefix("recorded=")).and_then(|v| v.parse::<i64>().ok());
    if let Some(c) = recorded.and_then(|id| changes.iter().find(|c| c.id == id)) {
        let _ = writeln!(
            body,
            "<div id=\"flash\" class=\"flash ok\">Change #{} recorded: {} {} {} → {}. {}</div>",
            c.id,
            c.segment.as_str(),
            escape(&c.field),
            escape(&c.before),
            escape(&c.after),
            escape(&c.evidence)
        );
    }
    body.push_str(
        "<h2>In force</h2>\n<section class=\"card\"><table id=\"in-force\">\n<tr><th>segment</th>\
         <th class=\"num\">priority</th><th>frequency</th><th class=\"num\">daily limit</th>\
         <th class=\"num\">cooldown</th><th>allowed hours</th><th>best hours</th><th class=\"num\">version</th>\
         <th>since</th></tr>\n",
    );
    let in_force = reader.strategies_in_force()?;
    for s in &in_force {
        let st = &s.strategy;
        let _ = writeln!(
            body,
            "<tr data-segment=\"{seg}\"><td><a href=\"/segments/{seg}\">{seg}</a>{learned}</td><td class=\"num\">{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} h</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            st.priority,
            escape(st.frequency.as_str()),
            st.daily_limit,
            st.cooldown_secs as f64 / 3600.0,
            escape(&st.allowed_hours.to_string()),
            escape(&st.optimal_hours.to_string()),
            s.version,
            time_or(s.since, "start of run (configured)"),
            seg = s.segment.as_str(),
            learned = if s.learned { " <span class=\"muted\">(learned)</span>" } else { "" },
        );
    }
    if in_force.is_empty() {
        body.push_str(
            "<tr><td colspan=\"9\" class=\"muted\">The store records no strategies yet (a run writes them when it \
             ends).</td></tr>\n",
        );
    }
    body.push_str("</table></section>\n");
    body.push_str(&write_note(d));
    body.push_str(
        "<h2>Audit trail</h2>\n<p class=\"note\">Every change the learner or an operator proposed, oldest first, \
         with the evidence it rested on. Caps and quiet hours stay within the guardrails whatever is proposed.</p>\n\
         <section class=\"card\"><table id=\"audit\">\n<tr><th>#</th><th>when</th><th>segment</th><th>by</th>\
         <th>outcome</th><th>change</th><th>evidence</th><th></th></tr>\n",
    );
    let can_write = d.live.as_ref().is_some_and(|l| l.token.is_some());
    for c in &changes {
        let button = if can_write && c.action == "applied" {
            format!(
                "<form class=\"rollback inline\" method=\"post\" action=\"/strategies/rollback\">\
                 <input type=\"hidden\" name=\"change\" value=\"{id}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"password\" name=\"token\" placeholder=\"API token\" autocomplete=\"off\" required>\
                 <button type=\"submit\" class=\"danger\">Roll back</button></form>",
                id = c.id,
                csrf = escape(d.form.value()),
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            body,
            "<tr data-change=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}: {} → {}</td><td>{}</td>\
             <td>{button}</td></tr>",
            c.id,
            c.id,
            time(c.at),
            c.segment.as_str(),
            escape(&c.source),
            escape(&c.action),
            escape(&c.field),
            escape(&c.before),
            escape(&c.after),
            escape(&c.evidence),
        );
    }
    if changes.is_empty() {
        body.push_str(
            "<tr><td colspan=\"8\" class=\"muted\">No strategy changes yet (the learner proposes every 6 hours of \
             engine time with --learn).</td></tr>\n",
        );
    }
    body.push_str("</table></section>\n");
    Ok(Rendered { title: "Strategies".into(), nav: Nav::Strategies, body, live: false })
}

/// What the page says about writes.
fn write_note(d: &Dashboard) -> String {
    match &d.live {
        None => "<p class=\"note\">Read-only: this dashboard shows a store. Roll a change back from the dashboard of \
                 <code>gavat run</code>, or with <code>gavat strategy rollback ID</code>.</p>\n"
            .into(),
        Some(l) if l.token.is_none() => "<p class=\"note\">Writes are off: start <code>gavat run</code> with \
                 <code>GAVAT_API_TOKEN</code> set to roll changes back here.</p>\n"
            .into(),
        Some(_) => "<p class=\"note\">Rolling back restores the strategy in force before the change; it needs the \
                 API token and takes effect in the running engine within seconds.</p>\n"
            .into(),
    }
}

/// The rollback form's fields (all optional here, so that a missing one is named in the
/// answer rather than refused as an unreadable form).
#[derive(Debug, Deserialize)]
pub(super) struct RollbackForm {
    #[serde(default)]
    change: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Checks a write: a running engine's dashboard, the form from its own page, the token.
pub(super) fn check_write(d: &Dashboard, req: &HttpRequest, csrf: &str, token: &str) -> Result<(), PageError> {
    let Some(live) = &d.live else {
        return Err(PageError::Forbidden("this dashboard is read-only: it accepts no writes".into()));
    };
    d.form.check(req, csrf).map_err(|e| PageError::Forbidden(e.to_string()))?;
    let Some(expected) = &live.token else {
        return Err(PageError::Forbidden(
            "writes are off: start gavat run with GAVAT_API_TOKEN set to make changes from the dashboard".into(),
        ));
    };
    if token.is_empty() {
        return Err(PageError::Forbidden("the API token is missing: enter GAVAT_API_TOKEN's value".into()));
    }
    if !expected.matches(token.as_bytes()) {
        return Err(PageError::Forbidden("the API token is not valid".into()));
    }
    Ok(())
}

/// `POST /strategies/rollback`: rolls change `change` back, then shows the page with the
/// change it recorded (303), or the reason it did not (403, 400, 409, 503).
pub(super) async fn rollback(
    dashboard: web::Data<Dashboard>,
    req: HttpRequest,
    form: web::Form<RollbackForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Err(e) = check_write(&dashboard, &req, &form.csrf, &form.token) {
        tracing::warn!(reason = ?e, "Dashboard rollback refused.");
        return error_page(&dashboard, &e);
    }
    let Ok(id) = form.change.trim().parse::<i64>() else {
        return error_page(&dashboard, &PageError::BadRequest(format!("change {:?} is not a change id", form.change)));
    };
    let shared = dashboard.clone().into_inner();
    let done = web::block(move || {
        let now = shared.now().map_err(RollbackError::Store)?;
        shared.source.reader().rollback_strategy(id, now)
    })
    .await;
    match done {
        Ok(Ok(change)) => {
            tracing::info!(
                change = id,
                recorded = change.id,
                segment = change.segment.as_str(),
                "Strategy change rolled back from the dashboard."
            );
            guarded(HttpResponse::SeeOther())
                .insert_header((header::LOCATION, format!("/strategies?recorded={}", change.id)))
                .finish()
        }
        Ok(Err(RollbackError::Store(e))) => error_page(&dashboard, &PageError::from(e)),
        Ok(Err(refused)) => error_page(&dashboard, &PageError::Conflict(refused.to_string())),
        Err(_) => error_page(&dashboard, &PageError::Unavailable("the rollback did not finish".into())),
    }
}
