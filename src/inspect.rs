//! What the operator tools show of one user, computed once for every front end: `gavat
//! users analyze`, `gavat preview` and the dashboard's user page read the same
//! [`UserAnalysis`] and [`MessagePreview`], so the three never disagree.
//!
//! Both are read from a [`CrmReader`] at the store's present `now` (the end of its saved
//! run, or the wall clock for a live store). The preview assumes what the engine does: the
//! governing segment's strategy chooses; a run starts each user's content rotation at the
//! strategy's first kind and sends through the user's first bot.

use std::sync::Arc;

use serde::Serialize;

use crate::compose::{Explained as ComposedText, MessageTextError, message_text};
use crate::config::{ConfigError, StrategyBook};
use crate::contacts::ContactBook;
use crate::domain::{BotId, ContentKind, Destination, HourMask, OutboundMessage, Segment, Timestamp, UserId};
use crate::live::config::RunConfig;
use crate::policy::{SuppressReason, next_send, plan_next_send};
use crate::segmentation::Explained;
use crate::store::{CrmReader, StoreError, StoredEvent};

/// How many log entries [`analyze_user`] shows.
pub const RECENT_EVENTS: usize = 10;

/// Why a user could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The store could not be read: fatal for the request.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured strategy file could not be read (a preview needs the governing
    /// segment's content kinds when the store records no strategies).
    #[error(transparent)]
    Strategies(#[from] ConfigError),
    /// The configured templates could not be loaded.
    #[error(transparent)]
    Messages(#[from] MessageTextError),
    /// The governing segment's strategy names no content kind to send.
    #[error("the strategy of {segment} sends no content kind")]
    NoContent {
        /// The segment.
        segment: Segment,
    },
}

/// Messages and replies in one stretch of the user's history.
#[derive(Debug, Clone, Serialize)]
pub struct Tally {
    /// Messages the user received.
    pub messages_received: u64,
    /// Replies to them.
    pub responses: u64,
}

/// One rule's own earliest time.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// The rule.
    pub rule: SuppressReason,
    /// The first time it allows a send (`null`: never).
    pub allows_from: Option<Timestamp>,
}

/// The caps in force for a user.
#[derive(Debug, Clone, Serialize)]
pub struct CapsView {
    /// Messages a local day.
    pub daily_limit: u32,
    /// Hours between two messages.
    pub cooldown_hours: f64,
    /// The local hours a message may go out in.
    pub allowed_hours: String,
    /// Days between send days (1: every day).
    pub period_days: i64,
}

/// What `gavat users analyze` shows (its `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct UserAnalysis {
    /// The user id.
    pub user: u64,
    /// The store's present.
    pub now: Timestamp,
    /// When the user joined.
    pub joined_at: Timestamp,
    /// The offset in force now.
    pub utc_offset_minutes: i32,
    /// The IANA zone, or `UTC+03:00` for a fixed offset.
    pub time_zone: String,
    /// Bots the user follows.
    pub bots_followed: u32,
    /// Purchases.
    pub purchases: u32,
    /// The profile's counts from before the log starts: in a simulated store, the
    /// synthetic history the population was generated with.
    pub before_the_run: Tally,
    /// What the log records for this user.
    pub during_the_run: Tally,
    /// Sessions.
    pub sessions: u32,
    /// Last activity.
    pub last_active: Timestamp,
    /// Opted out: never messaged again.
    pub opted_out: bool,
    /// Segments, highest confidence first, with the rules' reasons.
    pub segments: Vec<Explained>,
    /// Who assigned them (`rules`, `llm`).
    pub segmented_by: Option<String>,
    /// The segment whose strategy governs the user.
    pub governing: Option<Segment>,
    /// The caps in force.
    pub caps: CapsView,
    /// The last message sent.
    pub last_sent: Option<Timestamp>,
    /// The next send the engine planned.
    pub next_planned_send: Option<Timestamp>,
    /// The first time every rule allows (`null`: never).
    pub may_be_messaged_from: Option<Timestamp>,
    /// The rule that binds: the one whose own earliest time is the latest (`null`: a
    /// message may go out now).
    pub not_earlier_because: Option<SuppressReason>,
    /// Each rule's own earliest time.
    pub rules: Vec<RuleView>,
    /// The last [`RECENT_EVENTS`] log entries, newest first.
    pub recent: Vec<StoredEvent>,
}

/// Analyses user `id` of `db` at `now`; `None` if the store has no such user.
pub fn analyze_user(db: &dyn CrmReader, id: UserId, now: Timestamp) -> Result<Option<UserAnalysis>, StoreError> {
    let Some(u) = db.user(id)? else { return Ok(None) };
    let recent = db.recent_events(id, RECENT_EVENTS)?;
    let during = db.user_log_counts(id)?;
    let zone = u.profile.zone;
    let next = next_send(&u.caps, &u.caps_in_force, zone, now);
    let c = u.caps_in_force;
    let received = u64::from(u.profile.responses.received);
    let responded = u64::from(u.profile.responses.responded);
    Ok(Some(UserAnalysis {
        user: id.0,
        now,
        joined_at: u.profile.joined_at,
        utc_offset_minutes: zone.offset_at(now).0,
        time_zone: zone.to_string(),
        bots_followed: u.profile.bots_followed,
        purchases: u.profile.purchases,
        before_the_run: Tally {
            messages_received: received.saturating_sub(during.sent),
            responses: responded.saturating_sub(during.responses),
        },
        during_the_run: Tally { messages_received: during.sent, responses: during.responses },
        sessions: u.profile.activity.sessions,
        last_active: u.profile.activity.last_active,
        opted_out: u.caps.opted_out,
        segments: u.segments,
        segmented_by: u.segmented_by,
        governing: u.governing,
        caps: CapsView {
            daily_limit: c.daily_limit,
            cooldown_hours: c.cooldown_secs as f64 / 3600.0,
            allowed_hours: c.allowed_hours.to_string(),
            period_days: c.period_days,
        },
        last_sent: u.caps.last_sent,
        next_planned_send: u.next_send,
        may_be_messaged_from: next.at,
        not_earlier_because: next.binding,
        rules: next.rules.iter().map(|r| RuleView { rule: r.rule, allows_from: r.at }).collect(),
        recent,
    }))
}

/// The bot a preview names.
#[derive(Debug, Clone, Serialize)]
pub struct BotView {
    /// Its index in `[[bots]]`.
    pub index: u32,
    /// Its name.
    pub name: String,
}

/// What `gavat preview` shows (its `--json`): the next message a user would get.
#[derive(Debug, Clone, Serialize)]
pub struct MessagePreview {
    /// The user id.
    pub user: u64,
    /// The store's present.
    pub now: Timestamp,
    /// The governing segment (`null`: none, so no strategy messages the user).
    pub segment: Option<Segment>,
    /// The content kind.
    pub content: Option<&'static str>,
    /// The bot it goes through.
    pub bot: Option<BotView>,
    /// The earliest time every rule allows (`null`: never).
    pub earliest: Option<Timestamp>,
    /// The rule that keeps the message from going sooner (`null`: it may go now).
    pub not_sooner_because: Option<SuppressReason>,
    /// When the strategy would send it: the earliest time, moved into the optimal hours
    /// when they come later the same day.
    pub planned: Option<Timestamp>,
    /// The message (`null`: the user holds no segment).
    pub message: Option<ComposedText>,
    /// How the contacts were read.
    pub contacts: &'static str,
}

/// The next message user `id` of `db` would get at `now`, written with `config`'s
/// `[messages]` and `contacts` (described by `contacts_source`); `None` if the store has
/// no such user.
pub fn preview_message(
    db: &dyn CrmReader,
    id: UserId,
    now: Timestamp,
    config: &RunConfig,
    contacts: Arc<dyn ContactBook>,
    contacts_source: &'static str,
) -> Result<Option<MessagePreview>, InspectError> {
    let Some(user) = db.user(id)? else { return Ok(None) };
    let zone = user.profile.zone;
    let caps = user.caps_in_force;
    let next = next_send(&user.caps, &caps, zone, now);
    let mut preview = MessagePreview {
        user: id.0,
        now,
        segment: user.governing,
        content: None,
        bot: None,
        earliest: next.at,
        not_sooner_because: next.binding,
        planned: None,
        message: None,
        contacts: contacts_source,
    };
    let Some(segment) = user.governing else { return Ok(Some(preview)) };
    let (content, optimal) = strategy_of(db, config, segment)?;
    let kind = *content.first().ok_or(InspectError::NoContent { segment })?;
    preview.planned = plan_next_send(&user.caps, &caps, optimal, zone, now, 0);
    let bot_name = config.bots.first().map_or_else(|| "gavat".to_string(), |b| b.name.clone());
    preview.bot = Some(BotView { index: 0, name: bot_name.clone() });
    preview.content = Some(kind.as_str());
    let text = message_text(config, contacts)?;
    let message = OutboundMessage {
        id: 0,
        to: Destination::User(id),
        bot: BotId(0),
        content: kind,
        segment,
        at: preview.planned.or(preview.earliest).unwrap_or(now),
    };
    preview.message = Some(text.explain_now(&message, &bot_name));
    Ok(Some(preview))
}

/// The content kinds and optimal hours of `segment`'s strategy: the one the store records
/// in force, else the configured (or shipped) strategy file's.
fn strategy_of(
    db: &dyn CrmReader,
    config: &RunConfig,
    segment: Segment,
) -> Result<(Vec<ContentKind>, HourMask), InspectError> {
    if let Some(s) = db.strategies_in_force()?.into_iter().find(|s| s.segment == segment) {
        return Ok((s.strategy.content, s.strategy.optimal_hours));
    }
    let book = match &config.strategies {
        Some(path) => StrategyBook::from_path(path)?,
        None => StrategyBook::defaults(),
    };
    let s = book.get(segment);
    Ok((s.content.clone(), s.optimal_hours))
}
