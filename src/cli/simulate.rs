//! `gavat simulate`: flags → a validated [`SimulationPlan`] → run → report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use gavat_sim::Scenario;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::clock::Stopwatch;
use crate::config::StrategyBook;
use crate::simulation::{self, SimulationPlan};

use super::CliError;

/// Flags of `gavat simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Synthetic users (at least 1).
    #[arg(long, default_value_t = 10_000, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub users: u64,
    /// Simulated days (at least 1).
    #[arg(long, default_value_t = 30, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=3_650))]
    pub days: u32,
    /// Seed for every random choice; without it one is drawn and printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Scenario TOML (population and behaviour); default: the shipped
    /// `sim/scenarios/default.toml`.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Strategy TOML replacing the shipped defaults (`config/strategies.toml`).
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    /// Print the report as JSON (no progress bar). Wall time and throughput are in a
    /// separate `timing` object.
    #[arg(long)]
    pub json: bool,
    /// Write every send, response, conversion and opt-out as one JSON object per line
    /// (schema: docs/events.md).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
}

impl SimulateArgs {
    /// Reads and checks every input before anything runs.
    pub fn plan(&self) -> Result<(SimulationPlan, bool), CliError> {
        let (scenario, scenario_name) = match &self.scenario {
            Some(path) => (Scenario::from_path(path).map_err(CliError::usage)?, path.display().to_string()),
            None => (Scenario::default_scenario(), "default".to_string()),
        };
        let book = match &self.strategy {
            Some(path) => StrategyBook::from_path(path).map_err(CliError::usage)?,
            None => StrategyBook::defaults(),
        };
        if let Some(events) = &self.events
            && let Some(dir) = events.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(CliError::usage(anyhow::anyhow!(
                "--events {}: directory {} does not exist",
                events.display(),
                dir.display()
            )));
        }
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
            events: self.events.clone(),
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
    let (plan, drawn) = args.plan()?;
    if drawn && !args.json {
        eprintln!("gavat: no --seed given; using seed {} (pass --seed {} to reproduce)", plan.seed, plan.seed);
    }
    let bar = ProgressBar::with_draw_target(Some(1_000), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{spinner} simulating {msg} [{bar:40}] {percent}% ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} users × {} days", plan.users, plan.days));
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let started = Stopwatch::start();
    let progress_bar = bar.clone();
    let mut visible = false;
    let report = simulation::run(&plan, move |fraction| {
        if show_progress && !visible && started.elapsed_secs() > 1.0 {
            progress_bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            visible = true;
        }
        progress_bar.set_position((fraction * 1_000.0) as u64);
    })
    .map_err(CliError::failure)?;
    bar.finish_and_clear();

    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report).context("writing the report").map_err(CliError::failure)?;
        writeln!(stdout).context("writing the report").map_err(CliError::failure)?;
    } else {
        write!(stdout, "{}", report.to_text()).context("writing the report").map_err(CliError::failure)?;
        if let Some(events) = &plan.events {
            writeln!(stdout, "events written:    {}", events.display()).map_err(CliError::failure)?;
        }
    }
    if report.cap_violations > 0 {
        return Err(CliError::failure(anyhow::anyhow!(
            "{} cap violations found by the audit (see the report)",
            report.cap_violations
        )));
    }
    Ok(())
}
