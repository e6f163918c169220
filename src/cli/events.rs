//! `gavat events export`: a CRM store's send/response log as JSON lines, in exactly the
//! schema of `gavat simulate --events` (`docs/events.md`), to stdout or atomically to a
//! file. The store is opened read-only and the log is read a page at a time, so a log of
//! any length streams through in constant memory.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use crate::domain::Timestamp;
use crate::output::{Named, PendingFile, check_distinct};
use crate::store::{EventLog, SqliteStore, StoreUrl, redact_url};

use super::CliError;

/// `gavat events …`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write the store's log — every send, response, conversion and opt-out — as JSON
    /// lines, one event per line, in the schema of `gavat simulate --events`
    /// (docs/events.md): `scripts/check_caps.py` re-checks every cap from it.
    ///
    /// Events come in time order; events of one second in the order they were logged. For
    /// a store saved by `gavat simulate --save-state … --events FILE` that is FILE line for
    /// line. The store is only read.
    Export(ExportArgs),
    /// Follow a Redis store's log through a consumer group: every record (send, response,
    /// conversion, opt-out) once per group, as JSON lines on stdout, in the schema of
    /// `export`. Redis keeps the group's position: a second `tail` with the same group goes
    /// on where the first stopped; a record printed but not yet acknowledged when the reader
    /// died is printed again (at least once). For analytics pipelines.
    Tail(TailArgs),
}

/// Flags of `gavat events tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The Redis store, `redis://HOST:PORT/DB`.
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// The prefix of the Redis keys (as `gavat run --redis-prefix`).
    #[arg(long, value_name = "PREFIX", default_value = crate::live::config::DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,
    /// The consumer group (created on first use).
    #[arg(long, value_name = "NAME", default_value = "analytics")]
    pub group: String,
    /// This reader's name within the group (several readers of one group share the work).
    #[arg(long, value_name = "NAME", default_value = "gavat")]
    pub consumer: String,
    /// A new group starts from the first record (default: from records appended from now).
    #[arg(long)]
    pub from_start: bool,
    /// Stop when no record is waiting (default: keep following).
    #[arg(long)]
    pub once: bool,
    /// Take over records another reader of the group took and has not acknowledged for
    /// this many seconds (it died): they are printed here (`XAUTOCLAIM`).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub claim_idle: u64,
}

/// Flags of `gavat events export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The CRM store: `sqlite:PATH`, a bare path (SQLite, e.g. one written by `gavat
    /// simulate --save-state` or `gavat run`), or `redis://HOST:PORT/DB`.
    #[arg(long, value_name = "URL", default_value = "gavat.db")]
    pub store: String,
    /// The prefix of the Redis keys (as `gavat run --redis-prefix`).
    #[arg(long, value_name = "PREFIX", default_value = crate::live::config::DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,
    /// Write here instead of stdout; the file is replaced only once every event is written.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only events at or after this time: an RFC 3339 time (2026-01-15T09:00:00Z) or a
    /// date (2026-01-15, midnight UTC).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only events before this time (excluded), written like --from.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

/// Runs `gavat events …`.
pub fn run(command: EventsCommand) -> Result<(), CliError> {
    match command {
        EventsCommand::Export(args) => export(&args),
        EventsCommand::Tail(args) => tail(&args),
    }
}

/// Records taken per read.
const TAIL_BATCH: usize = 512;

fn tail(args: &TailArgs) -> Result<(), CliError> {
    use crate::store::{GroupRead, RedisStore};
    let url = match StoreUrl::parse(&args.store).map_err(|e| CliError::usage(anyhow!("--store: {e}")))? {
        StoreUrl::Redis(url) => url,
        StoreUrl::Sqlite(_) => {
            return Err(CliError::usage(anyhow!(
                "--store: `events tail` follows a Redis store's log; for SQLite use `events export`"
            )));
        }
    };
    for (flag, name) in [("--group", &args.group), ("--consumer", &args.consumer)] {
        if name.is_empty() || name.len() > 64 || name.contains(char::is_whitespace) {
            return Err(CliError::usage(anyhow!("{flag}: {name:?} must be 1–64 characters without spaces")));
        }
    }
    let store = RedisStore::connect(&url, &args.redis_prefix).map_err(CliError::failure)?;
    store.join_group(&args.group, args.from_start).map_err(CliError::failure)?;
    let mut out = std::io::stdout().lock();
    let mut line = Vec::with_capacity(512);
    let mut which = GroupRead::Pending;
    let abandoned = GroupRead::Abandoned { min_idle_ms: args.claim_idle.saturating_mul(1_000) };
    let mut total = 0u64;
    loop {
        let batch = store.read_group(&args.group, &args.consumer, which, TAIL_BATCH).map_err(CliError::failure)?;
        if batch.is_empty() {
            match which {
                GroupRead::Pending => {
                    which = abandoned;
                    continue;
                }
                GroupRead::Abandoned { .. } => {
                    which = GroupRead::New;
                    continue;
                }
                GroupRead::New if args.once => break,
                GroupRead::New => {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    which = abandoned;
                    continue;
                }
            }
        }
        let mut ids = Vec::with_capacity(batch.len());
        for (id, entry) in batch {
            line.clear();
            serde_json::to_writer(&mut line, &entry).map_err(CliError::failure)?;
            line.push(b'\n');
            out.write_all(&line).map_err(CliError::failure)?;
            ids.push(id);
        }
        // Acknowledged only once the lines are out.
        out.flush().map_err(CliError::failure)?;
        total += ids.len() as u64;
        store.ack(&args.group, &ids).map_err(CliError::failure)?;
    }
    eprintln!("gavat: {total} records of group {} from {}", args.group, redact_url(&url));
    Ok(())
}

/// `--from` / `--to`: an RFC 3339 time, or a date at midnight UTC.
fn parse_time(flag: &str, text: &str) -> Result<Timestamp, CliError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Timestamp(t.timestamp()));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Timestamp(t.and_utc().timestamp()))
        .ok_or_else(|| {
            CliError::usage(anyhow!(
                "{flag} {text}: expected an RFC 3339 time (2026-01-15T09:00:00Z) or a date (2026-01-15)"
            ))
        })
}

fn export(args: &ExportArgs) -> Result<(), CliError> {
    let from = args.from.as_deref().map(|t| parse_time("--from", t)).transpose()?;
    let to = args.to.as_deref().map(|t| parse_time("--to", t)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(CliError::usage(anyhow!(
            "--from {f} is not before --to {t}: the window is empty (--to is excluded)"
        )));
    }
    let store = StoreUrl::parse(&args.store).map_err(|e| CliError::usage(anyhow!("--store: {e}")))?;
    let pending = match &args.out {
        Some(out) => {
            if let StoreUrl::Sqlite(path) = &store {
                check_distinct(&[Named { flag: "--out", path: out }], &[Named { flag: "--store", path }])
                    .map_err(CliError::usage)?;
            }
            Some(PendingFile::create("--out", out, false).map_err(CliError::usage)?)
        }
        None => None,
    };
    let written = match &store {
        StoreUrl::Sqlite(path) => {
            let db = SqliteStore::open_read_only(path).map_err(CliError::usage)?;
            write_events(&db, pending.as_ref(), from, to)?
        }
        StoreUrl::Redis(url) => {
            let db = crate::store::RedisStore::connect(url, &args.redis_prefix).map_err(CliError::failure)?;
            write_events(&db, pending.as_ref(), from, to)?
        }
    };
    match pending {
        Some(p) => {
            let target = p.commit().map_err(CliError::failure)?;
            eprintln!("gavat: {written} events from {store} written to {}", target.display());
        }
        None => eprintln!("gavat: {written} events from {store} written to stdout"),
    }
    Ok(())
}

/// Writes every event of `db` in `[from, to)` to the pending file or standard output;
/// returns how many.
fn write_events<L: EventLog>(
    db: &L,
    pending: Option<&PendingFile>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<u64, CliError> {
    let sink: Box<dyn Write> = match pending {
        Some(p) => {
            let file = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(p.temp())
                .map_err(|e| CliError::failure(anyhow!("{}: {e}", p.temp().display())))?;
            Box::new(file)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    let mut line = Vec::with_capacity(512);
    let mut written = 0u64;
    for entry in db.events_between(from.unwrap_or(Timestamp(i64::MIN)), to.unwrap_or(Timestamp(i64::MAX))) {
        let entry = entry.map_err(CliError::failure)?;
        line.clear();
        serde_json::to_writer(&mut line, &entry).map_err(CliError::failure)?;
        line.push(b'\n');
        out.write_all(&line).map_err(CliError::failure)?;
        written += 1;
    }
    out.flush().map_err(CliError::failure)?;
    Ok(written)
}
