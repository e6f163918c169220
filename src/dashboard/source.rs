//! The store the dashboard reads: an SQLite file or a Redis store, opened once and shared by
//! every request (both are safe to share: the SQLite store serialises its connection behind
//! a lock, the Redis store multiplexes one connection). Calls block, so handlers make them
//! on actix's blocking pool ([`actix_web::web::block`]), never on the server's thread.

use std::sync::Arc;

use gavat_experiments::design::Experiment;
use gavat_experiments::results::UserRow;

use crate::contacts::ContactBook;
use crate::domain::Timestamp;
use crate::live::results::{LiveResultsError, live_results_until};
use crate::redis_link::RedisConnectError;
use crate::store::{RedisStore, SqliteStore, StoreError, StoreUrl, StrategyRollback};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The SQLite file could not be opened (missing, not a gavat store, newer schema).
    #[error("{path}: {source}")]
    Sqlite {
        /// The file.
        path: String,
        /// Why.
        source: StoreError,
    },
    /// The Redis store could not be reached.
    #[error("{url}: {source}")]
    Redis {
        /// The URL, password redacted.
        url: String,
        /// Why.
        source: RedisConnectError,
    },
}

/// An open store.
#[derive(Clone)]
pub enum StoreSource {
    /// An SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// A Redis store (URL and key prefix).
    Redis(Arc<RedisStore>),
}

impl std::fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreSource::Sqlite(_) => "StoreSource::Sqlite",
            StoreSource::Redis(_) => "StoreSource::Redis",
        })
    }
}

impl StoreSource {
    /// Opens `url` (Redis keys under `prefix`); an SQLite file for writing only when
    /// `writable` (the live dashboard's rollback), else read-only.
    pub fn open(url: &StoreUrl, prefix: &str, writable: bool) -> Result<StoreSource, SourceError> {
        match url {
            StoreUrl::Sqlite(path) => {
                let opened =
                    if writable { SqliteStore::open_existing(path) } else { SqliteStore::open_read_only(path) };
                opened
                    .map(|s| StoreSource::Sqlite(Arc::new(s)))
                    .map_err(|source| SourceError::Sqlite { path: path.display().to_string(), source })
            }
            StoreUrl::Redis(address) => RedisStore::connect(address, prefix)
                .map(|s| StoreSource::Redis(Arc::new(s)))
                .map_err(|source| SourceError::Redis { url: url.to_string(), source }),
        }
    }

    /// The store's reads, and the one write (a rollback).
    pub fn reader(&self) -> &dyn StrategyRollback {
        match self {
            StoreSource::Sqlite(s) => s.as_ref(),
            StoreSource::Redis(s) => s.as_ref(),
        }
    }

    /// The store's contact book (names, languages), for message previews.
    pub fn contacts(&self) -> Arc<dyn ContactBook> {
        match self {
            StoreSource::Sqlite(s) => s.clone(),
            StoreSource::Redis(s) => s.clone(),
        }
    }

    /// A live experiment's per-user results from the store's log up to `until` (the whole
    /// log with `None`; see [`crate::live::results`]).
    pub fn experiment_rows(
        &self,
        design: &Experiment,
        until: Option<Timestamp>,
    ) -> Result<Vec<UserRow>, LiveResultsError> {
        match self {
            StoreSource::Sqlite(s) => live_results_until(s.as_ref(), design, until),
            StoreSource::Redis(s) => live_results_until(s.as_ref(), design, until),
        }
    }

    /// The store's present: the end of its saved run, or `None` (a live store, or none
    /// saved).
    pub fn ended_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.reader().ended_at()
    }
}
