//! The vocabulary of the engine: users, groups, segments, strategies, time, and the
//! messages that go out and the events that come back. Plain data, no behaviour beyond
//! arithmetic on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::zone::{UnknownZone, Zone};

/// Seconds in one hour.
pub const HOUR: i64 = 3_600;
/// Seconds in one day.
pub const DAY: i64 = 86_400;

/// A point in time: whole seconds since the Unix epoch, UTC.
///
/// Seconds are fine-grained enough for delivery decisions and keep the scheduler's keys
/// small and totally ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Seconds since the epoch.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// This instant plus `secs` seconds.
    pub fn plus(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }

    /// The local calendar day (days since the epoch, in local time) in `zone`, read with the
    /// offset in force at this instant.
    pub fn local_day(self, zone: Zone) -> i64 {
        zone.local_day(self)
    }

    /// The local wall-clock hour of day, 0–23, in `zone`.
    pub fn local_hour(self, zone: Zone) -> u8 {
        zone.local_hour(self)
    }

    /// The first instant of local day `day` in `zone` (see [`Zone::start_of_local_day`]).
    pub fn start_of_local_day(day: i64, zone: Zone) -> Timestamp {
        zone.start_of_local_day(day)
    }

    /// RFC 3339 form in UTC, e.g. `2026-11-24T06:00:00Z`.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp(self.0, 0) {
            Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            None => format!("{}s", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A user's offset from UTC, in minutes (Moscow is `+180`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UtcOffset(pub i32);

impl UtcOffset {
    /// The offset in seconds.
    pub fn secs(self) -> i64 {
        i64::from(self.0) * 60
    }
}

/// Identifies a user of the CRM (a Telegram user id in live mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub u64);

/// Identifies a group chat the bots post into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub u64);

/// Identifies one of the CRM's bots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BotId(pub u32);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The eight segments a user can belong to (several at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Segment {
    /// Responds often; ready to buy.
    HotLead,
    /// Responds sometimes.
    WarmLead,
    /// Rarely responds or has gone quiet.
    ColdLead,
    /// Active most days.
    Engaged,
    /// Follows several of our bots.
    BotLover,
    /// Most activity late at night, local time.
    NightOwl,
    /// Joined within the last week.
    NewUser,
    /// Has bought and keeps responding: a candidate for premium offers.
    PremiumPotential,
}

impl Segment {
    /// All segments, in a fixed order used for every report.
    pub const ALL: [Segment; 8] = [
        Segment::HotLead,
        Segment::WarmLead,
        Segment::ColdLead,
        Segment::Engaged,
        Segment::BotLover,
        Segment::NightOwl,
        Segment::NewUser,
        Segment::PremiumPotential,
    ];

    /// Position in [`Segment::ALL`], for dense per-segment tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The canonical name, e.g. `HOT_LEAD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::HotLead => "HOT_LEAD",
            Segment::WarmLead => "WARM_LEAD",
            Segment::ColdLead => "COLD_LEAD",
            Segment::Engaged => "ENGAGED",
            Segment::BotLover => "BOT_LOVER",
            Segment::NightOwl => "NIGHT_OWL",
            Segment::NewUser => "NEW_USER",
            Segment::PremiumPotential => "PREMIUM_POTENTIAL",
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Segment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Segment::ALL.into_iter().find(|seg| seg.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = Segment::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown segment `{s}` (expected one of {})", names.join(", "))
        })
    }
}

/// One segment a user holds, with how sure the rules are.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentAssignment {
    /// The segment.
    pub segment: Segment,
    /// Confidence in `[0, 1]`.
    pub confidence: f32,
}

/// The segments a user holds, each with a confidence (a fixed table: no allocation on the
/// hot path).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct SegmentSet {
    confidence: [f32; 8],
}

impl SegmentSet {
    /// Holds `segment` with `confidence` (clamped to `[0.01, 1]`).
    pub fn insert(&mut self, segment: Segment, confidence: f32) {
        self.confidence[segment.index()] = confidence.clamp(0.01, 1.0);
    }

    /// The confidence for `segment`, if held.
    pub fn get(&self, segment: Segment) -> Option<f32> {
        let c = self.confidence[segment.index()];
        (c > 0.0).then_some(c)
    }

    /// Whether no segment is held.
    pub fn is_empty(&self) -> bool {
        self.confidence.iter().all(|c| *c <= 0.0)
    }

    /// Held segments in [`Segment::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = SegmentAssignment> + '_ {
        Segment::ALL
            .into_iter()
            .filter_map(|segment| self.get(segment).map(|confidence| SegmentAssignment { segment, confidence }))
    }

    /// Held segments, highest confidence first (ties in [`Segment::ALL`] order).
    pub fn by_confidence(&self) -> Vec<SegmentAssignment> {
        let mut v: Vec<SegmentAssignment> = self.iter().collect();
        v.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.segment.cmp(&b.segment)));
        v
    }
}

/// A set of local hours of day (bit `h` set = hour `h` allowed). Wrapping windows such as
/// 20:00–02:00 are just bits, and the strictest of two windows is their intersection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HourMask(pub u32);

impl HourMask {
    /// Every hour of the day.
    pub const ALL_DAY: HourMask = HourMask((1 << 24) - 1);
    /// No hour at all.
    pub const NONE: HourMask = HourMask(0);

    /// Hours `start..end` (local), wrapping past midnight when `end <= start`; `start == end`
    /// means the whole day.
    pub fn window(start: u8, end: u8) -> HourMask {
        let (start, end) = (u32::from(start % 24), u32::from(end % 24));
        let mut bits = 0u32;
        let mut h = start;
        loop {
            bits |= 1 << h;
            h = (h + 1) % 24;
            if h == end {
                break;
            }
        }
        HourMask(bits)
    }

    /// Whether local hour `h` is in the set.
    pub fn contains(self, h: u8) -> bool {
        h < 24 && self.0 & (1 << h) != 0
    }

    /// Hours in both sets.
    pub fn intersect(self, other: HourMask) -> HourMask {
        HourMask(self.0 & other.0)
    }

    /// Whether no hour is allowed.
    pub fn is_empty(self) -> bool {
        self.0 & Self::ALL_DAY.0 == 0
    }

    /// The hours in the set, ascending.
    pub fn hours(self) -> impl Iterator<Item = u8> {
        (0u8..24).filter(move |h| self.contains(*h))
    }

    /// The first allowed hour at or after `h`, wrapping past midnight, with how many hours
    /// ahead it is (0 when `h` itself is allowed). `None` for an empty mask.
    pub fn next_from(self, h: u8) -> Option<(u8, u8)> {
        (0u8..24).map(|ahead| ((h + ahead) % 24, ahead)).find(|(hour, _)| self.contains(*hour))
    }
}

impl fmt::Debug for HourMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HourMask({})", self)
    }
}

impl fmt::Display for HourMask {
    /// Compact ranges such as `9-21` or `20-2`, meaning hours 20:00 to 01:59.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges = self.ranges();
        if ranges.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = ranges.iter().map(|(s, e)| format!("{s}-{e}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl HourMask {
    /// Maximal runs of allowed hours as `(start, end)` with `end` exclusive, a run that
    /// wraps midnight reported once (e.g. `(20, 2)`).
    pub fn ranges(self) -> Vec<(u8, u8)> {
        if self == HourMask::ALL_DAY {
            return vec![(0, 24)];
        }
        let mut out = Vec::new();
        // Start scanning just after a disallowed hour so that a wrapping run is whole.
        let Some(first_gap) = (0u8..24).find(|h| !self.contains(*h)) else {
            return vec![(0, 24)];
        };
        let mut h = (first_gap + 1) % 24;
        let mut steps = 0;
        while steps < 24 {
            if self.contains(h) {
                let start = h;
                while self.contains(h) && steps < 24 {
                    h = (h + 1) % 24;
                    steps += 1;
                }
                out.push((start, h));
            } else {
                h = (h + 1) % 24;
                steps += 1;
            }
        }
        out
    }
}

/// How often a user may be touched: the minimum number of local days from one send day to
/// the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Any day.
    Daily,
    /// Every second day.
    #[serde(rename = "every_2_days")]
    Every2Days,
    /// Every third day.
    #[serde(rename = "every_3_days")]
    Every3Days,
    /// Once a week.
    Weekly,
    /// Any day, in the late-evening window the strategy's hours describe.
    Nightly,
}

impl Frequency {
    /// Local days between send days.
    pub fn period_days(self) -> i64 {
        match self {
            Frequency::Daily | Frequency::Nightly => 1,
            Frequency::Every2Days => 2,
            Frequency::Every3Days => 3,
            Frequency::Weekly => 7,
        }
    }

    /// The name used in strategy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Every2Days => "every_2_days",
            Frequency::Every3Days => "every_3_days",
            Frequency::Weekly => "weekly",
            Frequency::Nightly => "nightly",
        }
    }
}

/// How one segment is to be messaged.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryStrategy {
    /// The segment it governs.
    pub segment: Segment,
    /// Higher wins when a user holds several segments: that strategy picks timing and content.
    pub priority: u8,
    /// Minimum spacing of send days.
    pub frequency: Frequency,
    /// Most messages in one local day.
    pub daily_limit: u32,
    /// Least time between two messages, seconds.
    pub cooldown_secs: i64,
    /// Local hours in which a message may be sent at all.
    pub allowed_hours: HourMask,
    /// Local hours preferred within the allowed ones.
    pub optimal_hours: HourMask,
    /// Content kinds to rotate through, most preferred first (never empty).
    pub content: Vec<ContentKind>,
}

/// The caps in force for one user at one moment: the strictest of all the user's
/// segments' strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Most messages in one local day.
    pub daily_limit: u32,
    /// Least seconds between two messages.
    pub cooldown_secs: i64,
    /// Local hours in which sending is allowed.
    pub allowed_hours: HourMask,
    /// Minimum local days between send days.
    pub period_days: i64,
}

/// What a user's activity looks like to the CRM.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ActivitySummary {
    /// Sessions seen per local hour of day, including history from before the engine
    /// started (saturating: a million profiles stay small).
    pub by_local_hour: [u16; 24],
    /// Sessions in total.
    pub sessions: u32,
    /// Last time the user did anything.
    pub last_active: Timestamp,
    /// Sessions in about the last week: a count decayed with a 7-day time constant.
    pub weekly_sessions: f32,
}

impl ActivitySummary {
    /// Time constant of [`ActivitySummary::weekly_sessions`], seconds.
    pub const WEEK_TAU_SECS: f32 = 7.0 * 86_400.0;

    /// Records one session at `at`, local hour `hour`.
    pub fn record_session(&mut self, at: Timestamp, hour: u8) {
        self.weekly_sessions = self.weekly_sessions_at(at) + 1.0;
        let slot = &mut self.by_local_hour[usize::from(hour % 24)];
        *slot = slot.saturating_add(1);
        self.sessions += 1;
        self.last_active = self.last_active.max(at);
    }

    /// The decayed weekly session count as of `now`.
    pub fn weekly_sessions_at(&self, now: Timestamp) -> f32 {
        let dt = (now.secs() - self.last_active.secs()).max(0) as f32;
        self.weekly_sessions * (-dt / Self::WEEK_TAU_SECS).exp()
    }
}

/// Responses to our messages.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ResponseHistory {
    /// Messages received, all time.
    pub received: u32,
    /// Of those, answered.
    pub responded: u32,
    /// The last up to 16 messages, newest in bit 0: 1 = answered.
    pub recent: u16,
    /// How many of the bits in `recent` are meaningful (≤ 16).
    pub recent_len: u8,
}

impl ResponseHistory {
    /// Records a message received (not yet answered).
    pub fn record_received(&mut self) {
        self.received += 1;
        self.recent <<= 1;
        self.recent_len = (self.recent_len + 1).min(16);
    }

    /// Marks the newest message as answered (a response arrived).
    pub fn record_response(&mut self) {
        self.responded += 1;
        if self.recent_len > 0 {
            self.recent |= 1;
        }
    }

    /// Answered messages among the last `n` (n ≤ 16), and how many messages that covers.
    pub fn last_n(&self, n: u8) -> (u32, u32) {
        let n = n.min(self.recent_len);
        if n == 0 {
            return (0, 0);
        }
        let mask = if n >= 16 { u16::MAX } else { (1u16 << n) - 1 };
        ((self.recent & mask).count_ones(), u32::from(n))
    }
}

/// A CRM user.
#[derive(Clone, Debug, PartialEq)]
pub struct UserProfile {
    /// Who.
    pub id: UserId,
    /// When they first talked to one of our bots.
    pub joined_at: Timestamp,
    /// Their time zone: their local day and hour at each instant.
    pub zone: Zone,
    /// What they do.
    pub activity: ActivitySummary,
    /// How many of our bots they follow (bots `0..bots_followed`).
    pub bots_followed: u32,
    /// Purchases so far.
    pub purchases: u32,
    /// How they answer us.
    pub responses: ResponseHistory,
}

/// A group chat our bots post into.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupProfile {
    /// Which group.
    pub id: GroupId,
    /// Members (users of the CRM), ascending.
    pub members: Vec<UserId>,
    /// The group's own time zone (its members' usual one).
    pub zone: Zone,
    /// Posts seen per day.
    pub activity_per_day: f64,
}

/// What a message is about. The simulator has its own kind for its behaviour model
/// (`gavat_sim::ContentKind`); the simulated transport maps one to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    /// A discount or a product offer.
    Offer,
    /// A reminder (an abandoned cart, an unread message).
    Reminder,
    /// How-tos and tips.
    Educational,
    /// News about the product or the community.
    News,
    /// A premium upgrade.
    Premium,
    /// Community events and group activity.
    Community,
}

impl ContentKind {
    /// Every kind.
    pub const ALL: [ContentKind; 6] = [
        ContentKind::Offer,
        ContentKind::Reminder,
        ContentKind::Educational,
        ContentKind::News,
        ContentKind::Premium,
        ContentKind::Community,
    ];

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Offer => "offer",
            ContentKind::Reminder => "reminder",
            ContentKind::Educational => "educational",
            ContentKind::News => "news",
            ContentKind::Premium => "premium",
            ContentKind::Community => "community",
        }
    }
}

/// Where an outbound message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// A direct message to one user.
    User(UserId),
    /// A post in a group, seen by its members.
    Group(GroupId),
}

/// A message the engine has decided to send.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundMessage {
    /// A unique id, for idempotency and for tying responses back.
    pub id: u64,
    /// To whom.
    pub to: Destination,
    /// Through which bot.
    pub bot: BotId,
    /// What kind of content.
    pub content: ContentKind,
    /// The segment whose strategy chose it.
    pub segment: Segment,
    /// When it is sent.
    pub at: Timestamp,
}

/// How a send that counts against the caps ended, as the log and the events file say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendOutcome {
    /// The platform accepted it.
    Delivered,
    /// It may have gone out (a timeout after the request was written): counted against the
    /// caps all the same, never resent.
    Unknown,
}

impl SendOutcome {
    /// The name used in the log and the events file.
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Delivered => "delivered",
            SendOutcome::Unknown => "unknown",
        }
    }
}

/// What a user did that reaches the engine from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundKind {
    /// Answered one of our messages.
    Reply,
    /// Bought (a conversion following a reply).
    Conversion,
    /// Sent `/stop` or blocked the bot: final.
    OptOut,
    /// Opened a bot or chatted, unprompted.
    Activity,
    /// Sent `/start` on their own: consent, which lifts an earlier opt-out. Only the
    /// Telegram inbound source reports it (never the API, the learner or a default).
    Consent,
}

impl InboundKind {
    /// The name used in reports and event files.
    pub fn as_str(self) -> &'static str {
        match self {
            InboundKind::Reply => "response",
            InboundKind::Conversion => "conversion",
            InboundKind::OptOut => "opt_out",
            InboundKind::Activity => "activity",
            InboundKind::Consent => "consent",
        }
    }
}

/// An event from a user, reported by the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundEvent {
    /// When it happened.
    pub at: Timestamp,
    /// Who.
    pub user: UserId,
    /// What.
    pub kind: InboundKind,
    /// Through a group post, when it was one.
    pub group: Option<GroupId>,
    /// The source's own id for the event (a Telegram `update_id`, a hash of an API
    /// `Idempotency-Key`), when it has one: the engine takes in an event whose id it has
    /// seen at most once.
    pub source: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local day and hour follow the offset, including negative offsets across midnight.
    #[test]
    fn local_day_and_hour_follow_the_offset() {
        let t = Timestamp(DAY * 100 + 22 * HOUR); // 22:00 UTC on day 100
        assert_eq!(t.local_hour(Zone::UTC), 22);
        assert_eq!(t.local_day(Zone::UTC), 100);
        assert_eq!(t.local_hour(Zone::fixed(180)), 1);
        assert_eq!(t.local_day(Zone::fixed(180)), 101);
        let early = Timestamp(DAY * 100 + 2 * HOUR);
        assert_eq!(early.local_hour(Zone::fixed(-300)), 21);
        assert_eq!(early.local_day(Zone::fixed(-300)), 99);
        assert_eq!(Timestamp::start_of_local_day(101, Zone::fixed(180)), Timestamp(DAY * 101 - 3 * HOUR));
    }

    /// Wrapping windows, intersection and the display form.
    #[test]
    fn hour_masks_wrap_and_intersect() {
        let night = HourMask::window(20, 2);
        assert!(night.contains(20) && night.contains(23) && night.contains(0) && night.contains(1));
        assert!(!night.contains(2) && !night.contains(19));
        let day = HourMask::window(9, 21);
        assert_eq!(day.intersect(night), HourMask::window(20, 21));
        assert_eq!(night.to_string(), "20-2");
        assert_eq!(day.to_string(), "9-21");
        assert_eq!(HourMask::window(0, 0), HourMask::ALL_DAY);
        assert!(HourMask::window(9, 12).intersect(HourMask::window(14, 16)).is_empty());
        assert_eq!(day.next_from(22), Some((9, 11)));
        assert_eq!(day.next_from(10), Some((10, 0)));
        assert_eq!(HourMask::NONE.next_from(3), None);
    }

    /// The recent-response window keeps the last 16 messages.
    #[test]
    fn response_history_keeps_a_window() {
        let mut h = ResponseHistory::default();
        for i in 0..20 {
            h.record_received();
            if i % 2 == 0 {
                h.record_response();
            }
        }
        assert_eq!(h.received, 20);
        assert_eq!(h.responded, 10);
        assert_eq!(h.last_n(16), (8, 16));
        assert_eq!(h.last_n(1), (0, 1));
    }

    /// Segment names parse case-insensitively and unknown ones are named in the error.
    #[test]
    fn segments_parse() {
        assert_eq!("hot_lead".parse::<Segment>(), Ok(Segment::HotLead));
        let err = "WARM".parse::<Segment>().unwrap_err();
        assert!(err.contains("WARM") && err.contains("HOT_LEAD"));
    }
}
