//! `gavat experiment`: plan (users needed), run (simulate the arms and compare them) and
//! compare (a per-user results file, streamed).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gavat_experiments::compare::{Accumulator, Report, compare};
use gavat_experiments::design::{Experiment, Metric};
use gavat_experiments::results::{HEADER, read_rows};
use gavat_experiments::stats::{Effect, sample_size_per_arm};

use crate::clock::Stopwatch;
use crate::experiment::{self, ExperimentPlan};
use crate::learner::LearnerSettings;

use super::CliError;
use super::simulate::{Progress, SimArgs};

/// `gavat experiment …`
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Users needed per arm to detect an effect on a rate (two-sided z-test, normal
    /// approximation with unpooled variances).
    Plan(PlanArgs),
    /// Run every arm of an experiment file in one simulation (users split by hash), write
    /// per-user results and print the comparison.
    Run(RunArgs),
    /// Compare the arms of a per-user results file (from `experiment run`, or exported from a
    /// live run), streaming it.
    Compare(CompareArgs),
}

/// Flags of `gavat experiment plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The control's rate, e.g. 0.05.
    #[arg(long)]
    pub baseline: f64,
    /// Minimum detectable effect: relative (0.10 = 5% → 5.5%) unless --absolute.
    #[arg(long)]
    pub mde: f64,
    /// Read --mde as an absolute difference (0.005 = 5% → 5.5%).
    #[arg(long)]
    pub absolute: bool,
    /// Two-sided significance level.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Power at the minimum detectable effect.
    #[arg(long, default_value_t = 0.8)]
    pub power: f64,
    /// Arms, control included (for the total).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(2..=100))]
    pub arms: u64,
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
    /// Where to write the per-user results (CSV).
    #[arg(long, value_name = "FILE", default_value = "experiment-results.csv")]
    pub out: PathBuf,
    /// Write an SVG chart of the arms' estimates and intervals.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
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
    /// A per-user results CSV (`user,arm,messages,responses,conversions,opted_out,engagement`).
    pub results: PathBuf,
    /// The experiment file: its metric, alpha, arm order, weights (for the sample-ratio
    /// check) and guardrails. Without it: arms in order of appearance, equal weights.
    #[arg(long, value_name = "FILE")]
    pub experiment: Option<PathBuf>,
    /// The metric, overriding the experiment file's: response_rate, conversion_rate,
    /// opt_out_rate, responses_per_message, engagement.
    #[arg(long)]
    pub metric: Option<String>,
    /// Significance level (default: the experiment's, else 0.05).
    #[arg(long)]
    pub alpha: Option<f64>,
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
}

/// Runs `gavat experiment …`.
pub fn run(command: ExperimentCommand) -> Result<(), CliError> {
    match command {
        ExperimentCommand::Plan(args) => plan(args),
        ExperimentCommand::Run(args) => run_experiment(args),
        ExperimentCommand::Compare(args) => compare_file(args),
    }
}

fn plan(args: PlanArgs) -> Result<(), CliError> {
    let effect = if args.absolute { Effect::Absolute(args.mde) } else { Effect::Relative(args.mde) };
    let n = sample_size_per_arm(args.baseline, effect, args.alpha, args.power).map_err(CliError::usage)?;
    let target = match effect {
        Effect::Relative(r) => args.baseline * (1.0 + r),
        Effect::Absolute(d) => args.baseline + d,
    };
    if args.json {
        let json = serde_json::json!({
            "baseline": args.baseline, "target": target, "mde": args.mde,
            "mde_kind": if args.absolute { "absolute" } else { "relative" },
            "alpha": args.alpha, "power": args.power, "users_per_arm": n,
            "arms": args.arms, "users_total": n * args.arms,
        });
        println!("{json:#}");
    } else {
        println!(
            "{n} users per arm ({} in all for {} arms) to detect {:.4} → {:.4} ({} effect {}), two-sided alpha {}, power {}",
            n * args.arms,
            args.arms,
            args.baseline,
            target,
            if args.absolute { "absolute" } else { "relative" },
            args.mde,
            args.alpha,
            args.power
        );
    }
    Ok(())
}

fn write_plot(path: &PathBuf, report: &Report) -> Result<(), CliError> {
    std::fs::write(path, report.to_svg())
        .with_context(|| format!("{}: cannot write the chart", path.display()))
        .map_err(CliError::failure)
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
    // Check the arms' overrides before anything runs.
    experiment::arm_setup(&design, &sim.book, &origin).map_err(CliError::usage)?;
    let file = File::create(&args.out)
        .with_context(|| format!("{}: cannot create the results file", args.out.display()))
        .map_err(CliError::usage)?;
    let plan = ExperimentPlan { sim, design, origin, paired: args.paired };
    let progress = Progress::new(
        format!("experiment {} on {} users × {} days", plan.design.name, plan.sim.users, plan.sim.days),
        !args.json,
    );
    let stopwatch = Stopwatch::start();
    let outcome = experiment::run(&plan, progress.callback()).map_err(CliError::failure)?;
    progress.finish();

    let mut out = BufWriter::new(file);
    let written: std::io::Result<()> = (|| {
        writeln!(out, "{HEADER}")?;
        for row in &outcome.rows {
            row.write_csv(&mut out)?;
        }
        out.flush()
    })();
    written.with_context(|| format!("{}: cannot write the results", args.out.display())).map_err(CliError::failure)?;
    if let Some(path) = &args.plot {
        write_plot(path, &outcome.report)?;
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
        println!("\nper-user results: {}", args.out.display());
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
    let alpha = args.alpha.or(design.as_ref().map(|d| d.alpha)).unwrap_or(0.05);
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(CliError::usage(anyhow::anyhow!("--alpha {alpha}: must be strictly between 0 and 1")));
    }
    let display = args.results.display().to_string();
    let file = File::open(&args.results).with_context(|| format!("{display}: cannot open")).map_err(CliError::usage)?;
    let mut acc = match &design {
        Some(d) => Accumulator::with_arms(
            d.arms.iter().map(|a| a.name.as_str()).chain(d.holdout.as_ref().map(|_| experiment::HOLDOUT)),
        ),
        None => Accumulator::default(),
    };
    let stopwatch = Stopwatch::start();
    let rows = read_rows(BufReader::with_capacity(1 << 20, file), &display, |row| {
        acc.add(row);
        Ok(())
    })
    .map_err(CliError::usage)?;
    if design.is_some() && args.control.is_some() {
        return Err(CliError::usage(anyhow::anyhow!(
            "--control cannot be combined with --experiment: the experiment's first arm is the control"
        )));
    }
    let control = args.control.clone().or_else(|| design.is_none().then(|| "control".to_string()));
    if let Some(name) = &control
        && !acc.set_control(name)
        && args.control.is_some()
    {
        return Err(CliError::usage(anyhow::anyhow!("--control {name}: no such arm in {display}")));
    }
    let weights = design.as_ref().map(|d| d.assignment_weights());
    if let (Some(w), Some(d)) = (&weights, &design)
        && acc.arms().len() > w.len()
    {
        let unknown: Vec<&str> = acc.arms()[w.len()..].iter().map(|a| a.name.as_str()).collect();
        return Err(CliError::usage(anyhow::anyhow!("{display}: arms {unknown:?} are not in experiment {}", d.name)));
    }
    let report = compare(&acc, metric, alpha, weights.as_deref(), design.as_ref()).map_err(CliError::usage)?;
    let secs = stopwatch.elapsed_secs();
    if let Some(path) = &args.plot {
        write_plot(path, &report)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(CliError::failure)?);
    } else {
        print!("{}", report.to_text());
        eprintln!("({rows} users read in {secs:.2} s, {:.0} rows/s)", rows as f64 / secs.max(1e-9));
    }
    Ok(())
}
