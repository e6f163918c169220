//! Experiments on the simulator: the arms of an experiment file become strategy books, users
//! are split by the assignment hash — or, for the paired design, every user is replayed under
//! every arm with the same random streams — and per-user results feed the comparison of
//! `gavat-experiments`.

use std::sync::Arc;

use gavat_experiments::compare::{Accumulator, CompareError, Report, Settings, compare};
use gavat_experiments::design::{Experiment, Metric};
use gavat_experiments::results::UserRow;
use gavat_experiments::stats::{Interval, MeanSummary, StatsError, mean_interval};
use serde::Serialize;

use crate::config::{ConfigError, StrategyBook};
use crate::engine::UserResult;
use crate::learner::{Action, LearnerSettings};
use crate::simulation::{ArmAssignment, ArmSetup, SimulationError, SimulationPlan, run_engine, run_engine_streams};

/// The name of the holdout arm in results.
pub use gavat_experiments::design::HOLDOUT;

/// A validated experiment run.
#[derive(Debug, Clone)]
pub struct ExperimentPlan {
    /// Population, days, seed, scenario, base strategies.
    pub sim: SimulationPlan,
    /// The experiment.
    pub design: Experiment,
    /// Where it came from (for errors).
    pub origin: String,
    /// Also replay every user under every arm.
    pub paired: bool,
    /// Days of the simulated pre-period whose replies become each user's `pre_period` value
    /// (CUPED's covariate); 0 for none.
    pub pre_period_days: u32,
}

/// Why an experiment could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// An arm's overrides are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The simulation failed.
    #[error(transparent)]
    Simulation(#[from] SimulationError),
    /// The comparison could not be made.
    #[error(transparent)]
    Compare(#[from] CompareError),
    /// A statistic could not be computed.
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// The paired design's interval next to the split design's, for one treatment.
#[derive(Debug, Clone, Serialize)]
pub struct PairedComparison {
    /// The treatment.
    pub arm: String,
    /// Treatment minus control from the split design (different users in each arm).
    pub split: Interval,
    /// Treatment minus control from the paired design (every user under both arms, same
    /// random streams): the mean of per-user differences with a t interval.
    pub paired: Interval,
    /// split width / paired width: how much narrower pairing makes the interval.
    pub width_ratio: f64,
}

/// What an experiment run produced.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentOutcome {
    /// The experiment's name.
    pub experiment: String,
    /// Users, days, seed.
    pub users: usize,
    /// Simulated days.
    pub days: u32,
    /// The seed.
    pub seed: u64,
    /// The comparison of the split design.
    pub report: Report,
    /// The paired design, when asked for.
    pub paired: Option<Vec<PairedComparison>>,
    /// What the learner did on each learning arm (split design).
    pub learning: Vec<ArmLearning>,
    /// Per-user rows of the split design, in user order.
    #[serde(skip)]
    pub rows: Vec<UserRow>,
}

/// The learner's decisions on one arm.
#[derive(Debug, Clone, Serialize)]
pub struct ArmLearning {
    /// The arm.
    pub arm: String,
    /// Changes put in force.
    pub applied: usize,
    /// Cap changes kept after review.
    pub kept: usize,
    /// Changes undone by a guardrail.
    pub rolled_back: usize,
    /// Proposals refused (hard limits, lost simulations).
    pub rejected: usize,
}

/// An experiment's arms made concrete, in assignment order (the holdout last).
#[derive(Debug, Clone)]
pub struct ConcreteArms {
    /// Arm names.
    pub names: Vec<Arc<str>>,
    /// Each arm's strategies: the base with the arm's overrides (the holdout's send nothing).
    pub books: Vec<Arc<StrategyBook>>,
    /// Assignment weights.
    pub weights: Vec<f64>,
}

/// Who goes to which arm of `design`: the weighted rendezvous hash of `(salt, user id)` over
/// the arms' weights, the holdout's last — the one assignment of simulations, live runs and
/// `gavat experiment export`.
pub fn assignment(design: &Experiment) -> ArmAssignment {
    ArmAssignment::ByHash { salt: design.salt.clone(), weights: design.assignment_weights() }
}

/// Applies every arm's overrides to `base`; errors name `origin`, the line, the arm's field
/// and the value as written.
pub fn arm_setup(design: &Experiment, base: &StrategyBook, origin: &str) -> Result<ConcreteArms, ConfigError> {
    let mut names = Vec::new();
    let mut books = Vec::new();
    for (i, arm) in design.arms.iter().enumerate() {
        names.push(Arc::from(arm.name.as_str()));
        let book = base
            .with_overrides(&arm.overrides, origin, &format!("arms[{i}].overrides"))
            .map_err(|e| locate_override_error(e, design, i))?;
        books.push(Arc::new(book));
    }
    if design.holdout.is_some() {
        names.push(Arc::from(HOLDOUT));
        books.push(Arc::new(base.silenced()));
    }
    Ok(ConcreteArms { names, books, weights: design.assignment_weights() })
}

/// Puts the line of the offending override into an override error (`e.toml:18: field
/// arms[1].overrides.HOT_LEAD.cooldown_hours: …`) and quotes its value as written: the
/// strategy check prints the parsed value, which for `1e300` is a 301-digit number.
fn locate_override_error(error: ConfigError, design: &Experiment, arm: usize) -> ConfigError {
    let ConfigError::Override { path, field, mut message } = error else { return error };
    // The field itself, or for an error about a whole segment its first field.
    let exact = design.written.get(&field);
    let under = format!("{field}.");
    let written = exact.or_else(|| design.written.iter().find(|(k, _)| k.starts_with(&under)).map(|(_, w)| w));
    let Some(written) = written else { return ConfigError::Override { path, field, message } };
    if exact.is_some() {
        // The strategy check quotes the parsed value (for `1e300`, a shortened 301-digit
        // number) before its complaint: quote it as written instead.
        let mut parts = field.rsplitn(3, '.');
        let (name, segment) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if let Some(value) = design.arms[arm].overrides.get(segment).and_then(|f| f.get(name)) {
            let parsed = crate::config::shorten(&value.to_string());
            if let Some(rest) = message.strip_prefix(&format!("{parsed} ")) {
                message = format!("{} {rest}", written.text);
            }
        }
    }
    ConfigError::Override { path: format!("{path}:{}", written.line), field, message }
}

fn rows_of(results: &[UserResult], names: &[Arc<str>]) -> Vec<UserRow> {
    results
        .iter()
        .map(|r| UserRow {
            user: r.user.0,
            arm: names[usize::from(r.arm)].to_string(),
            messages: u64::from(r.messages),
            responses: u64::from(r.responses),
            conversions: u64::from(r.conversions),
            opted_out: r.opted_out,
            engagement: UserRow::engagement_of(u64::from(r.responses), u64::from(r.conversions), r.opted_out),
            pre_period: None,
        })
        .collect()
}

/// Mixed into the seed for the pre-period's random streams, so that the pre-period's users
/// are the experiment's (the population comes from the seed) but behave afresh.
const PRE_PERIOD_STREAMS: u64 = 0x5052_4550_4552_494f; // "PREPERIO"

/// Each user's replies over `days` simulated under control's strategies for everyone, with
/// the experiment's population and fresh random streams, indexed by user id: the pre-period
/// covariate of CUPED (Deng et al. 2013). The experiment's own run is not changed by it.
fn pre_period_values(
    plan: &ExperimentPlan,
    days: u32,
    names: &[Arc<str>],
    books: &[Arc<StrategyBook>],
    progress: impl FnMut(f64) + 'static,
) -> Result<Vec<f64>, ExperimentError> {
    let sim = SimulationPlan { days, learner: None, adviser: None, events: None, save_state: None, ..plan.sim.clone() };
    let setup = ArmSetup {
        names: names.to_vec(),
        books: books.to_vec(),
        assignment: ArmAssignment::Everyone(0),
        learning: vec![false; names.len()],
    };
    let run = run_engine_streams(&sim, None, plan.sim.seed ^ PRE_PERIOD_STREAMS, Some(setup), progress)?;
    let mut values = vec![0.0; plan.sim.users];
    for r in &run.result.per_user {
        if let Some(slot) = values.get_mut(r.user.0 as usize) {
            *slot = f64::from(r.responses);
        }
    }
    Ok(values)
}

/// A user's value of a per-user metric (`None` for the ratio metric, which is not per user).
fn per_user_value(metric: Metric, r: &UserResult) -> Option<f64> {
    match metric {
        Metric::ResponseRate => Some(f64::from(u8::from(r.responses > 0))),
        Metric::ConversionRate => Some(f64::from(u8::from(r.conversions > 0))),
        Metric::OptOutRate => Some(f64::from(u8::from(r.opted_out))),
        Metric::Engagement => {
            Some(UserRow::engagement_of(u64::from(r.responses), u64::from(r.conversions), r.opted_out))
        }
        Metric::ResponsesPerMessage => None,
    }
}

/// Runs the experiment: the split design always, the paired design when asked.
/// `progress` is told the fraction done.
pub fn run(
    plan: &ExperimentPlan,
    progress: impl FnMut(f64) + Clone + 'static,
) -> Result<ExperimentOutcome, ExperimentError> {
    let design = &plan.design;
    let ConcreteArms { names, books, weights } = arm_setup(design, &plan.sim.book, &plan.origin)?;
    let learning: Vec<bool> = design.arms.iter().map(|a| a.learner).collect();
    let mut sim = plan.sim.clone();
    if learning.iter().any(|l| *l) && sim.learner.is_none() {
        sim.learner = Some(LearnerSettings::defaults());
    }
    let plan = &ExperimentPlan { sim, ..plan.clone() };
    let treatments = design.arms.len();
    let pre_runs = usize::from(plan.pre_period_days > 0);
    let runs = (if plan.paired { 1 + treatments } else { 1 } + pre_runs) as f64;
    let scaled = |run: usize| {
        let mut p = progress.clone();
        move |f: f64| p((run as f64 + f) / runs)
    };
    let setup = ArmSetup {
        names: names.clone(),
        books: books.clone(),
        assignment: assignment(design),
        learning: learning.clone(),
    };
    let pre_period = match plan.pre_period_days {
        0 => None,
        days => Some(pre_period_values(plan, days, &names, &books, scaled(0))?),
    };
    let split = run_engine(&plan.sim, Some(setup), scaled(pre_runs))?;
    let mut rows = rows_of(&split.result.per_user, &names);
    if let Some(values) = &pre_period {
        for row in &mut rows {
            row.pre_period = values.get(row.user as usize).copied();
        }
    }
    let learning_summary = learning
        .iter()
        .enumerate()
        .filter(|(_, l)| **l)
        .map(|(arm, _)| {
            let changes = split.result.scheduler.strategy_changes.iter().filter(|c| usize::from(c.arm) == arm);
            let count = |a: Action| changes.clone().filter(|c| c.action == a).count();
            ArmLearning {
                arm: names[arm].to_string(),
                applied: count(Action::Applied),
                kept: count(Action::Kept),
                rolled_back: count(Action::RolledBack),
                rejected: count(Action::Rejected),
            }
        })
        .collect();
    let mut acc = Accumulator::with_arms(names.iter().map(|n| &**n));
    for row in &rows {
        acc.add(row);
    }
    let settings = Settings::of_experiment(design, &weights);
    let report = compare(&acc, &settings)?;

    let paired = if plan.paired && design.primary_metric != Metric::ResponsesPerMessage {
        let mut per_arm: Vec<Vec<UserResult>> = Vec::with_capacity(treatments);
        for arm in 0..treatments {
            let setup = ArmSetup {
                names: names.clone(),
                books: books.clone(),
                assignment: ArmAssignment::Everyone(arm as u16),
                learning: learning.clone(),
            };
            per_arm.push(run_engine(&plan.sim, Some(setup), scaled(pre_runs + 1 + arm))?.result.per_user);
        }
        let metric = design.primary_metric;
        let mut lines = Vec::new();
        for (k, treated) in per_arm.iter().enumerate().skip(1) {
            let diffs: Vec<f64> = treated
                .iter()
                .zip(&per_arm[0])
                .filter_map(|(t, c)| Some(per_user_value(metric, t)? - per_user_value(metric, c)?))
                .collect();
            let paired = mean_interval(&MeanSummary::of(&diffs), design.alpha)?;
            let name = design.arms[k].name.clone();
            let Some(split_cmp) = report.comparisons.iter().find(|c| c.arm == name) else { continue };
            let split_width = split_cmp.difference.high - split_cmp.difference.low;
            let paired_width = paired.high - paired.low;
            lines.push(PairedComparison {
                arm: name,
                split: split_cmp.difference,
                paired,
                width_ratio: if paired_width > 0.0 { split_width / paired_width } else { f64::INFINITY },
            });
        }
        Some(lines)
    } else {
        None
    };
    Ok(ExperimentOutcome {
        experiment: design.name.clone(),
        users: plan.sim.users,
        days: plan.sim.days,
        seed: plan.sim.seed,
        report,
        paired,
        learning: learning_summary,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: &str = include_str!("../experiments/cooldown.toml");

    fn setup_error(text: &str) -> String {
        let design = Experiment::from_toml_str(text, "x.toml").expect("the design parses");
        arm_setup(&design, &StrategyBook::defaults(), "x.toml").unwrap_err().to_string()
    }

    /// An arm's bad override names the file, line and field, and quotes the value as written
    /// (not `1e300` as a 301-digit number).
    #[test]
    fn override_errors_name_the_line_and_the_value_as_written() {
        let err = setup_error(&COOLDOWN.replace("cooldown_hours = 8", "cooldown_hours = 1e300"));
        assert!(err.starts_with("x.toml:18: field arms[1].overrides.HOT_LEAD.cooldown_hours: 1e300 "), "{err}");
        let err = setup_error(&COOLDOWN.replace("cooldown_hours = 24", "colour = 24"));
        assert_eq!(err, "x.toml:20: field arms[1].overrides.WARM_LEAD.colour: not a strategy field");
        let err = setup_error(&COOLDOWN.replace("[arms.overrides.WARM_LEAD]", "[arms.overrides.LUKEWARM]"));
        assert!(err.starts_with("x.toml:20: field arms[1].overrides.LUKEWARM: "), "{err}");
    }
}
