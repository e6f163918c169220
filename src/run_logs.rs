//! The run logs a simulation leaves under `logs/` (see [`crate::decision_log`] for the
//! file naming): the learner's decisions in `delivery_optimizer_YYYY-MM-DD.log` (one line
//! per audit entry, stamped with its engine time, and one per adviser failure, stamped with
//! the wall-clock time and carrying its engine time as `at=`) and a summary of
//! each run in `crm_analytics_YYYY-MM-DD.log` (one line for the run and one per segment,
//! stamped with the wall-clock time it finished). The date in a name is the real date.

use std::path::{Path, PathBuf};

use crate::clock::{Clock, SystemClock};
use crate::decision_log::DecisionLog;
use crate::simulation::{SegmentRow, SimulationReport};

/// Appends the run's lines; returns the files written.
pub fn write_run_logs(dir: &Path, report: &SimulationReport, learning: bool) -> std::io::Result<Vec<PathBuf>> {
    let now = SystemClock.now();
    let run = format!("run seed={} scenario={} strategy={}", report.seed, report.scenario, report.strategy);
    let mut written = Vec::new();
    if learning {
        let mut log = DecisionLog::open(dir, "delivery_optimizer", now)?;
        for c in &report.strategy_changes {
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
        for (at, note) in &report.learner_notes {
            // Engine time as text already; keep the line's own stamp the run's end.
            log.write(now, &format!("{run} at={at} note | {note}"))?;
        }
        log.flush()?;
        written.push(log.path().to_path_buf());
    }
    let mut log = DecisionLog::open(dir, "crm_analytics", now)?;
    let t = &report.total;
    let changes = report.strategy_changes.iter().filter(|c| c.action == crate::learner::Action::Applied).count();
    log.write(
        now,
        &format!(
            "{run} users={} days={} simulated={}..{} learner={} changes_applied={changes} {} opted_out_users={} \
             cap_violations={}",
            report.users,
            report.days,
            report.start,
            report.end,
            if learning { "on" } else { "off" },
            row_fields(t),
            report.opted_out_users,
            report.cap_violations
        ),
    )?;
    for row in &report.segments {
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
