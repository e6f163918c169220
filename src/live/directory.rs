//! The API's [`UserDirectory`] over the store of a live run, SQLite or Redis: reads a user's
//! stored profile and cap counters; creates or updates a profile (segmented with the run's
//! rules), keeping the counters and any opt-out, written at once so that a restart keeps it.

use std::sync::Arc;

use crate::api::{DirectoryError, Upserted, UserDirectory};
use crate::clock::Clock;
use crate::config::StrategyBook;
use crate::domain::{UserId, UserProfile};
use crate::policy::{caps_for, governing_segment};
use crate::segmentation::{self, SegmentationRules};
use crate::store::{
    ProfileUpdate, RedisStore, SqliteStore, Store, UpsertError, UpsertMode, UserRecord, UserRepository, UserState,
};

use super::parts::UsersAt;

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
        let now = self.clock.now();
        let held = segmentation::segment(&profile, now, &self.rules);
        let update = ProfileUpdate {
            segments: segmentation::explain(&profile, now, &self.rules),
            governing: governing_segment(&held, &self.book),
            caps_in_force: caps_for(&held, &self.book),
            profile,
        };
        let id = update.profile.id;
        // The same upsert as `gavat import users`: cap counters and an opt-out are never
        // written for a known user.
        let counts = self
            .store
            .upsert_profiles::<std::convert::Infallible>(&[id], UpsertMode::Write, |_, _| Ok(update.clone()))
            .map_err(|e| match e {
                UpsertError::Store(e) => unavailable(e),
                UpsertError::Refused(never) => unavailable(format!("{never:?}")),
            })?;
        Ok(if counts.new > 0 { Upserted::Created } else { Upserted::Updated })
    }
}

/// The API's directory over a Redis store: the same contract, written through the store's
/// own `save_user` with the stored counters carried over.
#[derive(Debug)]
pub struct RedisDirectory {
    store: Arc<RedisStore>,
    clock: Arc<dyn Clock>,
    rules: Arc<SegmentationRules>,
    book: Arc<StrategyBook>,
}

impl UserDirectory for RedisDirectory {
    fn get(&self, id: UserId) -> Result<Option<UserState>, DirectoryError> {
        let after = id.0.checked_sub(1).map(UserId);
        let page = self.store.users_after(after, 1).map_err(unavailable)?;
        Ok(page.into_iter().find(|u| u.profile.id == id))
    }

    fn upsert(&self, profile: UserProfile) -> Result<Upserted, DirectoryError> {
        let existing = self.get(profile.id)?;
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
            next_send: None,
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

/// The directory for the store a live run opened.
pub fn for_store(
    users_at: &UsersAt,
    clock: Arc<dyn Clock>,
    rules: Arc<SegmentationRules>,
    book: Arc<StrategyBook>,
) -> Arc<dyn UserDirectory> {
    match users_at {
        UsersAt::Sqlite(store) => Arc::new(SqliteDirectory::new(store.clone(), clock, rules, book)),
        UsersAt::Redis(store) => Arc::new(RedisDirectory { store: store.clone(), clock, rules, book }),
    }
}
