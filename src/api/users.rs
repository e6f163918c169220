//! `PUT /v1/users/{id}` and `GET /v1/users/{id}`: the CRM creates or updates a user, and
//! reads one back, through the [`UserDirectory`](super::UserDirectory). A new user is also
//! sent to the running engine (its arrivals channel), which segments them and plans their
//! first message within their caps.
//!
//! The writable fields are the ones a CRM knows of a user — time zone, bots followed, when
//! they joined, their last activity, purchases. What the engine learns by itself (sessions by
//! hour, reply history, cap counters) is not writable: a new user starts with none, and an
//! update keeps what is stored. Omitted fields keep their stored value (for a new user: the
//! default of a user who has just joined).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::domain::{ActivitySummary, ResponseHistory, Timestamp, UserId, UserProfile, UtcOffset, Zone};
use crate::store::UserState;

use super::Upserted;
use super::body::{BODY_LIMIT, read_json};
use super::reply::Failure;
use super::server::Shared;

/// The smallest and largest UTC offsets on Earth, minutes (−12:00 and +14:00).
pub const UTC_OFFSET_RANGE: std::ops::RangeInclusive<i32> = -720..=840;

/// How far in the future a time sent by a client may lie (its clock may run ahead): later
/// is refused, up to it is taken as now.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// The body of `PUT /v1/users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRequest {
    /// Offset from UTC, minutes: −720..=840, a multiple of 15, fixed all year. A new user
    /// needs it or `time_zone`.
    utc_offset_minutes: Option<i32>,
    /// An IANA time zone (`Europe/Berlin`): the user's local time follows its DST changes.
    /// Decides over `utc_offset_minutes` when both are given.
    time_zone: Option<String>,
    /// Bots of ours the user follows, ≥ 1 (new user: 1).
    bots_followed: Option<u32>,
    /// When they first talked to one of our bots, RFC 3339 (new user: now).
    joined_at: Option<String>,
    /// When they last did anything, RFC 3339 (new user: when they joined).
    last_active: Option<String>,
    /// Purchases so far (new user: 0).
    purchases: Option<u32>,
}

/// A user as the API shows them.
#[derive(Serialize)]
struct UserView {
    id: u64,
    /// The offset in force now.
    utc_offset_minutes: i32,
    /// The IANA zone, or `null` for a fixed offset.
    time_zone: Option<&'static str>,
    bots_followed: u32,
    joined_at: String,
    last_active: String,
    purchases: u32,
    /// Sessions seen, all time.
    sessions: u32,
    /// Messages received and answered, all time.
    responses: ResponsesView,
    /// Opted out: final.
    opted_out: bool,
    /// The last message counted against the caps, if any (RFC 3339).
    last_sent: Option<String>,
}

#[derive(Serialize)]
struct ResponsesView {
    received: u32,
    responded: u32,
}

impl UserView {
    fn of(state: &UserState, now: Timestamp) -> UserView {
        let p = &state.profile;
        UserView {
            id: p.id.0,
            utc_offset_minutes: p.zone.offset_at(now).0,
            time_zone: p.zone.iana_name(),
            bots_followed: p.bots_followed,
            joined_at: p.joined_at.to_rfc3339(),
            last_active: p.activity.last_active.to_rfc3339(),
            purchases: p.purchases,
            sessions: p.activity.sessions,
            responses: ResponsesView { received: p.responses.received, responded: p.responses.responded },
            opted_out: state.caps.opted_out,
            last_sent: state.caps.last_sent.map(Timestamp::to_rfc3339),
        }
    }
}

/// The `{id}` path segment: a user id (a non-negative integer).
fn user_id(req: &HttpRequest) -> Result<UserId, Failure> {
    let raw = req.match_info().get("id").unwrap_or_default();
    raw.parse::<u64>()
        .map(UserId)
        .map_err(|_| Failure::bad_field("id", "the user id in the path must be a non-negative integer"))
}

/// An RFC 3339 time, no later than `now` plus the allowed skew (clamped to `now`).
fn time_field(field: &str, value: &str, now: Timestamp) -> Result<Timestamp, Failure> {
    let parsed = chrono::DateTime::parse_from_rfc3339(value).map_err(|e| {
        Failure::bad_field(field, format!("field `{field}`: not an RFC 3339 time like 2026-01-31T09:00:00Z ({e})"))
    })?;
    let at = Timestamp(parsed.timestamp());
    if at > now.plus(CLOCK_SKEW_SECS) {
        return Err(Failure::bad_field(field, format!("field `{field}`: {at} is in the future")));
    }
    Ok(at.min(now))
}

impl UserRequest {
    /// Checks every given field, then lays them over `known` (or over a new user's
    /// defaults).
    fn apply(self, id: UserId, known: Option<UserProfile>, now: Timestamp) -> Result<UserProfile, Failure> {
        if let Some(minutes) = self.utc_offset_minutes
            && (!UTC_OFFSET_RANGE.contains(&minutes) || minutes % 15 != 0)
        {
            return Err(Failure::bad_field(
                "utc_offset_minutes",
                format!("field `utc_offset_minutes`: {minutes} is not a UTC offset (−720..=840, a multiple of 15)"),
            ));
        }
        let named_zone = match self.time_zone.as_deref() {
            Some(name) => Some(
                name.parse::<Zone>().map_err(|e| Failure::bad_field("time_zone", format!("field `time_zone`: {e}")))?,
            ),
            None => None,
        };
        let zone = named_zone.or(self.utc_offset_minutes.map(|m| Zone::Fixed(UtcOffset(m))));
        if self.bots_followed == Some(0) {
            return Err(Failure::bad_field("bots_followed", "field `bots_followed`: must be at least 1"));
        }
        let joined_at = self.joined_at.as_deref().map(|v| time_field("joined_at", v, now)).transpose()?;
        let last_active = self.last_active.as_deref().map(|v| time_field("last_active", v, now)).transpose()?;
        let mut profile = match known {
            Some(known) => known,
            None => {
                let Some(zone) = zone else {
                    return Err(Failure::bad_field(
                        "utc_offset_minutes",
                        "field `utc_offset_minutes` (or `time_zone`) is required for a new user: their local time decides when they may be messaged",
                    ));
                };
                let joined = joined_at.unwrap_or(now);
                UserProfile {
                    id,
                    joined_at: joined,
                    zone,
                    // Joining is activity: a user who has just joined is not silent.
                    activity: ActivitySummary { last_active: joined, ..ActivitySummary::default() },
                    bots_followed: 1,
                    purchases: 0,
                    responses: ResponseHistory::default(),
                }
            }
        };
        if let Some(zone) = zone {
            profile.zone = zone;
        }
        if let Some(bots) = self.bots_followed {
            profile.bots_followed = bots;
        }
        if let Some(joined) = joined_at {
            profile.joined_at = joined;
        }
        if let Some(last) = last_active {
            profile.activity.last_active = last;
        }
        if let Some(purchases) = self.purchases {
            profile.purchases = purchases;
        }
        Ok(profile)
    }
}

/// `PUT /v1/users/{id}`: 201 created, 200 updated; the user as stored.
pub(super) async fn put_user(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, Failure> {
    shared.authorize(&req)?;
    let id = user_id(&req)?;
    let request: UserRequest = read_json(&req, payload, BODY_LIMIT).await?;
    let known = shared.get_user(id).await?;
    let caps = known.as_ref().map(|k| k.caps).unwrap_or_default();
    let profile = request.apply(id, known.map(|k| k.profile), shared.state.clock.now())?;
    let upserted = shared.upsert_user(profile.clone()).await?;
    let view = UserView::of(&UserState { profile: profile.clone(), caps }, shared.state.clock.now());
    match upserted {
        Upserted::Created => {
            if shared.state.arrivals.send(profile).is_err() {
                tracing::warn!(user = %id, "The engine is not running; a new user was stored but not planned.");
            }
            Ok(HttpResponse::Created().json(view))
        }
        Upserted::Updated => Ok(HttpResponse::Ok().json(view)),
    }
}

/// `GET /v1/users/{id}`: the user as stored, or 404.
pub(super) async fn get_user(req: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, Failure> {
    shared.authorize(&req)?;
    let id = user_id(&req)?;
    match shared.get_user(id).await? {
        Some(state) => Ok(HttpResponse::Ok().json(UserView::of(&state, shared.state.clock.now()))),
        None => Err(Failure::not_found(
            "unknown_user",
            format!("user {id} is not known"),
            Some(format!("create the user with PUT /v1/users/{id}")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000);

    fn request(json: &str) -> Result<UserRequest, Failure> {
        super::super::body::parse_strict(json.as_bytes())
    }

    /// A new user needs a time zone and gets a just-joined profile; an update keeps what it
    /// does not name.
    #[test]
    fn new_users_get_defaults_and_updates_keep_the_rest() -> Result<(), Failure> {
        assert!(request(r#"{"bots_followed": 2}"#)?.apply(UserId(1), None, NOW).is_err(), "no time zone");
        let new = request(r#"{"utc_offset_minutes": 180}"#)?.apply(UserId(1), None, NOW)?;
        assert_eq!((new.joined_at, new.activity.last_active, new.bots_followed), (NOW, NOW, 1));
        let updated = request(r#"{"purchases": 2, "joined_at": "2026-01-31T09:00:00+03:00"}"#)?.apply(
            UserId(1),
            Some(new),
            NOW,
        )?;
        assert_eq!(updated.zone, Zone::fixed(180), "kept");
        assert_eq!(updated.purchases, 2);
        assert_eq!(updated.joined_at.to_rfc3339(), "2026-01-31T06:00:00Z");
        let named = request(r#"{"time_zone": "Asia/Kathmandu"}"#)?.apply(UserId(1), Some(updated), NOW)?;
        assert_eq!(named.zone.to_string(), "Asia/Kathmandu");
        let new = request(r#"{"time_zone": "Europe/Berlin", "utc_offset_minutes": 0}"#)?.apply(UserId(2), None, NOW)?;
        assert_eq!(new.zone.to_string(), "Europe/Berlin", "the name decides");
        Ok(())
    }

    /// Out-of-range values are refused naming their field.
    #[test]
    fn bad_values_name_their_field() -> Result<(), Failure> {
        for (json, field) in [
            (r#"{"utc_offset_minutes": 900}"#, "utc_offset_minutes"),
            (r#"{"utc_offset_minutes": 3}"#, "utc_offset_minutes"),
            (r#"{"utc_offset_minutes": 0, "bots_followed": 0}"#, "bots_followed"),
            (r#"{"time_zone": "Mars/Olympus"}"#, "time_zone"),
            (r#"{"utc_offset_minutes": 0, "time_zone": "UTC+3"}"#, "time_zone"),
            (r#"{"utc_offset_minutes": 0, "joined_at": "yesterday"}"#, "joined_at"),
            (r#"{"utc_offset_minutes": 0, "last_active": "2099-01-01T00:00:00Z"}"#, "last_active"),
        ] {
            let Err(failure) = request(json)?.apply(UserId(1), None, NOW) else {
                return Err(Failure::bad_request(format!("{json} was accepted")));
            };
            assert_eq!(failure.field(), Some(field), "{json}");
        }
        Ok(())
    }
}
