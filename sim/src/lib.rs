//! gavat-sim: synthetic populations and the behaviour model that gavat's simulations run
//! against. It knows nothing of the engine; the engine adapts it behind its transport.
//!
//! # Layout
//! - [`scenario`]: scenario TOML → validated [`Scenario`].
//! - [`population`]: latent user types, synthetic users and groups, [`generate`].
//! - [`behaviour`]: reactions to messages (reply, purchase, opt-out) and spontaneous activity.
//! - [`content`]: the content kinds the model knows.
//! - [`zone`]: a user's time zone (a fixed offset or an IANA zone) and the edge zones.
//! - [`rng`]: one version-stable random stream per `(seed, entity, purpose)`.
//! - `toml_text`: the line, field and value as written that a scenario error names.
//!
//! The model and its formulas are documented in `sim/README.md`.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod behaviour;
pub mod content;
pub mod population;
pub mod rng;
pub mod scenario;
mod toml_text;
pub mod zone;

pub use behaviour::{BehaviourModel, Exposure, Reaction, UserMemory};
pub use content::ContentKind;
pub use population::{ObservedHistory, Population, SyntheticGroup, SyntheticUser, UserType, generate};
pub use rng::{Purpose, stream};
pub use scenario::{Scenario, ScenarioError, TelegramParams, ZonePreset};
pub use zone::{EDGE_ZONES, TimeZone};
