//! The fault harness's checker (RELIABILITY.md §7.1): it reads what the engine recorded —
//! every message's final state in the cap ledger, and the sends of the store's log — beside
//! the fake Bot API's **ground truth** (every request it accepted, keyed by the test-only
//! `X-Gavat-Msg-Id` header) and reports what went wrong, as `bad / total` figures:
//!
//! - **duplicates**: one message id accepted twice at the fake;
//! - **resent unknowns**: a message the engine recorded `unknown` that the fake accepted
//!   more than once (an unknown is never resent, rule 4);
//! - **lost records**: a message the fake accepted without a `delivered` or `unknown`
//!   record in the engine, or a message still `reserved` / `sending` after the quiet
//!   period;
//! - **cap violations**: the store log's direct sends against their caps (daily limit in the
//!   local day, allowed hours, cooldown, nothing after an opt-out), as
//!   `scripts/check_caps.py` checks them;
//! - **late opt-out sends**: requests to a chat that arrived after the fake handed the
//!   engine the chat's opt-out, beyond the one already on the wire (rule 7);
//! - **phantom deliveries**: a message recorded `delivered` that the fake never accepted;
//! - the **fate of every unknown**: delivered at the fake, or not.
//!
//! A checker that cannot fail proves nothing: [`check`] is shown to flag a planted bug of
//! each kind (row 47, in the integration tests and below).
//!
//! Depending on this crate turns on gavat's `failpoints` feature (see `Cargo.toml`): it is
//! the dev-dependency that makes every test build of gavat a fault-injecting one.

use std::collections::{BTreeMap, BTreeSet};

/// The fail points the engine names (`fail::fail_point!`), one per outbox step.
pub const FAIL_POINTS: [&str; 5] = [
    "outbox-after-reserve",
    "outbox-after-sending-mark",
    "transport-after-write",
    "outbox-after-transport-before-confirm",
    "inbound-after-store-before-offset",
];

/// A message's state in the engine's cap ledger (`ledger_messages.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Granted, not handed to the transport.
    Reserved,
    /// Handed (or about to be handed) to the transport.
    Sending,
    /// The Bot API accepted it.
    Delivered,
    /// It may have gone out: counted, never resent.
    Unknown,
    /// Provably not sent.
    Released,
    /// Refused by a cap.
    Denied,
}

impl State {
    /// The state as the ledger spells it; `None` for a word it does not write.
    pub fn parse(text: &str) -> Option<State> {
        Some(match text {
            "reserved" => State::Reserved,
            "sending" => State::Sending,
            "delivered" => State::Delivered,
            "unknown" => State::Unknown,
            "released" => State::Released,
            "denied" => State::Denied,
            _ => return None,
        })
    }

    /// Whether the message counts as sent (it went out, or may have).
    pub fn counted(self) -> bool {
        matches!(self, State::Delivered | State::Unknown)
    }

    /// Whether the message has no final state yet.
    pub fn pending(self) -> bool {
        matches!(self, State::Reserved | State::Sending)
    }
}

/// One message as the engine's ledger recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineRecord {
    /// Our message id.
    pub message: u64,
    /// The user (a private chat's id is the user's).
    pub user: u64,
    /// Its state at the end.
    pub state: State,
}

/// One request the fake accepted (processed: the user got the message), from its ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The `X-Gavat-Msg-Id` it carried.
    pub message: u64,
    /// The chat it went to.
    pub chat: i64,
    /// When it arrived, milliseconds on the fake's clock.
    pub at_ms: u64,
}

/// One direct send of the store's log (`gavat events export`), with the caps it was held to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedSend {
    /// The user.
    pub user: u64,
    /// Engine time, unix seconds.
    pub at: i64,
    /// The user's offset from UTC, minutes.
    pub utc_offset: i64,
    /// Sends allowed per local day.
    pub daily_limit: u32,
    /// Least seconds between two sends.
    pub cooldown_secs: i64,
    /// The local hours a send may go in.
    pub allowed_hours: BTreeSet<u8>,
}

/// An opt-out the fake handed to the engine: requests to `chat` arriving after `at_ms`
/// (the fake's clock) are late, but for one already on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptOutHanded {
    /// The chat that opted out.
    pub chat: i64,
    /// When the fake answered the `getUpdates` that carried it.
    pub at_ms: u64,
}

/// Every request that reached the fake for one chat, accepted or not (for the opt-out
/// check: a refused request after an opt-out is still a request the engine should not have
/// made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The chat.
    pub chat: i64,
    /// When it arrived, milliseconds on the fake's clock.
    pub at_ms: u64,
}

/// What the checker is given.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The engine's ledger, every message.
    pub records: Vec<EngineRecord>,
    /// The fake's ground truth: the requests it accepted.
    pub accepted: Vec<Accepted>,
    /// Every `sendMessage` request that arrived at the fake.
    pub arrivals: Vec<Arrival>,
    /// The store log's direct sends, in log order.
    pub sends: Vec<LoggedSend>,
    /// The store log's opt-outs: `(user, engine unix seconds)`.
    pub opt_outs_logged: Vec<(u64, i64)>,
    /// The opt-outs the fake handed over.
    pub opt_outs_handed: Vec<OptOutHanded>,
}

/// What the checker found. Each list names the cases; [`Findings::figures`] gives the
/// `bad / total` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Message ids accepted more than once (not unknowns).
    pub duplicates: Vec<String>,
    /// Unknown messages accepted more than once.
    pub resent_unknowns: Vec<String>,
    /// Accepted without a counted record, or pending after the quiet period.
    pub lost: Vec<String>,
    /// Sends beyond a cap.
    pub cap_violations: Vec<String>,
    /// Requests after an opt-out beyond the one in flight.
    pub late_opt_out_sends: Vec<String>,
    /// Messages the engine counted (delivered or unknown): the `S` of the figures.
    pub sends: u64,
    /// Messages recorded unknown.
    pub unknown: u64,
    /// Of those, how many the fake accepted (ground truth: the user got it).
    pub unknown_delivered: u64,
    /// Messages the fake accepted.
    pub accepted: u64,
    /// Messages recorded delivered that the fake never accepted (the engine's record says
    /// more than the ground truth).
    pub delivered_unaccepted: Vec<String>,
    /// Opt-outs handed to the engine.
    pub opt_outs: u64,
}

impl Findings {
    /// The figures as `(name, bad, total)`, in a fixed order.
    pub fn figures(&self) -> Vec<(&'static str, u64, u64)> {
        let n = |v: &Vec<String>| v.len() as u64;
        vec![
            ("duplicates", n(&self.duplicates), self.sends.max(self.accepted)),
            ("unknown resent", n(&self.resent_unknowns), self.unknown),
            ("lost records", n(&self.lost), self.sends.max(self.accepted)),
            ("cap violations", n(&self.cap_violations), self.sends),
            ("sends after opt-out beyond 1 in flight", n(&self.late_opt_out_sends), self.opt_outs),
            ("delivered without acceptance at the fake", n(&self.delivered_unaccepted), self.sends),
        ]
    }

    /// Whether nothing bad was found.
    pub fn clean(&self) -> bool {
        self.figures().iter().all(|(_, bad, _)| *bad == 0)
    }
}

/// Checks a history (see the crate doc). `quiet`: the run ended with a quiet period, so a
/// message still pending is lost (a safety run passes `false`: liveness is not claimed).
pub fn check(history: &History, quiet: bool) -> Findings {
    let mut findings = Findings::default();
    let records: BTreeMap<u64, &EngineRecord> = history.records.iter().map(|r| (r.message, r)).collect();
    let mut accepted: BTreeMap<u64, Vec<&Accepted>> = BTreeMap::new();
    for a in &history.accepted {
        accepted.entry(a.message).or_default().push(a);
    }
    findings.accepted = accepted.len() as u64;
    findings.sends = history.records.iter().filter(|r| r.state.counted()).count() as u64;
    findings.unknown = history.records.iter().filter(|r| r.state == State::Unknown).count() as u64;
    findings.unknown_delivered =
        history.records.iter().filter(|r| r.state == State::Unknown && accepted.contains_key(&r.message)).count()
            as u64;
    findings.delivered_unaccepted = history
        .records
        .iter()
        .filter(|r| r.state == State::Delivered && !accepted.contains_key(&r.message))
        .map(|r| format!("message {}: delivered in the ledger, never accepted at the fake", r.message))
        .collect();
    for (message, times) in &accepted {
        let record = records.get(message);
        if times.len() > 1 {
            let line = format!("message {message}: accepted {} times at the fake", times.len());
            match record.map(|r| r.state) {
                Some(State::Unknown) => findings.resent_unknowns.push(line),
                _ => findings.duplicates.push(line),
            }
        }
        match record {
            Some(r) if r.state.counted() => {}
            // Still sending when a safety run ended: its outcome is not in yet.
            Some(r) if r.state.pending() && !quiet => {}
            Some(r) => {
                findings.lost.push(format!("message {message}: accepted at the fake, {:?} in the ledger", r.state))
            }
            None => findings.lost.push(format!("message {message}: accepted at the fake, not in the ledger")),
        }
    }
    if quiet {
        for r in history.records.iter().filter(|r| r.state.pending()) {
            findings.lost.push(format!("message {}: still {:?} after the quiet period", r.message, r.state));
        }
    }
    findings.cap_violations = cap_violations(&history.sends, &history.opt_outs_logged);
    findings.opt_outs = history.opt_outs_handed.len() as u64;
    for handed in &history.opt_outs_handed {
        let after = history.arrivals.iter().filter(|a| a.chat == handed.chat && a.at_ms > handed.at_ms).count();
        if after > 1 {
            findings.late_opt_out_sends.push(format!(
                "chat {}: {after} requests after its opt-out was handed over (1 may be on the wire)",
                handed.chat
            ));
        }
    }
    findings
}

/// The direct sends against their caps, as `scripts/check_caps.py` checks them: nothing
/// after an opt-out, each in an allowed local hour, at most the daily limit per local day,
/// at least the cooldown apart.
pub fn cap_violations(sends: &[LoggedSend], opt_outs: &[(u64, i64)]) -> Vec<String> {
    let mut opted: BTreeMap<u64, i64> = BTreeMap::new();
    for &(user, at) in opt_outs {
        let first = opted.entry(user).or_insert(at);
        *first = (*first).min(at);
    }
    let mut per_day: BTreeMap<(u64, i64), u32> = BTreeMap::new();
    let mut last: BTreeMap<u64, i64> = BTreeMap::new();
    let mut violations = Vec::new();
    for send in sends {
        let local = send.at + send.utc_offset * 60;
        let (day, hour) = (local.div_euclid(86_400), local.rem_euclid(86_400) / 3_600);
        let mut broken = Vec::new();
        if opted.get(&send.user).is_some_and(|at| *at < send.at) {
            broken.push("after opt-out".to_string());
        }
        if !send.allowed_hours.contains(&(hour as u8)) {
            broken.push(format!("hour {hour} not allowed"));
        }
        let count = per_day.entry((send.user, day)).or_default();
        *count += 1;
        if *count > send.daily_limit {
            broken.push(format!("{count} sends in a local day, limit {}", send.daily_limit));
        }
        if last.get(&send.user).is_some_and(|prev| send.at - prev < send.cooldown_secs) {
            broken.push("cooldown".to_string());
        }
        last.insert(send.user, send.at);
        if !broken.is_empty() {
            violations.push(format!("user {} at {}: {}", send.user, send.at, broken.join(", ")));
        }
    }
    violations
}

/// What the checker reads of the store's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// The direct sends, in log order.
    pub sends: Vec<LoggedSend>,
    /// The opt-outs: `(user, engine unix seconds)`.
    pub opt_outs: Vec<(u64, i64)>,
}

/// The store log's direct sends and opt-outs from a `gavat events export` file's text
/// (docs/events.md). A line that is not an event is an error naming it.
pub fn read_events(text: &str) -> Result<Events, String> {
    let mut sends = Vec::new();
    let mut opt_outs = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let e: serde_json::Value = serde_json::from_str(line).map_err(|err| format!("events line {}: {err}", n + 1))?;
        let field = |name: &str| e[name].as_i64().ok_or_else(|| format!("events line {}: no {name}", n + 1));
        let (user, at) = (field("user")? as u64, field("at_unix")?);
        match e["kind"].as_str() {
            Some("opt_out") => opt_outs.push((user, at)),
            Some("send") if e["group"].is_null() => {
                let caps = &e["caps"];
                let number =
                    |name: &str| caps[name].as_i64().ok_or_else(|| format!("events line {}: no caps.{name}", n + 1));
                let hours = caps["allowed_hours"]
                    .as_array()
                    .ok_or_else(|| format!("events line {}: no caps.allowed_hours", n + 1))?;
                sends.push(LoggedSend {
                    user,
                    at,
                    utc_offset: field("utc_offset")?,
                    daily_limit: number("daily_limit")? as u32,
                    cooldown_secs: number("cooldown_secs")?,
                    allowed_hours: hours.iter().filter_map(|h| h.as_u64()).map(|h| h as u8).collect(),
                });
            }
            _ => {}
        }
    }
    Ok(Events { sends, opt_outs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(user: u64, at: i64) -> LoggedSend {
        LoggedSend { user, at, utc_offset: 0, daily_limit: 2, cooldown_secs: 3_600, allowed_hours: (8..22).collect() }
    }

    /// A clean history is clean; each planted bug is flagged under its own name.
    #[test]
    fn each_planted_bug_is_flagged() {
        let records = vec![
            EngineRecord { message: 1, user: 10, state: State::Delivered },
            EngineRecord { message: 2, user: 11, state: State::Unknown },
        ];
        let accepted = vec![Accepted { message: 1, chat: 10, at_ms: 5 }];
        let clean = History { records, accepted, sends: vec![send(10, 36_000)], ..History::default() };
        let found = check(&clean, true);
        assert!(found.clean(), "{found:?}");
        assert_eq!((found.unknown, found.unknown_delivered), (1, 0));

        let mut dup = clean.clone();
        dup.accepted.push(Accepted { message: 1, chat: 10, at_ms: 9 });
        assert_eq!(check(&dup, true).duplicates.len(), 1);

        let mut resent = clean.clone();
        resent
            .accepted
            .extend([Accepted { message: 2, chat: 11, at_ms: 6 }, Accepted { message: 2, chat: 11, at_ms: 7 }]);
        let found = check(&resent, true);
        assert_eq!((found.resent_unknowns.len(), found.duplicates.len()), (1, 0));

        let mut lost = clean.clone();
        lost.accepted.push(Accepted { message: 3, chat: 12, at_ms: 8 });
        assert_eq!(check(&lost, true).lost.len(), 1);

        let mut over = clean.clone();
        over.sends.extend([send(10, 36_000 + 3_600), send(10, 36_000 + 7_200)]);
        assert_eq!(check(&over, true).cap_violations.len(), 1, "the third send of a day");

        let mut phantom = clean.clone();
        phantom.records.push(EngineRecord { message: 4, user: 13, state: State::Delivered });
        assert_eq!(check(&phantom, true).delivered_unaccepted.len(), 1);

        let mut late = clean.clone();
        late.opt_outs_handed.push(OptOutHanded { chat: 10, at_ms: 1 });
        late.arrivals.extend([Arrival { chat: 10, at_ms: 2 }]);
        assert!(check(&late, true).clean(), "one request on the wire is allowed");
        late.arrivals.push(Arrival { chat: 10, at_ms: 3 });
        assert_eq!(check(&late, true).late_opt_out_sends.len(), 1);
    }
}
