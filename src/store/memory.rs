//! An in-memory store: either everything — the latest record of every user and the whole
//! log (for tests) — or just counts of the log (for large simulations, where neither would
//! fit next to the actors).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::domain::UserId;

use super::{LogEntry, LogKind, RunRecord, Store, StoreFuture, UserRecord};

/// Everything in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    keep_everything: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<UserId, UserRecord>,
    log: Vec<LogEntry>,
    counts: [u64; 4],
    run: Option<RunRecord>,
}

impl MemoryStore {
    /// A store that keeps neither log entries nor user records: an engine given one does not
    /// collect the log at all (it only counts what it is given).
    pub fn counting() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store that keeps every user record and the whole log.
    pub fn keeping_everything() -> MemoryStore {
        MemoryStore { keep_everything: true, ..MemoryStore::default() }
    }

    /// The kept log (empty for a counting store).
    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.clone()
    }

    /// How many entries of `kind` were appended.
    pub fn count(&self, kind: LogKind) -> u64 {
        self.lock().counts[kind as usize]
    }

    /// The latest saved record of a user.
    pub fn user(&self, id: UserId) -> Option<UserRecord> {
        self.lock().users.get(&id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn save_user(&self, record: &UserRecord) -> StoreFuture<()> {
        if self.keep_everything {
            self.lock().users.insert(record.profile.id, record.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn append(&self, entry: &LogEntry) -> StoreFuture<()> {
        let mut inner = self.lock();
        inner.counts[entry.kind as usize] += 1;
        if self.keep_everything {
            inner.log.push(entry.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn save_run(&self, run: &RunRecord) -> StoreFuture<()> {
        if self.keep_everything {
            self.lock().run = Some(run.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn flush(&self) -> StoreFuture<()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn wants_log(&self) -> bool {
        self.keep_everything
    }
}
