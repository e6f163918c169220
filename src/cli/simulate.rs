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
use crate::output::{Named, PendingFile, check_distinct_except, check_log_dir};
use crate::run_logs::write_run_logs;
use crate::store::{SavedSimulation, SqliteStore};

use super::llm_args::LlmConnectionArgs;
use crate::segmentation::SegmentationRules;
use crate::simulation::{self, Continuation, InputSource, InputSources, SimulationPlan};

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
    /// Also write the report as one self-contained HTML file (styles and SVG charts inline,
    /// nothing fetched, no script): the segment table, outcomes per simulated day,
    /// suppressions by reason, each segment's response rate with its 95% Wilson interval, the
    /// cap audit and the learner's changes (docs/reports.md). Written only if the run
    /// succeeds.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write every send, response, conversion and opt-out as one JSON object per line
    /// (schema: docs/events.md).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Save the simulated CRM's final state (profiles, segments with reasons, the
    /// send/response log, planned sends) into this SQLite file, replacing it; explore it
    /// with `gavat users`, `gavat segments`, `gavat delivery` and `gavat segment`.
    #[arg(long, value_name = "FILE")]
    pub save_state: Option<PathBuf>,
    /// Continue the simulation saved in this store (by `--save-state`) for `--days` more:
    /// the same population (from the stored seed and scenario; `--users`, `--seed` and
    /// `--scenario` may be left out, and are refused if they differ), the clock from the
    /// store's end, and every user's profile and cap state (cooldowns, daily counts,
    /// opt-outs) as saved. `--save-state` may name the same file: it is replaced atomically.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
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
    /// Inject the faults of this plan (TOML; examples in `sim/scenarios/faults/`, format in
    /// docs/faults.md) at the engine's seams: 429s and storms, 5xx, accept-then-hang, slow
    /// answers, cap-gate outages, duplicated and reordered inbound events, all drawn from
    /// --seed. The report gets a "faults" section (what fired, every outcome, cap violations
    /// / user-days, duplicate sends / sends, the event log's SHA-256); the run fails (exit 1)
    /// if any invariant broke.
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
}

/// The flags every simulated run shares.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Synthetic users (at least 1) [default: 10000; with --resume: the store's].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub users: Option<u64>,
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

/// Synthetic users when `--users` is not given.
pub const DEFAULT_USERS: u64 = 10_000;

/// A saved simulation being continued: the flag and file, and what the store says.
#[derive(Debug)]
pub struct Resumed<'a> {
    /// The store, as given to `--resume`.
    pub path: &'a std::path::Path,
    /// What it holds.
    pub saved: SavedSimulation,
}

impl Resumed<'_> {
    /// The refusal of a flag that contradicts the store.
    fn contradiction(&self, flag: &str, given: impl std::fmt::Display, stored: impl std::fmt::Display) -> CliError {
        CliError::usage(anyhow::anyhow!(
            "{flag} {given} contradicts --resume {}, which continues {stored}; leave {flag} out to continue it",
            self.path.display()
        ))
    }
}

impl SimArgs {
    /// Reads and checks every input, and that the population fits in memory, before
    /// anything runs; `events` is where the log goes.
    pub fn plan(&self, events: Option<&PathBuf>) -> Result<(SimulationPlan, bool), CliError> {
        self.plan_from(events, None)
    }

    /// [`SimArgs::plan`], continuing `resumed` if given: the population (users, seed,
    /// scenario) is the store's, and a flag that says otherwise is refused.
    pub fn plan_from(
        &self,
        events: Option<&PathBuf>,
        resumed: Option<&Resumed<'_>>,
    ) -> Result<(SimulationPlan, bool), CliError> {
        let (scenario, scenario_name) = match (&self.scenario, resumed) {
            (Some(path), None) => (Scenario::from_path(path).map_err(CliError::usage)?, path.display().to_string()),
            (None, None) => (Scenario::default_scenario(), "default".to_string()),
            (given, Some(r)) => {
                let origin = format!("{} (its scenario)", r.path.display());
                let stored = Scenario::from_toml_str(&r.saved.meta.scenario_toml, &origin).map_err(CliError::usage)?;
                if let Some(path) = given
                    && Scenario::from_path(path).map_err(CliError::usage)? != stored
                {
                    return Err(r.contradiction(
                        "--scenario",
                        path.display(),
                        format_args!("scenario {}", r.saved.meta.scenario_name),
                    ));
                }
                (stored, r.saved.meta.scenario_name.clone())
            }
        };
        let book = match &self.strategy {
            Some(path) => StrategyBook::from_path(path).map_err(CliError::usage)?,
            None => StrategyBook::defaults(),
        };
        let users = match (self.users, resumed) {
            (Some(given), Some(r)) if given != r.saved.meta.users => {
                return Err(r.contradiction("--users", given, format_args!("{} users", r.saved.meta.users)));
            }
            (_, Some(r)) => r.saved.meta.users,
            (given, None) => given.unwrap_or(DEFAULT_USERS),
        };
        check_memory(users)?;
        let rules = match &self.rules {
            Some(path) => SegmentationRules::from_path(path).map_err(CliError::usage)?,
            None => SegmentationRules::defaults(),
        };
        let sources = InputSources {
            strategy: input_source("--strategy", self.strategy.as_deref())?,
            scenario: input_source("--scenario", self.scenario.as_deref())?,
            rules: input_source("--rules", self.rules.as_deref())?,
        };
        let (seed, drawn) = match (self.seed, resumed) {
            (Some(given), Some(r)) if given != r.saved.seed => {
                return Err(r.contradiction("--seed", given, format_args!("seed {}", r.saved.seed)));
            }
            (_, Some(r)) => (r.saved.seed, false),
            (Some(seed), None) => (seed, false),
            (None, None) => (draw_seed(), true),
        };
        let sources = match resumed {
            Some(r) if self.scenario.is_none() && scenario != Scenario::default_scenario() => InputSources {
                scenario: InputSource::of_bytes(
                    &PathBuf::from(format!("{} (saved scenario)", r.path.display())),
                    r.saved.meta.scenario_toml.as_bytes(),
                ),
                ..sources
            },
            _ => sources,
        };
        let plan = SimulationPlan {
            users: users as usize,
            days: self.days,
            seed,
            scenario,
            scenario_name,
            sources,
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

/// Where `flag`'s file came from, with the hash of its content, for the report header.
fn input_source(flag: &str, path: Option<&std::path::Path>) -> Result<InputSource, CliError> {
    match path {
        None => Ok(InputSource::BuiltIn),
        Some(path) => {
            InputSource::of_file(path).map_err(|e| CliError::usage(anyhow::anyhow!("{flag} {}: {e}", path.display())))
        }
    }
}

/// A fresh seed from the operating system's entropy (only when none was given).
fn draw_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// Opens the store `--resume` names and reads what continuing it needs (bad input: exit 2).
fn resumed(path: &std::path::Path) -> Result<(Resumed<'_>, Continuation), CliError> {
    let refuse = |e: crate::store::StoreError| CliError::usage(anyhow::anyhow!("--resume: {e}"));
    let saved = SqliteStore::open_read_only(path).and_then(|s| s.saved_simulation()).map_err(refuse)?;
    let from = Continuation {
        store: path.to_path_buf(),
        start: saved.ended_at,
        population_start: saved.meta.population_start,
    };
    Ok((Resumed { path, saved }, from))
}

/// Runs `gavat simulate`.
pub fn run(args: SimulateArgs) -> Result<(), CliError> {
    let resume = args.resume.as_deref().map(resumed).transpose()?;
    let (mut plan, drawn) = args.sim.plan_from(args.events.as_ref(), resume.as_ref().map(|(r, _)| r))?;
    let from = resume.map(|(_, from)| from);
    plan.learner = match &args.learner {
        Some(path) => Some(LearnerSettings::from_path(path).map_err(CliError::usage)?),
        None => (args.learn || args.llm_adviser).then(LearnerSettings::defaults),
    };
    if args.llm_adviser {
        plan.adviser = Some(args.llm.adviser_settings()?);
    }
    let faults = fault_setup(&args, &plan)?;
    // Every output is checked, and its temporary file created, before any work starts; the
    // run writes the temporary files, which replace the targets only once it has succeeded.
    let outputs = Outputs::prepare(&args)?;
    plan.events = outputs.events.as_ref().map(|p| p.temp().to_path_buf());
    plan.save_state = outputs.state.as_ref().map(|p| p.temp().to_path_buf());
    if drawn && !args.json {
        eprintln!("gavat: no --seed given; using seed {} (pass --seed {} to reproduce)", plan.seed, plan.seed);
    }
    let progress = Progress::new(format!("simulating {} users × {} days", plan.users, plan.days), !args.json);
    let mut report = simulation::run_faulted(&plan, from.as_ref(), faults.as_ref(), progress.callback())
        .map_err(CliError::failure)?;
    progress.finish();
    if plan.learner.is_some() && !args.no_baseline {
        // The same seed and population on the static strategies: what the learner changed.
        let baseline_plan =
            SimulationPlan { learner: None, adviser: None, save_state: None, events: None, ..plan.clone() };
        let progress = Progress::new("the same run on the static strategies".into(), !args.json);
        let baseline =
            simulation::run_from(&baseline_plan, from.as_ref(), progress.callback()).map_err(CliError::failure)?;
        progress.finish();
        report.learner_effect = Some(LearnerEffect::between(&baseline, &report));
    }
    if report.cap_violations > 0 {
        // The outputs are dropped uncommitted: a failed run replaces nothing.
        print_report(&args, &report)?;
        return Err(CliError::failure(anyhow::anyhow!(
            "{} cap violations found by the audit (see the report); no output file was replaced",
            report.cap_violations
        )));
    }
    if let Some(broken) = report.faults.as_ref().map(|f| f.broken()).filter(|b| !b.is_empty()) {
        print_report(&args, &report)?;
        return Err(CliError::failure(anyhow::anyhow!(
            "under faults: {} (see the report's faults section); no output file was replaced",
            broken.join(", ")
        )));
    }
    // Outputs are in place before the report is printed: a reader that closes stdout early
    // loses nothing.
    let written = outputs.commit(&report)?;
    let logs = write_run_logs(&args.log_dir, &report, plan.learner.is_some()).map_err(|e| {
        CliError::failure(anyhow::anyhow!("{}: cannot write the run logs: {e}", args.log_dir.display()))
    })?;
    for (what, path) in &written {
        eprintln!("gavat: {what}: {}", path.display());
    }
    for log in &logs {
        eprintln!("gavat: run log: {}", log.display());
    }
    print_report(&args, &report)
}

/// Reads and checks `--faults` (bad input: exit 2). A liveness plan must leave a quiet
/// period: its faults stop before the last day.
fn fault_setup(args: &SimulateArgs, plan: &SimulationPlan) -> Result<Option<simulation::FaultSetup>, CliError> {
    let Some(path) = &args.faults else { return Ok(None) };
    if args.learn || args.learner.is_some() || args.llm_adviser {
        return Err(CliError::usage(anyhow::anyhow!(
            "--faults runs without the learner: its baseline and proofs would run faultless"
        )));
    }
    let faults = crate::faults::FaultPlan::from_path(path).map_err(CliError::usage)?;
    if let Some(days) = faults.stop_after_days
        && days >= plan.days
    {
        let line = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| crate::config::written_at(&text, "stop_after_days"))
            .map_or(1, |(line, _)| line);
        return Err(CliError::usage(anyhow::anyhow!(
            "{}:{line}: field stop_after_days: {days} leaves no quiet period in a run of --days {}; make it \
             smaller, or leave it out for a safety run",
            path.display(),
            plan.days
        )));
    }
    Ok(Some(simulation::FaultSetup { plan: faults, name: path.display().to_string() }))
}

/// Prints the report on stdout, as text or JSON.
fn print_report(args: &SimulateArgs, report: &simulation::SimulationReport) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut stdout, report).map_err(std::io::Error::from).and_then(|()| writeln!(stdout))
    } else {
        write!(stdout, "{}", report.to_text())
    };
    written.and_then(|()| stdout.flush()).context("writing the report").map_err(CliError::failure)
}

/// `--events`, `--save-state` and `--html` while the run writes them.
struct Outputs {
    events: Option<PendingFile>,
    state: Option<PendingFile>,
    html: Option<PendingFile>,
}

impl Outputs {
    /// Refuses an output that is a directory, cannot be written, is the same file as an
    /// input or as the other output, or (for `--save-state`) is an existing file that is not
    /// a gavat store; checks the log directory; then creates the temporary files.
    fn prepare(args: &SimulateArgs) -> Result<Outputs, CliError> {
        fn named<'a>(flag: &'static str, path: &'a Option<PathBuf>) -> Option<Named<'a>> {
            path.as_deref().map(|path| Named { flag, path })
        }
        let outputs: Vec<Named<'_>> =
            [named("--events", &args.events), named("--save-state", &args.save_state), named("--html", &args.html)]
                .into_iter()
                .flatten()
                .collect();
        let inputs: Vec<Named<'_>> = [
            named("--resume", &args.resume),
            named("--scenario", &args.sim.scenario),
            named("--strategy", &args.sim.strategy),
            named("--rules", &args.sim.rules),
            named("--faults", &args.faults),
            named("--learner", &args.learner),
        ]
        .into_iter()
        .flatten()
        .collect();
        // The new state replaces the store it continues only once the run has succeeded,
        // by an atomic rename of a copy read from it: the same file is safe for those two.
        check_distinct_except(&outputs, &inputs, &[("--save-state", "--resume")]).map_err(CliError::usage)?;
        if let Some(path) = &args.save_state {
            SqliteStore::check_replaceable(path)
                .map_err(|e| CliError::usage(anyhow::anyhow!("--save-state: refusing to replace it: {e}")))?;
        }
        check_log_dir("--log-dir", &args.log_dir).map_err(CliError::usage)?;
        let create = |flag, path: &Option<PathBuf>, sqlite| {
            path.as_deref().map(|path| PendingFile::create(flag, path, sqlite)).transpose().map_err(CliError::usage)
        };
        Ok(Outputs {
            events: create("--events", &args.events, false)?,
            state: create("--save-state", &args.save_state, true)?,
            html: create("--html", &args.html, false)?,
        })
    }

    /// Writes the HTML report, seals the store and renames every output into place; returns
    /// what went where.
    fn commit(self, report: &simulation::SimulationReport) -> Result<Vec<(&'static str, PathBuf)>, CliError> {
        let mut written = Vec::new();
        // Every file is complete before the first one is put in place.
        if let Some(html) = &self.html {
            std::fs::write(html.temp(), crate::html::simulation::simulation_page(report))
                .with_context(|| format!("--html {}: cannot write", html.target().display()))
                .map_err(CliError::failure)?;
        }
        if let Some(events) = self.events {
            written.push(("events written", events.commit().map_err(CliError::failure)?));
        }
        if let Some(state) = self.state {
            SqliteStore::seal(state.temp()).map_err(CliError::failure)?;
            written.push(("state saved", state.commit().map_err(CliError::failure)?));
        }
        if let Some(html) = self.html {
            written.push(("HTML report written", html.commit().map_err(CliError::failure)?));
        }
        Ok(written)
    }
}

/// Peak memory of a simulation, measured (docs/performance.md): about 1.66 kB per user plus
/// 34 MB (100k users: 200 MB; 1M users: 1.69 GB), whatever the number of days; the estimate
/// rounds both up.
const BYTES_PER_USER: u64 = 1_750;
/// The part of the peak that does not grow with the population.
const BASE_BYTES: u64 = 48 << 20;

/// The estimated peak memory of a run with `users` users.
pub fn estimated_peak_bytes(users: u64) -> u64 {
    BASE_BYTES.saturating_add(users.saturating_mul(BYTES_PER_USER))
}

/// Refuses a population that would not fit in the memory available now (before a single
/// user is allocated). Where the available memory cannot be read, nothing is refused.
fn check_memory(users: u64) -> Result<(), CliError> {
    match available_memory() {
        Some(available) => memory_verdict(users, available).map_err(|m| CliError::usage(anyhow::anyhow!(m))),
        None => Ok(()),
    }
}

/// The refusal message when `users` need more than `available` bytes.
fn memory_verdict(users: u64, available: u64) -> Result<(), String> {
    let needed = estimated_peak_bytes(users);
    if needed <= available {
        return Ok(());
    }
    let fit = available.saturating_sub(BASE_BYTES) / BYTES_PER_USER;
    let gb = |b: u64| b as f64 / 1e9;
    Err(format!(
        "--users {users} needs about {:.1} GB, this machine has {:.1} GB available; at most {} users fit",
        gb(needed),
        gb(available),
        fit / 1_000 * 1_000
    ))
}

/// Memory available to this process: `MemAvailable` from /proc/meminfo, lowered to what a
/// cgroup v2 limit leaves.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    let mut available = kb.saturating_mul(1024);
    let read = |f: &str| std::fs::read_to_string(f).ok().and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(max), Some(current)) = (read("/sys/fs/cgroup/memory.max"), read("/sys/fs/cgroup/memory.current")) {
        available = available.min(max.saturating_sub(current));
    }
    Some(available)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate matches the measured peaks (docs/performance.md) from above, and a
    /// population that does not fit is refused naming the flag, the need, the memory and the
    /// largest population that fits.
    #[test]
    fn memory_estimate_and_refusal() {
        assert!(estimated_peak_bytes(100_000) >= 200_412 * 1024);
        assert!(estimated_peak_bytes(1_000_000) >= 1_693_468 * 1024);
        assert!(estimated_peak_bytes(1_000_000) < 2_000_000_000);
        let available = 24_000_000_000;
        assert!(memory_verdict(1_000_000, available).is_ok());
        let refusal = memory_verdict(50_000_000, available).unwrap_err();
        assert_eq!(
            refusal,
            "--users 50000000 needs about 87.6 GB, this machine has 24.0 GB available; at most 13685000 users fit"
        );
        assert!(memory_verdict(13_685_000, available).is_ok());
    }
}
