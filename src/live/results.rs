//! A live experiment's per-user results, read back from a store: every user of the store
//! (and any user the log names that the users table lacks) with the arm the experiment's
//! hash gives them, and their messages, replies, purchases and opt-out counted from the log
//! — one [`UserRow`] each, in user-id order, for the results file `gavat experiment
//! compare` reads.
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
//!
//! # What is checked
//! A send in the period must carry the arm the hash gives its user — else the file is not
//! the experiment that ran (another salt, other weights), and the export refuses rather
//! than report a mixture. A send in the period without an arm means a run without the
//! experiment wrote into the period: refused too.

use std::collections::BTreeMap;

use gavat_experiments::design::Experiment;
use gavat_experiments::results::UserRow;

use crate::domain::{Timestamp, UserId};
use crate::experiment::assignment;
use crate::store::{EventLog, LogKind, StoreError, UserRepository};

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

/// Reads every user of `store` and its log and counts each user's outcomes under
/// `design`; see the module documentation. Users come out in id order.
pub fn live_results<S: EventLog + UserRepository>(
    store: &S,
    design: &Experiment,
) -> Result<Vec<UserRow>, LiveResultsError> {
    let names: Vec<&str> = design.group_names().collect();
    let assignment = assignment(design);
    let arm_name = |user: UserId| names.get(usize::from(assignment.arm_of(user))).copied().unwrap_or("");
    let mut tallies: BTreeMap<u64, Tally> = BTreeMap::new();
    for user in store.load_users()? {
        tallies.insert(user.profile.id.0, Tally { opted_out: user.caps.opted_out, ..Tally::default() });
    }
    let mut started: Option<Timestamp> = None;
    for entry in store.events_between(Timestamp(i64::MIN), Timestamp(i64::MAX)) {
        let entry = entry?;
        if started.is_none() {
            let ours = entry.kind == LogKind::Send && entry.arm.as_deref().is_some_and(|a| names.contains(&a));
            if !ours {
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
    if started.is_none() {
        return Err(LiveResultsError::NeverRan { experiment: design.name.clone(), arms: names.join(", ") });
    }
    Ok(tallies
        .into_iter()
        .map(|(user, t)| UserRow {
            user,
            arm: arm_name(UserId(user)).to_string(),
            messages: t.messages,
            responses: t.responses,
            conversions: t.conversions,
            opted_out: t.opted_out,
            engagement: UserRow::engagement_of(t.responses, t.conversions, t.opted_out),
            pre_period: None,
        })
        .collect())
}
