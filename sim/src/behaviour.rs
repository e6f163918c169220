//! The behaviour model: how a synthetic user reacts to a message (reply, purchase,
//! opt-out, and when), and when they are active unprompted. Formulas: `sim/README.md`.

use rand::RngExt;

use crate::content::ContentKind;
use crate::population::SyntheticUser;
use crate::scenario::{BehaviourParams, Scenario};

/// Opt-out probability never exceeds this, however fatigued the user.
const MAX_OPT_OUT: f64 = 0.5;

/// What a user remembers of recent messages.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UserMemory {
    /// Decayed count of messages, as of `updated`.
    load: f64,
    updated: i64,
    opted_out: bool,
}

impl UserMemory {
    /// The fatigue load at `at`: each earlier message weighs exp(−Δt/τ).
    pub fn fatigue_load(&self, at: i64, tau_secs: f64) -> f64 {
        let dt = (at - self.updated).max(0) as f64;
        self.load * (-dt / tau_secs).exp()
    }

    /// Whether the user has blocked the bot.
    pub fn opted_out(&self) -> bool {
        self.opted_out
    }

    /// Records that the user blocked the bot earlier (before the memory was created): a
    /// continued simulation's users who opted out stay out.
    pub fn mark_opted_out(&mut self) {
        self.opted_out = true;
    }
}

/// A message reaching a user.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exposure {
    /// When, unix seconds.
    pub at: i64,
    /// What it carries.
    pub content: ContentKind,
    /// Through a group post.
    pub via_group: bool,
}

/// What the user does about it; delays in seconds after the exposure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reaction {
    /// Replies after this long.
    pub response_after: Option<u32>,
    /// Buys after this long (only with a reply, and later than it).
    pub conversion_after: Option<u32>,
    /// Blocks the bot after this long.
    pub opt_out_after: Option<u32>,
}

/// The model, with its parameters.
#[derive(Clone, Debug)]
pub struct BehaviourModel {
    params: BehaviourParams,
    tau_secs: f64,
}

impl BehaviourModel {
    /// The model of `scenario`.
    pub fn new(scenario: &Scenario) -> BehaviourModel {
        let params = scenario.behaviour.clone();
        let tau_secs = params.fatigue_tau_hours * 3_600.0;
        BehaviourModel { params, tau_secs }
    }

    /// τ of the fatigue load, seconds.
    pub fn fatigue_tau_secs(&self) -> f64 {
        self.tau_secs
    }

    /// P(reply) = base × hour factor × content factor × exp(−k·load) × group factor.
    pub fn response_probability(&self, user: &SyntheticUser, memory: &UserMemory, exposure: &Exposure) -> f64 {
        let p = &self.params;
        let weights = &user.active_hours;
        let max = weights.iter().copied().fold(f32::MIN, f32::max).max(f32::EPSILON);
        let hour_fit = f64::from(weights[user.time_zone.local_hour(exposure.at)] / max);
        let hour_factor = p.hour_floor + (1.0 - p.hour_floor) * hour_fit;
        let affinity = f64::from(user.content_affinity[exposure.content.index()]);
        let content_factor = p.content_floor + (1.0 - p.content_floor) * affinity;
        let fatigue = (-user.fatigue_sensitivity * memory.fatigue_load(exposure.at, self.tau_secs)).exp();
        let group = if exposure.via_group { p.group_response_factor } else { 1.0 };
        (user.base_response * hour_factor * content_factor * fatigue * group).clamp(0.0, 1.0)
    }

    /// P(opt out) = base × group factor × exp(gain · max(0, load − tolerance)), at most 0.5.
    pub fn opt_out_probability(&self, user: &SyntheticUser, memory: &UserMemory, exposure: &Exposure) -> f64 {
        let p = &self.params;
        let load = memory.fatigue_load(exposure.at, self.tau_secs);
        let group = if exposure.via_group { p.group_opt_out_factor } else { 1.0 };
        let excess = (load - p.opt_out_tolerance).max(0.0);
        (user.opt_out_base * group * (p.opt_out_fatigue_gain * excess).exp()).clamp(0.0, MAX_OPT_OUT)
    }

    /// Draws the reaction from the user's own stream (always five draws, so that streams
    /// stay aligned across strategies), then adds the exposure to the fatigue load.
    pub fn react<R: rand::Rng + ?Sized>(
        &self,
        user: &SyntheticUser,
        memory: &mut UserMemory,
        rng: &mut R,
        exposure: Exposure,
    ) -> Reaction {
        if memory.opted_out {
            return Reaction::default();
        }
        let p = &self.params;
        let draws: [f64; 5] = [rng.random(), rng.random(), rng.random(), rng.random(), rng.random()];
        let p_opt = self.opt_out_probability(user, memory, &exposure);
        let p_resp = self.response_probability(user, memory, &exposure);
        memory.load = memory.fatigue_load(exposure.at, self.tau_secs) + 1.0;
        memory.updated = exposure.at;

        if draws[0] < p_opt {
            memory.opted_out = true;
            let after = 30.0 + draws[1] * p.opt_out_delay_max_minutes * 60.0;
            return Reaction { opt_out_after: Some(after as u32), ..Reaction::default() };
        }
        if draws[1] >= p_resp {
            return Reaction::default();
        }
        // Log-normal delay from a standard normal by Box–Muller over two uniforms.
        let z = (-2.0 * draws[3].max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * draws[4]).cos();
        let delay =
            (p.response_delay_median_minutes * 60.0 * (p.response_delay_sigma * z).exp()).clamp(30.0, 2.0 * 86_400.0);
        let response_after = delay as u32;
        let conversion_after = (draws[2] < user.purchase_propensity).then(|| {
            // Given a purchase, draws[2] / propensity is again uniform on (0, 1): an exponential delay.
            let u = (draws[2] / user.purchase_propensity).clamp(1e-9, 1.0);
            response_after + 60 + (-u.ln() * p.conversion_delay_mean_minutes * 60.0) as u32
        });
        Reaction { response_after: Some(response_after), conversion_after, opt_out_after: None }
    }

    /// The next spontaneous session strictly after `after` and within `horizon` seconds:
    /// an inhomogeneous Poisson process whose intensity in local hour `h` is
    /// `activity_per_day · 24 · active_hours[h]` per day. Exact inversion: one exponential
    /// draw `E`, whole days skipped at `activity_per_day` each, then hour by hour.
    pub fn next_activity<R: rand::Rng + ?Sized>(
        &self,
        user: &SyntheticUser,
        rng: &mut R,
        after: i64,
        horizon: i64,
    ) -> Option<i64> {
        if user.activity_per_day <= 0.0 || horizon <= 0 {
            return None;
        }
        let u: f64 = rng.random();
        // Expected sessions to pass before the next one: E ~ Exp(1), in units of days' mass.
        let mut mass = -(1.0 - u).ln() / user.activity_per_day;
        let whole_days = mass.floor();
        mass -= whole_days;
        if whole_days * 86_400.0 > horizon as f64 {
            return None;
        }
        let mut t = after + whole_days as i64 * 86_400;
        // Walk the hours from `t`: each full hour holds `active_hours[h]` of a day's mass.
        // Local hours as the user's zone has them (an hour cut short by a DST change ends at
        // the change).
        for _ in 0..25 {
            let h = user.time_zone.local_hour(t);
            let hour_end = user.time_zone.hour_end(t);
            let w = f64::from(user.active_hours[h]);
            let span = (hour_end - t) as f64 / 3_600.0;
            if mass <= w * span {
                let secs = if w > 0.0 { mass / w * 3_600.0 } else { 0.0 };
                t += secs.ceil().max(1.0) as i64;
                break;
            }
            mass -= w * span;
            t = hour_end;
        }
        (t - after <= horizon).then_some(t.max(after + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::{UserType, generate};
    use crate::rng::{Purpose, stream};

    const START: i64 = 1_767_225_600;

    fn setup() -> (BehaviourModel, SyntheticUser) {
        let s = Scenario::default_scenario();
        let pop = generate(&s, 200, 1, START);
        let user = pop.users.into_iter().find(|u| u.user_type == UserType::HotLead).unwrap();
        (BehaviourModel::new(&s), user)
    }

    fn peak_hour_at(user: &SyntheticUser, best: bool) -> i64 {
        let idx = |h: usize| user.active_hours[h];
        let h =
            (0..24).max_by(|&a, &b| if best { idx(a).total_cmp(&idx(b)) } else { idx(b).total_cmp(&idx(a)) }).unwrap();
        START + (h as i64) * 3_600 - i64::from(user.time_zone.offset_minutes_at(START)) * 60 + 600
    }

    /// Fatigue lowers, the peak hour raises, a group post lowers the chance of a reply.
    #[test]
    fn response_probability_moves_the_right_way() {
        let (m, u) = setup();
        let at = peak_hour_at(&u, true).rem_euclid(86_400) + START - START.rem_euclid(86_400) + 86_400;
        let fresh = UserMemory::default();
        let e = Exposure { at, content: ContentKind::Offer, via_group: false };
        let p = m.response_probability(&u, &fresh, &e);
        let tired = UserMemory { load: 3.0, updated: at, opted_out: false };
        assert!(m.response_probability(&u, &tired, &e) < p);
        let trough = Exposure { at: peak_hour_at(&u, false) + 86_400, ..e };
        assert!(m.response_probability(&u, &fresh, &trough) < p);
        assert!(m.response_probability(&u, &fresh, &Exposure { via_group: true, ..e }) < p);
        assert!(
            m.opt_out_probability(&u, &UserMemory { load: 5.0, updated: at, opted_out: false }, &e)
                > m.opt_out_probability(&u, &fresh, &e)
        );
    }

    /// Reactions are consistent: conversion implies a later response; opted-out users are silent.
    #[test]
    fn reactions_are_consistent() {
        let (m, u) = setup();
        let mut rng = stream(1, u.id, Purpose::Behaviour);
        let mut memory = UserMemory::default();
        let mut replies = 0;
        for i in 0..2_000 {
            let e = Exposure { at: START + i * 86_400, content: ContentKind::Offer, via_group: false };
            let r = m.react(&u, &mut memory, &mut rng, e);
            if let Some(c) = r.conversion_after {
                assert!(c > r.response_after.unwrap());
            }
            replies += usize::from(r.response_after.is_some());
            if r.opt_out_after.is_some() {
                assert!(memory.opted_out());
                assert_eq!(m.react(&u, &mut memory, &mut rng, e), Reaction::default());
                break;
            }
        }
        assert!(replies > 0);
    }

    /// Activity comes strictly later, within the horizon, at about the configured rate.
    #[test]
    fn activity_rate_matches() {
        let (m, u) = setup();
        let mut rng = stream(1, u.id, Purpose::Activity);
        let days = 2_000;
        let mut t = START;
        let mut n = 0;
        while let Some(next) = m.next_activity(&u, &mut rng, t, START + days * 86_400 - t) {
            assert!(next > t);
            t = next;
            n += 1;
        }
        let rate = n as f64 / days as f64;
        assert!(
            (rate - u.activity_per_day).abs() < 0.1 * u.activity_per_day + 0.05,
            "{rate} vs {}",
            u.activity_per_day
        );
        assert_eq!(m.next_activity(&u, &mut rng, START, 0), None);
    }
}
