//! The `gavat` command line: flags are parsed, then turned into a validated plan before
//! any work starts. Bad input is a one-line error and exit code 2; a failure while
//! running is exit code 1.

pub mod config_check;
pub mod crm;
pub mod dashboard;
pub mod events;
pub mod experiment;
pub mod import;
pub mod llm_args;
pub mod preview;
pub mod run;
pub mod segment;
pub mod simulate;
pub mod strategy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad arguments or input files.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

/// gavat — decides whom to message, when, how often and with what; simulates it first.
#[derive(Debug, Parser)]
#[command(name = "gavat", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine live: on the system clock (or a faster one for a rehearsal), over a
    /// store, sending through a transport (dry-run by default: nothing leaves the machine),
    /// until `--for` has passed or SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Check a live engine's configuration file (gavat.toml).
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Run the engine on a virtual clock with a synthetic population and print a report per
    /// segment: sends, responses, conversions, opt-outs, suppressed sends and cap
    /// violations (always 0).
    Simulate(simulate::SimulateArgs),
    /// Plan, run and compare experiments: arms of strategies on synthetic users, compared
    /// with statistics a data scientist would sign (docs/statistics.md).
    #[command(subcommand)]
    Experiment(experiment::ExperimentCommand),
    /// Look at one user of a CRM store.
    #[command(subcommand)]
    Users(crm::UsersCommand),
    /// Segment performance and segment membership in a CRM store.
    #[command(subcommand)]
    Segments(crm::SegmentsCommand),
    /// The delivery queue and suppressed sends of a CRM store.
    #[command(subcommand)]
    Delivery(crm::DeliveryCommand),
    /// Re-run segmentation over every user of a CRM store — rules, then an OpenAI-compatible
    /// LLM for the users the rules are unsure of when OPENAI_API_KEY is set — logging each
    /// decision.
    Segment(segment::SegmentArgs),
    /// The learner's audit trail and the strategies in force in a CRM store; roll a
    /// change back.
    #[command(subcommand)]
    Strategy(strategy::StrategyCommand),
    /// Bring users from a CRM export (CSV or JSON lines) into a CRM store, all or nothing.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// The send/response log of a CRM store, as the JSON lines of `simulate --events`.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// The next message a user would get: text, language and why, segment, template or
    /// LLM, bot, and the earliest time with the rule that keeps it from going sooner.
    Preview(preview::PreviewArgs),
    /// Serve the web dashboard read-only over a store (a saved simulation, a stopped or
    /// running live engine's SQLite or Redis store): overview, segments down to one user,
    /// experiments and strategies. `gavat run` serves it live on its own listener.
    Dashboard(dashboard::DashboardArgs),
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct CliError {
    /// [`EXIT_USAGE`] or [`EXIT_FAILURE`].
    pub code: u8,
    /// The message (one line).
    pub error: anyhow::Error,
}

impl CliError {
    /// Bad input: exit code 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> CliError {
        CliError { code: EXIT_USAGE, error: error.into() }
    }

    /// A failure while running: exit code 1.
    pub fn failure(error: impl Into<anyhow::Error>) -> CliError {
        CliError { code: EXIT_FAILURE, error: error.into() }
    }
}

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print as clap formats them.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, like every other input error.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("gavat: error: {first} (see --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    crate::telemetry::init();
    quiet_on_closed_stdout();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Config(command) => config_check::run(command),
        Command::Simulate(args) => simulate::run(args),
        Command::Experiment(command) => experiment::run(command),
        Command::Users(command) => crm::users(command),
        Command::Segments(command) => crm::segments(command),
        Command::Delivery(command) => crm::delivery(command),
        Command::Segment(args) => segment::run(args),
        Command::Strategy(command) => strategy::run(command),
        Command::Import(command) => import::run(command),
        Command::Events(command) => events::run(command),
        Command::Preview(args) => preview::run(args),
        Command::Dashboard(args) => dashboard::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `gavat … | head -1`: the reader has all it wanted.
        Err(e) if is_broken_pipe(&e.error) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gavat: error: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}

/// Whether the error is a write to a closed pipe.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// A closed stdout ends the process quietly with exit code 0: `println!` panics on a closed
/// pipe (Rust ignores SIGPIPE), so that one panic is turned into a quiet exit; every other
/// panic is reported as before.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}
