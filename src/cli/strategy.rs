//! `gavat strategy history | show | rollback`: the learner's audit trail and the
//! strategies in force in a CRM store, and an operator's rollback of a change.

use anyhow::anyhow;
use clap::{Args, Subcommand};

use crate::config::StrategyBook;
use crate::domain::Segment;
use crate::store::{RollbackError, StoredChange};

use super::CliError;
use super::crm::{StoreArg, print_json};

/// `gavat strategy …`
#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// Every strategy change in the store, oldest first: when, which segment, who proposed
    /// it (statistics, llm, operator), what happened to it (applied, kept, rolled_back,
    /// rejected), before → after, and the evidence — for a proposal, the simulation it had
    /// to win.
    History(HistoryArgs),
    /// The strategies in force, with the change that put each in force (0: configured)
    /// and since when.
    Show {
        /// Print a strategy file (`gavat simulate --strategy FILE` reads it back) instead of a table.
        #[arg(long, conflicts_with = "json")]
        toml: bool,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
    /// Restore the strategy a segment had before change ID (undoing it and any later
    /// change of that segment); recorded as a change of its own.
    Rollback {
        /// The change to undo (from `gavat strategy history`).
        id: i64,
        /// The store.
        #[command(flatten)]
        store: StoreArg,
    },
}

/// `gavat strategy history` flags.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this segment's changes, e.g. HOT_LEAD.
    #[arg(long)]
    segment: Option<String>,
    /// Only changes with this outcome: applied, kept, rolled_back or rejected.
    #[arg(long, value_parser = ["applied", "kept", "rolled_back", "rejected"])]
    action: Option<String>,
    /// The store.
    #[command(flatten)]
    store: StoreArg,
}

/// Runs `gavat strategy …`.
pub fn run(command: StrategyCommand) -> Result<(), CliError> {
    match command {
        StrategyCommand::History(args) => history(args),
        StrategyCommand::Show { toml, store } => show(toml, &store),
        StrategyCommand::Rollback { id, store } => rollback(id, &store),
    }
}

fn history(args: HistoryArgs) -> Result<(), CliError> {
    let segment = match &args.segment {
        Some(name) => Some(name.parse::<Segment>().map_err(|m| CliError::usage(anyhow!("--segment: {m}")))?),
        None => None,
    };
    let (db, _) = args.store.open()?;
    let changes: Vec<StoredChange> = db
        .strategy_changes(segment)
        .map_err(CliError::failure)?
        .into_iter()
        .filter(|c| args.action.as_deref().is_none_or(|a| c.action == a))
        .collect();
    if args.store.json {
        return print_json(&changes);
    }
    if changes.is_empty() {
        println!("no strategy changes in {} (run `gavat simulate --learn --save-state FILE`)", args.store.name());
        return Ok(());
    }
    for c in &changes {
        println!(
            "#{:<5} {}  {:<17} {:<10} {:<11} {:<14} {} → {}",
            c.id,
            c.at,
            c.segment.as_str(),
            c.source,
            c.action,
            c.field,
            c.before,
            c.after
        );
        println!("       {}", c.evidence);
    }
    let count = |a: &str| changes.iter().filter(|c| c.action == a).count();
    println!(
        "{} changes: {} applied, {} kept, {} rolled back, {} rejected",
        changes.len(),
        count("applied"),
        count("kept"),
        count("rolled_back"),
        count("rejected")
    );
    Ok(())
}

fn show(toml: bool, store: &StoreArg) -> Result<(), CliError> {
    let (db, _) = store.open()?;
    let in_force = db.strategies_in_force().map_err(CliError::failure)?;
    if in_force.is_empty() {
        return Err(CliError::usage(anyhow!(
            "{} records no strategies (written by `gavat simulate --save-state` from this version on)",
            store.name()
        )));
    }
    if store.json {
        return print_json(&in_force);
    }
    if toml {
        let name = db.strategy_name().map_err(CliError::failure)?.unwrap_or_else(|| "in-force".into());
        // `+learned` only when what is in force is not what was configured.
        let name = if in_force.iter().any(|s| s.learned) { format!("{name}+learned") } else { name };
        let strategies = in_force.iter().map(|s| s.strategy.clone()).collect();
        let book = StrategyBook::from_strategies(&name, strategies)
            .ok_or_else(|| CliError::failure(anyhow!("{}: not every segment has a strategy", store.name())))?;
        print!("{}", book.to_toml());
        return Ok(());
    }
    println!(
        "{:<18} {:>8} {:<13} {:>5} {:>9} {:<12} {:<14} {:>8}  since",
        "segment", "priority", "frequency", "daily", "cooldown", "allowed", "optimal", "version"
    );
    for s in &in_force {
        let st = &s.strategy;
        println!(
            "{:<18} {:>8} {:<13} {:>5} {:>8.1}h {:<12} {:<14} {:>8}  {}",
            st.segment.as_str(),
            st.priority,
            st.frequency.as_str(),
            st.daily_limit,
            st.cooldown_secs as f64 / 3600.0,
            st.allowed_hours.to_string(),
            st.optimal_hours.to_string(),
            s.version,
            s.since.map_or("start of run (configured)".to_string(), |t| t.to_string())
        );
    }
    Ok(())
}

fn rollback(id: i64, store: &StoreArg) -> Result<(), CliError> {
    let (db, now) = store.open_for_rollback()?;
    let change = db.rollback_strategy(id, now).map_err(|e| match e {
        RollbackError::Store(e) => CliError::failure(e),
        refused => CliError::usage(refused),
    })?;
    if store.json {
        return print_json(&change);
    }
    println!(
        "change #{} recorded: {} {} {} → {}",
        change.id,
        change.segment.as_str(),
        change.field,
        change.before,
        change.after
    );
    println!("  {}", change.evidence);
    Ok(())
}
