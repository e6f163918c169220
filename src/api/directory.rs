//! [`UserDirectory`]: where the API reads and writes users — the CRM's store in a live run
//! (the SQLite store implements it), [`MemoryDirectory`] in tests. Calls are synchronous
//! and may block briefly (an embedded database); the server runs them on its blocking
//! thread pool, never on a thread that serves requests.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;

use crate::domain::{UserId, UserProfile};
use crate::store::UserState;

/// Why the directory could not answer. Retryable: the API answers 503.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The store behind the directory cannot answer now.
    #[error("user directory unavailable: {reason}")]
    Unavailable {
        /// What went wrong (never contains a secret: the API shows it).
        reason: String,
    },
}

/// What [`UserDirectory::upsert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    /// The user was not known: now they are.
    Created,
    /// The user was known: their profile is replaced.
    Updated,
}

/// The users the API can see and create.
pub trait UserDirectory: Send + Sync + Debug {
    /// A user's profile and cap counters as last stored, or `None` for an unknown user.
    /// (The running engine's own view is ahead of the store by at most one window.)
    fn get(&self, id: UserId) -> Result<Option<UserState>, DirectoryError>;

    /// Whether the user is known.
    fn exists(&self, id: UserId) -> Result<bool, DirectoryError> {
        Ok(self.get(id)?.is_some())
    }

    /// Creates the user or replaces their profile. The cap counters (and an opt-out) are
    /// the engine's: an update keeps them as they are, a new user starts with none.
    fn upsert(&self, profile: UserProfile) -> Result<Upserted, DirectoryError>;
}

/// Users in memory, in id order (for tests and rehearsals).
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    /// A `std` mutex: no `.await` is held; an ordered map so a listing is in id order.
    users: Mutex<BTreeMap<UserId, UserState>>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> MemoryDirectory {
        MemoryDirectory::default()
    }

    /// A directory holding `users`, with no cap counters.
    pub fn with_users(users: impl IntoIterator<Item = UserProfile>) -> MemoryDirectory {
        let users = users.into_iter().map(|profile| (profile.id, UserState { profile, caps: Default::default() }));
        MemoryDirectory { users: Mutex::new(users.collect()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<UserId, UserState>> {
        // Every update is one insert or field write: a panic elsewhere cannot leave it half done.
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl UserDirectory for MemoryDirectory {
    fn get(&self, id: UserId) -> Result<Option<UserState>, DirectoryError> {
        Ok(self.lock().get(&id).cloned())
    }

    fn exists(&self, id: UserId) -> Result<bool, DirectoryError> {
        Ok(self.lock().contains_key(&id))
    }

    fn upsert(&self, profile: UserProfile) -> Result<Upserted, DirectoryError> {
        let mut users = self.lock();
        match users.get_mut(&profile.id) {
            Some(known) => {
                known.profile = profile;
                Ok(Upserted::Updated)
            }
            None => {
                users.insert(profile.id, UserState { profile, caps: Default::default() });
                Ok(Upserted::Created)
            }
        }
    }
}
