//! [`HashingLog`]: a store decorator that hashes the event log as it is written — each
//! entry as the one JSON line `--events` writes — so that a faulted run's report carries the
//! SHA-256 of its events: equal to the events file's when there is one, and the hash of the
//! same canonical stream when there is not.

use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::store::{LogEntry, RunRecord, Store, StoreError, StoreFuture, UserRecord};

/// Hashes every log entry, then passes everything on to `inner` (see the module docs).
#[derive(Debug)]
pub struct HashingLog<S> {
    inner: S,
    hasher: Mutex<(Sha256, u64)>,
}

impl<S: Store> HashingLog<S> {
    /// Hashes what goes into `inner`.
    pub fn new(inner: S) -> HashingLog<S> {
        HashingLog { inner, hasher: Mutex::new((Sha256::new(), 0)) }
    }

    /// The SHA-256 of the log written so far (hex) and how many entries it holds.
    pub fn digest(&self) -> (String, u64) {
        let guard = self.hasher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let digest = guard.0.clone().finalize();
        (digest.iter().map(|b| format!("{b:02x}")).collect(), guard.1)
    }
}

impl<S: Store> Store for HashingLog<S> {
    fn save_user(&self, record: &UserRecord) -> StoreFuture<()> {
        self.inner.save_user(record)
    }

    fn append(&self, entry: &LogEntry) -> StoreFuture<()> {
        match serde_json::to_vec(entry) {
            Ok(mut line) => {
                line.push(b'\n');
                let mut guard = self.hasher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                guard.0.update(&line);
                guard.1 += 1;
            }
            Err(e) => {
                let cause = std::io::Error::from(e);
                return Box::pin(std::future::ready(Err(StoreError::Io { path: "(event log hash)".into(), cause })));
            }
        }
        self.inner.append(entry)
    }

    fn save_run(&self, run: &RunRecord) -> StoreFuture<()> {
        self.inner.save_run(run)
    }

    fn flush(&self) -> StoreFuture<()> {
        self.inner.flush()
    }

    /// The log is always built: it is what the hash is of.
    fn wants_log(&self) -> bool {
        true
    }
}
