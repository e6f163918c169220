//! The operator's pause of sending: [`SendingControl`], the gate every new reservation of
//! the live engine asks first, and its endpoints `GET /v1/control`, `POST
//! /v1/control/pause` and `POST /v1/control/resume`.
//!
//! # How the pause works
//! While an operator has paused sending, [`MeteredLedger`](super::MeteredLedger) answers
//! every `reserve` and `reserve_share` with `Denied(`[`SuppressReason::Paused`](crate::policy::SuppressReason::Paused)`)` without
//! asking the ledger it wraps. The engine records the send as suppressed
//! (`paused_by_operator`) and plans it again a minute of engine time later, as it does when
//! the gate cannot answer: nothing is lost, and sending picks up within a minute of engine
//! time after the resume. Sends already reserved when the pause starts go on; no new one
//! starts. Replies, conversions, opt-outs and new users are still taken in.
//!
//! The pause is reported to [`Metrics`] under the source [`OPERATOR_PAUSE`], so `/readyz`
//! (503), `gavat_paused` and the dashboard show it with its reason. Each source of a pause
//! clears only its own: resuming the operator's pause leaves a ledger that cannot answer
//! paused, and a ledger that answers again does not lift the operator's pause.
//!
//! The pause lives in the process: it is not stored, so a restarted engine sends again, and
//! with several engines on one Redis store each is paused on its own.
//!
//! # Why a type of its own
//! [`Metrics`] observes the engine and decides nothing; the pause decides. Keeping it in its
//! own type keeps that line: the ledger wrapper is given the control explicitly (it cannot be
//! built without one), the control tells the metrics, and the metrics never feed back into a
//! decision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;

use super::Metrics;
use super::body::read_json;
use super::metrics::Pause;
use super::reply::Failure;
use super::server::Shared;

/// The source name under which an operator's pause is reported to [`Metrics`].
pub const OPERATOR_PAUSE: &str = "operator";

/// The longest reason accepted, characters.
pub const MAX_REASON_CHARS: usize = 200;

/// The reason shown when the operator gave none.
const NO_REASON: &str = "no reason given";

/// The largest body of `POST /v1/control/pause`, bytes: a reason of
/// [`MAX_REASON_CHARS`] characters fits even with every character escaped.
const PAUSE_BODY_LIMIT: usize = 4 * 1024;

/// Why a pause was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PauseError {
    /// The reason is longer than [`MAX_REASON_CHARS`] characters: bad input, nothing changed.
    #[error("field `reason`: {chars} characters, more than the {MAX_REASON_CHARS} allowed")]
    ReasonTooLong {
        /// Its length, characters.
        chars: usize,
    },
    /// The reason holds a control character (a line break, an escape): bad input, nothing
    /// changed. It is shown in `/readyz`, the metrics' pause and logs, one line each.
    #[error("field `reason`: contains a control character")]
    ReasonNotPrintable,
}

/// An operator's pause in force.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OperatorPause {
    reason: String,
    since: Timestamp,
}

/// The operator's switch for sending. Share one in an `Arc` between the metered ledger (which
/// obeys it) and the API (which flips it).
#[derive(Debug)]
pub struct SendingControl {
    /// Whether an operator paused sending: read without the lock on every reservation.
    paused: AtomicBool,
    /// The pause in force, if any. A `std` mutex (no `.await` is held), touched only when the
    /// state is read or changed. Written before `paused`, under the lock, so that whoever
    /// sees the flag finds the pause.
    pause: Mutex<Option<OperatorPause>>,
    /// Told of every pause and resume, under [`OPERATOR_PAUSE`].
    metrics: Arc<Metrics>,
}

/// What `GET /v1/control` and the pause and resume answer: the operator's pause, and every
/// pause of sending in force (the operator's included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlState {
    /// Whether an operator paused sending.
    pub paused_by_operator: bool,
    /// The operator's reason, while paused.
    pub reason: Option<String>,
    /// Since when (engine time, RFC 3339), while paused.
    pub since: Option<String>,
    /// Whether sending is paused for any reason: the operator, or a ledger that cannot
    /// answer.
    pub sending_paused: bool,
    /// Every source's pause, by source name.
    pub pauses: Vec<Pause>,
}

impl SendingControl {
    /// Sending is not paused.
    pub fn new(metrics: Arc<Metrics>) -> SendingControl {
        SendingControl { paused: AtomicBool::new(false), pause: Mutex::new(None), metrics }
    }

    /// Whether an operator paused sending (one atomic load).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Pauses sending from `at` (engine time) because of `reason` (at most
    /// [`MAX_REASON_CHARS`] characters, no control character; `None` or blank: "no reason
    /// given"). Pausing again replaces the reason and keeps the time the pause began.
    pub fn pause(&self, reason: Option<String>, at: Timestamp) -> Result<ControlState, PauseError> {
        let reason = checked_reason(reason)?;
        {
            let mut pause = self.lock();
            let since = pause.as_ref().map_or(at, |p| p.since);
            *pause = Some(OperatorPause { reason: reason.clone(), since });
            self.metrics.pause(OPERATOR_PAUSE, reason.clone());
            self.paused.store(true, Ordering::Release);
        }
        tracing::info!(reason = %reason, "Sending paused by an operator.");
        Ok(self.state())
    }

    /// Lifts the operator's pause (nothing happens if there is none). Any other pause — a
    /// ledger that cannot answer — stays.
    pub fn resume(&self) -> ControlState {
        let was = {
            let mut pause = self.lock();
            self.paused.store(false, Ordering::Release);
            self.metrics.resume(OPERATOR_PAUSE);
            pause.take()
        };
        if was.is_some() {
            tracing::info!("Sending resumed by an operator.");
        }
        self.state()
    }

    /// The operator's pause and every pause in force.
    pub fn state(&self) -> ControlState {
        let pause = self.lock().clone();
        let pauses = self.metrics.pauses();
        ControlState {
            paused_by_operator: pause.is_some(),
            reason: pause.as_ref().map(|p| p.reason.clone()),
            since: pause.as_ref().map(|p| p.since.to_rfc3339()),
            sending_paused: !pauses.is_empty(),
            pauses,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OperatorPause>> {
        // Every update is one assignment: a panic elsewhere cannot leave it half done.
        self.pause.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The reason to keep: trimmed, checked, or the placeholder when there is none.
fn checked_reason(reason: Option<String>) -> Result<String, PauseError> {
    let reason = reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Ok(NO_REASON.to_string());
    }
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(PauseError::ReasonTooLong { chars });
    }
    if reason.chars().any(char::is_control) {
        return Err(PauseError::ReasonNotPrintable);
    }
    Ok(reason.to_string())
}

/// The body of `POST /v1/control/pause` (the body itself is optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseRequest {
    /// Why, shown wherever the pause is: at most 200 characters, no secret.
    reason: Option<String>,
}

/// Whether the request carries a body at all (a pause without one has no reason).
fn has_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::trim);
    headers.contains_key(header::TRANSFER_ENCODING) || declared.is_some_and(|n| n != "0")
}

/// `GET /v1/control`: the state, with the token.
pub(super) async fn get_control(req: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, Failure> {
    shared.authorize(&req)?;
    Ok(HttpResponse::Ok().json(shared.state.control.state()))
}

/// `POST /v1/control/pause`: pauses sending; the body `{"reason": "…"}` is optional.
pub(super) async fn post_pause(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, Failure> {
    shared.authorize(&req)?;
    let body = if has_body(&req) {
        read_json::<PauseRequest>(&req, payload, PAUSE_BODY_LIMIT).await?
    } else {
        PauseRequest { reason: None }
    };
    let at = shared.state.clock.now();
    let state = shared.state.control.pause(body.reason, at).map_err(|e| Failure::bad_field("reason", e.to_string()))?;
    Ok(HttpResponse::Ok().json(state))
}

/// `POST /v1/control/resume`: lifts the operator's pause (no body).
pub(super) async fn post_resume(req: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, Failure> {
    shared.authorize(&req)?;
    Ok(HttpResponse::Ok().json(shared.state.control.resume()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> (Arc<Metrics>, SendingControl) {
        let metrics = Arc::new(Metrics::new());
        (metrics.clone(), SendingControl::new(metrics))
    }

    /// A pause is seen by the gate and by the metrics with its reason, a second pause keeps
    /// the time the first began, and a resume lifts both.
    #[test]
    fn pause_and_resume_reach_the_gate_and_the_metrics() -> Result<(), PauseError> {
        let (metrics, control) = control();
        assert!(!control.is_paused());
        assert_eq!(metrics.paused(), None);
        let state = control.pause(Some(" campaign review ".into()), Timestamp(1_800_000_000))?;
        assert!(control.is_paused());
        assert_eq!(metrics.paused().as_deref(), Some("operator: campaign review"));
        assert_eq!(state.reason.as_deref(), Some("campaign review"));
        assert_eq!(state.since.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert!(state.paused_by_operator && state.sending_paused);
        let again = control.pause(None, Timestamp(1_800_000_600))?;
        assert_eq!(again.reason.as_deref(), Some(NO_REASON));
        assert_eq!(again.since, state.since, "the pause began at the first");
        let resumed = control.resume();
        assert!(!control.is_paused());
        assert_eq!(metrics.paused(), None);
        assert_eq!(
            resumed,
            ControlState {
                paused_by_operator: false,
                reason: None,
                since: None,
                sending_paused: false,
                pauses: Vec::new()
            }
        );
        Ok(())
    }

    /// Resuming the operator leaves the ledger's pause in force, and the ledger answering
    /// again leaves the operator's.
    #[test]
    fn each_source_clears_only_its_own_pause() -> Result<(), PauseError> {
        let (metrics, control) = control();
        metrics.pause(super::super::LEDGER_PAUSE, "connection refused".into());
        control.pause(Some("maintenance".into()), Timestamp(0))?;
        assert_eq!(metrics.paused().as_deref(), Some("ledger: connection refused; operator: maintenance"));
        let state = control.resume();
        assert!(!state.paused_by_operator);
        assert!(state.sending_paused, "the ledger still cannot answer");
        assert_eq!(state.pauses, vec![Pause { source: "ledger".into(), reason: "connection refused".into() }]);
        assert_eq!(metrics.paused().as_deref(), Some("ledger: connection refused"));
        control.pause(Some("maintenance".into()), Timestamp(0))?;
        metrics.resume(super::super::LEDGER_PAUSE);
        assert!(control.is_paused(), "the ledger's recovery does not lift the operator's pause");
        assert_eq!(metrics.paused().as_deref(), Some("operator: maintenance"));
        Ok(())
    }

    /// Reasons too long or with control characters are refused and change nothing; 200
    /// characters of any script are accepted.
    #[test]
    fn bad_reasons_are_refused_without_pausing() {
        let (metrics, control) = control();
        let long = "é".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(control.pause(Some(long), Timestamp(0)), Err(PauseError::ReasonTooLong { chars: 201 }));
        assert_eq!(control.pause(Some("a\nb".into()), Timestamp(0)), Err(PauseError::ReasonNotPrintable));
        assert!(!control.is_paused());
        assert_eq!(metrics.paused(), None);
        assert!(control.pause(Some("é".repeat(MAX_REASON_CHARS)), Timestamp(0)).is_ok());
        assert!(control.is_paused());
    }
}
