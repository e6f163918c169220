//! The API's [`UserDirectory`] over the SQLite store of a live run: reads a user's stored
//! profile and cap counters; creates or updates a profile (segmented with the run's rules),
//! keeping the counters and any opt-out, written at once so that a restart keeps it.

use std::sync::Arc;

use crate::api::{DirectoryError, Upserted, UserDirectory};
use crate::clock::Clock;
use crate::config::StrategyBook;
use crate::domain::{UserId, UserProfile};
use crate::policy::{caps_for, governing_segment};
use crate::segmentation::{self, SegmentationRules};
use crate::store::{SqliteStore, Store, UserRecord, UserState};

/// See the module documentation.
#[derive(Debug)]
pub struct SqliteDirectory {
    store: Arc<SqliteStore>,
    clock: Arc<dyn Clock>,
    rules: Arc<SegmentationRules>,
    book: Arc<StrategyBook>,
}

impl SqliteDirectory {
    /// A directory over `store`, segmenting new profiles with `rules` under `book` at the
    /// time `clock` reads.
    pub fn new(
        store: Arc<SqliteStore>,
        clock: Arc<dyn Clock>,
        rules: Arc<SegmentationRules>,
        book: Arc<StrategyBook>,
    ) -> SqliteDirectory {
        SqliteDirectory { store, clock, rules, book }
    }
}

fn unavailable(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable { reason: e.to_string() }
}

impl UserDirectory for SqliteDirectory {
    fn get(&self, id: UserId) -> Result<Option<UserState>, DirectoryError> {
        let user = self.store.user(id).map_err(unavailable)?;
        Ok(user.map(|u| UserState { profile: u.profile, caps: u.caps }))
    }

    fn upsert(&self, profile: UserProfile) -> Result<Upserted, DirectoryError> {
        let existing = self.store.user(profile.id).map_err(unavailable)?;
        let (caps, outcome) = match &existing {
            Some(u) => (u.caps, Upserted::Updated),
            None => (Default::default(), Upserted::Created),
        };
        let now = self.clock.now();
        let held = segmentation::segment(&profile, now, &self.rules);
        let record = UserRecord {
            segments: segmentation::explain(&profile, now, &self.rules),
            governing: governing_segment(&held, &self.book),
            caps_in_force: caps_for(&held, &self.book),
            next_send: existing.and_then(|u| u.next_send),
            profile,
            caps,
        };
        futures::executor::block_on(async {
            self.store.save_user(&record).await?;
            self.store.flush().await
        })
        .map_err(unavailable)?;
        Ok(outcome)
    }
}
