//! One fault-matrix row's figures (RELIABILITY.md §7.3): every row test builds a
//! [`RowReport`], and [`RowReport::emit`] prints it as one JSON line, appends it to
//! `target/fault-figures.jsonl` (docs/reliability.md is written from that file), and fails
//! the test when an invariant broke (a `bad` count above zero) **or when a fault the row
//! injects never fired** (§7.1: "a row whose fault fired 0 times is failed, not passed").
//!
//! Figures are always `bad / total`, never a bare 0.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

/// Safety runs inject faults that never stop and check only that nothing bad happened;
/// liveness runs stop the faults, wait a quiet period and check that everything drained
/// (RELIABILITY.md rule 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Faults never stop; only "nothing bad" is checked.
    Safety,
    /// Faults stop, a quiet period follows, then "everything drained" is checked too.
    Liveness,
}

/// The figures of one row, built up by the test and printed once by [`RowReport::emit`].
#[derive(Debug)]
pub struct RowReport {
    row: String,
    seed: u64,
    run_kind: RunKind,
    fsync_policy: Option<String>,
    fired: BTreeMap<String, u64>,
    failpoints: BTreeMap<String, u64>,
    figures: Vec<(String, u64, u64)>,
    measures: BTreeMap<String, Value>,
}

impl RowReport {
    /// A report for matrix row `row` (e.g. `"11"`, or `"14-always"` for one variant of a
    /// row), run with `seed`.
    pub fn new(row: &str, seed: u64, run_kind: RunKind) -> RowReport {
        RowReport {
            row: row.to_owned(),
            seed,
            run_kind,
            fsync_policy: None,
            fired: BTreeMap::new(),
            failpoints: BTreeMap::new(),
            figures: Vec::new(),
            measures: BTreeMap::new(),
        }
    }

    /// The `appendfsync` policy the row's Redis ran under ("always", "everysec", or "none"
    /// for a Redis without persistence); rows without Redis leave it out.
    pub fn fsync(mut self, policy: &str) -> RowReport {
        self.fsync_policy = Some(policy.to_owned());
        self
    }

    /// The fault `kind` fired `count` times. A kind reported with 0 fails the row.
    pub fn fired(&mut self, kind: &str, count: u64) -> &mut RowReport {
        *self.fired.entry(kind.to_owned()).or_default() += count;
        self
    }

    /// The named fail point was hit `count` times. A fail point reported with 0 fails the row.
    pub fn failpoint(&mut self, name: &str, count: u64) -> &mut RowReport {
        *self.failpoints.entry(name.to_owned()).or_default() += count;
        self
    }

    /// An invariant's figure: `bad` of `total` ("duplicate sends", 0, 100_000). Any `bad`
    /// above zero fails the row.
    pub fn figure(&mut self, name: &str, bad: u64, total: u64) -> &mut RowReport {
        self.figures.push((name.to_owned(), bad, total));
        self
    }

    /// A measurement that is reported, not judged (a latency, a drain time, a peak RSS).
    pub fn measure(&mut self, name: &str, value: impl Into<Value>) -> &mut RowReport {
        self.measures.insert(name.to_owned(), value.into());
        self
    }

    /// The report as the JSON object that is printed.
    pub fn to_json(&self) -> Value {
        let figures: serde_json::Map<String, Value> = self
            .figures
            .iter()
            .map(|(name, bad, total)| {
                (name.clone(), json!({ "bad": bad, "total": total, "text": format!("{bad} / {total}") }))
            })
            .collect();
        json!({
            "row": self.row,
            "seed": self.seed,
            "run_kind": match self.run_kind { RunKind::Safety => "safety", RunKind::Liveness => "liveness" },
            "fsync_policy": self.fsync_policy,
            "faults_fired": self.fired,
            "failpoints_hit": self.failpoints,
            "figures": figures,
            "measures": self.measures,
        })
    }

    /// What is wrong with the row: invariants broken, faults or fail points that never fired,
    /// or no fault reported at all. Empty when the row passed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.fired.is_empty() && self.failpoints.is_empty() {
            problems.push("the row reported no fault at all".to_owned());
        }
        for (kind, count) in &self.fired {
            if *count == 0 {
                problems.push(format!("fault {kind} never fired"));
            }
        }
        for (name, count) in &self.failpoints {
            if *count == 0 {
                problems.push(format!("fail point {name} was never hit"));
            }
        }
        for (name, bad, total) in &self.figures {
            if *bad > 0 {
                problems.push(format!("{name}: {bad} / {total}"));
            }
        }
        problems
    }

    /// Prints the row's JSON line (prefixed `FAULT_ROW`), appends it to
    /// `target/fault-figures.jsonl`, and panics naming every problem when the row failed.
    pub fn emit(&self) {
        let line = self.to_json().to_string();
        println!("FAULT_ROW {line}");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("fault-figures.jsonl");
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            // One write per line: concurrent tests append whole lines.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
        let problems = self.problems();
        assert!(problems.is_empty(), "fault row {} failed: {}\n{line}", self.row, problems.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean row passes; an invariant broken, a fault never fired, or no fault at all is
    /// each named as a problem.
    #[test]
    fn a_row_fails_when_a_fault_never_fired_or_an_invariant_broke() {
        let mut clean = RowReport::new("1", 7, RunKind::Liveness);
        clean.fired("429", 12).figure("early retries", 0, 40).measure("p99 delay ms", 12);
        assert!(clean.problems().is_empty(), "{:?}", clean.problems());
        assert_eq!(clean.to_json()["figures"]["early retries"]["text"], "0 / 40");

        let mut silent = RowReport::new("1", 7, RunKind::Safety);
        silent.fired("429", 0).figure("early retries", 0, 40);
        assert_eq!(silent.problems(), vec!["fault 429 never fired".to_owned()]);

        let mut broken = RowReport::new("11", 7, RunKind::Safety);
        broken.failpoint("outbox-after-reserve", 3).figure("duplicates", 1, 500);
        assert_eq!(broken.problems(), vec!["duplicates: 1 / 500".to_owned()]);

        let nothing = RowReport::new("2", 7, RunKind::Safety);
        assert_eq!(nothing.problems(), vec!["the row reported no fault at all".to_owned()]);
    }
}
