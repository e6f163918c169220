//! `gavat config check FILE`: validates a `gavat.toml` and every file it names, prints the
//! configuration it describes (variable names, never their values), and says which secrets
//! the environment does not hold yet.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::StrategyBook;
use crate::learner::LearnerSettings;
use crate::live::config::{RunConfig, TransportConfig};
use crate::segmentation::SegmentationRules;

use super::CliError;

/// `gavat config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a gavat.toml and the strategy, rules and learner files it names; exit 2 with
    /// `file:line: field PATH: …` on the first mistake.
    Check(CheckArgs),
}

/// Flags of `gavat config check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file (docs/configuration.md).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Runs `gavat config …`.
pub fn run(command: ConfigCommand) -> Result<(), CliError> {
    match command {
        ConfigCommand::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> Result<(), CliError> {
    let config = RunConfig::from_path(&args.file).map_err(CliError::usage)?;
    if let Some(path) = &config.strategies {
        StrategyBook::from_path(path).map_err(CliError::usage)?;
    }
    if let Some(path) = &config.rules {
        SegmentationRules::from_path(path).map_err(CliError::usage)?;
    }
    if let Some(path) = &config.learner {
        LearnerSettings::from_path(path).map_err(CliError::usage)?;
    }
    crate::compose::check_messages(&config).map_err(CliError::usage)?;
    println!("{}: valid", args.file.display());
    println!("{config}");
    let mut secrets: Vec<&str> = config.bots.iter().map(|b| b.token_env.as_str()).collect();
    if let TransportConfig::Webhook { secret_env, .. } = &config.transport {
        secrets.push(secret_env);
    }
    if let Some(llm) = &config.messages.llm {
        secrets.push(&llm.api_key_env);
    }
    for name in secrets {
        if std::env::var_os(name).is_none() {
            eprintln!("gavat: note: ${name} is not set in this environment; `gavat run` needs it");
        }
    }
    if std::env::var_os("GAVAT_API_TOKEN").is_none() && config.listen.is_some() {
        eprintln!("gavat: note: GAVAT_API_TOKEN is not set: the API will serve reads only");
    }
    Ok(())
}
