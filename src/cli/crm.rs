//! The operators' commands over a CRM store (`--store`, default `./gavat.db`): analyse a
//! user, report segment performance, show delivery status, list a segment's users. Each
//! prints a table, or JSON with `--json`. Re-segmentation (`gavat segment`) is in
//! [`super::segment`].

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use gavat_experiments::stats::{Interval, wilson};
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::domain::{DAY, HOUR, Segment, Timestamp, UserId};
use crate::policy::{Decision, decide, earliest_allowed};
use crate::segmentation::Explained;
use crate::store::{SqliteStore, StoredEvent};

use super::CliError;

/// Where the store is.
#[derive(Debug, Args)]
pub struct StoreArg {
    /// The CRM store (SQLite), e.g. one written by `gavat simulate --save-state`.
    #[arg(long, value_name = "FILE", default_value = "gavat.db")]
    pub store: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl StoreArg {
    /// Opens the store read-only, for the commands that only read it.
    pub(super) fn open(&self) -> Result<(SqliteStore, Timestamp), CliError> {
        let store = SqliteStore::open_read_only(&self.store).map_err(CliError::usage)?;
        StoreArg::with_now(store)
    }

    /// Opens the store for writing (`gavat segment`, `gavat strategy rollback`).
    pub(super) fn open_for_writing(&self) -> Result<(SqliteStore, Timestamp), CliError> {
        let store = SqliteStore::open_existing(&self.store).map_err(CliError::usage)?;
        StoreArg::with_now(store)
    }

    fn with_now(store: SqliteStore) -> Result<(SqliteStore, Timestamp), CliError> {
        // The store's present: the end of the saved run, or now for a live store.
        let now = store.ended_at().map_err(CliError::failure)?.unwrap_or_else(|| SystemClock.now());
        Ok((store, now))
    }
}

/// `gavat users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Profile, segments with confidence and reasons, recent sends and responses, caps in
    /// force, and when the user may next be messaged (and why not earlier).
    Analyze {
        /// The user id.
        user: u64,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
}

/// `gavat segments …`
#[derive(Debug, Subcommand)]
pub enum SegmentsCommand {
    /// All segments side by side: users, sent, response, conversion and opt-out rates with
    /// Wilson 95% intervals, engagement, and each segment's share of all conversions.
    Report {
        /// Only events since this time: a date (2026-01-15), an RFC 3339 time, or a span back
        /// from the store's present (7d, 24h).
        #[arg(long)]
        since: Option<String>,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// The users in a segment, highest confidence first.
    List {
        /// The segment, e.g. HOT_LEAD.
        segment: String,
        /// At most this many users.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only users held with at least this confidence.
        #[arg(long, default_value_t = 0.0)]
        min_confidence: f32,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
}

/// `gavat delivery …`
#[derive(Debug, Subcommand)]
pub enum DeliveryCommand {
    /// Queue depth, sends due in the next hour, suppressed sends by reason, per segment.
    Status {
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
}

pub(super) fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(value).map_err(CliError::failure)?);
    Ok(())
}

/// Runs `gavat users …`.
pub fn users(command: UsersCommand) -> Result<(), CliError> {
    let UsersCommand::Analyze { user, store } = command;
    let (db, now) = store.open()?;
    let id = UserId(user);
    let Some(u) = db.user(id).map_err(CliError::failure)? else {
        return Err(CliError::usage(anyhow!("no user {user} in {}", store.store.display())));
    };
    let events = db.recent_events(id, 10).map_err(CliError::failure)?;
    let offset = u.profile.utc_offset;
    let (may_send_at, not_now_because) = match decide(&u.caps, &u.caps_in_force, offset, now) {
        Decision::Send => (Some(now), None),
        Decision::Suppress { reason, not_before } => (not_before, Some(reason.as_str())),
    };
    let earliest = earliest_allowed(&u.caps, &u.caps_in_force, offset, now);
    #[derive(Serialize)]
    struct Analysis<'a> {
        user: u64,
        now: Timestamp,
        joined_at: Timestamp,
        utc_offset_minutes: i32,
        bots_followed: u32,
        purchases: u32,
        messages_received: u32,
        responses: u32,
        sessions: u32,
        last_active: Timestamp,
        opted_out: bool,
        segments: &'a [Explained],
        segmented_by: Option<&'a str>,
        governing: Option<Segment>,
        caps: CapsView,
        last_sent: Option<Timestamp>,
        next_planned_send: Option<Timestamp>,
        may_be_messaged_from: Option<Timestamp>,
        not_earlier_because: Option<&'static str>,
        recent: &'a [StoredEvent],
    }
    #[derive(Serialize)]
    struct CapsView {
        daily_limit: u32,
        cooldown_hours: f64,
        allowed_hours: String,
        period_days: i64,
    }
    let c = u.caps_in_force;
    let analysis = Analysis {
        user,
        now,
        joined_at: u.profile.joined_at,
        utc_offset_minutes: offset.0,
        bots_followed: u.profile.bots_followed,
        purchases: u.profile.purchases,
        messages_received: u.profile.responses.received,
        responses: u.profile.responses.responded,
        sessions: u.profile.activity.sessions,
        last_active: u.profile.activity.last_active,
        opted_out: u.caps.opted_out,
        segments: &u.segments,
        segmented_by: u.segmented_by.as_deref(),
        governing: u.governing,
        caps: CapsView {
            daily_limit: c.daily_limit,
            cooldown_hours: c.cooldown_secs as f64 / 3600.0,
            allowed_hours: c.allowed_hours.to_string(),
            period_days: c.period_days,
        },
        last_sent: u.caps.last_sent,
        next_planned_send: u.next_send,
        may_be_messaged_from: may_send_at.or(earliest),
        not_earlier_because: not_now_because,
        recent: &events,
    };
    if store.json {
        return print_json(&analysis);
    }
    let a = &analysis;
    println!("user {user} (as of {now})");
    println!(
        "  joined {}, UTC{:+}h, follows {} bot(s), {} purchase(s)",
        a.joined_at,
        f64::from(a.utc_offset_minutes) / 60.0,
        a.bots_followed,
        a.purchases
    );
    println!(
        "  {} messages received, {} answered; {} sessions, last active {}",
        a.messages_received, a.responses, a.sessions, a.last_active
    );
    if a.opted_out {
        println!("  OPTED OUT: never messaged again");
    }
    println!("segments (by {}, highest confidence first):", a.segmented_by.unwrap_or("nobody yet"));
    for s in a.segments {
        let mark = if Some(s.segment) == a.governing { "  <- governs" } else { "" };
        println!("  {:<18} {:.2}  {}{mark}", s.segment.as_str(), s.confidence, s.reasons.join("; "));
    }
    println!(
        "caps in force: {} a day, {:.1} h cooldown, hours {} local, send days {} apart",
        a.caps.daily_limit, a.caps.cooldown_hours, a.caps.allowed_hours, a.caps.period_days
    );
    match (a.not_earlier_because, a.may_be_messaged_from) {
        (_, None) => println!("next message: never (opted out or no allowed time)"),
        (None, Some(_)) => println!("next message: may be sent now"),
        (Some(reason), Some(t)) => {
            println!("next message: not before {t}: held back now by {reason}; that is the first time every cap allows")
        }
    }
    if let Some(t) = a.next_planned_send {
        println!("planned: {t}");
    }
    println!("recent activity:");
    if events.is_empty() {
        println!("  none");
    }
    for e in &events {
        println!(
            "  {}  {:<10} {:<18} {}{}",
            e.at,
            e.kind,
            e.segment.as_deref().unwrap_or("-"),
            e.content.as_deref().unwrap_or(""),
            e.group.map(|g| format!(" (group {g})")).unwrap_or_default()
        );
    }
    Ok(())
}

/// Parses `--since`: a date, an RFC 3339 time, or `7d` / `24h` back from `now`.
fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, CliError> {
    let bad =
        || CliError::usage(anyhow!("--since {text}: expected a date (2026-01-15), an RFC 3339 time, or 7d / 24h"));
    if let Some(n) = text.strip_suffix('d') {
        let days: i64 = n.parse().map_err(|_| bad())?;
        return Ok(now.plus(-days * DAY));
    }
    if let Some(n) = text.strip_suffix('h') {
        let hours: i64 = n.parse().map_err(|_| bad())?;
        return Ok(now.plus(-hours * HOUR));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Timestamp(t.timestamp()));
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?;
    Ok(Timestamp(date.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc().timestamp()))
}

/// Runs `gavat segments …`.
pub fn segments(command: SegmentsCommand) -> Result<(), CliError> {
    match command {
        SegmentsCommand::Report { since, store } => report(since.as_deref(), &store),
        SegmentsCommand::List { segment, limit, min_confidence, store } => {
            let segment: Segment = segment.parse().map_err(|m: String| CliError::usage(anyhow!(m)))?;
            if !(0.0..=1.0).contains(&min_confidence) {
                return Err(CliError::usage(anyhow!("--min-confidence {min_confidence}: must be in [0, 1]")));
            }
            let (db, _) = store.open()?;
            let members = db.segment_members(segment, min_confidence, limit).map_err(CliError::failure)?;
            if store.json {
                #[derive(Serialize)]
                struct Member {
                    user: u64,
                    confidence: f32,
                    reasons: Vec<String>,
                }
                let list: Vec<Member> = members
                    .into_iter()
                    .map(|(u, confidence, reasons)| Member { user: u.0, confidence, reasons })
                    .collect();
                return print_json(&list);
            }
            println!("{} — {} user(s) shown (confidence ≥ {min_confidence}, at most {limit})", segment, members.len());
            for (user, confidence, reasons) in members {
                println!("  {:>10}  {confidence:.2}  {}", user.0, reasons.join("; "));
            }
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct ReportRow {
    segment: &'static str,
    users: u64,
    sent: u64,
    response_rate: Interval,
    conversion_rate: Interval,
    opt_out_rate: Interval,
    engagement: f64,
    share_of_conversions: f64,
}

fn rate(k: u64, n: u64) -> Interval {
    wilson(k.min(n), n, 0.05).unwrap_or(Interval { estimate: 0.0, low: 0.0, high: 0.0 })
}

fn report(since: Option<&str>, store: &StoreArg) -> Result<(), CliError> {
    let (db, now) = store.open()?;
    let since = since.map(|s| parse_since(s, now)).transpose()?;
    let counts = db.segment_counts(since).map_err(CliError::failure)?;
    let total_conversions: u64 = counts.iter().map(|(_, c)| c.conversions).sum();
    let rows: Vec<ReportRow> = counts
        .iter()
        .map(|(segment, c)| ReportRow {
            segment: segment.as_str(),
            users: c.users,
            sent: c.sent,
            response_rate: rate(c.responses, c.sent),
            conversion_rate: rate(c.conversions, c.sent),
            opt_out_rate: rate(c.opt_outs, c.sent),
            engagement: if c.sent == 0 {
                0.0
            } else {
                100.0 * (c.responses as f64 + 2.0 * c.conversions as f64 - 5.0 * c.opt_outs as f64) / c.sent as f64
            },
            share_of_conversions: if total_conversions == 0 {
                0.0
            } else {
                c.conversions as f64 / total_conversions as f64
            },
        })
        .collect();
    if store.json {
        return print_json(&rows);
    }
    println!(
        "segment performance {} (rates per message, Wilson 95% intervals)",
        since.map_or("over the whole log".to_string(), |t| format!("since {t}"))
    );
    println!(
        "{:<18} {:>7} {:>8} {:>24} {:>24} {:>24} {:>7} {:>7}",
        "segment", "users", "sent", "response rate", "conversion rate", "opt-out rate", "engage", "conv %"
    );
    let pct = |i: &Interval| format!("{:.2}% [{:.2}, {:.2}]", 100.0 * i.estimate, 100.0 * i.low, 100.0 * i.high);
    for r in &rows {
        println!(
            "{:<18} {:>7} {:>8} {:>24} {:>24} {:>24} {:>7.1} {:>6.1}%",
            r.segment,
            r.users,
            r.sent,
            pct(&r.response_rate),
            pct(&r.conversion_rate),
            pct(&r.opt_out_rate),
            r.engagement,
            100.0 * r.share_of_conversions
        );
    }
    Ok(())
}

/// Runs `gavat delivery …`.
pub fn delivery(command: DeliveryCommand) -> Result<(), CliError> {
    let DeliveryCommand::Status { store } = command;
    let (db, now) = store.open()?;
    let queue = db.queue(now.plus(HOUR)).map_err(CliError::failure)?;
    let suppressed = db.suppressions().map_err(CliError::failure)?;
    let opted_out = db.opted_out_count().map_err(CliError::failure)?;
    let depth: u64 = queue.iter().map(|(_, n, _)| n).sum();
    let due: u64 = queue.iter().map(|(_, _, d)| d).sum();
    let mut by_reason: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, reason, n) in &suppressed {
        *by_reason.entry(reason.as_str()).or_default() += n;
    }
    if store.json {
        return print_json(&serde_json::json!({
            "now": now,
            "queue_depth": depth,
            "due_next_hour": due,
            "opted_out_users": opted_out,
            "suppressed_by_reason": by_reason,
            "per_segment": queue.iter().map(|(s, n, d)| serde_json::json!({"segment": s, "queued": n, "due_next_hour": d})).collect::<Vec<_>>(),
            "suppressed": suppressed.iter().map(|(s, r, n)| serde_json::json!({"segment": s, "reason": r, "count": n})).collect::<Vec<_>>(),
        }));
    }
    println!("delivery status as of {now}");
    println!("  queued sends: {depth} (one planned send per reachable user), due in the next hour: {due}");
    println!("  users opted out: {opted_out}");
    let reasons: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!(
        "  suppressed sends in the last run: {}",
        if reasons.is_empty() { "none".into() } else { reasons.join(", ") }
    );
    println!("  {:<18} {:>8} {:>10}", "segment", "queued", "due 1h");
    for (segment, n, d) in &queue {
        println!("  {segment:<18} {n:>8} {d:>10}");
    }
    Ok(())
}
