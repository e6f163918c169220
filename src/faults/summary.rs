//! [`FaultSummary`]: the "faults" section of a faulted simulation's report — every fault
//! kind and how often it fired, every outcome, the invariants as `bad / total` figures, and
//! the event log's SHA-256.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{FaultCounters, FaultPlan};

/// An invariant's figure: `bad` of `total` (RELIABILITY.md §7.1: never a bare 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Figure {
    /// Times the invariant broke.
    pub bad: u64,
    /// Out of how many.
    pub total: u64,
}

impl Figure {
    /// `bad / total`, with thousands separated.
    pub fn to_text(self) -> String {
        format!("{} / {}", thousands(self.bad), thousands(self.total))
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The faults section of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultSummary {
    /// The plan's name (or its file).
    pub plan: String,
    /// `safety` (faults never stop) or `liveness` (they stop; a quiet period follows).
    pub run_kind: &'static str,
    /// When the faults stopped, in simulated days from the start (liveness runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_after_days: Option<u32>,
    /// How often each fault kind fired.
    pub fired: BTreeMap<&'static str, u64>,
    /// What the transport answered and what the engine did: delivered, failed (for good),
    /// unknown, retried (a 429 or a 500: not sent, tried again), suppressed (held by a rule),
    /// held (by the cap gate being down: fail closed).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Ground truth: unknown outcomes the simulated platform had in fact delivered.
    pub unknown_delivered: u64,
    /// Sends that broke a cap (the independent audit), of user-days simulated.
    pub cap_violations: Figure,
    /// Message ids the platform had accepted, sent again, of transport calls.
    pub duplicate_sends: Figure,
    /// Unknown outcomes sent again, of unknown outcomes.
    pub unknown_resent: Figure,
    /// Sends before a 429's `retry_after` elapsed, of 429s.
    pub early_retries: Figure,
    /// Sends while the cap gate was down, of transport calls.
    pub sends_while_gate_down: Figure,
    /// Inbound events delivered twice and taken in twice, of those delivered twice.
    pub inbound_taken_twice: Figure,
    /// Liveness: retried messages without a final state at the end, of retried messages.
    pub open_retries: Figure,
    /// Liveness: reservations granted and never settled at the end, of transport calls.
    pub open_reservations: Figure,
    /// Entries in the event log.
    pub events: u64,
    /// SHA-256 of the event log (each entry as its `--events` JSON line).
    pub event_log_sha256: String,
}

/// What the run measured besides the counters, to build a [`FaultSummary`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunFigures {
    pub(crate) user_days: u64,
    pub(crate) cap_violations: u64,
    pub(crate) suppressed: u64,
    pub(crate) held: u64,
    pub(crate) duplicates_dropped: u64,
    pub(crate) open_retries: u64,
    pub(crate) retries_opened: u64,
    pub(crate) open_reservations: u64,
}

impl FaultSummary {
    pub(crate) fn new(
        plan: &FaultPlan,
        name: String,
        c: &FaultCounters,
        run: RunFigures,
        (sha256, events): (String, u64),
    ) -> FaultSummary {
        let get = FaultCounters::get;
        let fired = BTreeMap::from([
            ("accept_then_hang", get(&c.accept_then_hang)),
            ("duplicate_inbound", get(&c.duplicate_inbound)),
            ("ledger_unavailable", get(&c.ledger_unavailable)),
            ("rate_limited_chat", get(&c.rate_limited_chat)),
            ("rate_limited_storm", get(&c.rate_limited_storm)),
            ("reorder_inbound", get(&c.reorder_inbound)),
            ("server_error_500", get(&c.server_error_500)),
            ("server_error_502", get(&c.server_error_502)),
            ("slow", get(&c.slow)),
            ("slow_timed_out", get(&c.slow_timed_out)),
        ]);
        let outcomes = BTreeMap::from([
            ("delivered", get(&c.delivered)),
            ("failed", get(&c.failed)),
            ("unknown", get(&c.unknown)),
            ("retried", get(&c.retried)),
            ("suppressed", run.suppressed),
            ("held", run.held),
        ]);
        let sends = get(&c.sends);
        let limited = get(&c.rate_limited_chat) + get(&c.rate_limited_storm);
        let doubled = get(&c.duplicate_inbound);
        FaultSummary {
            plan: name,
            run_kind: plan.run_kind(),
            stop_after_days: plan.stop_after_days,
            fired,
            outcomes,
            unknown_delivered: get(&c.unknown_delivered),
            cap_violations: Figure { bad: run.cap_violations, total: run.user_days },
            duplicate_sends: Figure { bad: get(&c.duplicate_sends), total: sends },
            unknown_resent: Figure { bad: get(&c.unknown_resent), total: get(&c.unknown) },
            early_retries: Figure { bad: get(&c.early_retries), total: limited },
            sends_while_gate_down: Figure { bad: get(&c.sends_while_gate_down), total: sends },
            inbound_taken_twice: Figure { bad: doubled.saturating_sub(run.duplicates_dropped), total: doubled },
            open_retries: Figure { bad: run.open_retries, total: run.retries_opened },
            open_reservations: Figure { bad: run.open_reservations, total: sends },
            events,
            event_log_sha256: sha256,
        }
    }

    /// The safety figures that broke, by name (empty when none did): the run must fail.
    pub fn broken(&self) -> Vec<&'static str> {
        let mut broken = Vec::new();
        for (name, figure) in [
            ("cap violations", self.cap_violations),
            ("duplicate sends", self.duplicate_sends),
            ("unknown outcomes resent", self.unknown_resent),
            ("sends before retry_after", self.early_retries),
            ("sends while the cap gate was down", self.sends_while_gate_down),
            ("inbound events taken in twice", self.inbound_taken_twice),
        ] {
            if figure.bad > 0 {
                broken.push(name);
            }
        }
        if self.run_kind == "liveness" {
            if self.open_retries.bad > 0 {
                broken.push("retried messages left without a final state");
            }
            if self.open_reservations.bad > 0 {
                broken.push("reservations left open");
            }
        }
        broken
    }

    /// The section as text.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let stop = self.stop_after_days.map_or_else(String::new, |d| format!(", faults stop after day {d}"));
        let _ = writeln!(out, "faults:            plan {} ({} run{stop})", self.plan, self.run_kind);
        let fired: Vec<String> = self.fired.iter().map(|(k, v)| format!("{k} {}", thousands(*v))).collect();
        let _ = writeln!(out, "  fired:           {}", fired.join(", "));
        let outcomes: Vec<String> = self.outcomes.iter().map(|(k, v)| format!("{k} {}", thousands(*v))).collect();
        let _ = writeln!(
            out,
            "  outcomes:        {} (unknown but delivered: {})",
            outcomes.join(", "),
            thousands(self.unknown_delivered)
        );
        let _ = writeln!(out, "  cap violations:  {} user-days", self.cap_violations.to_text());
        let _ = writeln!(out, "  duplicate sends: {} sends", self.duplicate_sends.to_text());
        let _ = writeln!(out, "  unknown resent:  {} unknown", self.unknown_resent.to_text());
        let _ = writeln!(out, "  early retries:   {} 429s", self.early_retries.to_text());
        let _ = writeln!(out, "  sent, gate down: {} sends", self.sends_while_gate_down.to_text());
        let _ = writeln!(out, "  inbound twice:   {} delivered twice", self.inbound_taken_twice.to_text());
        if self.run_kind == "liveness" {
            let _ =
                writeln!(out, "  open retries:    {} retried (after the quiet period)", self.open_retries.to_text());
            let _ = writeln!(out, "  open reservations: {} sends", self.open_reservations.to_text());
        }
        let _ =
            writeln!(out, "  event log:       {} entries, sha256 {}", thousands(self.events), self.event_log_sha256);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures read with thousands separated, never as a bare number.
    #[test]
    fn figures_read_bad_of_total() {
        assert_eq!(Figure { bad: 0, total: 1_200_000 }.to_text(), "0 / 1,200,000");
        assert_eq!(Figure { bad: 12, total: 999 }.to_text(), "12 / 999");
    }

    /// A figure that broke is named; a liveness figure counts only in a liveness run.
    #[test]
    fn broken_figures_are_named() {
        let run = RunFigures {
            user_days: 10,
            cap_violations: 0,
            suppressed: 0,
            held: 0,
            duplicates_dropped: 0,
            open_retries: 1,
            retries_opened: 1,
            open_reservations: 0,
        };
        let counters = FaultCounters::default();
        FaultCounters::add(&counters.duplicate_sends);
        let safety = FaultSummary::new(&FaultPlan::default(), "p".into(), &counters, run, (String::new(), 0));
        assert_eq!(safety.broken(), vec!["duplicate sends"]);
        let plan = FaultPlan { stop_after_days: Some(1), ..FaultPlan::default() };
        let liveness = FaultSummary::new(&plan, "p".into(), &counters, run, (String::new(), 0));
        assert_eq!(liveness.broken(), vec!["duplicate sends", "retried messages left without a final state"]);
    }
}
