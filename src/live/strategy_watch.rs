//! A live engine follows the strategies in force in its store: at start it keeps what
//! earlier runs learned (or an operator rolled back), and while it runs it picks up an
//! operator's `gavat strategy rollback` — a new version in the store's `strategies` table —
//! within a few seconds, for all later sends.

use std::sync::Arc;
use std::time::Duration;

use crate::actors::learner::StrategyUpdate;
use crate::actors::scheduler::ArmUpdate;
use crate::config::StrategyBook;
use crate::store::{SqliteStore, StoreError, StoredStrategy};

/// How often the store is looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// What a run starts with: the strategies, how many of them came from the store, and the
/// store's latest version among them (what [`watch`] compares against).
#[derive(Debug)]
pub struct StartingBook {
    /// The strategies.
    pub book: StrategyBook,
    /// How many the store changed (learned, or rolled back).
    pub kept: usize,
    /// The highest version in force at that moment (0: none recorded).
    pub version: i64,
}

/// `book` with every strategy the store holds as changed (learned, or rolled back to
/// something other than the configured one) put in its place; also how many, and the
/// version read (a change after this read is the watch's to pick up, however early).
pub fn with_stored_changes(book: StrategyBook, store: &SqliteStore) -> Result<StartingBook, StoreError> {
    let in_force = store.strategies_in_force()?;
    let version = latest_version(&in_force);
    let mut book = book;
    let mut kept = 0;
    for stored in in_force.into_iter().filter(|s| s.learned) {
        book = book.with(stored.strategy);
        kept += 1;
    }
    Ok(StartingBook { book, kept, version })
}

/// The highest version among the strategies in force (0: none recorded).
fn latest_version(in_force: &[StoredStrategy]) -> i64 {
    in_force.iter().map(|s| s.version).max().unwrap_or(0)
}

/// Watches `store` and sends the strategies in force into `updates` (arm 0) whenever a
/// newer version appears than `seen`, the one the run started with (read when the run's
/// strategies were: a rollback made before this task first runs is still picked up). Runs
/// until the engine drops the receiving end.
pub async fn watch(
    store: Arc<SqliteStore>,
    name: String,
    mut seen: i64,
    updates: tokio::sync::mpsc::UnboundedSender<ArmUpdate>,
) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if updates.is_closed() {
            return;
        }
        let in_force = match store.strategies_in_force() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the strategies in force; trying again.");
                continue;
            }
        };
        let latest = latest_version(&in_force);
        if latest <= seen {
            continue;
        }
        seen = latest;
        let strategies = in_force.into_iter().map(|s| s.strategy).collect();
        let Some(book) = StrategyBook::from_strategies(&name, strategies) else {
            tracing::warn!("The store's strategies in force lack a segment; the engine keeps its own.");
            continue;
        };
        tracing::warn!(version = latest, "A strategy change in the store (an operator's rollback) is now in force.");
        let update = StrategyUpdate {
            arm: 0,
            book: Some(Arc::new(book)),
            changes: Vec::new(),
            notes: Vec::new(),
            adviser: None,
        };
        if updates.send((0, update)).is_err() {
            return;
        }
    }
}
