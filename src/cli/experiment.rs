//! `gavat experiment`: plan (users needed), run (simulate the arms and compare them) and
//! compare (a per-user results file, streamed).
//!
//! Every file either command writes (`--out`, `--plot`) is checked before any work — not a
//! directory, in an existing directory we may write in, not one of the inputs, not another
//! output — and written whole or not at all: into a temporary file beside the target,
//! synced, then renamed over it, only once everything succeeded ([`Output`]).
//!
//! Results files (`run --out`, `export --out`) start with a header naming the experiment,
//! its groups and weights (and, for an export, its time): `compare` takes the planned split
//! from it when no `--experiment` is given. `compare --looks FILE` appends each look to a
//! history and reports the running minimum of the mSPRT p-value and the running
//! intersection of the confidence sequences over it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gavat_experiments::compare::{Accumulator, Look, Settings, WeightSource, compare};
use gavat_experiments::design::{Experiment, Metric};
use gavat_experiments::results::{ResultsFile, ResultsFormat, ResultsHeader, ResultsWriter, weights_text};
use gavat_experiments::stats::{
    Adjustment, Effect, LiftPrior, StatsError, sample_size_for_mean, sample_size_per_arm, sample_size_per_arm_cuped,
};

use crate::clock::{Clock as _, Stopwatch, SystemClock};
use crate::experiment::{self, ExperimentPlan};
use crate::learner::LearnerSettings;

use super::CliError;
use super::simulate::{Progress, SimArgs};

/// `gavat experiment …`
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Users needed per arm to detect an effect on a rate (two-sided z-test, normal
    /// approximation with unpooled variances) or, with --sd, on a mean; with --correlation,
    /// also with CUPED.
    Plan(PlanArgs),
    /// Run every arm of an experiment file in one simulation (users split by hash), write
    /// per-user results and print the comparison.
    Run(RunArgs),
    /// Compare the arms of a per-user results file (from `experiment run`, or exported from a
    /// live run), streaming it.
    Compare(CompareArgs),
    /// Write a live experiment's per-user results file from a store: every user with the
    /// arm the experiment's hash gives them, their messages, replies, purchases and opt-out
    /// counted from the store's log since the experiment's first send. The same file as
    /// `experiment run --out`, for `experiment compare`.
    Export(ExportArgs),
}

/// The prefix of gavat's Redis keys unless told otherwise (the same default as `gavat run`).
const DEFAULT_REDIS_PREFIX: &str = "gavat:";

/// Flags of `gavat experiment export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The store the live engine ran on: `sqlite:PATH`, a bare path (SQLite), or
    /// `redis://HOST:PORT/DB`. Only read.
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// The prefix of the store's Redis keys (Redis only).
    #[arg(long, value_name = "P", default_value = DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,
    /// The experiment file that was in force. Always needed: holdout users have no sends to
    /// tell their arm, so every user's arm comes from the experiment's hash (and each send's
    /// recorded arm is checked against it).
    #[arg(long, value_name = "FILE")]
    pub experiment: PathBuf,
    /// Where to write the per-user results: CSV, or JSON lines for a name ending in `.jsonl`,
    /// after a header with the experiment's groups and weights, the export's time and the
    /// log's end; replaced only once every row is written.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// A number flag together with its text as written, so that errors quote `1e300` as
/// `1e300` rather than as the 301-digit number it parses to.
#[derive(Debug, Clone)]
pub struct NumberFlag {
    /// The value.
    pub value: f64,
    /// As written on the command line.
    pub text: String,
}

impl FromStr for NumberFlag {
    type Err = String;

    fn from_str(text: &str) -> Result<NumberFlag, String> {
        let value = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
        Ok(NumberFlag { value, text: text.to_string() })
    }
}

/// Flags of `gavat experiment plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The control's rate, strictly between 0 and 1, e.g. 0.05.
    #[arg(long, allow_negative_numbers = true)]
    pub baseline: NumberFlag,
    /// Minimum detectable effect: relative (0.10 = 5% → 5.5%) unless --absolute; negative
    /// for a fall.
    #[arg(long, allow_negative_numbers = true)]
    pub mde: NumberFlag,
    /// Read --mde as an absolute difference (0.005 = 5% → 5.5%).
    #[arg(long)]
    pub absolute: bool,
    /// Two-sided significance level, strictly between 0 and 1.
    #[arg(long, default_value = "0.05", allow_negative_numbers = true)]
    pub alpha: NumberFlag,
    /// Power at the minimum detectable effect, strictly between 0 and 1.
    #[arg(long, default_value = "0.8", allow_negative_numbers = true)]
    pub power: NumberFlag,
    /// Arms, control included (for the total).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(2..=100))]
    pub arms: u64,
    /// Plan for a mean (engagement) instead of a rate: the per-user standard deviation;
    /// --baseline is then the control's mean (any number).
    #[arg(long, allow_negative_numbers = true)]
    pub sd: Option<NumberFlag>,
    /// Also plan for CUPED: the expected correlation of the metric with its pre-period value,
    /// strictly between -1 and 1 (CUPED leaves 1 − ρ² of the variance).
    #[arg(long, allow_negative_numbers = true)]
    pub correlation: Option<NumberFlag>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `gavat experiment run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file (see experiments/*.toml).
    pub file: PathBuf,
    /// Population, length, seed and files.
    #[command(flatten)]
    pub sim: SimArgs,
    /// Also replay every user under every arm with the same random streams (common random
    /// numbers) and report both designs' intervals.
    #[arg(long)]
    pub paired: bool,
    /// Where to write the per-user results: CSV, or JSON lines for a name ending in `.jsonl`,
    /// after a header with the experiment's groups and weights. A relative path is taken
    /// from the current directory; the run prints the full path it wrote. Written only if the
    /// run succeeds.
    #[arg(long, value_name = "FILE", default_value = "experiment-results.csv")]
    pub out: PathBuf,
    /// Write an SVG chart of the arms' estimates and intervals.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Simulate this many days before the experiment under control's strategies (same users,
    /// fresh random streams) and write each user's replies in them as the results' `pre_period`
    /// column, for CUPED; 0 for none.
    #[arg(long, value_name = "DAYS", default_value_t = 14, value_parser = clap::value_parser!(u32).range(0..=365))]
    pub pre_period_days: u32,
    /// Learner settings for the arms with `learner = true` (default: config/learner.toml).
    #[arg(long, value_name = "FILE")]
    pub learner: Option<PathBuf>,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `gavat experiment compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A per-user results file: CSV (`user,arm,messages,responses,conversions,opted_out,engagement`,
    /// optionally `,pre_period` for CUPED) or JSON lines with the same fields, after an
    /// optional header (`# gavat-experiment {…}`, as gavat writes) that gives the arms and
    /// their weights.
    pub results: PathBuf,
    /// The experiment file: its metric, alpha, arm order, weights (for the sample-ratio
    /// check) and guardrails. Without it: the arms and weights of the results file's header,
    /// else arms in order of appearance and equal weights assumed. With both, they must agree.
    #[arg(long, value_name = "FILE")]
    pub experiment: Option<PathBuf>,
    /// The metric, overriding the experiment file's: response_rate, conversion_rate,
    /// opt_out_rate, responses_per_message, engagement.
    #[arg(long)]
    pub metric: Option<String>,
    /// Significance level (default: the experiment's, else 0.05).
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<NumberFlag>,
    /// How the treatments' p-values are adjusted: holm (the family-wise error rate) or
    /// benjamini_hochberg (the false discovery rate; for many arms). Default: the
    /// experiment's `multiple_testing`, else holm.
    #[arg(long, value_name = "METHOD")]
    pub multiple_testing: Option<String>,
    /// The control arm (default: the experiment's first arm, else an arm named `control`,
    /// else the first arm in the file).
    #[arg(long)]
    pub control: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart of the arms' estimates and intervals.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// A history of looks at a live experiment (JSON lines, created if missing): this look
    /// — its time (the header's export time, else now), users per arm, each treatment's
    /// mSPRT p and confidence sequence — is appended (unless the last look saw the same
    /// data), and the report adds the running
    /// minimum of the p-values and the running intersection of the sequences over every
    /// look in it. Refused if it holds looks of another experiment, metric, alpha or control.
    #[arg(long, value_name = "FILE")]
    pub looks: Option<PathBuf>,
}

/// Runs `gavat experiment …`.
pub fn run(command: ExperimentCommand) -> Result<(), CliError> {
    match command {
        ExperimentCommand::Plan(args) => plan(args),
        ExperimentCommand::Run(args) => run_experiment(args),
        ExperimentCommand::Compare(args) => compare_file(args),
        ExperimentCommand::Export(args) => export(args),
    }
}

fn plan(args: PlanArgs) -> Result<(), CliError> {
    let (baseline, mde, alpha, power) = (args.baseline.value, args.mde.value, args.alpha.value, args.power.value);
    let effect = if args.absolute { Effect::Absolute(mde) } else { Effect::Relative(mde) };
    let explain = |e: StatsError| {
        CliError::usage(match e {
            StatsError::Domain { name, why, .. } => {
                let flag = [Some(&args.baseline), Some(&args.mde), Some(&args.alpha), Some(&args.power)]
                    .into_iter()
                    .chain([args.sd.as_ref(), args.correlation.as_ref()])
                    .zip(["baseline", "mde", "alpha", "power", "sd", "correlation"])
                    .find(|(_, n)| *n == name);
                match flag {
                    Some((Some(f), _)) => anyhow::anyhow!("--{name} {}: {why}", f.text),
                    _ => anyhow::anyhow!("{name}: {why}"),
                }
            }
            other => anyhow::anyhow!("--baseline {} --mde {}: {other}", args.baseline.text, args.mde.text),
        })
    };
    let correlation = args.correlation.as_ref().map(|c| c.value);
    let (n, n_cuped) = match &args.sd {
        Some(sd) => (
            sample_size_for_mean(baseline, sd.value, effect, alpha, power, 0.0).map_err(explain)?,
            correlation
                .map(|rho| sample_size_for_mean(baseline, sd.value, effect, alpha, power, rho))
                .transpose()
                .map_err(explain)?,
        ),
        None => (
            sample_size_per_arm(baseline, effect, alpha, power).map_err(explain)?,
            correlation
                .map(|rho| sample_size_per_arm_cuped(baseline, effect, alpha, power, rho))
                .transpose()
                .map_err(explain)?,
        ),
    };
    let target = match effect {
        Effect::Relative(r) => baseline + r * baseline.abs(),
        Effect::Absolute(d) => baseline + d,
    };
    if args.json {
        let json = serde_json::json!({
            "kind": if args.sd.is_some() { "mean" } else { "rate" },
            "baseline": baseline, "target": target, "mde": mde,
            "mde_kind": if args.absolute { "absolute" } else { "relative" },
            "sd": args.sd.as_ref().map(|s| s.value),
            "alpha": alpha, "power": power, "users_per_arm": n,
            "arms": args.arms, "users_total": n * args.arms,
            "correlation": correlation,
            "users_per_arm_cuped": n_cuped,
            "users_total_cuped": n_cuped.map(|c| c * args.arms),
        });
        println!("{json:#}");
    } else {
        let what = match &args.sd {
            Some(sd) => format!("a mean of {baseline:.4} → {target:.4} (sd {})", sd.text),
            None => format!("{baseline:.4} → {target:.4}"),
        };
        println!(
            "{n} users per arm ({} in all for {} arms) to detect {what} ({} effect {}), two-sided alpha {}, power {}",
            n * args.arms,
            args.arms,
            if args.absolute { "absolute" } else { "relative" },
            args.mde.text,
            args.alpha.text,
            args.power.text
        );
        if let (Some(c), Some(rho)) = (n_cuped, &args.correlation) {
            println!(
                "{c} users per arm with CUPED ({} in all) at correlation {} with the pre-period: {:.1}% fewer (1 − ρ² = {:.4} of the variance)",
                c * args.arms,
                rho.text,
                100.0 * (1.0 - c as f64 / n as f64),
                1.0 - rho.value * rho.value
            );
        }
    }
    Ok(())
}

/// An output file, checked before any work and then written whole or not at all: into a
/// temporary file beside the target, synced to disk, and renamed over the target only by
/// [`Output::finish`]. Dropped before that, it removes its temporary file and leaves the
/// target as it was.
#[derive(Debug)]
struct Output {
    /// The flag that named it, for errors (`--out`).
    flag: &'static str,
    /// As given.
    path: PathBuf,
    /// Absolute, with links resolved: what gets replaced, and what is compared with the
    /// inputs and other outputs.
    target: PathBuf,
    /// The temporary file beside `target` (`None` once renamed).
    temp: Option<PathBuf>,
    file: Option<File>,
}

impl Output {
    /// Checks that `path` can be written — a file name, in an existing directory we may write
    /// in, not an existing directory or device, not one of `inputs` (what, path) nor one of
    /// `others` — and opens its temporary file. Every refusal is bad input (exit 2).
    fn prepare(
        flag: &'static str,
        path: &Path,
        inputs: &[(&str, &Path)],
        others: &[&Output],
    ) -> Result<Output, CliError> {
        let refuse = |why: String| CliError::usage(anyhow::anyhow!("{flag} {}: {why}", path.display()));
        if path.is_dir() || path.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR) {
            return Err(refuse("is a directory; give a file name".into()));
        }
        let Some(name) = path.file_name() else { return Err(refuse("is not a file name".into())) };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(refuse(format!("directory {} does not exist", parent.display())));
        }
        let target = match path.canonicalize() {
            Ok(existing) if existing.is_file() => existing,
            Ok(_) => return Err(refuse("exists and is not a regular file".into())),
            Err(_) => {
                parent.canonicalize().map_err(|e| refuse(format!("directory {}: {e}", parent.display())))?.join(name)
            }
        };
        for (what, input) in inputs {
            if input.canonicalize().is_ok_and(|i| i == target) {
                return Err(refuse(format!("is the {what} {}: it would be overwritten", input.display())));
            }
        }
        if let Some(other) = others.iter().find(|o| o.target == target) {
            return Err(refuse(format!("is the same file as {} {}", other.flag, other.path.display())));
        }
        let dir = target.parent().unwrap_or(Path::new("/"));
        for attempt in 0..100 {
            let temp = dir.join(format!(
                ".{}.{}-{attempt}.tmp",
                target.file_name().unwrap_or(name).to_string_lossy(),
                std::process::id()
            ));
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    return Ok(Output { flag, path: path.to_path_buf(), target, temp: Some(temp), file: Some(file) });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(refuse(format!("cannot write in directory {}: {e}", dir.display()))),
            }
        }
        Err(refuse(format!("100 temporary files named after it already exist in {}", dir.display())))
    }

    /// Writes the whole content into the temporary file and syncs it (a failure here is a
    /// failure while running: exit 1).
    fn write(&mut self, content: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), CliError> {
        let Some(file) = self.file.take() else { return Ok(()) };
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let written: std::io::Result<()> = (|| {
            content(&mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        written
            .with_context(|| format!("{} {}: cannot write", self.flag, self.path.display()))
            .map_err(CliError::failure)
    }

    /// Renames the temporary file over the target; returns the target's absolute path.
    fn finish(mut self) -> Result<PathBuf, CliError> {
        let temp = self.temp.take().unwrap_or_default();
        if let Err(e) = std::fs::rename(&temp, &self.target) {
            let _ = std::fs::remove_file(&temp);
            return Err(CliError::failure(anyhow::anyhow!("{} {}: cannot write: {e}", self.flag, self.path.display())));
        }
        // Make the rename itself durable; a failure to sync a directory is not worth failing for.
        if let Some(dir) = self.target.parent().and_then(|d| File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok(std::mem::take(&mut self.target))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn run_experiment(args: RunArgs) -> Result<(), CliError> {
    let origin = args.file.display().to_string();
    let design = Experiment::from_path(&args.file).map_err(CliError::usage)?;
    let (mut sim, drawn) = args.sim.plan(None)?;
    if let Some(path) = &args.learner {
        if !design.arms.iter().any(|a| a.learner) {
            return Err(CliError::usage(anyhow::anyhow!(
                "--learner {}: no arm of {origin} sets `learner = true`, so no learner would use it",
                path.display()
            )));
        }
        sim.learner = Some(LearnerSettings::from_path(path).map_err(CliError::usage)?);
    }
    if drawn && !args.json {
        eprintln!("gavat: no --seed given; using seed {} (pass --seed {} to reproduce)", sim.seed, sim.seed);
    }
    // Check the arms' overrides and the outputs before anything runs.
    experiment::arm_setup(&design, &sim.book, &origin).map_err(CliError::usage)?;
    let groups = design.arms.len() + usize::from(design.holdout.is_some());
    if sim.users < 2 * groups {
        return Err(CliError::usage(anyhow::anyhow!(
            "--users {}: experiment {} splits users into {groups} groups; comparing them needs at least {} users",
            sim.users,
            design.name,
            2 * groups
        )));
    }
    let mut inputs: Vec<(&str, &Path)> = vec![("experiment file", &args.file)];
    inputs.extend(args.sim.scenario.as_deref().map(|p| ("scenario file", p)));
    inputs.extend(args.sim.strategy.as_deref().map(|p| ("strategy file", p)));
    inputs.extend(args.sim.rules.as_deref().map(|p| ("rules file", p)));
    inputs.extend(args.learner.as_deref().map(|p| ("learner settings file", p)));
    let mut out = Output::prepare("--out", &args.out, &inputs, &[])?;
    let mut plot = match &args.plot {
        Some(path) => Some(Output::prepare("--plot", path, &inputs, &[&out])?),
        None => None,
    };
    let plan = ExperimentPlan { sim, design, origin, paired: args.paired, pre_period_days: args.pre_period_days };
    let progress = Progress::new(
        format!("experiment {} on {} users × {} days", plan.design.name, plan.sim.users, plan.sim.days),
        !args.json,
    );
    let stopwatch = Stopwatch::start();
    let outcome = experiment::run(&plan, progress.callback()).map_err(CliError::failure)?;
    progress.finish();

    let header = ResultsHeader::of(&plan.design);
    out.write(|w| {
        let format = ResultsFormat::of_path(&args.out);
        let mut csv = ResultsWriter::start(w, format, Some(&header), args.pre_period_days > 0)?;
        for row in &outcome.rows {
            csv.write(row)?;
        }
        csv.finish().map(drop)
    })?;
    if let Some(plot) = &mut plot {
        plot.write(|w| w.write_all(outcome.report.to_svg().as_bytes()))?;
    }
    // Everything is written and synced: only now do the files replace their targets.
    let results_path = out.finish()?;
    let plot_path = plot.map(Output::finish).transpose()?;
    if args.json {
        eprintln!("gavat: per-user results written to {}", results_path.display());
        if let Some(path) = &plot_path {
            eprintln!("gavat: chart written to {}", path.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome).map_err(CliError::failure)?);
    } else {
        println!(
            "experiment {} — {} users × {} days, seed {} ({:.1} s)\n",
            outcome.experiment,
            outcome.users,
            outcome.days,
            outcome.seed,
            stopwatch.elapsed_secs()
        );
        print!("{}", outcome.report.to_text());
        for l in &outcome.learning {
            println!(
                "\nlearner on arm {}: {} changes applied, {} kept, {} rolled back, {} proposals rejected",
                l.arm, l.applied, l.kept, l.rolled_back, l.rejected
            );
        }
        if let Some(paired) = &outcome.paired {
            println!("\npaired design (every user under every arm, same random streams) vs split design:");
            for p in paired {
                println!(
                    "  {}: split {:+.4} [{:+.4}, {:+.4}]   paired {:+.4} [{:+.4}, {:+.4}]   interval {:.1}× narrower",
                    p.arm,
                    p.split.estimate,
                    p.split.low,
                    p.split.high,
                    p.paired.estimate,
                    p.paired.low,
                    p.paired.high,
                    p.width_ratio
                );
            }
        }
        println!("\nper-user results: {}", results_path.display());
        if let Some(path) = &plot_path {
            println!("chart: {}", path.display());
        }
    }
    Ok(())
}

fn compare_file(args: CompareArgs) -> Result<(), CliError> {
    let design = match &args.experiment {
        Some(path) => Some(Experiment::from_path(path).map_err(CliError::usage)?),
        None => None,
    };
    let metric = match &args.metric {
        Some(name) => serde_json::from_value::<Metric>(serde_json::Value::String(name.clone())).map_err(|_| {
            CliError::usage(anyhow::anyhow!(
                "--metric {name}: expected response_rate, conversion_rate, opt_out_rate, responses_per_message or engagement"
            ))
        })?,
        None => design.as_ref().map_or(Metric::ResponseRate, |d| d.primary_metric),
    };
    if let Some(flag) = &args.alpha
        && !(flag.value > 0.0 && flag.value < 1.0)
    {
        return Err(CliError::usage(anyhow::anyhow!("--alpha {}: must be strictly between 0 and 1", flag.text)));
    }
    let alpha = args.alpha.as_ref().map(|f| f.value).or(design.as_ref().map(|d| d.alpha)).unwrap_or(0.05);
    let adjustment = match &args.multiple_testing {
        Some(name) => serde_json::from_value::<Adjustment>(serde_json::Value::String(name.clone())).map_err(|_| {
            CliError::usage(anyhow::anyhow!("--multiple-testing {name}: expected holm or benjamini_hochberg"))
        })?,
        None => design.as_ref().map_or(Adjustment::Holm, |d| d.multiple_testing),
    };
    let display = args.results.display().to_string();
    let file = File::open(&args.results).with_context(|| format!("{display}: cannot open")).map_err(CliError::usage)?;
    let results = ResultsFile::open(file, &display).map_err(CliError::usage)?;
    let header = results.header().cloned();
    let known = KnownArms::of(design.as_ref(), header.as_ref(), &args, &display)?;
    let mut looks = match &args.looks {
        Some(path) => Some(Looks::read(path, &args, &known, metric, alpha)?),
        None => None,
    };
    let mut plot = match &args.plot {
        Some(path) => {
            let mut inputs: Vec<(&str, &Path)> = vec![("results file", &args.results)];
            inputs.extend(args.experiment.as_deref().map(|p| ("experiment file", p)));
            inputs.extend(args.looks.as_deref().map(|p| ("looks file", p)));
            Some(Output::prepare("--plot", path, &inputs, &[])?)
        }
        None => None,
    };
    let mut acc = match &known {
        Some(k) => Accumulator::with_arms(k.names.iter().map(String::as_str)),
        None => Accumulator::default(),
    };
    let stopwatch = Stopwatch::start();
    let rows = results
        .read_rows(|row| {
            acc.add(row);
            Ok(())
        })
        .map_err(CliError::usage)?;
    let control = args.control.clone().or_else(|| known.is_none().then(|| "control".to_string()));
    if let Some(name) = &control
        && !acc.set_control(name)
        && args.control.is_some()
    {
        return Err(CliError::usage(anyhow::anyhow!("--control {name}: no such arm in {display}")));
    }
    if let Some(k) = &known
        && acc.arms().len() > k.weights.len()
    {
        let unknown: Vec<&str> = acc.arms()[k.weights.len()..].iter().map(|a| a.name.as_str()).collect();
        return Err(CliError::usage(anyhow::anyhow!(
            "{display}: arms {unknown:?} are not in experiment {} (per {})",
            k.experiment,
            k.source.describe()
        )));
    }
    let prior = design.as_ref().map_or(LiftPrior::Flat, |d| d.lift_prior);
    let weights = known.as_ref().map(|k| k.weights.as_slice());
    let settings = Settings { metric, alpha, adjustment, weights, design: design.as_ref(), prior };
    let mut report = compare(&acc, &settings).map_err(CliError::usage)?;
    if let Some(k) = &known {
        report.set_weight_source(k.source);
    }
    if let (Some(history), Some(k)) = (&mut looks, &known) {
        let at = match header.as_ref().and_then(|h| h.exported_at.clone()) {
            Some(at) => at,
            None => SystemClock.now().to_rfc3339(),
        };
        history.append(Look::of(&report, &k.experiment, &at))?;
        report.add_looks(&history.looks);
    }
    let secs = stopwatch.elapsed_secs();
    if let Some(mut plot) = plot.take() {
        plot.write(|w| w.write_all(report.to_svg().as_bytes()))?;
        let path = plot.finish()?;
        eprintln!("gavat: chart written to {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(CliError::failure)?);
    } else {
        print!("{}", report.to_text());
        eprintln!("({rows} users read in {secs:.2} s, {:.0} rows/s)", rows as f64 / secs.max(1e-9));
    }
    Ok(())
}

/// The experiment's groups and weights when known: from `--experiment`, from the results
/// file's header, or from both when they agree.
#[derive(Debug)]
struct KnownArms {
    /// The experiment's name.
    experiment: String,
    /// Its groups in assignment order (the first is control; the holdout last).
    names: Vec<String>,
    /// Their weights, in the same order.
    weights: Vec<f64>,
    /// Where they came from.
    source: WeightSource,
}

impl KnownArms {
    /// Reconciles `--experiment` and the header: a disagreement, or `--control` beside a
    /// known control, is bad input.
    fn of(
        design: Option<&Experiment>,
        header: Option<&ResultsHeader>,
        args: &CompareArgs,
        display: &str,
    ) -> Result<Option<KnownArms>, CliError> {
        if let (Some(h), Some(d), Some(path)) = (header, design, &args.experiment)
            && let Some(why) = h.disagreement(d)
        {
            return Err(CliError::usage(anyhow::anyhow!(
                "{display}: its header (experiment {:?}: {}) disagrees with --experiment {} (experiment {:?}): {why}",
                h.experiment,
                weights_text(h),
                path.display(),
                d.name
            )));
        }
        let known = match (design, header) {
            (Some(d), h) => Some(KnownArms {
                experiment: d.name.clone(),
                names: d.group_names().map(str::to_string).collect(),
                weights: d.assignment_weights(),
                source: if h.is_some() { WeightSource::ExperimentAndResultsHeader } else { WeightSource::Experiment },
            }),
            (None, Some(h)) => Some(KnownArms {
                experiment: h.experiment.clone(),
                names: h.names().map(str::to_string).collect(),
                weights: h.weights(),
                source: WeightSource::ResultsHeader,
            }),
            (None, None) => None,
        };
        if let (Some(k), Some(_)) = (&known, &args.control) {
            let from = match k.source {
                WeightSource::ResultsHeader => format!("the header of {display}"),
                _ => "--experiment".to_string(),
            };
            return Err(CliError::usage(anyhow::anyhow!(
                "--control cannot be combined with {from}: the experiment's first arm ({}) is the control",
                k.names.first().map_or("", String::as_str)
            )));
        }
        Ok(known)
    }
}

/// The history of looks of `compare --looks FILE`, read and checked before the results.
#[derive(Debug)]
struct Looks {
    /// The file, as given.
    path: PathBuf,
    /// Its looks, then this one once appended.
    looks: Vec<Look>,
    /// Whether the file ends in the middle of a line (a newline goes first).
    unterminated: bool,
}

impl Looks {
    /// Reads `path` (missing: no looks yet) and checks that every look in it is of this
    /// series: the same experiment, metric, alpha and control.
    fn read(
        path: &Path,
        args: &CompareArgs,
        known: &Option<KnownArms>,
        metric: Metric,
        alpha: f64,
    ) -> Result<Looks, CliError> {
        let flag = format!("--looks {}", path.display());
        let usage = |why: String| CliError::usage(anyhow::anyhow!("{flag}: {why}"));
        let Some(k) = known else {
            return Err(usage(
                "the experiment is not known: give --experiment, or a results file with a header (as gavat writes)"
                    .into(),
            ));
        };
        for (what, other) in [
            ("the results file", Some(&args.results)),
            ("--experiment", args.experiment.as_ref()),
            ("--plot", args.plot.as_ref()),
        ] {
            if let Some(other) = other
                && crate::output::same_file(path, other)
            {
                return Err(usage(format!("is {what} {}", other.display())));
            }
        }
        if path.is_dir() {
            return Err(usage("is a directory; give a file name".into()));
        }
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| usage("is not UTF-8 text".into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(usage(format!("cannot read: {e}"))),
        };
        let probe = Look {
            experiment: k.experiment.clone(),
            metric,
            alpha,
            control: k.names.first().cloned().unwrap_or_default(),
            at: String::new(),
            users: Vec::new(),
            arms: Vec::new(),
        };
        let mut looks = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let located = |why: String| CliError::usage(anyhow::anyhow!("{}:{}: {why}", path.display(), i + 1));
            let look: Look = serde_json::from_str(line).map_err(|e| {
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message).to_string();
                located(format!("not a look of `gavat experiment compare --looks`: {message}"))
            })?;
            if !look.same_series(&probe) {
                return Err(located(format!(
                    "this looks file holds looks of {}, but this look is of {}: give another --looks file",
                    look.series(),
                    probe.series()
                )));
            }
            looks.push(look);
        }
        let unterminated = !text.is_empty() && !text.ends_with('\n');
        Ok(Looks { path: path.to_path_buf(), looks, unterminated })
    }

    /// Appends `look` to the file (one line, synced) and to the history — unless the last
    /// look saw the same data (the same file compared again), which is not a new look.
    fn append(&mut self, look: Look) -> Result<(), CliError> {
        if self.looks.last().is_some_and(|last| last.same_data(&look)) {
            eprintln!(
                "gavat: --looks {}: the same data as the last look (at {}): not appended",
                self.path.display(),
                self.looks.last().map_or("", |l| l.at.as_str())
            );
            return Ok(());
        }
        let mut line = serde_json::to_string(&look).map_err(CliError::failure)?;
        line.push('\n');
        if self.unterminated {
            line.insert(0, '\n');
        }
        let written: std::io::Result<()> = (|| {
            let mut file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            file.write_all(line.as_bytes())?;
            file.sync_all()
        })();
        written.with_context(|| format!("--looks {}: cannot write", self.path.display())).map_err(CliError::failure)?;
        self.looks.push(look);
        Ok(())
    }
}

fn export(args: ExportArgs) -> Result<(), CliError> {
    use crate::live::results::{LiveResultsError, live_export};
    use crate::output::{Named, PendingFile, check_distinct};
    use crate::store::{RedisStore, SqliteStore, StoreUrl};

    let url = StoreUrl::parse(&args.store).map_err(|e| CliError::usage(anyhow::anyhow!("--store: {e}")))?;
    let design = Experiment::from_path(&args.experiment).map_err(CliError::usage)?;
    let mut inputs = vec![Named { flag: "--experiment", path: &args.experiment }];
    if let StoreUrl::Sqlite(path) = &url {
        inputs.push(Named { flag: "--store", path });
    }
    check_distinct(&[Named { flag: "--out", path: &args.out }], &inputs).map_err(CliError::usage)?;
    let pending = PendingFile::create("--out", &args.out, false).map_err(CliError::usage)?;
    let export = match &url {
        StoreUrl::Sqlite(path) => {
            let store = SqliteStore::open_read_only(path).map_err(CliError::usage)?;
            live_export(&store, &design)
        }
        StoreUrl::Redis(address) => {
            let store = RedisStore::connect(address, &args.redis_prefix)
                .map_err(|e| CliError::failure(anyhow::anyhow!("--store {url}: {e}")))?;
            live_export(&store, &design)
        }
    }
    .map_err(|e| match e {
        LiveResultsError::Store(_) => CliError::failure(e),
        _ => CliError::usage(e),
    })?;
    let file = File::create(pending.temp())
        .with_context(|| format!("{}: cannot write", pending.temp().display()))
        .map_err(CliError::failure)?;
    let rows = export.rows;
    let header = ResultsHeader {
        exported_at: Some(SystemClock.now().to_rfc3339()),
        log_end: Some(export.log_end.to_rfc3339()),
        ..ResultsHeader::of(&design)
    };
    let written: std::io::Result<()> = (|| {
        let out = BufWriter::with_capacity(1 << 16, file);
        let mut csv = ResultsWriter::start(out, ResultsFormat::of_path(&args.out), Some(&header), true)?;
        for row in &rows {
            csv.write(row)?;
        }
        csv.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    written.with_context(|| format!("--out {}: cannot write", args.out.display())).map_err(CliError::failure)?;
    let target = pending.commit().map_err(CliError::failure)?;
    let mut per_arm: Vec<(&str, usize)> = design.group_names().map(|n| (n, 0)).collect();
    for row in &rows {
        if let Some(slot) = per_arm.iter_mut().find(|(n, _)| *n == row.arm) {
            slot.1 += 1;
        }
    }
    let arms: Vec<String> = per_arm.iter().map(|(n, k)| format!("{n} {k}")).collect();
    eprintln!(
        "gavat: experiment {}: {} users ({}) from {url} written to {}",
        design.name,
        rows.len(),
        arms.join(", "),
        target.display()
    );
    Ok(())
}
