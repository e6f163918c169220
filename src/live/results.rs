//! A live experiment's per-user results, read back from a store: every user of the store
//! (and any user the log names that the users table lacks) with the arm the experiment's
//! hash gives them, and their messages, replies, purchases and opt-out counted from the log
//! — one [`UserRow`] each, in user-id order, for the results file `gavat experiment
//! compare` reads — and the time of the log's last entry ([`LiveExport::log_end`]), which
//! the file's header records as the time the data runs to.
//!
//! # What is counted
//! - The experiment's period starts at the first send the log records under one of its arms
//!   (the first send of the run that put it in force) and runs to the end of the log.
//! - `messages`: the user's sends in the period, delivered or of unknown outcome (both may
//!   have reached them, and both count against the caps).
//! - `responses` / `conversions`: replies and purchases in the period that follow a send of
//!   the period, at most one of each per message — the results file's rule. A reply to a
//!   message sent before the experiment is not the experiment's.
//! - `opted_out`: an opt-out in the period, or the store's record of the user at export
//!   (as a simulation counts the state at its end).
//! - `pre_period` (CUPED's covariate, Deng et al. 2013): the user's replies in the
//!   [`PRE_PERIOD_DAYS`] days before the period starts — the same quantity `gavat experiment
//!   run` simulates for its pre-period — so every live export can be compared with CUPED.
//!
//! - With a cut-off ([`live_results_until`]) only entries at or before it are counted, and
//!   the store's present (who has joined, who has opted out) is taken back to it as far as
//!   the log allows.
//!
//! # What is checked
//! A send in the period must carry the arm the hash gives its user — else the file is not
//! the experiment that ran (another salt, other weights), and the export refuses rather
//! than report a mixture. A send in the period without an arm means a run without the
//! experiment wrote into the period: refused too.

use std::collections::{BTreeMap, VecDeque};

use gavat_experiments::design::Experiment;
use gavat_experiments::results::UserRow;

use crate::domain::{DAY, Timestamp, UserId};
use crate::experiment::assignment;
use crate::store::{EventLog, LogKind, StoreError, UserRepository};

/// Days before the experiment's first send whose replies are each user's `pre_period`
/// value (the default pre-period of `gavat experiment run`).
pub const PRE_PERIOD_DAYS: i64 = 14;

/// Why the results could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LiveResultsError {
    /// The store could not be read: fatal, nothing is written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No send in the log carries one of the experiment's arms: bad input (another
    /// experiment, or it never ran on this store).
    #[error(
        "no send in the store's log was recorded under an arm of experiment {experiment} ({arms}); was it in force?"
    )]
    NeverRan {
        /// The experiment's name.
        experiment: String,
        /// Its arm names, for the message.
        arms: String,
    },
    /// A send was recorded under another arm than the hash gives: bad input (the file is
    /// not the experiment that ran).
    #[error(
        "user {user}: a send at {at} was recorded under arm {recorded:?}, but experiment {experiment} assigns arm \
         {assigned:?}; is this the experiment file that was in force (same salt and weights)?"
    )]
    ArmMismatch {
        /// Whose send.
        user: UserId,
        /// When.
        at: String,
        /// The arm on the send (`none` for a send without an arm).
        recorded: String,
        /// The arm the hash gives.
        assigned: String,
        /// The experiment's name.
        experiment: String,
    },
}

/// One user's counts while reading the log.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    messages: u64,
    responses: u64,
    conversions: u64,
    opted_out: bool,
}

/// A live experiment's results with the time the data runs to.
#[derive(Debug, Clone)]
pub struct LiveExport {
    /// One row per user, in id order.
    pub rows: Vec<UserRow>,
    /// The time of the last entry of the store's log: the data runs to here.
    pub log_end: Timestamp,
}

/// Reads every user of `store` and its log and counts each user's outcomes under
/// `design`; see the module documentation. Users come out in id order.
pub fn live_results<S: EventLog + UserRepository>(
    store: &S,
    design: &Experiment,
) -> Result<Vec<UserRow>, LiveResultsError> {
    live_export_until(store, design, None).map(|export| export.rows)
}

/// [`live_results`] with the time of the log's last entry, for the results file's header.
pub fn live_export<S: EventLog + UserRepository>(
    store: &S,
    design: &Experiment,
) -> Result<LiveExport, LiveResultsError> {
    live_export_until(store, design, None)
}

/// [`live_results`] as they stood at `until` (engine time; `None`: the whole log, exactly
/// [`live_results`]): only log entries at or before `until` are counted, so that the
/// experiment's statistics can be recomputed at each past day to show how they evolved.
///
/// What the store knows only as of now is taken back to `until` as far as the log allows:
/// a user who joined after `until` is left out (unless the log names them by then), and a
/// user the store records as opted out counts as opted out at `until` only if the log
/// records no opt-out of theirs after `until`. The whole log is read once, as by
/// [`live_results`]. A cut-off before the experiment's first send is
/// [`LiveResultsError::NeverRan`].
pub fn live_results_until<S: EventLog + UserRepository>(
    store: &S,
    design: &Experiment,
    until: Option<Timestamp>,
) -> Result<Vec<UserRow>, LiveResultsError> {
    live_export_until(store, design, until).map(|export| export.rows)
}

/// [`live_results_until`] with the time of the last log entry counted.
fn live_export_until<S: EventLog + UserRepository>(
    store: &S,
    design: &Experiment,
    until: Option<Timestamp>,
) -> Result<LiveExport, LiveResultsError> {
    let names: Vec<&str> = design.group_names().collect();
    let assignment = assignment(design);
    let arm_name = |user: UserId| names.get(usize::from(assignment.arm_of(user))).copied().unwrap_or("");
    let mut tallies: BTreeMap<u64, Tally> = BTreeMap::new();
    // Users the store records as opted out: whether that held at `until` is known only once
    // the log after it has been read.
    let mut stored_opt_outs: Vec<u64> = Vec::new();
    for user in store.load_users()? {
        if until.is_some_and(|t| user.profile.joined_at > t) {
            continue;
        }
        if user.caps.opted_out {
            stored_opt_outs.push(user.profile.id.0);
        }
        tallies.insert(user.profile.id.0, Tally::default());
    }
    let mut opted_out_later: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    let mut started: Option<Timestamp> = None;
    // Replies before the period, per user, only as far back as the pre-period can reach: the
    // log is in time order and the period starts no earlier than the entry at hand.
    let mut before: BTreeMap<u64, VecDeque<Timestamp>> = BTreeMap::new();
    let reach = PRE_PERIOD_DAYS * DAY;
    let mut log_end = Timestamp(i64::MIN);
    for entry in store.events_between(Timestamp(i64::MIN), Timestamp(i64::MAX)) {
        let entry = entry?;
        if until.is_some_and(|t| entry.at > t) {
            if entry.kind == LogKind::OptOut {
                opted_out_later.insert(entry.user.0);
            }
            continue;
        }
        log_end = log_end.max(entry.at);
        if started.is_none() {
            let ours = entry.kind == LogKind::Send && entry.arm.as_deref().is_some_and(|a| names.contains(&a));
            if !ours {
                if entry.kind == LogKind::Response {
                    let replies = before.entry(entry.user.0).or_default();
                    while replies.front().is_some_and(|t| t.secs() < entry.at.secs().saturating_sub(reach)) {
                        replies.pop_front();
                    }
                    replies.push_back(entry.at);
                }
                continue;
            }
            started = Some(entry.at);
        }
        let tally = tallies.entry(entry.user.0).or_default();
        match entry.kind {
            LogKind::Send => {
                let assigned = arm_name(entry.user);
                if entry.arm.as_deref() != Some(assigned) {
                    return Err(LiveResultsError::ArmMismatch {
                        user: entry.user,
                        at: entry.at.to_rfc3339(),
                        recorded: entry.arm.as_deref().unwrap_or("none").to_string(),
                        assigned: assigned.to_string(),
                        experiment: design.name.clone(),
                    });
                }
                tally.messages += 1;
            }
            LogKind::Response if tally.responses < tally.messages => tally.responses += 1,
            LogKind::Conversion if tally.conversions < tally.messages => tally.conversions += 1,
            LogKind::Response | LogKind::Conversion => {}
            LogKind::OptOut => tally.opted_out = true,
        }
    }
    for user in stored_opt_outs {
        if !opted_out_later.contains(&user)
            && let Some(tally) = tallies.get_mut(&user)
        {
            tally.opted_out = true;
        }
    }
    let Some(start) = started else {
        return Err(LiveResultsError::NeverRan { experiment: design.name.clone(), arms: names.join(", ") });
    };
    let from = start.secs().saturating_sub(reach);
    let pre_period = |user: u64| {
        let replies = before.get(&user).map_or(0, |r| r.iter().filter(|t| t.secs() >= from && *t < &start).count());
        Some(replies as f64)
    };
    let rows = tallies
        .into_iter()
        .map(|(user, t)| UserRow {
            user,
            arm: arm_name(UserId(user)).to_string(),
            messages: t.messages,
            responses: t.responses,
            conversions: t.conversions,
            opted_out: t.opted_out,
            engagement: UserRow::engagement_of(t.responses, t.conversions, t.opted_out),
            pre_period: pre_period(user),
        })
        .collect();
    Ok(LiveExport { rows, log_end })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::executor::block_on;

    use super::*;
    use crate::domain::{Segment, Zone};
    use crate::store::{LogEntry, SqliteStore, Store};

    const DESIGN: &str = "name = \"pre\"\nsalt = \"pre-test\"\nprimary_metric = \"response_rate\"\n\
                          minimum_detectable_effect = 0.1\n[[arms]]\nname = \"a\"\nweight = 1.0\n\
                          [[arms]]\nname = \"b\"\nweight = 1.0\n";

    fn entry(kind: LogKind, at: i64, user: u64, arm: Option<&str>) -> LogEntry {
        LogEntry {
            kind,
            at: Timestamp(at),
            user: UserId(user),
            utc_offset: crate::domain::UtcOffset(0),
            zone: Zone::UTC,
            group: None,
            segment: Some(Segment::WarmLead),
            caps: None,
            bot: None,
            content: None,
            strategy: Arc::from("defaults"),
            arm: arm.map(Arc::from),
            outcome: None,
        }
    }

    fn user(id: u64, joined_at: i64, opted_out: bool) -> crate::store::UserRecord {
        use crate::domain::{ActivitySummary, Caps, HourMask, ResponseHistory, UserProfile};
        crate::store::UserRecord {
            profile: UserProfile {
                id: UserId(id),
                joined_at: Timestamp(joined_at),
                zone: Zone::UTC,
                activity: ActivitySummary::default(),
                bots_followed: 1,
                purchases: 0,
                responses: ResponseHistory::default(),
            },
            caps: crate::policy::CapState { opted_out, ..Default::default() },
            segments: Vec::new(),
            governing: None,
            caps_in_force: Caps { daily_limit: 1, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 },
            next_send: None,
        }
    }

    /// Up to the end of the log the cut-off changes nothing; at an earlier cut-off each
    /// user's counts are what the entries up to it say (counted here by hand), a user who
    /// joined later is left out, and an opt-out the log dates after the cut-off is not yet
    /// one — while an opt-out the store knows without a log entry still is.
    #[test]
    fn a_cut_off_counts_only_the_log_up_to_it() -> Result<(), Box<dyn std::error::Error>> {
        let design = Experiment::from_toml_str(DESIGN, "pre.toml")?;
        let names: Vec<&str> = design.group_names().collect();
        let arm = |user: u64| names[usize::from(assignment(&design).arm_of(UserId(user)))];
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("s.db"))?;
        let start = 400 * DAY;
        // Users 1–3 joined before the start, user 4 on day 2; user 3's opt-out is known to
        // the store only (an import), user 2's is logged on day 2.
        for record in [user(1, 0, false), user(2, 0, true), user(3, 0, true), user(4, start + 2 * DAY, false)] {
            block_on(store.save_user(&record))?;
        }
        let log = [
            entry(LogKind::Send, start, 1, Some(arm(1))),
            entry(LogKind::Response, start + 60, 1, None),
            entry(LogKind::Send, start + 120, 2, Some(arm(2))),
            entry(LogKind::Send, start + DAY, 1, Some(arm(1))),
            entry(LogKind::Conversion, start + DAY + 60, 1, None),
            entry(LogKind::Send, start + DAY + 120, 2, Some(arm(2))),
            entry(LogKind::Response, start + DAY + 180, 2, None),
            entry(LogKind::Send, start + 2 * DAY + 60, 4, Some(arm(4))),
            entry(LogKind::OptOut, start + 2 * DAY + 120, 2, None),
            entry(LogKind::Response, start + 2 * DAY + 180, 4, None),
            entry(LogKind::Send, start + 3 * DAY, 1, Some(arm(1))),
        ];
        for e in &log {
            block_on(store.append(e))?;
        }
        block_on(store.flush())?;
        let whole = live_results(&store, &design)?;
        assert_eq!(live_results_until(&store, &design, Some(Timestamp(start + 3 * DAY)))?, whole);
        assert_eq!(live_results_until(&store, &design, Some(Timestamp(start + 30 * DAY)))?, whole);
        let counts = |rows: &[UserRow]| -> Vec<(u64, u64, u64, u64, bool)> {
            rows.iter().map(|r| (r.user, r.messages, r.responses, r.conversions, r.opted_out)).collect()
        };
        assert_eq!(
            counts(&whole),
            vec![(1, 3, 1, 1, false), (2, 2, 1, 0, true), (3, 0, 0, 0, true), (4, 1, 1, 0, false)]
        );
        // At the end of day 1 (the entry at `start + DAY + 180` included, by the second).
        let day_one = live_results_until(&store, &design, Some(Timestamp(start + DAY + 180)))?;
        assert_eq!(counts(&day_one), vec![(1, 2, 1, 1, false), (2, 2, 1, 0, false), (3, 0, 0, 0, true)]);
        let just_before = live_results_until(&store, &design, Some(Timestamp(start + DAY + 179)))?;
        assert_eq!(counts(&just_before), vec![(1, 2, 1, 1, false), (2, 2, 0, 0, false), (3, 0, 0, 0, true)]);
        for (early, late) in day_one.iter().zip(&whole) {
            assert!(early.messages <= late.messages && early.responses <= late.responses, "{early:?} {late:?}");
        }
        assert!(matches!(
            live_results_until(&store, &design, Some(Timestamp(start - 1))),
            Err(LiveResultsError::NeverRan { .. })
        ));
        Ok(())
    }

    /// Each user's `pre_period` counts their replies in the 14 days before the experiment's
    /// first send, and nothing older or later.
    #[test]
    fn the_pre_period_counts_replies_in_the_fourteen_days_before_the_start() -> Result<(), Box<dyn std::error::Error>> {
        let design = Experiment::from_toml_str(DESIGN, "pre.toml")?;
        let names: Vec<&str> = design.group_names().collect();
        let arm = |user: u64| names[usize::from(assignment(&design).arm_of(UserId(user)))];
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("s.db"))?;
        let start = 400 * DAY;
        for e in [
            entry(LogKind::Response, start - 20 * DAY, 5, None),
            entry(LogKind::Response, start - 10 * DAY, 5, None),
            entry(LogKind::Response, start - DAY, 5, None),
            entry(LogKind::Response, start - 2 * DAY, 6, None),
            entry(LogKind::Send, start, 5, Some(arm(5))),
            entry(LogKind::Response, start + 60, 5, None),
            entry(LogKind::Send, start + 90, 6, Some(arm(6))),
        ] {
            block_on(store.append(&e))?;
        }
        block_on(store.flush())?;
        let rows = live_results(&store, &design)?;
        let pre: Vec<(u64, Option<f64>, u64)> = rows.iter().map(|r| (r.user, r.pre_period, r.responses)).collect();
        assert_eq!(pre, vec![(5, Some(2.0), 1), (6, Some(1.0), 0)]);
        Ok(())
    }
}
