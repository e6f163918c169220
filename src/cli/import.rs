//! `gavat import users FILE`: users from a CRM export (CSV or JSON lines, columns in
//! `docs/import.md`) into a CRM store, all or nothing. The file is checked whole against
//! the store before anything is written; `--check` stops there.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::StrategyBook;
use crate::import::{self, ImportError, ImportPlan, ImportSummary};
use crate::segmentation::SegmentationRules;
use crate::store::{SqliteStore, StoreError, UpsertMode};

use super::CliError;
use super::crm::{StoreArg, print_json};

/// `gavat import …`
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Upsert users from a CRM export into the store, all or nothing.
    ///
    /// FILE is CSV with a header (`.csv`) or one JSON object per line (`.jsonl`, `.ndjson`).
    /// Columns (docs/import.md): `id` and `utc_offset_minutes` (-720 to 840) are required;
    /// `bots_followed` (default 1), `joined_at` (RFC 3339, default the store's present),
    /// `purchases` (default 0), `sessions`, `sessions_by_local_hour`, `last_active`,
    /// `weekly_sessions`, `messages_received`, `responses` and `recent_responses` (y/n,
    /// oldest first) are optional; any other column is an error. A value left out keeps
    /// what the store holds for an existing user and takes its default for a new one.
    ///
    /// The whole file is checked first, against the store: every bad line is printed as
    /// FILE:LINE: field NAME: problem (value as written), and nothing is written (exit code
    /// 2). A valid file is written in one transaction. An existing user keeps their cap
    /// counters (last send, sends today, opt-out: an opt-out is final); a new user starts
    /// with none. Every imported user is re-segmented with the rules, so `gavat users
    /// analyze` shows them at once.
    ///
    /// The store is created when it does not exist: importing into a fresh gavat.db is how a
    /// live deployment starts. Run no engine on the store meanwhile: a running engine would
    /// overwrite an updated user with its own copy.
    Users(UsersArgs),
    /// Add or replace the Telegram groups `gavat run` posts to, with their members.
    ///
    /// FILE is CSV with the header `id,title,utc_offset,members`: the group's id, its title,
    /// its offset from UTC in minutes (-720 to 840; the group's allowed hours and daily limit
    /// are in this local time) and its members as user ids separated by `;`. The whole file
    /// is checked first (FILE:LINE: field NAME: problem, nothing written); a group already
    /// in the store gets this title, offset and member list. A running engine picks up
    /// membership changes of the groups it posts to within seconds; new groups from its
    /// next start.
    Groups(GroupsArgs),
}

/// Flags of `gavat import groups`.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    /// The groups: `.csv` with the header `id,title,utc_offset,members`.
    pub file: PathBuf,
    /// Check the file and say what an import would write, writing nothing.
    #[arg(long)]
    pub check: bool,
    /// The store (an SQLite file, created if missing, or Redis).
    #[command(flatten)]
    pub store: StoreArg,
}

/// Flags of `gavat import users`.
#[derive(Debug, Args)]
pub struct UsersArgs {
    /// The users: `.csv` (with a header) or `.jsonl` / `.ndjson`.
    pub file: PathBuf,
    /// Check the file against the store and say what an import would do (how many users new,
    /// how many updated), writing nothing.
    #[arg(long)]
    pub check: bool,
    /// Segmentation rules replacing the shipped thresholds (`config/segmentation.toml`).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Strategies that decide each user's governing segment and caps (default: the ones in
    /// force in the store, else the shipped ones).
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    /// The store (created if missing).
    #[command(flatten)]
    pub store: StoreArg,
}

/// Runs `gavat import …`.
pub fn run(command: ImportCommand) -> Result<(), CliError> {
    match command {
        ImportCommand::Users(args) => users(&args),
        ImportCommand::Groups(args) => groups(&args),
    }
}

fn groups(args: &GroupsArgs) -> Result<(), CliError> {
    use crate::contacts::{ContactBook, GroupChat};
    use crate::store::{GroupStore, StoreUrl};
    let groups = crate::live::group_file::read_groups(&args.file).map_err(CliError::usage)?;
    let members: usize = groups.iter().map(|g| g.record.members.len()).sum();
    if args.check {
        println!("{}: {} groups, {members} memberships; nothing written (--check)", args.file.display(), groups.len());
        return Ok(());
    }
    /// The store as both: where groups and their chat ids go.
    trait GroupsAndChats: GroupStore + ContactBook {}
    impl<T: GroupStore + ContactBook> GroupsAndChats for T {}
    let store: Box<dyn GroupsAndChats> = match &args.store.store {
        StoreUrl::Sqlite(path) => {
            let opened = if path.exists() { SqliteStore::open_existing(path) } else { SqliteStore::open(path) };
            Box::new(opened.map_err(|e| CliError::usage(anyhow!("--store: {e}")))?)
        }
        StoreUrl::Redis(url) => Box::new(
            crate::store::RedisStore::connect(url, &args.store.redis_prefix)
                .map_err(|e| CliError::usage(anyhow!("--store: {e}")))?,
        ),
    };
    for group in &groups {
        store.save_group(&group.record).map_err(CliError::failure)?;
        if let Some(chat_id) = group.chat_id {
            let chat = GroupChat { group: group.record.id, chat_id, title: group.record.title.clone() };
            store.save_group_chat(&chat).map_err(CliError::failure)?;
        }
    }
    println!(
        "{}: {} groups, {members} memberships written to {}",
        args.file.display(),
        groups.len(),
        args.store.name()
    );
    Ok(())
}

fn users(args: &UsersArgs) -> Result<(), CliError> {
    let file = &args.file;
    import::Format::of(file).map_err(CliError::usage)?;
    let rules = match &args.rules {
        Some(path) => SegmentationRules::from_path(path).map_err(CliError::usage)?,
        None => SegmentationRules::defaults(),
    };
    let path = args.store.sqlite_path("import")?;
    crate::output::check_distinct(
        &[crate::output::Named { flag: "--store", path }],
        &[crate::output::Named { flag: "FILE", path: file }],
    )
    .map_err(CliError::usage)?;
    let parsed = import::read_file(file).map_err(import_error)?;

    // A read-only look first: the check never changes the store's bytes, whatever it finds.
    let (existing, migrate) = if path.exists() {
        match SqliteStore::open_read_only(path) {
            Ok(store) => (Some(store), false),
            // An older schema: only a writing open can migrate it, so a valid file is
            // checked inside the writing transaction instead.
            Err(StoreError::NeedsMigration { .. }) if !args.check => (None, true),
            Err(e) => return Err(CliError::usage(e)),
        }
    } else {
        (None, false)
    };
    let now = match existing.as_ref().map(SqliteStore::ended_at).transpose().map_err(CliError::failure)? {
        Some(Some(end)) => end,
        _ => SystemClock.now(),
    };
    let book = strategies(args.strategy.as_deref(), existing.as_ref())?;
    let plan = ImportPlan { rules: &rules, book: &book, now };
    if migrate {
        parsed.read_problems(file).map_err(import_error)?;
    } else {
        let checked = import::apply(file, existing.as_ref(), &parsed, &plan, UpsertMode::DryRun);
        let summary = checked.map_err(import_error)?;
        if args.check {
            return print_summary(args, &summary, true, now, existing.is_none());
        }
    }
    drop(existing);

    let created = !path.exists();
    let store = if created { SqliteStore::open(path) } else { SqliteStore::open_existing(path) };
    let store = store.map_err(|e| CliError::usage(anyhow!("--store: {e}")))?;
    let summary = import::apply(file, Some(&store), &parsed, &plan, UpsertMode::Write).map_err(import_error)?;
    drop(store);
    print_summary(args, &summary, false, now, created)
}

/// `--strategy`, else the strategies in force in the store (all eight), else the shipped
/// ones.
fn strategies(file: Option<&Path>, store: Option<&SqliteStore>) -> Result<StrategyBook, CliError> {
    if let Some(path) = file {
        return StrategyBook::from_path(path).map_err(CliError::usage);
    }
    if let Some(store) = store {
        let in_force = store.strategies_in_force().map_err(CliError::failure)?;
        let name = store.strategy_name().map_err(CliError::failure)?.unwrap_or_else(|| "in-force".into());
        if let Some(book) = StrategyBook::from_strategies(&name, in_force.into_iter().map(|s| s.strategy).collect()) {
            return Ok(book);
        }
    }
    Ok(StrategyBook::defaults())
}

/// Lists a bad file's problems on stderr and turns the error into an exit code.
fn import_error(e: ImportError) -> CliError {
    for line in e.report() {
        eprintln!("{line}");
    }
    if e.is_bad_input() { CliError::usage(e) } else { CliError::failure(e) }
}

fn print_summary(
    args: &UsersArgs,
    s: &ImportSummary,
    check: bool,
    now: crate::domain::Timestamp,
    created: bool,
) -> Result<(), CliError> {
    let store = args.store.name();
    let kept = if s.opted_out_kept > 0 {
        format!(" ({} of them opted out, and staying so)", s.opted_out_kept)
    } else {
        String::new()
    };
    if check {
        let fresh = if created { " (a store to be created)" } else { "" };
        eprintln!(
            "gavat: {} is valid: {} users; an import into {store}{fresh} would add {} new and update {}{kept}; nothing written",
            args.file.display(),
            s.users,
            s.new,
            s.updated
        );
    } else {
        let fresh = if created { " (created)" } else { "" };
        eprintln!(
            "gavat: imported {} users from {} into {store}{fresh} in one transaction: {} new, {} updated{kept}; segmented as of {now}",
            s.users,
            args.file.display(),
            s.new,
            s.updated
        );
    }
    if args.store.json {
        return print_json(&serde_json::json!({
            "file": args.file,
            "store": args.store.name(),
            "check": check,
            "created": created && !check,
            "now": now,
            "users": s.users,
            "new": s.new,
            "updated": s.updated,
            "opted_out_kept": s.opted_out_kept,
        }));
    }
    Ok(())
}
