//! `gavat simulate`: flags → a validated [`SimulationPlan`] → run → report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use gavat_sim::Scenario;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::clock::Stopwatch;
use crate::config::StrategyBook;
use crate::learner::LearnerSettings;
use crate::learner_effect::LearnerEffect;
use crate::run_logs::write_run_logs;

use super::llm_args::LlmConnectionArgs;
use crate::segmentation::SegmentationRules;
use crate::simulation::{self, SimulationPlan};

use super::CliError;

/// Flags of `gavat simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Population, length, seed and files.
    #[command(flatten)]
    pub sim: SimArgs,
    /// Print the report as JSON (no progress bar). Wall time and throughput are in a
    /// separate `timing` object.
    #[arg(long)]
    pub json: bool,
    /// Write every send, response, conversion and opt-out as one JSON object per line
    /// (schema: docs/events.md).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Save the simulated CRM's final state (profiles, segments with reasons, the
    /// send/response log, planned sends) into this SQLite file, replacing it; explore it
    /// with `gavat users`, `gavat segments`, `gavat delivery` and `gavat segment`.
    #[arg(long, value_name = "FILE")]
    pub save_state: Option<PathBuf>,
    /// Run with the learner: every 6 simulated hours (after a first day of observing) it
    /// moves each segment's send hours by Thompson sampling and its daily limit or cooldown
    /// one step on strong evidence, within hard limits, rolling back what hurts. The
    /// report lists every change.
    #[arg(long)]
    pub learn: bool,
    /// Learner settings replacing the shipped ones (`config/learner.toml`); implies --learn.
    #[arg(long, value_name = "FILE")]
    pub learner: Option<PathBuf>,
    /// With the learner, skip the second run on the static strategies that the report's
    /// "learner effect" compares against.
    #[arg(long)]
    pub no_baseline: bool,
    /// Where the run logs go: `<dir>/crm_analytics_YYYY-MM-DD.log` (a summary of every run)
    /// and, with the learner, `<dir>/delivery_optimizer_YYYY-MM-DD.log` (its decisions).
    #[arg(long, value_name = "DIR", env = "GAVAT_LOG_DIR", default_value = "logs")]
    pub log_dir: PathBuf,
    /// Let the learner consult an OpenAI-compatible model (key from OPENAI_API_KEY) at each
    /// look; it sees per-segment aggregates only, and each of its proposals must pass the
    /// schema, the hard limits and its own simulation like the learner's. Implies --learn.
    #[arg(long)]
    pub llm_adviser: bool,
    /// The adviser's endpoint, model, timeouts and budget.
    #[command(flatten, next_help_heading = "LLM adviser")]
    pub llm: LlmConnectionArgs,
}

/// The flags every simulated run shares.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Synthetic users (at least 1).
    #[arg(long, default_value_t = 10_000, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub users: u64,
    /// Simulated days (at least 1).
    #[arg(long, default_value_t = 30, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=3_650))]
    pub days: u32,
    /// Seed for every random choice; without it one is drawn and printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads the users are spread over (default: the machine's cores). The report is the
    /// same for every value.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Scenario TOML (population and behaviour); default: the shipped
    /// `sim/scenarios/default.toml`.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Strategy TOML replacing the shipped defaults (`config/strategies.toml`).
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    /// Segmentation rules TOML replacing the shipped thresholds (`config/segmentation.toml`).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

impl SimArgs {
    /// Reads and checks every input before anything runs; `events` is where the log goes.
    pub fn plan(&self, events: Option<&PathBuf>) -> Result<(SimulationPlan, bool), CliError> {
        let (scenario, scenario_name) = match &self.scenario {
            Some(path) => (Scenario::from_path(path).map_err(CliError::usage)?, path.display().to_string()),
            None => (Scenario::default_scenario(), "default".to_string()),
        };
        let book = match &self.strategy {
            Some(path) => StrategyBook::from_path(path).map_err(CliError::usage)?,
            None => StrategyBook::defaults(),
        };
        if let Some(events) = events
            && let Some(dir) = events.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(CliError::usage(anyhow::anyhow!(
                "--events {}: directory {} does not exist",
                events.display(),
                dir.display()
            )));
        }
        let rules = match &self.rules {
            Some(path) => SegmentationRules::from_path(path).map_err(CliError::usage)?,
            None => SegmentationRules::defaults(),
        };
        let (seed, drawn) = match self.seed {
            Some(seed) => (seed, false),
            None => (draw_seed(), true),
        };
        let plan = SimulationPlan {
            users: self.users as usize,
            days: self.days,
            seed,
            scenario,
            scenario_name,
            book,
            rules,
            events: events.cloned(),
            save_state: None,
            learner: None,
            adviser: None,
            threads: self.threads.map_or_else(crate::engine::default_threads, usize::from),
        };
        Ok((plan, drawn))
    }
}

/// A fresh seed from the operating system's entropy (only when none was given).
fn draw_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// Runs `gavat simulate`.
pub fn run(args: SimulateArgs) -> Result<(), CliError> {
    let (mut plan, drawn) = args.sim.plan(args.events.as_ref())?;
    if let Some(path) = &args.save_state {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(CliError::usage(anyhow::anyhow!(
                "--save-state {}: directory {} does not exist",
                path.display(),
                dir.display()
            )));
        }
        plan.save_state = Some(path.clone());
    }
    plan.learner = match &args.learner {
        Some(path) => Some(LearnerSettings::from_path(path).map_err(CliError::usage)?),
        None => (args.learn || args.llm_adviser).then(LearnerSettings::defaults),
    };
    if args.llm_adviser {
        plan.adviser = Some(args.llm.adviser_settings()?);
    }
    if drawn && !args.json {
        eprintln!("gavat: no --seed given; using seed {} (pass --seed {} to reproduce)", plan.seed, plan.seed);
    }
    let progress = Progress::new(format!("simulating {} users × {} days", plan.users, plan.days), !args.json);
    let mut report = simulation::run(&plan, progress.callback()).map_err(CliError::failure)?;
    progress.finish();
    if plan.learner.is_some() && !args.no_baseline {
        // The same seed and population on the static strategies: what the learner changed.
        let baseline_plan =
            SimulationPlan { learner: None, adviser: None, save_state: None, events: None, ..plan.clone() };
        let progress = Progress::new("the same run on the static strategies".into(), !args.json);
        let baseline = simulation::run(&baseline_plan, progress.callback()).map_err(CliError::failure)?;
        progress.finish();
        report.learner_effect = Some(LearnerEffect::between(&baseline, &report));
    }

    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report).context("writing the report").map_err(CliError::failure)?;
        writeln!(stdout).context("writing the report").map_err(CliError::failure)?;
    } else {
        write!(stdout, "{}", report.to_text()).context("writing the report").map_err(CliError::failure)?;
        if let Some(events) = &plan.events {
            writeln!(stdout, "events written:    {}", events.display()).map_err(CliError::failure)?;
        }
        if let Some(state) = &plan.save_state {
            writeln!(stdout, "state saved:       {}", state.display()).map_err(CliError::failure)?;
        }
    }
    // The report is out first: a log that cannot be written costs a warning, not the run.
    match write_run_logs(&args.log_dir, &report, plan.learner.is_some()) {
        Ok(logs) if !args.json => {
            for log in &logs {
                writeln!(stdout, "log appended:      {}", log.display()).map_err(CliError::failure)?;
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("gavat: warning: {}: cannot write the run logs: {e}", args.log_dir.display()),
    }
    if report.cap_violations > 0 {
        return Err(CliError::failure(anyhow::anyhow!(
            "{} cap violations found by the audit (see the report)",
            report.cap_violations
        )));
    }
    Ok(())
}

/// A progress bar on stderr that appears only once a run has taken about a second, and
/// never when stdout is for a machine (`--json`) or stderr is not a terminal.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
    enabled: bool,
}

impl Progress {
    /// A hidden bar for `message`; `enabled` false keeps it hidden for good.
    pub fn new(message: String, enabled: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(1_000), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {percent}% ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(message);
        Progress { bar, enabled: enabled && std::io::stderr().is_terminal() }
    }

    /// A callback taking the fraction done.
    pub fn callback(&self) -> impl FnMut(f64) + Clone + 'static {
        let bar = self.bar.clone();
        let enabled = self.enabled;
        let started = std::rc::Rc::new(Stopwatch::start());
        move |fraction: f64| {
            if enabled && bar.is_hidden() && started.elapsed_secs() > 1.0 {
                bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            }
            bar.set_position((fraction * 1_000.0) as u64);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
