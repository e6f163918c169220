//! The run logs a run leaves under `logs/` (see [`crate::decision_log`] for the file
//! naming), from `gavat simulate` and `gavat run` alike: the learner's decisions in
//! `delivery_optimizer_YYYY-MM-DD.log` (one line per audit entry, stamped with its engine
//! time, and one per adviser failure, stamped with the wall-clock time and carrying its
//! engine time as `at=`) and a summary of each run in `crm_analytics_YYYY-MM-DD.log` (one
//! line for the run and one per segment, stamped with the wall-clock time it finished). The
//! date in a name is the real date.
//!
//! Every line starts with what ran — `run seed=… scenario=… strategy=…` for a simulation,
//! `live store=… strategy=… experiment=…` for a live run — and the run's line then says
//! how many users over which period (`users= days= simulated=A..B`, or `users= joined=
//! ran=A..B`); the fields after that are the same in both.

use std::path::{Path, PathBuf};

use crate::clock::{Clock, SystemClock};
use crate::decision_log::DecisionLog;
use crate::learner::StrategyChange;
use crate::simulation::{SegmentRow, SimulationReport};

/// What the run logs say of one run.
#[derive(Debug, Clone)]
pub struct RunLogLines {
    /// Starts every line: what ran.
    pub run: String,
    /// The run line's users and period.
    pub extent: String,
    /// One row per segment, in fixed order.
    pub segments: Vec<SegmentRow>,
    /// All segments together.
    pub total: SegmentRow,
    /// Users opted out at the end.
    pub opted_out_users: u64,
    /// Sends that broke a cap, found by the audit.
    pub cap_violations: u64,
    /// The learner's audit trail.
    pub strategy_changes: Vec<StrategyChange>,
    /// The learner's other notes: (engine time, note).
    pub learner_notes: Vec<(String, String)>,
}

impl RunLogLines {
    /// The lines of a simulation.
    pub fn of_report(report: &SimulationReport) -> RunLogLines {
        RunLogLines {
            run: format!("run seed={} scenario={} strategy={}", report.seed, report.scenario, report.strategy),
            extent: format!("users={} days={} simulated={}..{}", report.users, report.days, report.start, report.end),
            segments: report.segments.clone(),
            total: report.total.clone(),
            opted_out_users: report.opted_out_users,
            cap_violations: report.cap_violations,
            strategy_changes: report.strategy_changes.clone(),
            learner_notes: report.learner_notes.clone(),
        }
    }
}

/// Appends a simulation's lines; returns the files written.
pub fn write_run_logs(dir: &Path, report: &SimulationReport, learning: bool) -> std::io::Result<Vec<PathBuf>> {
    write_run_log_lines(dir, &RunLogLines::of_report(report), learning)
}

/// Appends the lines of a run (`delivery_optimizer` only when the learner ran); returns the
/// files written.
pub fn write_run_log_lines(dir: &Path, lines: &RunLogLines, learning: bool) -> std::io::Result<Vec<PathBuf>> {
    let now = SystemClock.now();
    let run = &lines.run;
    let mut written = Vec::new();
    if learning {
        let mut log = DecisionLog::open(dir, "delivery_optimizer", now)?;
        for c in &lines.strategy_changes {
            let line = format!(
                "{run} change=#{} segment={} source={} action={} field={} before={} after={} | {}",
                c.id,
                c.segment.as_str(),
                c.source,
                c.action.as_str(),
                c.field,
                c.before,
                c.after,
                c.evidence
            );
            log.write(c.at, &line)?;
        }
        for (at, note) in &lines.learner_notes {
            // Engine time as text already; keep the line's own stamp the run's end.
            log.write(now, &format!("{run} at={at} note | {note}"))?;
        }
        log.flush()?;
        written.push(log.path().to_path_buf());
    }
    let mut log = DecisionLog::open(dir, "crm_analytics", now)?;
    let changes = lines.strategy_changes.iter().filter(|c| c.action == crate::learner::Action::Applied).count();
    log.write(
        now,
        &format!(
            "{run} {} learner={} changes_applied={changes} {} opted_out_users={} cap_violations={}",
            lines.extent,
            if learning { "on" } else { "off" },
            row_fields(&lines.total),
            lines.opted_out_users,
            lines.cap_violations
        ),
    )?;
    for row in &lines.segments {
        log.write(now, &format!("{run} segment={} users={} {}", row.segment, row.users, row_fields(row)))?;
    }
    log.flush()?;
    written.push(log.path().to_path_buf());
    Ok(written)
}

fn row_fields(r: &SegmentRow) -> String {
    format!(
        "sent={} responses={} response_rate={:.4} conversions={} conversion_rate={:.4} opt_outs={} opt_out_rate={:.4}",
        r.sent, r.responses, r.response_rate, r.conversions, r.conversion_rate, r.opt_outs, r.opt_out_rate
    )
}
