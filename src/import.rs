//! Users from a CRM export into the store (`gavat import users`): a CSV file with a header
//! or JSON lines, the columns in `docs/import.md`. Owns reading and validating the file,
//! merging each line with what the store holds, and re-segmenting the users with the rules.
//!
//! Nothing is written unless everything is valid. The file is read whole first (the users
//! are kept in memory: a million lines cost a few hundred megabytes); every bad line is
//! reported as `FILE:LINE: field NAME: problem (value as written)`. Then each user is
//! merged with the stored one and checked again as a whole — a `responses` above
//! `messages_received`, a `last_active` before `joined_at` — and only a file with no
//! problem at all is written, in one transaction ([`SqliteStore::upsert_profiles`]).
//!
//! A line sets the fields it gives. A field left out (an empty CSV cell, a JSON `null` or
//! an absent key) keeps what the store holds for an existing user and takes its default for
//! a new one. Cap counters are never imported: an existing user keeps them, an opt-out
//! stays final, a new user starts with none.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::StrategyBook;
use crate::domain::{ActivitySummary, ResponseHistory, SegmentSet, Timestamp, UserId, UserProfile, UtcOffset, Zone};
use crate::policy::{caps_for, governing_segment};
use crate::segmentation::{self, SegmentationRules};
use crate::store::{ProfileUpdate, SqliteStore, UpsertCounts, UpsertError, UpsertMode, UserState};

/// Problems listed in full; the rest are counted.
pub const MAX_LISTED: usize = 50;

/// Most answers `recent_responses` can hold: the store keeps the last 16.
const RECENT_WINDOW: usize = 16;

/// The columns (CSV) or keys (JSON lines) of a users file, in the order `docs/import.md`
/// lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `id`: the user id (a Telegram user id). Required.
    Id,
    /// `utc_offset_minutes`: −720 to 840, a fixed offset. Required unless `time_zone` is
    /// given.
    UtcOffsetMinutes,
    /// `bots_followed`: at least 1; default 1.
    BotsFollowed,
    /// `joined_at`: RFC 3339; default the store's present.
    JoinedAt,
    /// `purchases`: default 0.
    Purchases,
    /// `sessions`: sessions in total; default the sum of `sessions_by_local_hour`.
    Sessions,
    /// `sessions_by_local_hour`: 24 counts, local hours 0 to 23.
    SessionsByLocalHour,
    /// `last_active`: RFC 3339; default `joined_at`.
    LastActive,
    /// `weekly_sessions`: sessions in about the week before `last_active`.
    WeeklySessions,
    /// `messages_received`: our messages the user received, all time.
    MessagesReceived,
    /// `responses`: of those, answered.
    Responses,
    /// `recent_responses`: the last up to 16 messages, oldest first, `y` answered, `n` not.
    RecentResponses,
    /// `time_zone`: an IANA zone name (`Europe/Berlin`); the user's local day and hour then
    /// follow its DST changes. When given it decides, whatever `utc_offset_minutes` says.
    TimeZone,
}

impl Field {
    /// Every field, in file order.
    pub const ALL: [Field; 13] = [
        Field::Id,
        Field::UtcOffsetMinutes,
        Field::BotsFollowed,
        Field::JoinedAt,
        Field::Purchases,
        Field::Sessions,
        Field::SessionsByLocalHour,
        Field::LastActive,
        Field::WeeklySessions,
        Field::MessagesReceived,
        Field::Responses,
        Field::RecentResponses,
        Field::TimeZone,
    ];

    /// The column or key name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::UtcOffsetMinutes => "utc_offset_minutes",
            Field::BotsFollowed => "bots_followed",
            Field::JoinedAt => "joined_at",
            Field::Purchases => "purchases",
            Field::Sessions => "sessions",
            Field::SessionsByLocalHour => "sessions_by_local_hour",
            Field::LastActive => "last_active",
            Field::WeeklySessions => "weekly_sessions",
            Field::MessagesReceived => "messages_received",
            Field::Responses => "responses",
            Field::RecentResponses => "recent_responses",
            Field::TimeZone => "time_zone",
        }
    }

    /// Whether every line must give it (`utc_offset_minutes` only where `time_zone` is not
    /// given: see [`Field::stands_in`]).
    pub fn required(self) -> bool {
        matches!(self, Field::Id | Field::UtcOffsetMinutes)
    }

    /// The field that, given, makes this required one unnecessary: `time_zone` for
    /// `utc_offset_minutes`.
    pub fn stands_in(self) -> Option<Field> {
        (self == Field::UtcOffsetMinutes).then_some(Field::TimeZone)
    }

    fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Bit for [`UserRow::given`].
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The known names, for "unknown column" errors.
fn known_names() -> String {
    Field::ALL.map(Field::name).join(", ")
}

/// How the file is written, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.csv`: comma-separated, a header line naming the columns.
    Csv,
    /// `.jsonl` or `.ndjson`: one JSON object per line.
    JsonLines,
}

impl Format {
    /// The format named by `path`'s extension (any case).
    pub fn of(path: &Path) -> Result<Format, ImportError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson") => Ok(Format::JsonLines),
            _ => Err(ImportError::UnknownFormat { path: path.to_path_buf() }),
        }
    }
}

/// One thing wrong with a file, at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The line (1 for a CSV header).
    pub line: u64,
    /// The column or key at fault (as written, for an unknown one); `None` for a line that
    /// cannot be read at all.
    pub field: Option<String>,
    /// What is wrong.
    pub problem: String,
    /// The value as written, when there is one.
    pub written: Option<String>,
}

impl Problem {
    fn field(line: u64, field: impl Into<String>, problem: impl Into<String>, written: Option<&str>) -> Problem {
        Problem { line, field: Some(field.into()), problem: problem.into(), written: written.map(str::to_string) }
    }

    fn line(line: u64, problem: impl Into<String>) -> Problem {
        Problem { line, field: None, problem: problem.into(), written: None }
    }
}

impl fmt::Display for Problem {
    /// `LINE: field NAME: problem (value as written)`; the caller puts the file in front.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.line)?;
        if let Some(field) = &self.field {
            write!(f, "field {field}: ")?;
        }
        f.write_str(&self.problem)?;
        if let Some(written) = &self.written {
            write!(f, " ({written})")?;
        }
        Ok(())
    }
}

/// The problems of a file: the first [`MAX_LISTED`] by line, and how many there are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    /// The first problems, in line order.
    pub listed: Vec<Problem>,
    /// All problems, listed or not.
    pub total: u64,
    /// Lines with at least one problem.
    pub lines: u64,
}

impl Problems {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds the problems of one line (lines must come in order).
    fn add_line(&mut self, problems: Vec<Problem>) {
        if problems.is_empty() {
            return;
        }
        self.lines += 1;
        self.total += problems.len() as u64;
        let room = MAX_LISTED.saturating_sub(self.listed.len());
        self.listed.extend(problems.into_iter().take(room));
    }

    /// Both lists together, in line order.
    fn merge(mut self, other: Problems) -> Problems {
        self.listed.extend(other.listed);
        self.listed.sort_by_key(|p| p.line); // stable: a line's problems keep their order
        self.listed.truncate(MAX_LISTED);
        Problems { listed: self.listed, total: self.total + other.total, lines: self.lines + other.lines }
    }
}

/// Why a file was not imported. Each is bad input (exit code 2) except
/// [`ImportError::Store`], a failure while running.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The extension names no format.
    #[error("{}: cannot tell the format from the extension: name it .csv, .jsonl or .ndjson", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file cannot be read (missing, a directory, unreadable).
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// The file holds no user.
    #[error("{}: {what}: no users to import", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What it holds instead (`an empty file`, `only a header`).
        what: &'static str,
    },
    /// Lines are bad; nothing was written. The problems are listed by [`ImportError::report`].
    #[error(
        "{}: {} problem(s) on {} line(s); nothing written",
        path.display(), problems.total, problems.lines
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problems: Problems,
    },
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ImportError {
    /// Whether the input is at fault (exit code 2) rather than the machine (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ImportError::Store(_))
    }

    /// For [`ImportError::Invalid`]: one line per listed problem,
    /// `FILE:LINE: field NAME: problem (value as written)`, then how many more there are.
    pub fn report(&self) -> Vec<String> {
        let ImportError::Invalid { path, problems } = self else { return Vec::new() };
        let mut out: Vec<String> = problems.listed.iter().map(|p| format!("{}:{p}", path.display())).collect();
        let more = problems.total - problems.listed.len() as u64;
        if more > 0 {
            out.push(format!("{}: … and {more} more problem(s)", path.display()));
        }
        out
    }
}

/// A value given in the file, with its text as written (for times, whose text differs from
/// the instant the store keeps).
#[derive(Clone, Debug, PartialEq)]
pub struct Written<T> {
    /// The value.
    pub value: T,
    /// As written.
    pub text: Box<str>,
}

/// One valid line: what it sets. `None` fields were left out.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    /// Where it is in the file.
    pub line: u64,
    /// Who.
    pub id: UserId,
    /// `utc_offset_minutes` (0 when only `time_zone` was given).
    pub utc_offset: UtcOffset,
    /// `time_zone`.
    pub time_zone: Option<Zone>,
    /// `bots_followed`.
    pub bots_followed: Option<u32>,
    /// `joined_at`.
    pub joined_at: Option<Written<Timestamp>>,
    /// `purchases`.
    pub purchases: Option<u32>,
    /// `sessions`.
    pub sessions: Option<u32>,
    /// `sessions_by_local_hour`.
    pub by_local_hour: Option<[u16; 24]>,
    /// `last_active`.
    pub last_active: Option<Written<Timestamp>>,
    /// `weekly_sessions`.
    pub weekly_sessions: Option<f32>,
    /// `messages_received`.
    pub received: Option<u32>,
    /// `responses`.
    pub responded: Option<u32>,
    /// `recent_responses`: the bits (newest in bit 0, 1 = answered) and how many.
    pub recent: Option<(u16, u8)>,
    /// Which fields the line gave ([`Field::bit`]).
    given: u16,
}

impl UserRow {
    /// The zone the line gives: its `time_zone`, else its fixed `utc_offset_minutes`.
    pub fn zone(&self) -> Zone {
        self.time_zone.unwrap_or(Zone::Fixed(self.utc_offset))
    }

    /// Whether the line gave `field`.
    pub fn gave(&self, field: Field) -> bool {
        self.given & field.bit() != 0
    }

    /// The profile this line makes of `stored` (`None`: a new user), at `now`: given fields
    /// replace, the others are kept, or defaulted for a new user.
    pub fn merge(&self, stored: Option<&UserProfile>, now: Timestamp) -> UserProfile {
        let joined_at = self.joined_at.as_ref().map(|w| w.value);
        let mut p = match stored {
            Some(p) => p.clone(),
            None => {
                let joined_at = joined_at.unwrap_or(now);
                UserProfile {
                    id: self.id,
                    joined_at,
                    zone: self.zone(),
                    activity: ActivitySummary {
                        sessions: self.by_local_hour.map_or(0, |h| hour_total(&h).min(u64::from(u32::MAX)) as u32),
                        last_active: joined_at,
                        ..ActivitySummary::default()
                    },
                    bots_followed: 1,
                    purchases: 0,
                    responses: ResponseHistory::default(),
                }
            }
        };
        p.zone = self.zone();
        set(&mut p.joined_at, joined_at);
        set(&mut p.bots_followed, self.bots_followed);
        set(&mut p.purchases, self.purchases);
        set(&mut p.activity.sessions, self.sessions);
        set(&mut p.activity.by_local_hour, self.by_local_hour);
        set(&mut p.activity.last_active, self.last_active.as_ref().map(|w| w.value));
        set(&mut p.activity.weekly_sessions, self.weekly_sessions);
        set(&mut p.responses.received, self.received);
        set(&mut p.responses.responded, self.responded);
        if let Some((recent, len)) = self.recent {
            p.responses.recent = recent;
            p.responses.recent_len = len;
        }
        p
    }

    /// What is inconsistent in `merged` (this line merged with the stored user, or the
    /// defaults) at `now`. A rule is checked only when the line gives one of its fields: an
    /// import never blames a line for what the store held before it.
    pub fn check(&self, merged: &UserProfile, stored: bool, now: Timestamp) -> Vec<Problem> {
        let mut out = Vec::new();
        let origin = if stored { "stored" } else { "default" };
        // How a field's value is named in a message about another field.
        let named = |field: Field, value: String| {
            if self.gave(field) { format!("{field} {value}") } else { format!("{field} {value} ({origin})") }
        };
        let joined = merged.joined_at;
        let active = merged.activity.last_active;
        let time_text = |w: &Option<Written<Timestamp>>, t: Timestamp| {
            w.as_ref().map_or_else(|| t.to_rfc3339(), |w| w.text.to_string())
        };
        let (joined_text, active_text) = (time_text(&self.joined_at, joined), time_text(&self.last_active, active));
        for (field, at, text) in [(Field::JoinedAt, joined, &joined_text), (Field::LastActive, active, &active_text)] {
            if self.gave(field) && at > now {
                out.push(Problem::field(
                    self.line,
                    field.name(),
                    format!("is after the store's present ({now}): a time still to come"),
                    Some(text),
                ));
            }
        }
        let mut rule = |a: Field, b: Field, holds: bool, why: &dyn Fn(Field) -> (String, String)| {
            if holds {
                return;
            }
            let blamed = if self.gave(a) {
                a
            } else if self.gave(b) {
                b
            } else {
                return;
            };
            let (problem, written) = why(blamed);
            out.push(Problem::field(self.line, blamed.name(), problem, Some(&written)));
        };
        rule(Field::LastActive, Field::JoinedAt, active >= joined, &|blamed| match blamed {
            Field::LastActive => {
                (format!("is before {}", named(Field::JoinedAt, joined.to_rfc3339())), active_text.clone())
            }
            _ => (format!("is after {}", named(Field::LastActive, active.to_rfc3339())), joined_text.clone()),
        });
        let r = &merged.responses;
        rule(Field::Responses, Field::MessagesReceived, r.responded <= r.received, &|blamed| match blamed {
            Field::Responses => (
                format!("more than {}", named(Field::MessagesReceived, r.received.to_string())),
                r.responded.to_string(),
            ),
            _ => (format!("fewer than {}", named(Field::Responses, r.responded.to_string())), r.received.to_string()),
        });
        let recent = recent_text(r.recent, r.recent_len);
        rule(Field::RecentResponses, Field::MessagesReceived, u32::from(r.recent_len) <= r.received, &|blamed| {
            match blamed {
                Field::RecentResponses => (
                    format!(
                        "{} messages, more than {}",
                        r.recent_len,
                        named(Field::MessagesReceived, r.received.to_string())
                    ),
                    recent.clone(),
                ),
                _ => (
                    format!(
                        "fewer than the {} messages of {}",
                        r.recent_len,
                        named(Field::RecentResponses, recent.clone())
                    ),
                    r.received.to_string(),
                ),
            }
        });
        let answered = r.recent.count_ones();
        rule(Field::RecentResponses, Field::Responses, answered <= r.responded, &|blamed| match blamed {
            Field::RecentResponses => (
                format!("{answered} answered, more than {}", named(Field::Responses, r.responded.to_string())),
                recent.clone(),
            ),
            _ => (
                format!("fewer than the {answered} answered in {}", named(Field::RecentResponses, recent.clone())),
                r.responded.to_string(),
            ),
        });
        let a = &merged.activity;
        rule(
            Field::WeeklySessions,
            Field::Sessions,
            f64::from(a.weekly_sessions) <= f64::from(a.sessions),
            &|blamed| match blamed {
                Field::WeeklySessions => (
                    format!("more than {}", named(Field::Sessions, a.sessions.to_string())),
                    a.weekly_sessions.to_string(),
                ),
                _ => (
                    format!("fewer than {}", named(Field::WeeklySessions, a.weekly_sessions.to_string())),
                    a.sessions.to_string(),
                ),
            },
        );
        let by_hour = hour_total(&a.by_local_hour);
        rule(Field::SessionsByLocalHour, Field::Sessions, by_hour <= u64::from(a.sessions), &|blamed| match blamed {
            Field::SessionsByLocalHour => (
                format!("counts {by_hour} sessions, more than {}", named(Field::Sessions, a.sessions.to_string())),
                hours_text(&a.by_local_hour),
            ),
            _ => {
                (format!("fewer than the {by_hour} sessions counted by sessions_by_local_hour"), a.sessions.to_string())
            }
        });
        out
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn hour_total(hours: &[u16; 24]) -> u64 {
    hours.iter().map(|&h| u64::from(h)).sum()
}

fn hours_text(hours: &[u16; 24]) -> String {
    hours.map(|h| h.to_string()).join(" ")
}

/// `recent_responses` as written: oldest first.
fn recent_text(bits: u16, len: u8) -> String {
    (0..len).rev().map(|i| if bits & (1 << i) != 0 { 'y' } else { 'n' }).collect()
}

/// A cell of the file before it is checked.
#[derive(Clone, Copy)]
enum Cell<'a> {
    /// A CSV cell, trimmed.
    Text(&'a str),
    /// A JSON value, as written.
    Json(&'a RawValue),
}

impl<'a> Cell<'a> {
    /// The value as written.
    fn written(self) -> &'a str {
        match self {
            Cell::Text(t) => t,
            Cell::Json(v) => v.get(),
        }
    }

    /// Left out: an empty CSV cell or a JSON `null`.
    fn is_absent(self) -> bool {
        match self {
            Cell::Text(t) => t.is_empty(),
            Cell::Json(v) => v.get() == "null",
        }
    }

    /// What kind of JSON value this is, for "expected …, found …" errors.
    fn json_kind(v: &RawValue) -> &'static str {
        match v.get().as_bytes().first() {
            Some(b'"') => "a string",
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b't' | b'f') => "a boolean",
            _ => "a number",
        }
    }

    /// The text of a number: a CSV cell, or a JSON number.
    fn number(self) -> Result<&'a str, String> {
        match self {
            Cell::Text(t) => Ok(t),
            Cell::Json(v) if Cell::json_kind(v) == "a number" => Ok(v.get()),
            Cell::Json(v) => Err(format!("expected a number, found {}", Cell::json_kind(v))),
        }
    }

    /// The text of a string: a CSV cell, or a JSON string (unescaped).
    fn string(self) -> Result<String, String> {
        match self {
            Cell::Text(t) => Ok(t.to_string()),
            Cell::Json(v) => serde_json::from_str::<String>(v.get())
                .map_err(|_| format!("expected a string, found {}", Cell::json_kind(v))),
        }
    }
}

/// A whole number in `min..=max`.
fn integer(cell: Cell<'_>, min: i128, max: i128) -> Result<i128, String> {
    let text = cell.number()?;
    let n: i128 = text.parse().map_err(|_| "not a whole number".to_string())?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

fn count(cell: Cell<'_>) -> Result<u32, String> {
    integer(cell, 0, i128::from(u32::MAX)).map(|n| n as u32)
}

/// An RFC 3339 time, to the second (a fraction is dropped).
fn time(cell: Cell<'_>) -> Result<Timestamp, String> {
    let text = cell.string()?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| Timestamp(t.timestamp()))
        .map_err(|e| format!("not an RFC 3339 time such as 2026-01-15T09:30:00Z or 2026-01-15T12:30:00+03:00 ({e})"))
}

fn weekly(cell: Cell<'_>) -> Result<f32, String> {
    let text = cell.number()?;
    let x: f64 = text.parse().map_err(|_| "not a number".to_string())?;
    if !x.is_finite() || x < 0.0 || x > f64::from(u32::MAX) {
        return Err(format!("must be a number from 0 to {}", u32::MAX));
    }
    Ok(x as f32)
}

fn by_hour(cell: Cell<'_>) -> Result<[u16; 24], String> {
    let items: Vec<String> = match cell {
        Cell::Text(t) => t.split_whitespace().map(str::to_string).collect(),
        Cell::Json(v) => {
            let items: Vec<&RawValue> = serde_json::from_str(v.get())
                .map_err(|_| format!("expected an array of 24 counts, found {}", Cell::json_kind(v)))?;
            let mut out = Vec::with_capacity(items.len());
            for (hour, item) in items.into_iter().enumerate() {
                if Cell::json_kind(item) != "a number" {
                    return Err(format!("hour {hour}: expected a number, found {}", Cell::json_kind(item)));
                }
                out.push(item.get().to_string());
            }
            out
        }
    };
    if items.len() != 24 {
        return Err(format!("{} counts, expected 24 (local hours 0 to 23)", items.len()));
    }
    let mut hours = [0u16; 24];
    for (hour, item) in items.iter().enumerate() {
        hours[hour] = item.parse().map_err(|_| format!("hour {hour}: {item} is not a whole number from 0 to 65535"))?;
    }
    Ok(hours)
}

fn time_zone(cell: Cell<'_>) -> Result<Zone, String> {
    cell.string()?.trim().parse::<Zone>().map_err(|e| e.to_string())
}

fn recent(cell: Cell<'_>) -> Result<(u16, u8), String> {
    let text = cell.string()?;
    if text.chars().count() > RECENT_WINDOW {
        return Err(format!("{} answers; the store keeps the last {RECENT_WINDOW}", text.chars().count()));
    }
    let mut bits = 0u16;
    for c in text.chars() {
        bits = (bits << 1)
            | match c {
                'y' => 1,
                'n' => 0,
                _ => return Err(format!("`{c}`: write y (answered) or n (not answered), oldest first")),
            };
    }
    Ok((bits, text.len() as u8))
}

/// Builds the row of line `line` from its cells; `None` with its problems otherwise. The id
/// is returned whenever it is valid, for the duplicate check.
fn build_row<'a>(
    line: u64,
    cells: impl Iterator<Item = (Field, Cell<'a>)>,
    missing_columns: u16,
    problems: &mut Vec<Problem>,
) -> (Option<UserId>, Option<UserRow>) {
    let mut row = UserRow {
        line,
        id: UserId(0),
        utc_offset: UtcOffset(0),
        time_zone: None,
        bots_followed: None,
        joined_at: None,
        purchases: None,
        sessions: None,
        by_local_hour: None,
        last_active: None,
        weekly_sessions: None,
        received: None,
        responded: None,
        recent: None,
        given: 0,
    };
    let before = problems.len();
    for (field, cell) in cells {
        if cell.is_absent() {
            continue;
        }
        let written = || -> Box<str> { cell.written().into() };
        let result = match field {
            // Ids are SQLite keys, signed 64-bit: the store pages users by them.
            Field::Id => integer(cell, 0, i128::from(i64::MAX)).map(|n| row.id = UserId(n as u64)),
            Field::UtcOffsetMinutes => integer(cell, -720, 840).map(|n| row.utc_offset = UtcOffset(n as i32)),
            Field::BotsFollowed => integer(cell, 1, i128::from(u32::MAX)).map(|n| row.bots_followed = Some(n as u32)),
            Field::JoinedAt => time(cell).map(|t| row.joined_at = Some(Written { value: t, text: written() })),
            Field::Purchases => count(cell).map(|n| row.purchases = Some(n)),
            Field::Sessions => count(cell).map(|n| row.sessions = Some(n)),
            Field::SessionsByLocalHour => by_hour(cell).map(|h| row.by_local_hour = Some(h)),
            Field::LastActive => time(cell).map(|t| row.last_active = Some(Written { value: t, text: written() })),
            Field::WeeklySessions => weekly(cell).map(|x| row.weekly_sessions = Some(x)),
            Field::MessagesReceived => count(cell).map(|n| row.received = Some(n)),
            Field::Responses => count(cell).map(|n| row.responded = Some(n)),
            Field::RecentResponses => recent(cell).map(|r| row.recent = Some(r)),
            Field::TimeZone => time_zone(cell).map(|z| row.time_zone = Some(z)),
        };
        match result {
            Ok(()) => row.given |= field.bit(),
            Err(problem) => problems.push(Problem::field(line, field.name(), problem, Some(cell.written()))),
        }
    }
    for field in Field::ALL.into_iter().filter(|f| f.required()) {
        let reported = problems[before..].iter().any(|p| p.field.as_deref() == Some(field.name()));
        // A column missing from the header is reported once, at the header.
        // Given (even if wrong: then its own problem is the one to fix), the stand-in
        // field makes this one unnecessary.
        let stood_in = field.stands_in().is_some_and(|other| {
            row.given & other.bit() != 0 || problems[before..].iter().any(|p| p.field.as_deref() == Some(other.name()))
        });
        if row.given & field.bit() == 0 && !stood_in && !reported && missing_columns & field.bit() == 0 {
            problems.push(Problem::field(line, field.name(), "missing (required)", None));
        }
    }
    let id = (row.given & Field::Id.bit() != 0).then_some(row.id);
    let valid = problems.len() == before && missing_columns == 0;
    (id, valid.then_some(row))
}

/// A file read and checked line by line: the valid rows, and the problems of the others.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// The valid lines, in file order.
    pub rows: Vec<UserRow>,
    /// The problems of the other lines.
    pub problems: Problems,
}

impl ParsedFile {
    /// The problems found while reading, as an error: for a store that cannot be checked
    /// against before it is written (one whose schema must be migrated first).
    pub fn read_problems(&self, path: &Path) -> Result<(), ImportError> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(ImportError::Invalid { path: path.to_path_buf(), problems: self.problems.clone() })
    }
}

/// Reads `path` in the format its extension names and checks every line on its own:
/// types, ranges, required and unknown fields, malformed lines, ids given twice.
pub fn read_file(path: &Path) -> Result<ParsedFile, ImportError> {
    let format = Format::of(path)?;
    let io = |cause| ImportError::Io { path: path.to_path_buf(), cause };
    let file = std::fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    let mut reader = BufReader::with_capacity(1 << 16, file);
    // A UTF-8 byte order mark (spreadsheet exports write one) is not part of the first line.
    if reader.fill_buf().map_err(io)?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    let mut out = Parsed::default();
    match format {
        Format::Csv => read_csv(path, reader, &mut out)?,
        Format::JsonLines => read_json_lines(path, reader, &mut out)?,
    }
    if out.lines_seen == 0 {
        let what = if format == Format::Csv && out.header_seen { "only a header" } else { "an empty file" };
        return Err(ImportError::Empty { path: path.to_path_buf(), what });
    }
    Ok(ParsedFile { rows: out.rows, problems: out.problems })
}

/// What the readers collect.
#[derive(Default)]
struct Parsed {
    rows: Vec<UserRow>,
    problems: Problems,
    /// Each id's first line.
    ids: HashMap<UserId, u64>,
    /// Lines that hold a user (valid or not).
    lines_seen: u64,
    header_seen: bool,
}

impl Parsed {
    /// Takes one line's result in, checking its id against the earlier lines'.
    fn take(&mut self, line: u64, id: Option<UserId>, row: Option<UserRow>, mut problems: Vec<Problem>) {
        self.lines_seen += 1;
        let mut row = row;
        if let Some(id) = id {
            if let Some(&first) = self.ids.get(&id) {
                problems.insert(
                    0,
                    Problem::field(line, "id", format!("user {id} is also on line {first}"), Some(&id.to_string())),
                );
                row = None;
            } else {
                self.ids.insert(id, line);
            }
        }
        self.problems.add_line(problems);
        self.rows.extend(row);
    }
}

fn read_csv(path: &Path, reader: impl Read, out: &mut Parsed) -> Result<(), ImportError> {
    let io = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(cause) => ImportError::Io { path: path.to_path_buf(), cause },
        other => ImportError::Io { path: path.to_path_buf(), cause: std::io::Error::other(format!("{other:?}")) },
    };
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(reader);
    let mut record = csv::StringRecord::new();
    // The header: the first record.
    let header_line = match csv.read_record(&mut record) {
        Ok(false) => return Ok(()),
        Ok(true) => record.position().map_or(1, |p| p.line()),
        Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
            let line = e.position().map_or(1, |p| p.line());
            out.problems.add_line(vec![Problem::line(line, "the header is not valid UTF-8")]);
            out.header_seen = true;
            out.lines_seen += 1;
            return Ok(());
        }
        Err(e) => return Err(io(e)),
    };
    out.header_seen = true;
    let mut columns: Vec<Option<Field>> = Vec::with_capacity(record.len());
    let mut header_problems = Vec::new();
    for name in record.iter() {
        match Field::from_name(name) {
            Some(field) if columns.contains(&Some(field)) => {
                header_problems.push(Problem::field(header_line, name, "named twice in the header", None));
                columns.push(None);
            }
            Some(field) => columns.push(Some(field)),
            None => {
                header_problems.push(Problem::field(
                    header_line,
                    name,
                    format!("unknown column (known: {})", known_names()),
                    None,
                ));
                columns.push(None);
            }
        }
    }
    let mut missing = 0u16;
    let has = |f: Field| columns.contains(&Some(f));
    for field in Field::ALL.into_iter().filter(|f| f.required() && !has(*f) && !f.stands_in().is_some_and(has)) {
        missing |= field.bit();
        header_problems.push(Problem::field(header_line, field.name(), "no such column (required)", None));
    }
    // With a bad header nothing is written, but every line is still checked (the cells of an
    // unknown column aside) so that one run names every problem.
    out.problems.add_line(header_problems);
    loop {
        let line = match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => record.position().map_or(0, |p| p.line()),
            Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                let line = e.position().map_or(0, |p| p.line());
                out.take(line, None, None, vec![Problem::line(line, "not valid UTF-8")]);
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        let mut problems = Vec::new();
        if record.len() != columns.len() {
            problems.push(Problem::line(line, format!("{} cells, the header has {}", record.len(), columns.len())));
        }
        let cells = columns.iter().zip(record.iter()).filter_map(|(field, text)| field.map(|f| (f, Cell::Text(text))));
        let (id, row) = build_row(line, cells, missing, &mut problems);
        let row = row.filter(|_| problems.is_empty());
        out.take(line, id, row, problems);
    }
}

fn read_json_lines(path: &Path, mut reader: impl BufRead, out: &mut Parsed) -> Result<(), ImportError> {
    let mut bytes = Vec::new();
    let mut line = 0u64;
    loop {
        bytes.clear();
        let n = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|cause| ImportError::Io { path: path.to_path_buf(), cause })?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            out.take(line, None, None, vec![Problem::line(line, "not valid UTF-8")]);
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue; // a blank line holds no user
        }
        let object = match serde_json::from_str::<JsonObject<'_>>(text) {
            Ok(object) => object,
            Err(e) => {
                out.take(line, None, None, vec![Problem::line(line, json_error(&e))]);
                continue;
            }
        };
        let mut problems = Vec::new();
        let mut cells = Vec::with_capacity(object.0.len());
        for (key, value) in &object.0 {
            match Field::from_name(key) {
                Some(field) if cells.iter().any(|(f, _)| *f == field) => {
                    problems.push(Problem::field(line, key.as_str(), "given twice on this line", Some(value.get())));
                }
                Some(field) => cells.push((field, Cell::Json(value))),
                // The value is not shown: an unknown field is often personal data (a name, a
                // phone number) that must not reach a terminal or a log (RELIABILITY.md row 35).
                None => problems.push(Problem::field(
                    line,
                    key.as_str(),
                    format!("unknown field (known: {})", known_names()),
                    None,
                )),
            }
        }
        let (id, row) = build_row(line, cells.into_iter(), 0, &mut problems);
        let row = row.filter(|_| problems.is_empty());
        out.take(line, id, row, problems);
    }
}

/// A serde_json error without its "at line 1 column N" (each line is parsed on its own).
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
    match e.column() {
        0 => format!("not a valid JSON object: {message}"),
        column => format!("not a valid JSON object: {message} (column {column})"),
    }
}

/// One JSON object's keys and values as written, in order, repeats kept (so that they can
/// be reported, where a map would keep only the last). Unknown keys are the caller's to
/// report: all of them, where `#[serde(deny_unknown_fields)]` stops at the first.
struct JsonObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for JsonObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = JsonObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object, one user per line")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(JsonObject(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// What the users are segmented with, and the store's present.
#[derive(Clone, Copy, Debug)]
pub struct ImportPlan<'a> {
    /// The segmentation rules.
    pub rules: &'a SegmentationRules,
    /// The strategies that decide the governing segment and the caps in force.
    pub book: &'a StrategyBook,
    /// The store's present: the default `joined_at`, and the time segments are judged at.
    pub now: Timestamp,
}

/// What an import did, or with `--check` would do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Users in the file.
    pub users: u64,
    /// Users the store did not hold.
    pub new: u64,
    /// Users the store held: new profile and segments, counters kept.
    pub updated: u64,
    /// Of the updated users, those opted out: they stay opted out.
    pub opted_out_kept: u64,
}

/// Merges `rows` with the users in `store` (`None`: a store not created yet, every user
/// new), checks each merged profile, re-segments it with the plan's rules and — for
/// [`UpsertMode::Write`] with no problem at all — writes all of them in one transaction.
/// `earlier` are the problems found while reading the file: with any, nothing is written,
/// but the rows are still checked so that every problem is reported at once.
pub fn apply(
    path: &Path,
    store: Option<&SqliteStore>,
    parsed: &ParsedFile,
    plan: &ImportPlan<'_>,
    mode: UpsertMode,
) -> Result<ImportSummary, ImportError> {
    let ParsedFile { rows, problems: earlier } = parsed;
    let mode = if earlier.is_empty() { mode } else { UpsertMode::DryRun };
    // The refusals' problems are kept here, the first MAX_LISTED in full: the store hands
    // back only one `()` per refused user, however many there are.
    let mut found = Problems::default();
    let decide = |i: usize, stored: Option<&UserState>| {
        let row = &rows[i];
        let profile = row.merge(stored.map(|u| &u.profile), plan.now);
        let problems = row.check(&profile, stored.is_some(), plan.now);
        if !problems.is_empty() {
            found.add_line(problems);
            return Err(());
        }
        let segments = segmentation::explain(&profile, plan.now, plan.rules);
        let mut set = SegmentSet::default();
        for s in &segments {
            set.insert(s.segment, s.confidence);
        }
        Ok(ProfileUpdate {
            governing: governing_segment(&set, plan.book),
            caps_in_force: caps_for(&set, plan.book),
            profile,
            segments,
        })
    };
    let result = match store {
        Some(store) => {
            let ids: Vec<UserId> = rows.iter().map(|r| r.id).collect();
            store.upsert_profiles(&ids, mode, decide)
        }
        None => without_store(rows.len(), decide),
    };
    let invalid = |problems: Problems| ImportError::Invalid { path: path.to_path_buf(), problems };
    match result {
        Ok(counts) if earlier.is_empty() => Ok(ImportSummary {
            users: rows.len() as u64,
            new: counts.new,
            updated: counts.updated,
            opted_out_kept: counts.opted_out,
        }),
        Ok(_) => Err(invalid(earlier.clone())),
        Err(UpsertError::Refused(_)) => Err(invalid(earlier.clone().merge(found))),
        Err(UpsertError::Store(e)) => Err(ImportError::Store(e)),
    }
}

/// [`SqliteStore::upsert_profiles`]' dry run for a store that does not exist yet.
fn without_store<E: fmt::Debug>(
    n: usize,
    mut decide: impl FnMut(usize, Option<&UserState>) -> Result<ProfileUpdate, E>,
) -> Result<UpsertCounts, UpsertError<E>> {
    let refused: Vec<E> = (0..n).filter_map(|i| decide(i, None).err()).collect();
    if refused.is_empty() {
        Ok(UpsertCounts { new: n as u64, ..UpsertCounts::default() })
    } else {
        Err(UpsertError::Refused(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn shown(parsed: &ParsedFile) -> Vec<String> {
        parsed.problems.listed.iter().map(ToString::to_string).collect()
    }

    /// Every field of a CSV line lands where `docs/import.md` says; left-out cells are
    /// `None`, a BOM is no part of the header.
    #[test]
    fn csv_lines_read_into_rows() {
        let dir = tempfile::tempdir().unwrap();
        let hours = (0..24).map(|h| (h % 3).to_string()).collect::<Vec<_>>().join(" ");
        let text = format!(
            "\u{feff}id,utc_offset_minutes,bots_followed,joined_at,purchases,sessions,sessions_by_local_hour,last_active,weekly_sessions,messages_received,responses,recent_responses\n\
             7,180,3,2026-01-01T12:00:00+03:00,2,30,{hours},2026-01-10T00:00:00Z,4.5,10,4,nyyn\n\
             8, -300 ,,,,,,,,,,\n"
        );
        let parsed = read_file(&write(dir.path(), "u.csv", &text)).unwrap();
        assert!(parsed.problems.is_empty(), "{:?}", shown(&parsed));
        let [a, b] = &parsed.rows[..] else { panic!("{:?}", parsed.rows) };
        assert_eq!((a.line, a.id, a.utc_offset, a.bots_followed), (2, UserId(7), UtcOffset(180), Some(3)));
        assert_eq!(a.joined_at.as_ref().unwrap().value, Timestamp(1_767_258_000));
        assert_eq!(&*a.joined_at.as_ref().unwrap().text, "2026-01-01T12:00:00+03:00");
        assert_eq!((a.purchases, a.sessions, a.weekly_sessions), (Some(2), Some(30), Some(4.5)));
        assert_eq!(a.by_local_hour.unwrap()[2], 2);
        assert_eq!((a.received, a.responded, a.recent), (Some(10), Some(4), Some((0b0110, 4))));
        assert_eq!((b.id, b.utc_offset, b.bots_followed, b.recent), (UserId(8), UtcOffset(-300), None, None));
        assert!(b.gave(Field::Id) && !b.gave(Field::JoinedAt));
    }

    /// Each bad line is named with its field, its problem and the value as written; lines
    /// after a bad one are still read.
    #[test]
    fn bad_csv_lines_are_each_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = "id,utc_offset_minutes,purchases\n1,60,x\n2,900,0\n,60,0\n1,60,0\n3,60\n4,60,1\n";
        let parsed = read_file(&write(dir.path(), "u.csv", text)).unwrap();
        assert_eq!(
            shown(&parsed),
            [
                "2: field purchases: not a whole number (x)",
                "3: field utc_offset_minutes: must be between -720 and 840 (900)",
                "4: field id: missing (required)",
                "5: field id: user 1 is also on line 2 (1)",
                "6: 2 cells, the header has 3",
            ]
        );
        assert_eq!((parsed.problems.total, parsed.problems.lines), (5, 5));
        assert_eq!(parsed.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [7]);
    }

    /// A `time_zone` column gives IANA zones (deciding over the offset, and standing in for
    /// a missing offset column); an unknown zone is named with its line and field; a line
    /// with neither zone nor offset is named too.
    #[test]
    fn time_zones_are_read_and_unknown_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = "id,time_zone\n1,America/New_York\n2,Mars/Olympus\n3,\n4, Asia/Kathmandu \n";
        let parsed = read_file(&write(dir.path(), "u.csv", text)).unwrap();
        assert_eq!(
            shown(&parsed),
            [
                "3: field time_zone: \"Mars/Olympus\" is not an IANA time zone (e.g. Europe/Berlin, America/New_York, \
                 Asia/Kolkata) (Mars/Olympus)",
                "4: field utc_offset_minutes: missing (required)",
            ]
        );
        let zones: Vec<String> = parsed.rows.iter().map(|r| r.zone().to_string()).collect();
        assert_eq!(zones, ["America/New_York", "Asia/Kathmandu"]);
        let both = "id,utc_offset_minutes,time_zone\n1,180,Europe/Berlin\n2,180,\n";
        let parsed = read_file(&write(dir.path(), "v.csv", both)).unwrap();
        let zones: Vec<String> = parsed.rows.iter().map(|r| r.zone().to_string()).collect();
        assert_eq!(zones, ["Europe/Berlin", "UTC+03:00"], "the name decides; an empty one leaves the offset");
        let json = r#"{"id": 5, "time_zone": "Pacific/Kiritimati"}
{"id": 6, "time_zone": 3}
"#;
        let parsed = read_file(&write(dir.path(), "u.jsonl", json)).unwrap();
        assert_eq!(shown(&parsed), ["2: field time_zone: expected a string, found a number (3)"]);
        assert_eq!(parsed.rows[0].zone().to_string(), "Pacific/Kiritimati");
    }

    /// An unknown or repeated column, or a required one missing, is named at the header.
    #[test]
    fn header_problems_are_named_at_line_1() {
        let dir = tempfile::tempdir().unwrap();
        let parsed = read_file(&write(dir.path(), "u.csv", "id,email,id\n1,a@b,1\n")).unwrap();
        assert_eq!(
            shown(&parsed),
            [
                "1: field email: unknown column (known: id, utc_offset_minutes, bots_followed, joined_at, purchases, sessions, sessions_by_local_hour, last_active, weekly_sessions, messages_received, responses, recent_responses, time_zone)",
                "1: field id: named twice in the header",
                "1: field utc_offset_minutes: no such column (required)",
            ]
        );
        assert!(parsed.rows.is_empty());
    }

    /// JSON lines: types are strict, unknown and repeated keys and malformed lines are
    /// named, blank lines hold nobody.
    #[test]
    fn bad_json_lines_are_each_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"id": 1, "utc_offset_minutes": 0, "joined_at": "2026-01-01T00:00:00Z"}

{"id": "2", "utc_offset_minutes": 0}
{"id": 3, "utc_offset_minutes": 0, "colour": "red", "id": 4}
{"id": 5, "utc_offset_minutes": 0
[1, 2]
{"id": 6, "utc_offset_minutes": null, "sessions_by_local_hour": [1, 2], "recent_responses": "yx"}
{"id": 7, "utc_offset_minutes": 60, "weekly_sessions": 2.5, "bots_followed": 0}
"#;
        let parsed = read_file(&write(dir.path(), "u.jsonl", text)).unwrap();
        assert_eq!(
            shown(&parsed),
            [
                "3: field id: expected a number, found a string (\"2\")",
                "4: field colour: unknown field (known: id, utc_offset_minutes, bots_followed, joined_at, purchases, \
                 sessions, sessions_by_local_hour, last_active, weekly_sessions, messages_received, responses, \
                 recent_responses, time_zone)",
                "4: field id: given twice on this line (4)",
                "5: not a valid JSON object: EOF while parsing an object (column 33)",
                "6: not a valid JSON object: invalid type: sequence, expected a JSON object, one user per line",
                "7: field sessions_by_local_hour: 2 counts, expected 24 (local hours 0 to 23) ([1, 2])",
                "7: field recent_responses: `x`: write y (answered) or n (not answered), oldest first (\"yx\")",
                "7: field utc_offset_minutes: missing (required)",
                "8: field bots_followed: must be between 1 and 4294967295 (0)",
            ]
        );
        assert_eq!(parsed.rows.len(), 1);
    }

    /// An empty file, a header alone and an unknown extension are errors of their own.
    #[test]
    fn empty_files_and_unknown_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = read_file(&write(dir.path(), "u.jsonl", "\n\n")).unwrap_err();
        assert!(empty.to_string().ends_with("an empty file: no users to import"), "{empty}");
        let header = read_file(&write(dir.path(), "u.csv", "id,utc_offset_minutes\n")).unwrap_err();
        assert!(header.to_string().ends_with("only a header: no users to import"), "{header}");
        let format = read_file(&write(dir.path(), "u.txt", "x")).unwrap_err();
        assert!(format.to_string().contains("name it .csv, .jsonl or .ndjson"), "{format}");
        assert!(matches!(Format::of(Path::new("a.NDJSON")), Ok(Format::JsonLines)));
    }

    fn row(text: &str) -> UserRow {
        let dir = tempfile::tempdir().unwrap();
        let parsed = read_file(&write(dir.path(), "u.jsonl", text)).unwrap();
        assert!(parsed.problems.is_empty(), "{:?}", shown(&parsed));
        parsed.rows.into_iter().next().unwrap()
    }

    const NOW: Timestamp = Timestamp(1_800_000_000);

    /// A new user takes the defaults; an existing one keeps what the line leaves out.
    #[test]
    fn merging_defaults_new_users_and_keeps_what_is_left_out() {
        let r = row(r#"{"id": 4, "utc_offset_minutes": 120, "purchases": 3}"#);
        let new = r.merge(None, NOW);
        assert_eq!((new.joined_at, new.activity.last_active, new.bots_followed), (NOW, NOW, 1));
        assert_eq!((new.purchases, new.zone, new.responses.received), (3, Zone::fixed(120), 0));
        let stored = UserProfile { joined_at: Timestamp(5), bots_followed: 4, purchases: 1, ..new.clone() };
        let updated = r.merge(Some(&stored), NOW);
        assert_eq!((updated.joined_at, updated.bots_followed, updated.purchases), (Timestamp(5), 4, 3));
        let hours = row(
            r#"{"id": 4, "utc_offset_minutes": 0, "sessions_by_local_hour": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2]}"#,
        );
        assert_eq!(hours.merge(None, NOW).activity.sessions, 25, "sessions default to the hours' total");
    }

    /// Rules across fields are checked on the merged profile, and only blame a line for a
    /// field it gave.
    #[test]
    fn merged_profiles_are_checked_as_a_whole() {
        let check = |text: &str, stored: Option<&UserProfile>| {
            let r = row(text);
            let merged = r.merge(stored, NOW);
            r.check(&merged, stored.is_some(), NOW).into_iter().map(|p| p.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            check(r#"{"id": 1, "utc_offset_minutes": 0, "responses": 3, "recent_responses": "yyyy"}"#, None),
            [
                "1: field responses: more than messages_received 0 (default) (3)",
                "1: field recent_responses: 4 messages, more than messages_received 0 (default) (yyyy)",
                "1: field recent_responses: 4 answered, more than responses 3 (yyyy)",
            ]
        );
        assert_eq!(
            check(r#"{"id": 1, "utc_offset_minutes": 0, "joined_at": "2030-01-01T00:00:00+01:00"}"#, None),
            [
                "1: field joined_at: is after the store's present (2027-01-15T08:00:00Z): a time still to come (\"2030-01-01T00:00:00+01:00\")"
            ]
        );
        let stored = UserProfile {
            id: UserId(1),
            joined_at: Timestamp(1_000),
            zone: Zone::UTC,
            activity: ActivitySummary {
                sessions: 2,
                last_active: Timestamp(2_000),
                weekly_sessions: 1.0,
                ..Default::default()
            },
            bots_followed: 1,
            purchases: 0,
            responses: ResponseHistory { received: 5, responded: 9, recent: 0, recent_len: 0 },
        };
        assert!(
            check(r#"{"id": 1, "utc_offset_minutes": 0}"#, Some(&stored)).is_empty(),
            "stored flaws are not the line's"
        );
        assert_eq!(
            check(
                r#"{"id": 1, "utc_offset_minutes": 0, "joined_at": "1970-01-01T01:00:00Z", "sessions": 0}"#,
                Some(&stored)
            ),
            [
                "1: field joined_at: is after last_active 1970-01-01T00:33:20Z (stored) (\"1970-01-01T01:00:00Z\")",
                "1: field sessions: fewer than weekly_sessions 1 (stored) (0)",
            ]
        );
    }
}
