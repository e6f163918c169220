//! Synthetic populations: users of latent types with time zones, active hours, activity,
//! bots followed, purchase propensity, join dates and the history a CRM would already
//! hold; and groups of them.
//!
//! User `i` is drawn only from `stream(seed, i, Population)`, so the same user appears
//! whatever the population's size.

use rand::RngExt;
use rand_distr::{Beta, Distribution, Gamma, Poisson};
use serde::{Deserialize, Serialize};

use crate::rng::{Purpose, stream};
use crate::scenario::{BetaParam, Scenario, TypeParams};
use crate::zone::TimeZone;

/// Latent ground-truth type of a synthetic user; maps onto the engine's 8 segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    /// Responds often; close to buying.
    HotLead,
    /// Responds sometimes.
    WarmLead,
    /// Rarely responds, rarely active.
    ColdLead,
    /// Active every day.
    Engaged,
    /// Follows many bots.
    BotLover,
    /// Active late at night.
    NightOwl,
    /// Joined in the last week.
    NewUser,
    /// Has bought, likes premium offers.
    PremiumPotential,
}

impl UserType {
    /// Every type.
    pub const ALL: [UserType; 8] = [
        UserType::HotLead,
        UserType::WarmLead,
        UserType::ColdLead,
        UserType::Engaged,
        UserType::BotLover,
        UserType::NightOwl,
        UserType::NewUser,
        UserType::PremiumPotential,
    ];

    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::HotLead => "hot_lead",
            UserType::WarmLead => "warm_lead",
            UserType::ColdLead => "cold_lead",
            UserType::Engaged => "engaged",
            UserType::BotLover => "bot_lover",
            UserType::NightOwl => "night_owl",
            UserType::NewUser => "new_user",
            UserType::PremiumPotential => "premium_potential",
        }
    }
}

/// What a CRM already knows at the start (the last 30 days).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedHistory {
    /// Sessions per local hour.
    pub activity_by_local_hour: [u32; 24],
    /// Messages received.
    pub messages_received: u32,
    /// Of which answered.
    pub responses: u32,
    /// Last activity, unix seconds.
    pub last_active: i64,
}

/// One synthetic user.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticUser {
    /// 0..n.
    pub id: u64,
    /// Latent type.
    pub user_type: UserType,
    /// Where they live: their local hours follow it.
    pub time_zone: TimeZone,
    /// Join time, unix seconds.
    pub joined_at: i64,
    /// Mean spontaneous sessions a day.
    pub activity_per_day: f64,
    /// Weights over local hours (sum 1).
    pub active_hours: [f32; 24],
    /// Bots followed.
    pub bots_followed: u32,
    /// Purchases before the simulation.
    pub purchases: u32,
    /// P(purchase | reply).
    pub purchase_propensity: f64,
    /// P(reply) at the best hour and content, unfatigued.
    pub base_response: f64,
    /// Affinity per content kind.
    pub content_affinity: [f32; 6],
    /// k in exp(−k · load).
    pub fatigue_sensitivity: f64,
    /// P(opt out | message), unfatigued.
    pub opt_out_base: f64,
}

/// A group of users.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticGroup {
    /// 0..g.
    pub id: u64,
    /// Member ids, ascending.
    pub members: Vec<u64>,
    /// The group's usual time zone.
    pub time_zone: TimeZone,
    /// Posts a day by others.
    pub activity_per_day: f64,
}

/// Users and groups.
#[derive(Clone, Debug)]
pub struct Population {
    /// Users, by id.
    pub users: Vec<SyntheticUser>,
    /// What a CRM knows of each user at the start, by id. Kept apart from `users` so that
    /// a simulation can drop it once profiles are built (it is a third of a user's size).
    pub histories: Vec<ObservedHistory>,
    /// Groups, by id.
    pub groups: Vec<SyntheticGroup>,
    /// Start of the simulation, unix seconds.
    pub start: i64,
}

const DAY: i64 = 86_400;

fn weighted<R: rand::Rng + ?Sized>(rng: &mut R, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut point = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if point < *w {
            return i;
        }
        point -= w;
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

fn draw_beta<R: rand::Rng + ?Sized>(rng: &mut R, p: BetaParam) -> f64 {
    match Beta::new(p.mean * p.concentration, (1.0 - p.mean) * p.concentration) {
        Ok(d) => d.sample(rng),
        Err(_) => p.mean,
    }
}

fn uniform_u32<R: rand::Rng + ?Sized>(rng: &mut R, r: [u32; 2]) -> u32 {
    rng.random_range(r[0]..=r[1])
}

/// Activity weights over 24 local hours: a wrapped normal around `peak` with `spread`,
/// plus a small floor so no hour is impossible.
pub fn hour_weights(peak: f64, spread: f64) -> [f32; 24] {
    let mut w = [0f32; 24];
    for (h, slot) in w.iter_mut().enumerate() {
        let mut d = (h as f64 + 0.5 - peak).abs() % 24.0;
        if d > 12.0 {
            d = 24.0 - d;
        }
        *slot = ((-(d * d) / (2.0 * spread * spread)).exp() + 0.01) as f32;
    }
    let total: f32 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= total);
    w
}

fn draw_user(scenario: &Scenario, seed: u64, id: u64, start: i64) -> (SyntheticUser, ObservedHistory) {
    let rng = &mut stream(seed, id, Purpose::Population);
    let mix: Vec<f64> = UserType::ALL.iter().map(|t| *scenario.population.mix.get(*t)).collect();
    let user_type = UserType::ALL[weighted(rng, &mix)];
    let zones = scenario.zone_weights();
    let tz_weights: Vec<f64> = zones.iter().map(|z| z.1).collect();
    let time_zone = zones[weighted(rng, &tz_weights)].0;
    let p: &TypeParams = scenario.types.get(user_type);

    let base_response = draw_beta(rng, p.base_response);
    let purchase_propensity = draw_beta(rng, p.purchase_propensity);
    let activity_per_day = match Gamma::new(4.0, p.activity_per_day / 4.0) {
        Ok(g) if p.activity_per_day > 0.0 => g.sample(rng),
        _ => 0.0,
    };
    let peak = (p.peak_hour + rng.random_range(-1.0..1.0)).rem_euclid(24.0);
    let active_hours = hour_weights(peak, p.hour_spread);
    let bots_followed = uniform_u32(rng, p.bots);
    let purchases = uniform_u32(rng, p.prior_purchases);
    let joined_days = rng.random_range(f64::from(p.joined_days_ago[0])..=f64::from(p.joined_days_ago[1]) + 0.999);
    let joined_at = start - (joined_days * DAY as f64) as i64;
    let mut content_affinity = [0f32; 6];
    for (slot, base) in content_affinity.iter_mut().zip(p.content.as_array()) {
        *slot = (base + rng.random_range(-0.15..0.15)).clamp(0.0, 1.0) as f32;
    }
    let fatigue_sensitivity = p.fatigue_sensitivity * rng.random_range(0.7..1.3);
    let opt_out_base = (p.opt_out_base * rng.random_range(0.5..1.5)).min(1.0);

    // History: the part of the last 30 days the user has been around.
    let days_known = joined_days.clamp(0.0, 30.0);
    let mut activity_by_local_hour = [0u32; 24];
    for (h, count) in activity_by_local_hour.iter_mut().enumerate() {
        let mean = activity_per_day * days_known * f64::from(active_hours[h]);
        *count = match Poisson::new(mean) {
            Ok(d) if mean > 0.0 => d.sample(rng) as u32,
            _ => 0,
        };
    }
    let messages_received = (f64::from(uniform_u32(rng, p.prior_messages)) * days_known / 30.0).round() as u32;
    let responses = (0..messages_received).filter(|_| rng.random::<f64>() < base_response).count() as u32;
    let since_active_days = if activity_per_day > 0.0 {
        (-rng.random::<f64>().max(1e-12).ln() / activity_per_day).min(days_known)
    } else {
        days_known
    };
    let last_active = start - (since_active_days * DAY as f64) as i64;

    let user = SyntheticUser {
        id,
        user_type,
        time_zone,
        joined_at,
        activity_per_day,
        active_hours,
        bots_followed,
        purchases,
        purchase_propensity,
        base_response,
        content_affinity,
        fatigue_sensitivity,
        opt_out_base,
    };
    (user, ObservedHistory { activity_by_local_hour, messages_received, responses, last_active })
}

/// Generates `users` users and their groups, deterministically from `seed`.
pub fn generate(scenario: &Scenario, users: usize, seed: u64, start: i64) -> Population {
    let (synthetic, histories): (Vec<SyntheticUser>, Vec<ObservedHistory>) =
        (0..users as u64).map(|id| draw_user(scenario, seed, id, start)).unzip();
    let g = &scenario.groups;
    let group_count = (users as f64 * g.per_thousand_users / 1_000.0).round() as u64;
    let zones = scenario.zone_weights();
    let tz_weights: Vec<f64> = zones.iter().map(|z| z.1).collect();
    let groups = (0..group_count)
        .map(|gid| {
            let rng = &mut stream(seed, u64::MAX - gid, Purpose::Population);
            let size = (uniform_u32(rng, g.members) as usize).min(users);
            let mut members: Vec<u64> =
                rand::seq::index::sample(rng, users, size).into_iter().map(|i| i as u64).collect();
            members.sort_unstable();
            SyntheticGroup {
                id: gid,
                members,
                time_zone: zones[weighted(rng, &tz_weights)].0,
                activity_per_day: g.activity_per_day,
            }
        })
        .collect();
    Population { users: synthetic, histories, groups, start }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_767_225_600;

    /// Same seed, same users; user i does not depend on the population size.
    #[test]
    fn deterministic_and_size_independent() {
        let s = Scenario::default_scenario();
        let small = generate(&s, 10, 9, START);
        let large = generate(&s, 1_000, 9, START);
        assert_eq!(small.users[..], large.users[..10]);
        assert_eq!(small.histories[..], large.histories[..10]);
        assert_eq!(generate(&s, 10, 9, START).users, small.users);
        assert_ne!(generate(&s, 10, 10, START).users, small.users);
    }

    /// The type mix follows the weights (within 4 standard errors over 20,000 users).
    #[test]
    fn type_mix_follows_weights() {
        let s = Scenario::default_scenario();
        let n = 20_000;
        let pop = generate(&s, n, 3, START);
        let total: f64 = UserType::ALL.iter().map(|t| s.population.mix.get(*t)).sum();
        for t in UserType::ALL {
            let p = s.population.mix.get(t) / total;
            let seen = pop.users.iter().filter(|u| u.user_type == t).count() as f64 / n as f64;
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!((seen - p).abs() < 4.0 * se, "{t:?}: {seen} vs {p}");
        }
    }

    /// Night owls are mostly active 22:00–04:00 local; new users joined within a week.
    #[test]
    fn types_look_like_their_names() {
        let s = Scenario::default_scenario();
        let pop = generate(&s, 5_000, 4, START);
        for (u, history) in pop.users.iter().zip(&pop.histories) {
            let night: f32 = [22, 23, 0, 1, 2, 3].iter().map(|&h| u.active_hours[h]).sum();
            match u.user_type {
                UserType::NightOwl => assert!(night > 0.5, "{night}"),
                UserType::NewUser => assert!(START - u.joined_at < 7 * DAY),
                UserType::BotLover => assert!(u.bots_followed >= 3),
                UserType::PremiumPotential => assert!(u.purchases >= 1),
                _ => {}
            }
            assert!((u.active_hours.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            assert!(history.last_active <= START && u.joined_at <= START);
        }
    }

    /// Groups have members in range, sorted, without repeats.
    #[test]
    fn groups_are_well_formed() {
        let s = Scenario::default_scenario();
        let pop = generate(&s, 2_000, 5, START);
        assert_eq!(pop.groups.len(), 10);
        for g in &pop.groups {
            assert!(g.members.windows(2).all(|w| w[0] < w[1]));
            assert!((5..=40).contains(&g.members.len()));
        }
    }
}
