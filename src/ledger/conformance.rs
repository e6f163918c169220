//! The ledger conformance harness: random sequences of reserve, confirm, release, opt-out,
//! load and time steps over several users in several time zones — across local midnights,
//! with blind retries and settles out of order — run against any [`CapLedger`] and checked
//! decision by decision against an independent oracle that keeps every user's full send
//! history and decides by scanning it.
//!
//! The oracle does not share code with [`policy::decide`](crate::policy::decide): it counts
//! the sends of the local day, takes the latest send for the cooldown and the frequency,
//! and checks the rules in the documented order (opted out, no segment, quiet hours, daily
//! limit, cooldown, frequency). A mismatch names the seed, the case, the step and the whole
//! sequence up to it, so any failure replays.
//!
//! A quarter of the new ids are members' shares of group posts ([`CapLedger::reserve_share`]),
//! which the oracle decides by counting the shares of the member's local day against the
//! exposure limit — never against the direct caps, which shares must not move; now and then
//! an id is reserved as the wrong kind ([`LedgerError::WrongKind`]).
//!
//! Every ledger of gavat runs this: [`MemoryLedger`](super::MemoryLedger) in its unit tests,
//! the SQLite and Redis ledgers in theirs. Use [`check`] for ledgers whose futures need no
//! runtime, [`check_async`] inside the runtime a ledger needs.
//!
//! Durable ledgers also run [`check_outbox`] / [`check_outbox_async`]: the same sequences
//! with the outbox steps mixed in — [`CapLedger::sending`] (of pending ids, and of settled,
//! denied or unknown ones, which hold no reservation: `NotReserved`; of a pending id whose
//! user opted out after it was granted: `OptedOut`, and it stays pending) and
//! [`CapLedger::recover`] (sending and group shares count as unknown, other reservations are
//! released). An in-memory ledger, whose outbox steps do nothing, fails the outbox one.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use rand::{Rng, RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::domain::{Caps, DAY, HOUR, HourMask, Timestamp, UserId, Zone};
use crate::policy::{CapState, SuppressReason};

use super::{
    CapLedger, Counted, Exposure, LedgerError, LedgerUser, MessageId, Recovery, Reservation, Reserved,
    ShareReservation, is_group_share,
};

/// How much the harness tries.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The seed of every sequence (case `i` draws from `seed + i`).
    pub seed: u64,
    /// Sequences, each on a fresh ledger.
    pub cases: u64,
    /// Operations per sequence.
    pub steps: usize,
    /// Users per sequence (each with its own time zone).
    pub users: u64,
    /// Retries of a reservation are only drawn for reservations this recent (a ledger may
    /// forget settled ids older than its retention window).
    pub max_retry_age_secs: i64,
    /// Each sequence starts within the day after this instant: put it just before a DST
    /// change (`2026-03-08`, `2026-10-25`) to run the users in IANA zones across it.
    pub start: Timestamp,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            seed: 0x6a7a_7a11,
            cases: 200,
            steps: 200,
            users: 4,
            max_retry_age_secs: 2 * DAY,
            start: Timestamp(20_000 * DAY),
        }
    }
}

/// One operation of a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reserve (a new id, or an exact retry of an earlier request).
    Reserve(Reservation),
    /// Reserve a member's share of a group post (a new id, or an exact retry).
    ReserveShare(ShareReservation),
    /// Confirm as delivered or unknown.
    Confirm(MessageId, Counted),
    /// Release.
    Release(MessageId),
    /// Opt a user out.
    OptOut(UserId),
    /// Read a user's state.
    Load(UserId, Zone),
    /// Move time forward by this many seconds.
    Advance(i64),
    /// Mark a message as being handed to the transport (outbox harness only).
    Sending(MessageId),
    /// Settle what a crash left unsettled (outbox harness only).
    Recover,
}

/// What the ledger under test did differently from the oracle.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The harness seed.
    pub seed: u64,
    /// Which sequence.
    pub case: u64,
    /// Which step of it (0-based).
    pub step: usize,
    /// The operations up to and including the failing one.
    pub ops: Vec<Op>,
    /// What the oracle says.
    pub expected: String,
    /// What the ledger said.
    pub got: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ledger differs from the oracle (seed {}, case {}, step {}): expected {}, got {}",
            self.seed, self.case, self.step, self.expected, self.got
        )?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "  {i:>4}: {op:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// What a passing run exercised: how often each answer was seen, so that a harness run
/// that never reached a rule is visible (and a test can insist on it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Every answer, by its debug name (`Ok(Granted)`, `Ok(Denied(Cooldown))`,
    /// `Err(Conflict { .. })` shortened to its variant), with its count.
    pub answers: std::collections::BTreeMap<String, u64>,
    /// Reservations decided under another UTC offset than the same user's previous one: a
    /// DST change crossed with counted or pending sends on the books (RELIABILITY.md row 25).
    pub offset_changes_crossed: u64,
}

impl Coverage {
    fn count(&mut self, answer: &str) {
        let name = answer.split(" {").next().unwrap_or(answer);
        *self.answers.entry(name.to_string()).or_default() += 1;
    }

    /// Whether an answer whose name starts with `prefix` was seen.
    pub fn saw(&self, prefix: &str) -> bool {
        self.answers.keys().any(|k| k.starts_with(prefix))
    }
}

/// Runs the harness on a ledger whose futures complete without a runtime (in memory,
/// SQLite): `make` gives a fresh, empty ledger for each sequence.
pub fn check<L: CapLedger>(mut make: impl FnMut() -> L, settings: &Settings) -> Result<Coverage, Box<Mismatch>> {
    futures::executor::block_on(check_async(|_| std::future::ready(make()), settings))
}

/// Runs the harness inside whatever runtime the ledger needs; `make(case)` gives a fresh,
/// empty ledger for each sequence (e.g. under a key prefix of its own).
pub async fn check_async<L, F, Fut>(make: F, settings: &Settings) -> Result<Coverage, Box<Mismatch>>
where
    L: CapLedger,
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = L>,
{
    run_cases(make, settings, false).await
}

/// [`check`] with the outbox steps (`sending`, `recover`) and group shares in the
/// sequences, for a durable ledger whose futures need no runtime (see the module doc).
pub fn check_outbox<L: CapLedger>(mut make: impl FnMut() -> L, settings: &Settings) -> Result<Coverage, Box<Mismatch>> {
    futures::executor::block_on(check_outbox_async(|_| std::future::ready(make()), settings))
}

/// [`check_async`] with the outbox steps (`sending`, `recover`) and group shares in the
/// sequences, for a durable ledger (see the module doc).
pub async fn check_outbox_async<L, F, Fut>(make: F, settings: &Settings) -> Result<Coverage, Box<Mismatch>>
where
    L: CapLedger,
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = L>,
{
    run_cases(make, settings, true).await
}

async fn run_cases<L, F, Fut>(mut make: F, settings: &Settings, outbox: bool) -> Result<Coverage, Box<Mismatch>>
where
    L: CapLedger,
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = L>,
{
    let mut coverage = Coverage::default();
    for case in 0..settings.cases {
        let ledger = make(case).await;
        run_case(&ledger, settings, case, outbox, &mut coverage).await?;
    }
    Ok(coverage)
}

/// The zones users are drawn from: fixed offsets (whole hours, half and quarter hours, the
/// extremes) and IANA zones with DST changes, one at local midnight (Asia/Beirut).
const ZONES: [&str; 10] = [
    "America/New_York",
    "Europe/Berlin",
    "Asia/Beirut",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Kiritimati",
    "UTC",
    "Etc/GMT+12",
    "Europe/Moscow",
    "Australia/Lord_Howe",
];

/// User `user`'s zone: a fixed offset for even ids (what older stores hold), an IANA zone
/// for odd ones.
fn zone_of(user: UserId) -> Zone {
    const OFFSETS: [i32; 7] = [0, 180, -300, 330, 345, 840, -720];
    let i = (user.0 / 2) as usize;
    if user.0.is_multiple_of(2) {
        Zone::fixed(OFFSETS[i % OFFSETS.len()])
    } else {
        ZONES[i % ZONES.len()].parse().unwrap_or(Zone::UTC)
    }
}

/// The caps palette: ordinary, wrapping windows, an hour-long window, no segment at all.
fn caps_palette() -> [Caps; 7] {
    [
        Caps { daily_limit: 3, cooldown_secs: 4 * HOUR, allowed_hours: HourMask::window(9, 21), period_days: 1 },
        Caps { daily_limit: 2, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 },
        Caps { daily_limit: 1, cooldown_secs: 20 * HOUR, allowed_hours: HourMask::window(22, 2), period_days: 2 },
        Caps { daily_limit: 2, cooldown_secs: HOUR, allowed_hours: HourMask::window(0, 1), period_days: 1 },
        Caps { daily_limit: 1, cooldown_secs: 72 * HOUR, allowed_hours: HourMask::window(11, 20), period_days: 7 },
        Caps { daily_limit: 3, cooldown_secs: 1, allowed_hours: HourMask::ALL_DAY, period_days: 2 },
        Caps { daily_limit: 0, cooldown_secs: 0, allowed_hours: HourMask::NONE, period_days: 1 },
    ]
}

/// Group posts one member may see a local day, as the harness draws them.
const EXPOSURE_LIMITS: [u32; 4] = [0, 1, 2, 3];

/// A reservation of either kind, as the oracle remembers it.
#[derive(Clone, Copy, Debug)]
struct Request {
    message: MessageId,
    user: UserId,
    at: Timestamp,
    zone: Zone,
    /// The operation that made it (replayed as an exact retry).
    op: Op,
}

/// The oracle's memory of one message.
#[derive(Clone, Copy, Debug)]
struct OracleMessage {
    request: Request,
    decision: Reserved,
    /// `None` while pending; `Some(true)` counted, `Some(false)` released.
    settled: Option<bool>,
    /// Marked as being handed to the transport (the outbox step).
    sending: bool,
}

/// The oracle's memory of one user: every counted send, every pending reservation.
#[derive(Clone, Debug, Default)]
struct OracleUser {
    counted: Vec<Timestamp>,
    pending: Vec<(MessageId, Timestamp)>,
    /// The local day of every counted share (in the zone, at its reservation).
    shares_seen: Vec<i64>,
    pending_shares: Vec<(MessageId, Timestamp)>,
    opted_out: bool,
}

impl OracleUser {
    fn decide(&self, caps: &Caps, zone: Zone, now: Timestamp) -> Reserved {
        let all: Vec<Timestamp> = self.counted.iter().copied().chain(self.pending.iter().map(|(_, t)| *t)).collect();
        let last = all.iter().max().copied();
        let day = now.local_day(zone);
        let today = all.iter().filter(|t| t.local_day(zone) == day).count() as u64;
        let reason = if self.opted_out {
            Some(SuppressReason::OptedOut)
        } else if caps.daily_limit == 0 && caps.allowed_hours.is_empty() {
            Some(SuppressReason::NoSegment)
        } else if !caps.allowed_hours.contains(now.local_hour(zone)) {
            Some(SuppressReason::QuietHours)
        } else if today >= u64::from(caps.daily_limit) {
            Some(SuppressReason::DailyLimit)
        } else if last.is_some_and(|l| now.secs() - l.secs() < caps.cooldown_secs) {
            Some(SuppressReason::Cooldown)
        } else if last.is_some_and(|l| {
            let last_day = l.local_day(zone);
            day != last_day && day < last_day + caps.period_days
        }) {
            Some(SuppressReason::Frequency)
        } else {
            None
        };
        reason.map_or(Reserved::Granted, Reserved::Denied)
    }

    /// A share: opted out, else the shares of the local day (counted and pending) against
    /// the limit. Direct sends play no part.
    fn decide_share(&self, r: &ShareReservation) -> Reserved {
        let day = r.at.local_day(r.zone);
        let seen = self.shares_seen.iter().filter(|d| **d == day).count()
            + self.pending_shares.iter().filter(|(_, t)| t.local_day(r.zone) == day).count();
        if self.opted_out {
            Reserved::Denied(SuppressReason::OptedOut)
        } else if seen as u64 >= u64::from(r.exposure_limit) {
            Reserved::Denied(SuppressReason::ExposureLimit)
        } else {
            Reserved::Granted
        }
    }

    /// The compact exposure a ledger reports: the latest day with a counted share, and the
    /// shares counted on it.
    fn exposure(&self) -> Exposure {
        match self.shares_seen.iter().max() {
            Some(&day) => Exposure { day, seen: self.shares_seen.iter().filter(|d| **d == day).count() as u32 },
            None => Exposure::default(),
        }
    }

    /// The compact state a ledger reports for the counted sends.
    fn counted_state(&self, zone: Zone) -> CapState {
        let mut state = CapState { opted_out: self.opted_out, ..CapState::default() };
        if let Some(last) = self.counted.iter().max().copied() {
            let day = last.local_day(zone);
            state.last_sent = Some(last);
            state.last_send_day = day;
            state.sent_on_last_day = self.counted.iter().filter(|t| t.local_day(zone) == day).count() as u32;
        }
        state
    }
}

/// The oracle: every user's history and every message's first decision.
#[derive(Debug, Default)]
struct Oracle {
    users: HashMap<UserId, OracleUser>,
    messages: HashMap<MessageId, OracleMessage>,
}

impl Oracle {
    fn reserve(&mut self, r: Reservation) -> Result<Reserved, LedgerError> {
        let request = Request { message: r.message, user: r.user, at: r.at, zone: r.zone, op: Op::Reserve(r) };
        self.reserve_either(request, false, |user| user.decide(&r.caps, r.zone, r.at))
    }

    fn reserve_share(&mut self, r: ShareReservation) -> Result<Reserved, LedgerError> {
        let request = Request { message: r.message, user: r.user, at: r.at, zone: r.zone, op: Op::ReserveShare(r) };
        self.reserve_either(request, true, |user| user.decide_share(&r))
    }

    fn reserve_either(
        &mut self,
        r: Request,
        share: bool,
        decide: impl FnOnce(&OracleUser) -> Reserved,
    ) -> Result<Reserved, LedgerError> {
        if is_group_share(r.message) != share {
            return Err(LedgerError::WrongKind { message: r.message });
        }
        if let Some(m) = self.messages.get(&r.message) {
            return if m.request.user == r.user {
                Ok(m.decision)
            } else {
                Err(LedgerError::Conflict { message: r.message, first: m.request.user, now: r.user })
            };
        }
        let user = self.users.entry(r.user).or_default();
        let decision = decide(user);
        if decision == Reserved::Granted {
            if share { &mut user.pending_shares } else { &mut user.pending }.push((r.message, r.at));
        }
        self.messages.insert(r.message, OracleMessage { request: r, decision, settled: None, sending: false });
        Ok(decision)
    }

    fn settle(&mut self, message: MessageId, counted: bool) -> Result<(), LedgerError> {
        let Some(m) = self.messages.get_mut(&message) else {
            return Err(LedgerError::NotReserved { message });
        };
        if m.decision != Reserved::Granted {
            return Err(LedgerError::NotReserved { message });
        }
        if m.settled.is_some() {
            return Ok(());
        }
        m.settled = Some(counted);
        let r = m.request;
        let user = self.users.entry(r.user).or_default();
        if is_group_share(message) {
            user.pending_shares.retain(|(id, _)| *id != message);
            if counted {
                user.shares_seen.push(r.at.local_day(r.zone));
            }
        } else {
            user.pending.retain(|(id, _)| *id != message);
            if counted {
                user.counted.push(r.at);
            }
        }
        Ok(())
    }

    /// Only a granted, unsettled message may be handed to the transport, and only while its
    /// user has not opted out since (rule 7's second check): then it stays reserved, unmarked.
    fn sending(&mut self, message: MessageId) -> Result<(), LedgerError> {
        let opted_out = |users: &HashMap<UserId, OracleUser>, user| users.get(&user).is_some_and(|u| u.opted_out);
        match self.messages.get_mut(&message) {
            Some(m) if m.decision == Reserved::Granted && m.settled.is_none() => {
                if opted_out(&self.users, m.request.user) {
                    return Err(LedgerError::OptedOut { message });
                }
                m.sending = true;
                Ok(())
            }
            _ => Err(LedgerError::NotReserved { message }),
        }
    }

    /// Sending reservations and group shares count; other reservations are released.
    fn recover(&mut self) -> Result<Recovery, LedgerError> {
        let mut pending: Vec<(MessageId, bool)> = self
            .messages
            .values()
            .filter(|m| m.decision == Reserved::Granted && m.settled.is_none())
            .map(|m| (m.request.message, m.sending || is_group_share(m.request.message)))
            .collect();
        pending.sort_unstable();
        let mut recovery = Recovery::default();
        for (message, counts) in pending {
            self.settle(message, counts)?;
            if counts {
                recovery.unknown += 1;
            } else {
                recovery.released += 1;
            }
        }
        Ok(recovery)
    }

    fn load(&self, user: UserId, zone: Zone) -> LedgerUser {
        let u = self.users.get(&user).cloned().unwrap_or_default();
        LedgerUser {
            counted: u.counted_state(zone),
            exposure: u.exposure(),
            pending: u.pending,
            pending_shares: u.pending_shares,
        }
    }
}

/// Draws the next operation.
fn draw(rng: &mut impl Rng, now: Timestamp, next_id: &mut u64, oracle: &Oracle, s: &Settings) -> Op {
    let palette = caps_palette();
    let user = UserId(rng.random_range(0..s.users));
    let zone = zone_of(user);
    let mut known: Vec<&OracleMessage> = oracle.messages.values().collect();
    known.sort_by_key(|m| m.request.message);
    let pending: Vec<MessageId> = known
        .iter()
        .filter(|m| m.decision == Reserved::Granted && m.settled.is_none())
        .map(|m| m.request.message)
        .collect();
    match rng.random_range(0..100u32) {
        0..35 => {
            *next_id += 1;
            let caps = palette[rng.random_range(0..palette.len())];
            let share = MessageId(*next_id | 1 << 63);
            let exposure_limit = EXPOSURE_LIMITS[rng.random_range(0..EXPOSURE_LIMITS.len())];
            match rng.random_range(0..40u32) {
                // A quarter are members' shares of group posts.
                0..10 => Op::ReserveShare(ShareReservation { message: share, user, at: now, zone, exposure_limit }),
                // Now and then an id of the wrong kind (a caller's bug).
                10 => Op::Reserve(Reservation { message: share, user, at: now, caps, zone }),
                11 => Op::ReserveShare(ShareReservation {
                    message: MessageId(*next_id),
                    user,
                    at: now,
                    zone,
                    exposure_limit,
                }),
                _ => Op::Reserve(Reservation { message: MessageId(*next_id), user, at: now, caps, zone }),
            }
        }
        35..43 => {
            // An exact blind retry of a recent request (or of a foreign id by another user).
            let recent: Vec<&&OracleMessage> =
                known.iter().filter(|m| now.secs() - m.request.at.secs() <= s.max_retry_age_secs).collect();
            match recent.is_empty() {
                true => Op::Advance(1),
                false => {
                    let mut op = recent[rng.random_range(0..recent.len())].request.op;
                    if rng.random_range(0..4u32) == 0 {
                        // Someone else: a conflict.
                        match &mut op {
                            Op::Reserve(r) => r.user = UserId(r.user.0 + s.users),
                            Op::ReserveShare(r) => r.user = UserId(r.user.0 + s.users),
                            _ => {}
                        }
                    }
                    op
                }
            }
        }
        43..60 if !pending.is_empty() => {
            let m = pending[rng.random_range(0..pending.len())];
            Op::Confirm(m, if rng.random_range(0..3u32) == 0 { Counted::Unknown } else { Counted::Delivered })
        }
        60..68 if !pending.is_empty() => Op::Release(pending[rng.random_range(0..pending.len())]),
        68..72 if !known.is_empty() => {
            // A settle of any known id: a late duplicate, or one that was denied.
            let m = known[rng.random_range(0..known.len())].request.message;
            if rng.random_bool(0.5) { Op::Release(m) } else { Op::Confirm(m, Counted::Delivered) }
        }
        72..74 => Op::OptOut(user),
        74..80 => Op::Load(user, zone),
        _ => {
            let step = match rng.random_range(0..9u32) {
                0 => 1,
                1 => 59,
                2 => 600,
                3 => HOUR,
                4 => 4 * HOUR - 1,
                5 => 4 * HOUR,
                6 => 23 * HOUR,
                _ => {
                    // To a local midnight of some user's zone, give or take a second.
                    let to = Timestamp::start_of_local_day(now.local_day(zone) + 1, zone);
                    (to.secs() - now.secs() + rng.random_range(-1..=1)).max(1)
                }
            };
            Op::Advance(step)
        }
    }
}

/// Draws an outbox step (one time in seven), or `None` for an ordinary one; and whether a new
/// id becomes a group share.
fn draw_outbox(rng: &mut impl Rng, oracle: &Oracle) -> Option<Op> {
    let mut known: Vec<&OracleMessage> = oracle.messages.values().collect();
    known.sort_by_key(|m| m.request.message);
    let pending: Vec<MessageId> = known
        .iter()
        .filter(|m| m.decision == Reserved::Granted && m.settled.is_none())
        .map(|m| m.request.message)
        .collect();
    match rng.random_range(0..100u32) {
        0..10 if !pending.is_empty() => Some(Op::Sending(pending[rng.random_range(0..pending.len())])),
        // Any known id (settled, denied, or pending), or one never reserved.
        10..13 if !known.is_empty() => Some(Op::Sending(known[rng.random_range(0..known.len())].request.message)),
        13 => Some(Op::Sending(MessageId(u64::MAX >> 1))),
        14..16 => Some(Op::Recover),
        _ => None,
    }
}

async fn run_case<L: CapLedger>(
    ledger: &L,
    s: &Settings,
    case: u64,
    outbox: bool,
    coverage: &mut Coverage,
) -> Result<(), Box<Mismatch>> {
    let mut rng = Pcg64Mcg::seed_from_u64(s.seed.wrapping_add(case));
    let mut now = s.start.plus(rng.random_range(0..DAY));
    let mut oracle = Oracle::default();
    let mut next_id = case << 32;
    let mut ops = Vec::with_capacity(s.steps);
    let mut last_offsets: HashMap<UserId, crate::domain::UtcOffset> = HashMap::new();
    for step in 0..s.steps {
        let op = match outbox.then(|| draw_outbox(&mut rng, &oracle)).flatten() {
            Some(op) => op,
            None => draw(&mut rng, now, &mut next_id, &oracle, s),
        };
        ops.push(op);
        if let Op::Reserve(Reservation { user, at, zone, .. })
        | Op::ReserveShare(ShareReservation { user, at, zone, .. }) = op
        {
            let offset = zone.offset_at(at);
            if last_offsets.insert(user, offset).is_some_and(|before| before != offset) {
                coverage.offset_changes_crossed += 1;
            }
        }
        let (expected, got) = match op {
            Op::Reserve(r) => (format!("{:?}", oracle.reserve(r)), format!("{:?}", ledger.reserve(r).await)),
            Op::ReserveShare(r) => {
                (format!("{:?}", oracle.reserve_share(r)), format!("{:?}", ledger.reserve_share(r).await))
            }
            Op::Confirm(m, c) => (format!("{:?}", oracle.settle(m, true)), format!("{:?}", ledger.confirm(m, c).await)),
            Op::Release(m) => (format!("{:?}", oracle.settle(m, false)), format!("{:?}", ledger.release(m).await)),
            Op::OptOut(u) => {
                oracle.users.entry(u).or_default().opted_out = true;
                ("Ok(())".to_string(), format!("{:?}", ledger.opt_out(u).await))
            }
            Op::Load(u, zone) => {
                (format!("{:?}", Ok::<_, LedgerError>(oracle.load(u, zone))), format!("{:?}", ledger.load(u).await))
            }
            Op::Sending(m) => (format!("{:?}", oracle.sending(m)), format!("{:?}", ledger.sending(m).await)),
            Op::Recover => (format!("{:?}", oracle.recover()), format!("{:?}", ledger.recover().await)),
            Op::Advance(secs) => {
                now = now.plus(secs);
                continue;
            }
        };
        if expected != got {
            return Err(Box::new(Mismatch { seed: s.seed, case, step, ops, expected, got }));
        }
        if matches!(op, Op::Reserve(_) | Op::ReserveShare(_) | Op::Recover) || got.starts_with("Err") {
            coverage.count(&got);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerFuture, MemoryLedger};

    /// A ledger that forgets the pending reservations when deciding — the bug of counting
    /// only confirmed sends.
    #[derive(Debug, Default)]
    struct ForgetsPending(MemoryLedger);

    impl CapLedger for ForgetsPending {
        fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
            let answer = self.0.reserve_now(request);
            // Release at once behind the caller's back: pending sends stop counting.
            if answer == Ok(Reserved::Granted) {
                let _ = self.0.settle_now(request.message, None);
            }
            Box::pin(std::future::ready(answer))
        }
        fn reserve_share(&self, request: super::super::ShareReservation) -> LedgerFuture<Reserved> {
            self.0.reserve_share(request)
        }
        fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
            self.0.confirm(message, counted)
        }
        fn release(&self, message: MessageId) -> LedgerFuture<()> {
            self.0.release(message)
        }
        fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
            self.0.opt_out(user)
        }
        fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
            self.0.load(user)
        }
    }

    /// The harness catches a ledger that lets pending reservations stop counting, and says
    /// where.
    #[test]
    fn the_harness_catches_a_broken_ledger() {
        let err = check(ForgetsPending::default, &Settings::default()).expect_err("a broken ledger must fail");
        let text = err.to_string();
        assert!(text.contains("differs from the oracle"), "{text}");
        assert!(!err.ops.is_empty());
    }

    /// The outbox harness fails a ledger whose outbox steps do nothing (the in-memory one:
    /// its `recover` settles nothing), so a durable ledger that passes it does recover.
    #[test]
    fn the_outbox_harness_catches_a_ledger_that_does_not_recover() {
        let err = check_outbox(MemoryLedger::default, &Settings::default()).expect_err("no recovery must fail");
        assert!(matches!(err.ops.last(), Some(Op::Recover | Op::Sending(_))), "{err}");
    }

    /// The same settings draw the same sequences (a failure replays).
    #[test]
    fn sequences_are_reproducible() {
        let s = Settings::default();
        let draw_all = || {
            let oracle = Oracle::default();
            let mut rng = Pcg64Mcg::seed_from_u64(s.seed);
            let mut id = 0;
            (0..50).map(|_| draw(&mut rng, Timestamp(20_000 * DAY), &mut id, &oracle, &s)).collect::<Vec<_>>()
        };
        assert_eq!(draw_all(), draw_all());
    }
}
