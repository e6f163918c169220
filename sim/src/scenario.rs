//! Scenario files: the population's make-up and the behaviour model's parameters, parsed
//! from TOML and validated, with errors naming the file, line and field.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::content::ContentKind;
use crate::population::UserType;

/// The scenario shipped with gavat-sim.
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/default.toml");

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why (part of the message, so not also reported as a source).
        cause: std::io::Error,
    },
    /// Not valid TOML, or a value of the wrong type or an unknown field.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong (names the field).
        message: String,
    },
    /// Well-formed but meaningless (a probability of 1.5, an empty range…).
    #[error("{path}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, e.g. `types.hot_lead.base_response.mean`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A Beta distribution given by its mean and concentration (α + β).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BetaParam {
    /// Mean, in (0, 1).
    pub mean: f64,
    /// α + β, > 0: higher is tighter around the mean.
    pub concentration: f64,
}

/// Timezone weight.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimezoneWeight {
    /// Offset from UTC, minutes.
    pub offset: i32,
    /// Relative weight.
    pub weight: f64,
}

/// Who is in the population.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationParams {
    /// Weights of the latent types.
    pub mix: TypeTable<f64>,
    /// Offsets and their weights.
    pub timezones: Vec<TimezoneWeight>,
}

/// One value per latent type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeTable<T> {
    /// Hot leads.
    pub hot_lead: T,
    /// Warm leads.
    pub warm_lead: T,
    /// Cold leads.
    pub cold_lead: T,
    /// Engaged users.
    pub engaged: T,
    /// Bot lovers.
    pub bot_lover: T,
    /// Night owls.
    pub night_owl: T,
    /// New users.
    pub new_user: T,
    /// Premium potentials.
    pub premium_potential: T,
}

impl<T> TypeTable<T> {
    /// The value for one type.
    pub fn get(&self, t: UserType) -> &T {
        match t {
            UserType::HotLead => &self.hot_lead,
            UserType::WarmLead => &self.warm_lead,
            UserType::ColdLead => &self.cold_lead,
            UserType::Engaged => &self.engaged,
            UserType::BotLover => &self.bot_lover,
            UserType::NightOwl => &self.night_owl,
            UserType::NewUser => &self.new_user,
            UserType::PremiumPotential => &self.premium_potential,
        }
    }
}

/// Affinity per content kind.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentAffinity {
    /// Offers.
    pub offer: f64,
    /// Reminders.
    pub reminder: f64,
    /// Educational content.
    pub educational: f64,
    /// News.
    pub news: f64,
    /// Premium offers.
    pub premium: f64,
    /// Community content.
    pub community: f64,
}

impl ContentAffinity {
    /// In [`ContentKind::ALL`] order.
    pub fn as_array(&self) -> [f64; 6] {
        [self.offer, self.reminder, self.educational, self.news, self.premium, self.community]
    }
}

/// How one latent type is drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeParams {
    /// P(reply) at the best hour and content, unfatigued.
    pub base_response: BetaParam,
    /// Mean spontaneous sessions a day.
    pub activity_per_day: f64,
    /// Local hour of peak activity.
    pub peak_hour: f64,
    /// Spread of activity around the peak, hours.
    pub hour_spread: f64,
    /// Bots followed, inclusive range.
    pub bots: [u32; 2],
    /// P(purchase | reply).
    pub purchase_propensity: BetaParam,
    /// Purchases before the simulation, inclusive range.
    pub prior_purchases: [u32; 2],
    /// Messages received in the 30 days before, inclusive range.
    pub prior_messages: [u32; 2],
    /// Days since joining, inclusive range.
    pub joined_days_ago: [u32; 2],
    /// Content affinities.
    pub content: ContentAffinity,
    /// k in exp(−k · load).
    pub fatigue_sensitivity: f64,
    /// P(opt out | message), unfatigued.
    pub opt_out_base: f64,
}

/// The behaviour model's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourParams {
    /// Time constant of the fatigue load, hours.
    pub fatigue_tau_hours: f64,
    /// Response factor at the least active hour.
    pub hour_floor: f64,
    /// Response factor at zero content affinity.
    pub content_floor: f64,
    /// Multiplier of P(reply) for group posts.
    pub group_response_factor: f64,
    /// Multiplier of P(opt out) for group posts.
    pub group_opt_out_factor: f64,
    /// Growth of opt-out risk per unit of load past the tolerance.
    pub opt_out_fatigue_gain: f64,
    /// Load tolerated without extra opt-out risk.
    pub opt_out_tolerance: f64,
    /// Median reply delay, minutes.
    pub response_delay_median_minutes: f64,
    /// Log-normal sigma of the reply delay.
    pub response_delay_sigma: f64,
    /// Mean delay from reply to purchase, minutes.
    pub conversion_delay_mean_minutes: f64,
    /// Opt-outs arrive uniformly within this many minutes.
    pub opt_out_delay_max_minutes: f64,
}

/// Groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupParams {
    /// Groups per 1,000 users.
    pub per_thousand_users: f64,
    /// Members per group, inclusive range.
    pub members: [u32; 2],
    /// Posts a day by others in the group.
    pub activity_per_day: f64,
    /// Telegram's limit of posts per minute to groups.
    pub posts_per_minute: u32,
    /// Posts per group per local day.
    pub daily_limit: u32,
    /// Least hours between posts to one group.
    pub cooldown_hours: f64,
    /// How often a post to a group is considered, hours.
    pub post_interval_hours: f64,
}

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Who is in the population.
    pub population: PopulationParams,
    /// How each type is drawn.
    pub types: TypeTable<TypeParams>,
    /// How users react.
    pub behaviour: BehaviourParams,
    /// Groups.
    pub groups: GroupParams,
}

impl Scenario {
    /// The shipped default scenario.
    pub fn default_scenario() -> Scenario {
        Scenario::from_toml_str(DEFAULT_SCENARIO, "sim/scenarios/default.toml")
            .expect("the shipped scenario is valid (checked by a test)")
    }

    /// Reads and validates a scenario file.
    pub fn from_path(path: &Path) -> Result<Scenario, ScenarioError> {
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|cause| ScenarioError::Read { path: display.clone(), cause })?;
        Scenario::from_toml_str(&text, &display)
    }

    /// Parses and validates scenario TOML; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: origin.to_string(),
            line: e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1),
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        })?;
        scenario.validate().map_err(|(field, message)| ScenarioError::Invalid {
            path: origin.to_string(),
            field,
            message,
        })?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let prob = |field: String, v: f64| -> Result<(), (String, String)> {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err((field, format!("{v} is not a probability in [0, 1]")))
            }
        };
        let positive = |field: String, v: f64| -> Result<(), (String, String)> {
            if v.is_finite() && v > 0.0 { Ok(()) } else { Err((field, format!("{v} must be positive"))) }
        };
        let non_negative = |field: String, v: f64| -> Result<(), (String, String)> {
            if v.is_finite() && v >= 0.0 { Ok(()) } else { Err((field, format!("{v} must not be negative"))) }
        };
        let range = |field: String, r: [u32; 2]| -> Result<(), (String, String)> {
            if r[0] <= r[1] { Ok(()) } else { Err((field, format!("[{}, {}]: min is above max", r[0], r[1]))) }
        };
        let beta = |field: &str, b: BetaParam| -> Result<(), (String, String)> {
            if !(b.mean > 0.0 && b.mean < 1.0) {
                return Err((format!("{field}.mean"), format!("{} must be strictly between 0 and 1", b.mean)));
            }
            positive(format!("{field}.concentration"), b.concentration)
        };

        let mut total = 0.0;
        for t in UserType::ALL {
            let w = *self.population.mix.get(t);
            non_negative(format!("population.mix.{}", t.as_str()), w)?;
            total += w;
        }
        if total <= 0.0 {
            return Err(("population.mix".into(), "weights are all zero".into()));
        }
        if self.population.timezones.is_empty() {
            return Err(("population.timezones".into(), "needs at least one timezone".into()));
        }
        let mut tz_total = 0.0;
        for (i, tz) in self.population.timezones.iter().enumerate() {
            non_negative(format!("population.timezones[{i}].weight"), tz.weight)?;
            if !(-720..=840).contains(&tz.offset) {
                return Err((
                    format!("population.timezones[{i}].offset"),
                    format!("{} is not a UTC offset in minutes", tz.offset),
                ));
            }
            tz_total += tz.weight;
        }
        if tz_total <= 0.0 {
            return Err(("population.timezones".into(), "weights are all zero".into()));
        }
        for t in UserType::ALL {
            let p = self.types.get(t);
            let f = format!("types.{}", t.as_str());
            beta(&format!("{f}.base_response"), p.base_response)?;
            beta(&format!("{f}.purchase_propensity"), p.purchase_propensity)?;
            non_negative(format!("{f}.activity_per_day"), p.activity_per_day)?;
            if !(0.0..24.0).contains(&p.peak_hour) {
                return Err((format!("{f}.peak_hour"), format!("{} is not an hour in [0, 24)", p.peak_hour)));
            }
            positive(format!("{f}.hour_spread"), p.hour_spread)?;
            range(format!("{f}.bots"), p.bots)?;
            if p.bots[0] == 0 {
                return Err((format!("{f}.bots"), "a user follows at least one bot".into()));
            }
            range(format!("{f}.prior_purchases"), p.prior_purchases)?;
            range(format!("{f}.prior_messages"), p.prior_messages)?;
            range(format!("{f}.joined_days_ago"), p.joined_days_ago)?;
            for (k, v) in ContentKind::ALL.iter().zip(p.content.as_array()) {
                prob(format!("{f}.content.{}", k.as_str()), v)?;
            }
            non_negative(format!("{f}.fatigue_sensitivity"), p.fatigue_sensitivity)?;
            prob(format!("{f}.opt_out_base"), p.opt_out_base)?;
        }
        let b = &self.behaviour;
        positive("behaviour.fatigue_tau_hours".into(), b.fatigue_tau_hours)?;
        prob("behaviour.hour_floor".into(), b.hour_floor)?;
        prob("behaviour.content_floor".into(), b.content_floor)?;
        prob("behaviour.group_response_factor".into(), b.group_response_factor)?;
        prob("behaviour.group_opt_out_factor".into(), b.group_opt_out_factor)?;
        non_negative("behaviour.opt_out_fatigue_gain".into(), b.opt_out_fatigue_gain)?;
        non_negative("behaviour.opt_out_tolerance".into(), b.opt_out_tolerance)?;
        positive("behaviour.response_delay_median_minutes".into(), b.response_delay_median_minutes)?;
        non_negative("behaviour.response_delay_sigma".into(), b.response_delay_sigma)?;
        positive("behaviour.conversion_delay_mean_minutes".into(), b.conversion_delay_mean_minutes)?;
        positive("behaviour.opt_out_delay_max_minutes".into(), b.opt_out_delay_max_minutes)?;
        let g = &self.groups;
        non_negative("groups.per_thousand_users".into(), g.per_thousand_users)?;
        range("groups.members".into(), g.members)?;
        non_negative("groups.activity_per_day".into(), g.activity_per_day)?;
        non_negative("groups.cooldown_hours".into(), g.cooldown_hours)?;
        positive("groups.post_interval_hours".into(), g.post_interval_hours)?;
        Ok(())
    }

    /// Telegram's limit on posts per minute to groups.
    pub fn group_posts_per_minute(&self) -> u32 {
        self.groups.posts_per_minute
    }

    /// A group's own cap on posts per local day.
    pub fn group_daily_limit(&self) -> u32 {
        self.groups.daily_limit
    }

    /// Least seconds between two posts to one group.
    pub fn group_cooldown_secs(&self) -> i64 {
        (self.groups.cooldown_hours * 3_600.0).round() as i64
    }

    /// How often a post to a group is considered, seconds.
    pub fn group_post_interval_secs(&self) -> i64 {
        (self.groups.post_interval_hours * 3_600.0).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped scenario parses and validates.
    #[test]
    fn default_parses() {
        let s = Scenario::default_scenario();
        assert_eq!(s.name, "default");
        assert_eq!(s.group_posts_per_minute(), 20);
    }

    /// Broken syntax reports the right line.
    #[test]
    fn malformed_toml_reports_its_line() {
        let text = DEFAULT_SCENARIO.replacen("peak_hour = 19", "peak_hour = = 19", 1);
        let line = text.lines().position(|l| l.contains("= = 19")).unwrap() + 1;
        let err = Scenario::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert!(err.starts_with(&format!("s.toml:{line}:")), "{err}");
    }

    /// An unknown field is named.
    #[test]
    fn unknown_field_is_named() {
        let text = DEFAULT_SCENARIO.replacen("peak_hour = 19", "peak_hour = 19\npeek_hour = 3", 1);
        let err = Scenario::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert!(err.contains("peek_hour"), "{err}");
    }

    /// A probability out of range names the field path.
    #[test]
    fn out_of_range_probability_names_the_field() {
        let text = DEFAULT_SCENARIO.replacen("mean = 0.45", "mean = 1.5", 1);
        let err = Scenario::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert!(err.contains("field types.hot_lead.base_response.mean"), "{err}");
    }
}
