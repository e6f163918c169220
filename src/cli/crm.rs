//! The operators' commands over a CRM store (`--store`, default `./gavat.db`; SQLite or
//! `redis://…` with `--redis-prefix`, read through [`CrmReader`]): analyse a user, report
//! segment performance, show delivery status, list a segment's users. Each prints a table,
//! or JSON with `--json`, the same for either store. Re-segmentation (`gavat segment`) is in
//! [`super::segment`].

use std::path::Path;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use gavat_experiments::stats::{Interval, wilson};
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::domain::{DAY, HOUR, Segment, Timestamp, UserId};
use crate::inspect::analyze_user;
use crate::policy::SuppressReason;
use crate::redis_link::RedisConnectError;
use crate::store::{CrmReader, RedisStore, SegmentCounts, SqliteStore, StoreUrl, StrategyRollback, UserRepository};

use super::CliError;

/// Where the store is.
#[derive(Debug, Args)]
pub struct StoreArg {
    /// The CRM store: `sqlite:PATH` or a file path (SQLite, e.g. one written by `gavat
    /// simulate --save-state`), or `redis://HOST:PORT/DB` (the Redis store of `gavat run`).
    #[arg(long, value_name = "STORE", default_value = "gavat.db", value_parser = StoreUrl::parse)]
    pub store: StoreUrl,
    /// The key prefix of a Redis store.
    #[arg(long, value_name = "PREFIX", default_value = crate::live::config::DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl StoreArg {
    /// The store as messages name it: an SQLite store by its path as given, a Redis store by
    /// its URL (password redacted) and key prefix.
    pub(super) fn name(&self) -> String {
        match &self.store {
            StoreUrl::Sqlite(path) => path.display().to_string(),
            redis @ StoreUrl::Redis(_) => format!("{redis} (key prefix {:?})", self.redis_prefix),
        }
    }

    /// The SQLite file, for the commands that only work on SQLite (`gavat segment`, `gavat
    /// import`); a Redis store is refused.
    pub(super) fn sqlite_path(&self, command: &str) -> Result<&Path, CliError> {
        match &self.store {
            StoreUrl::Sqlite(path) => Ok(path),
            StoreUrl::Redis(_) => {
                Err(CliError::usage(anyhow!("--store {}: `gavat {command}` works on an SQLite store only", self.store)))
            }
        }
    }

    /// Opens the store for the commands that only read it (SQLite read-only).
    pub(super) fn open(&self) -> Result<(Box<dyn CrmReader>, Timestamp), CliError> {
        let (store, now) = self.open_as(false)?;
        Ok((store, now))
    }

    /// The store's contact book (names, languages, bots): read-only for SQLite.
    pub(super) fn contacts(&self) -> Result<std::sync::Arc<dyn crate::contacts::ContactBook>, CliError> {
        Ok(match &self.store {
            StoreUrl::Sqlite(path) => std::sync::Arc::new(SqliteStore::open_read_only(path).map_err(CliError::usage)?),
            StoreUrl::Redis(url) => std::sync::Arc::new(self.open_redis(url)?),
        })
    }

    /// Opens the store for `gavat strategy rollback` (SQLite for writing).
    pub(super) fn open_for_rollback(&self) -> Result<(Box<dyn StrategyRollback>, Timestamp), CliError> {
        self.open_as(true)
    }

    fn open_as(&self, write: bool) -> Result<(Box<dyn StrategyRollback>, Timestamp), CliError> {
        let store: Box<dyn StrategyRollback> = match &self.store {
            StoreUrl::Sqlite(path) if write => Box::new(SqliteStore::open_existing(path).map_err(CliError::usage)?),
            StoreUrl::Sqlite(path) => Box::new(SqliteStore::open_read_only(path).map_err(CliError::usage)?),
            StoreUrl::Redis(url) => Box::new(self.open_redis(url)?),
        };
        StoreArg::with_now(store)
    }

    /// Opens an SQLite store for writing (`gavat segment`).
    pub(super) fn open_for_writing(&self) -> Result<(SqliteStore, Timestamp), CliError> {
        let path = self.sqlite_path("segment")?;
        let store = SqliteStore::open_existing(path).map_err(CliError::usage)?;
        let now = store.ended_at().map_err(CliError::failure)?.unwrap_or_else(|| SystemClock.now());
        Ok((store, now))
    }

    /// Connects to a Redis store and checks that the prefix holds one (users or a run): a
    /// wrong prefix is bad input, not an empty report.
    fn open_redis(&self, url: &str) -> Result<RedisStore, CliError> {
        let store = RedisStore::connect(url, &self.redis_prefix).map_err(|e| match e {
            RedisConnectError::BadUrl { .. } | RedisConnectError::BadPrefix { .. } => CliError::usage(e),
            other => CliError::failure(other),
        })?;
        let users = store.count_users().map_err(CliError::failure)?;
        if users == 0 && store.saved_run().map_err(CliError::failure)?.is_none() {
            return Err(CliError::usage(anyhow!(
                "{}: no gavat store there (no users, no saved run); check --store and --redis-prefix",
                self.name()
            )));
        }
        Ok(store)
    }

    fn with_now<S: CrmReader + ?Sized>(store: Box<S>) -> Result<(Box<S>, Timestamp), CliError> {
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
        /// from the store's present (7d, 24h); at most 100 years back, not after the present.
        #[arg(long, allow_hyphen_values = true)]
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
    let Some(analysis) = analyze_user(db.as_ref(), UserId(user), now).map_err(CliError::failure)? else {
        return Err(CliError::usage(anyhow!("no user {user} in {}", store.name())));
    };
    if store.json {
        return print_json(&analysis);
    }
    let a = &analysis;
    println!("user {user} (as of {now})");
    println!(
        "  joined {}, {} (UTC{:+}h now), follows {} bot(s), {} purchase(s); {} sessions, last active {}",
        a.joined_at,
        a.time_zone,
        f64::from(a.utc_offset_minutes) / 60.0,
        a.bots_followed,
        a.purchases,
        a.sessions,
        a.last_active
    );
    println!(
        "  before the run (synthetic history): {} messages received, {} answered",
        a.before_the_run.messages_received, a.before_the_run.responses
    );
    println!(
        "  during the run (the log): {} messages received, {} answered",
        a.during_the_run.messages_received, a.during_the_run.responses
    );
    if a.opted_out {
        println!("  OPTED OUT: never messaged again");
    }
    println!("segments (by {}, highest confidence first):", a.segmented_by.as_deref().unwrap_or("nobody yet"));
    for s in &a.segments {
        let mark = if Some(s.segment) == a.governing { "  <- governs" } else { "" };
        println!("  {:<18} {:.2}  {}{mark}", s.segment.as_str(), s.confidence, s.reasons.join("; "));
    }
    println!(
        "caps in force: {} a day, {:.1} h cooldown, hours {} local, send days {} apart",
        a.caps.daily_limit, a.caps.cooldown_hours, a.caps.allowed_hours, a.caps.period_days
    );
    match (a.not_earlier_because.map(SuppressReason::as_str), a.may_be_messaged_from) {
        (Some(rule), None) => println!("next message: never ({rule})"),
        (None, None) => println!("next message: never (no allowed time)"),
        (None, Some(_)) => println!("next message: may be sent now"),
        (Some(rule), Some(t)) => {
            println!(
                "next message: not before {t}, the first time every rule allows; {rule} binds (holds it back longest)"
            )
        }
    }
    if a.not_earlier_because.is_some() {
        let each: Vec<String> = a
            .rules
            .iter()
            .map(|r| {
                let when = match r.allows_from {
                    None => "never".to_string(),
                    Some(t) if t == now => "now".to_string(),
                    Some(t) => t.to_string(),
                };
                format!("{} {when}", r.rule.as_str())
            })
            .collect();
        println!("  each rule alone allows: {}", each.join(", "));
    }
    if let Some(t) = a.next_planned_send {
        println!("planned: {t}");
    }
    println!("recent activity:");
    if a.recent.is_empty() {
        println!("  none");
    }
    for e in &a.recent {
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

/// How far back `--since` may reach from the store's present: 100 years (a longer span
/// is a typo, and would overflow the time arithmetic long before it meant anything).
const MAX_SINCE_DAYS: i64 = 36_525;

/// Parses `--since`: a date, an RFC 3339 time, or `7d` / `24h` back from `now`; the time
/// must lie at most [`MAX_SINCE_DAYS`] before `now` and not after it.
fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, CliError> {
    let bad =
        || CliError::usage(anyhow!("--since {text}: expected a date (2026-01-15), an RFC 3339 time, or 7d / 24h"));
    let too_far = || {
        CliError::usage(anyhow!(
            "--since {text}: reaches more than {} years before the store's present ({now}); leave --since out for the whole log",
            MAX_SINCE_DAYS / 365
        ))
    };
    let span = |n: &str, unit: i64| -> Result<Timestamp, CliError> {
        if n.starts_with('-') {
            return Err(CliError::usage(anyhow!(
                "--since {text}: a span back from the store's present cannot be negative"
            )));
        }
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs = i64::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .filter(|secs| *secs <= MAX_SINCE_DAYS * DAY)
            .ok_or_else(too_far)?;
        Ok(now.plus(-secs))
    };
    let since = if let Some(n) = text.strip_suffix('d') {
        span(n, DAY)?
    } else if let Some(n) = text.strip_suffix('h') {
        span(n, HOUR)?
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        Timestamp(t.timestamp())
    } else {
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?;
        Timestamp(date.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc().timestamp())
    };
    if since > now {
        return Err(CliError::usage(anyhow!(
            "--since {text}: {since} is after the store's present ({now}): there is nothing to report yet"
        )));
    }
    if now.secs().saturating_sub(since.secs()) > MAX_SINCE_DAYS * DAY {
        return Err(too_far());
    }
    Ok(since)
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

/// One row of `segments report`: a segment, or `TOTAL`.
#[derive(Serialize)]
struct ReportRow {
    segment: &'static str,
    /// Users the segment governs now.
    users: u64,
    sent: u64,
    responses: u64,
    conversions: u64,
    opt_outs: u64,
    /// Rates per message with Wilson 95% intervals; `null` when nothing was sent.
    response_rate: Option<Interval>,
    conversion_rate: Option<Interval>,
    opt_out_rate: Option<Interval>,
    /// 100 × (responses + 2·conversions − 5·opt-outs) / sent; `null` when nothing was sent.
    engagement: Option<f64>,
    share_of_conversions: f64,
}

/// What `segments report --json` prints.
#[derive(Serialize)]
struct Report {
    /// The start of the window (`null`: the whole log).
    since: Option<Timestamp>,
    /// The store's present: the end of the window.
    until: Timestamp,
    segments: Vec<ReportRow>,
    total: ReportRow,
}

fn rate(k: u64, n: u64) -> Option<Interval> {
    wilson(k.min(n), n, 0.05).ok()
}

fn report_row(segment: &'static str, c: &SegmentCounts, total_conversions: u64) -> ReportRow {
    ReportRow {
        segment,
        users: c.users,
        sent: c.sent,
        responses: c.responses,
        conversions: c.conversions,
        opt_outs: c.opt_outs,
        response_rate: rate(c.responses, c.sent),
        conversion_rate: rate(c.conversions, c.sent),
        opt_out_rate: rate(c.opt_outs, c.sent),
        engagement: (c.sent > 0).then(|| {
            100.0 * (c.responses as f64 + 2.0 * c.conversions as f64 - 5.0 * c.opt_outs as f64) / c.sent as f64
        }),
        share_of_conversions: if total_conversions == 0 {
            0.0
        } else {
            c.conversions as f64 / total_conversions as f64
        },
    }
}

fn report(since: Option<&str>, store: &StoreArg) -> Result<(), CliError> {
    let (db, now) = store.open()?;
    let since = since.map(|s| parse_since(s, now)).transpose()?;
    let counts = db.segment_counts(since).map_err(CliError::failure)?;
    let mut sum = SegmentCounts::default();
    for (_, c) in &counts {
        sum.users += c.users;
        sum.sent += c.sent;
        sum.responses += c.responses;
        sum.conversions += c.conversions;
        sum.opt_outs += c.opt_outs;
    }
    let segments = counts.iter().map(|(segment, c)| report_row(segment.as_str(), c, sum.conversions)).collect();
    let report = Report { since, until: now, segments, total: report_row("TOTAL", &sum, sum.conversions) };
    if store.json {
        return print_json(&report);
    }
    println!(
        "segment performance {} (rates per message, Wilson 95% intervals)",
        since.map_or(format!("over the whole log, to {now}"), |t| format!("from {t} to {now}"))
    );
    println!(
        "{:<18} {:>7} {:>8} {:>24} {:>24} {:>24} {:>7} {:>7}",
        "segment", "users", "sent", "response rate", "conversion rate", "opt-out rate", "engage", "conv %"
    );
    let pct = |i: &Option<Interval>| match i {
        Some(i) => format!("{:.2}% [{:.2}, {:.2}]", 100.0 * i.estimate, 100.0 * i.low, 100.0 * i.high),
        None => "no sends".to_string(),
    };
    let print_row = |r: &ReportRow| {
        println!(
            "{:<18} {:>7} {:>8} {:>24} {:>24} {:>24} {:>7} {:>6.1}%",
            r.segment,
            r.users,
            r.sent,
            pct(&r.response_rate),
            pct(&r.conversion_rate),
            pct(&r.opt_out_rate),
            r.engagement.map_or("-".to_string(), |e| format!("{e:.1}")),
            100.0 * r.share_of_conversions
        );
    };
    report.segments.iter().for_each(print_row);
    println!("{}", "-".repeat(124));
    print_row(&report.total);
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
