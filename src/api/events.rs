//! `POST /v1/events`: a user's reply, conversion, opt-out or activity, handed to the running
//! engine through [`ApiInbound`](super::ApiInbound). The answer comes only after the engine
//! acknowledged the event — after what it changed is stored — so a 202 means it will not be
//! lost; a 503 means retry (with the same `Idempotency-Key`, the retry cannot count twice).

use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::domain::{GroupId, InboundEvent, InboundKind, Timestamp, UserId};

use super::body::{BODY_LIMIT, read_json};
use super::inbound::{ApiInbound, EventFingerprint, KeyClaim, SubmitError, source_of_key};
use super::reply::Failure;
use super::server::Shared;

/// The header that makes a POST safe to retry.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The longest idempotency key accepted, bytes.
pub const MAX_KEY_LEN: usize = 255;

/// What a user did, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum EventKind {
    Response,
    Conversion,
    OptOut,
    Activity,
}

impl EventKind {
    fn inbound(self) -> InboundKind {
        match self {
            EventKind::Response => InboundKind::Reply,
            EventKind::Conversion => InboundKind::Conversion,
            EventKind::OptOut => InboundKind::OptOut,
            EventKind::Activity => InboundKind::Activity,
        }
    }
}

/// The body of `POST /v1/events`. Every field is optional to serde so that a missing one is
/// reported by name, here, rather than as serde's message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRequest {
    /// Who (required).
    user: Option<u64>,
    /// What (required).
    kind: Option<EventKind>,
    /// Through which group post, when it was one.
    group: Option<u64>,
}

/// The answer to an accepted (202) or duplicate (200) event.
#[derive(Serialize)]
struct EventAnswer {
    /// Whether an earlier request with the same key was taken in already.
    duplicate: bool,
    event: EventView,
}

/// An event as the engine took it in.
#[derive(Serialize)]
struct EventView {
    user: u64,
    kind: EventKind,
    group: Option<u64>,
    /// When the engine stamped it (RFC 3339, UTC).
    at: String,
}

/// The `Idempotency-Key` header, if sent: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Failure> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(Failure::bad_field(IDEMPOTENCY_KEY, "send one Idempotency-Key header, not several"));
    }
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key)),
        None => Err(Failure::bad_field(
            IDEMPOTENCY_KEY,
            format!("an Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// Frees a fresh idempotency key again unless its event was accepted — whatever ends the
/// request, a client hanging up included.
struct KeyClaimGuard<'a> {
    inbound: &'a ApiInbound,
    source: u64,
    accepted: Option<Timestamp>,
}

impl Drop for KeyClaimGuard<'_> {
    fn drop(&mut self) {
        self.inbound.settle_key(self.source, self.accepted);
    }
}

/// `POST /v1/events`.
pub(super) async fn post_event(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, Failure> {
    shared.authorize(&req)?;
    let request: EventRequest = read_json(&req, payload, BODY_LIMIT).await?;
    let user = request.user.ok_or_else(|| Failure::bad_field("user", "field `user` is required"))?;
    let kind = request.kind.ok_or_else(|| {
        Failure::bad_field("kind", "field `kind` is required: response, conversion, opt_out or activity")
    })?;
    let key = idempotency_key(req.headers())?;
    if !shared.user_exists(UserId(user)).await? {
        return Err(Failure::not_found(
            "unknown_user",
            format!("user {user} is not known"),
            Some(format!("create the user first with PUT /v1/users/{user}")),
        ));
    }

    let inbound = &shared.state.inbound;
    let fingerprint = EventFingerprint { user: UserId(user), kind: kind.inbound(), group: request.group.map(GroupId) };
    let view = |at: Timestamp| EventView { user, kind, group: request.group, at: at.to_rfc3339() };
    let mut guard = None;
    let source = match key {
        Some(key) => {
            let source = source_of_key(key);
            match inbound.claim(source, fingerprint) {
                KeyClaim::Fresh => guard = Some(KeyClaimGuard { inbound, source, accepted: None }),
                KeyClaim::Duplicate { at } => {
                    shared.state.metrics.record_api_event(kind.inbound(), true);
                    return Ok(HttpResponse::Ok().json(EventAnswer { duplicate: true, event: view(at) }));
                }
                KeyClaim::InProgress => {
                    return Err(Failure::conflict(
                        "idempotency_key_in_progress",
                        "a request with this Idempotency-Key is still being handled; retry shortly",
                    ));
                }
                KeyClaim::Mismatch => {
                    return Err(Failure::unprocessable(
                        "idempotency_key_reused",
                        IDEMPOTENCY_KEY,
                        "this Idempotency-Key was used for a different event",
                    ));
                }
            }
            source
        }
        None => inbound.anonymous_source(),
    };

    let at = shared.state.clock.now();
    let event =
        InboundEvent { at, user: UserId(user), kind: kind.inbound(), group: fingerprint.group, source: Some(source) };
    match inbound.submit(event).await {
        Ok(()) => {
            if let Some(guard) = guard.as_mut() {
                guard.accepted = Some(at);
            }
            shared.state.metrics.record_api_event(kind.inbound(), false);
            Ok(HttpResponse::Accepted().json(EventAnswer { duplicate: false, event: view(at) }))
        }
        Err(SubmitError::NotStarted) => {
            Err(Failure::unavailable("engine_not_ready", "the engine is not taking events yet; retry shortly"))
        }
        Err(SubmitError::UnknownUser) => Err(Failure::unavailable(
            "user_not_joined",
            "the running engine does not hold this user yet (a user created a moment ago joins within a second); \
             retry with the same Idempotency-Key",
        )),
        Err(e @ SubmitError::Timeout(_)) => Err(Failure::unavailable(
            "engine_busy",
            format!("{e}; retry with the same Idempotency-Key, it cannot count twice"),
        )),
    }
}
