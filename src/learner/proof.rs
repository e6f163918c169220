//! Simulate before deploy: a proposal for one segment's strategy is run as a **paired A/B
//! experiment** — the strategy in force (A) against the proposal (B) — on a synthetic
//! population of that segment calibrated to what the segment's real sends produced, and
//! it may be applied only if it wins.
//!
//! The synthetic users are built for the check: user *i*'s response propensity at local
//! hour *h* follows the segment's observed (shrunken) response rate at *h*, scaled by a
//! log-normal per-user factor; the fatigue and opt-out mechanics are `gavat-sim`'s
//! behaviour model. One calibration run under A rescales the response and opt-out bases so
//! that the simulated rates per send equal the observed ones. Both arms then run the
//! engine's own send rule ([`plan_next_send`]) over the same users with the same random
//! streams (common random numbers), so the comparison is paired user by user.
//!
//! A proposal that loosens a cap or moves the send hours wins if the paired difference in
//! responses per user has a one-sided (1 − α) lower bound above zero and the simulated
//! opt-out rate per send does not rise by more than the guardrail. A proposal that only
//! tightens (a guardrail action against opt-outs) wins if the paired difference in users
//! opted out has a one-sided upper bound below zero. Formulas: `docs/learner.md`.

use rand::RngExt;
use rand_distr::Beta;
use serde::Serialize;

use gavat_experiments::stats::{MeanSummary, mean_interval};
use gavat_sim::{
    BehaviourModel, ContentKind, Exposure, Purpose, Scenario, SyntheticUser, UserMemory, UserType, stream,
};

use crate::domain::{Caps, DAY, DeliveryStrategy, HOUR, Timestamp, UtcOffset};
use crate::policy::{CapState, plan_next_send};

use super::policy::Counts;
use super::settings::{GuardrailSettings, ProofSettings};

/// Prior weight (in sends) pulling an hour's response rate toward the segment's.
const HOUR_PRIOR_SENDS: f64 = 50.0;

/// What the proposal is for, which fixes its primary metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Loosening or re-timing: more responses per user.
    MoreResponses,
    /// Tightening: fewer users opting out.
    FewerOptOuts,
}

/// What the segment's real sends produced: the calibration targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    /// Sends per local hour.
    pub sent_by_hour: [u64; 24],
    /// Responses per local hour of the send answered.
    pub responses_by_hour: [u64; 24],
    /// The segment's totals so far.
    pub totals: Counts,
}

/// One arm's simulated outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ArmOutcome {
    /// Messages sent.
    pub sends: u64,
    /// Replies.
    pub responses: u64,
    /// Users who opted out.
    pub opted_out: u64,
}

impl ArmOutcome {
    fn opt_out_rate(&self) -> f64 {
        if self.sends == 0 { 0.0 } else { self.opted_out as f64 / self.sends as f64 }
    }

    fn response_rate(&self) -> f64 {
        if self.sends == 0 { 0.0 } else { self.responses as f64 / self.sends as f64 }
    }
}

/// The verdict of one proof, kept in the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proof {
    /// Synthetic users (each in both arms).
    pub users: u32,
    /// Simulated days per arm.
    pub days: u32,
    /// The primary metric's direction.
    pub goal: Goal,
    /// The strategy in force.
    pub current: ArmOutcome,
    /// The proposal.
    pub proposed: ArmOutcome,
    /// Paired difference (proposed − current) of the primary metric per user: responses,
    /// or opted-out users (0/1).
    pub difference: f64,
    /// Its one-sided (1 − α) bound: the lower bound for more responses, the upper for
    /// fewer opt-outs.
    pub bound: f64,
    /// Applied only if true.
    pub won: bool,
    /// One line saying why.
    pub verdict: String,
}

impl Proof {
    /// One line for logs and the audit trail.
    pub fn describe(&self) -> String {
        format!(
            "simulated {} users × {} days, paired: current {} sends, response {:.1}%, {} opted out; \
             proposed {} sends, response {:.1}%, {} opted out; {}",
            self.users,
            self.days,
            self.current.sends,
            100.0 * self.current.response_rate(),
            self.current.opted_out,
            self.proposed.sends,
            100.0 * self.proposed.response_rate(),
            self.proposed.opted_out,
            self.verdict
        )
    }
}

/// The synthetic segment: users and the behaviour model they react with.
struct Population {
    users: Vec<SyntheticUser>,
    model: BehaviourModel,
}

/// Per-user outcome of one arm.
#[derive(Clone, Copy, Default)]
struct UserOutcome {
    sends: u32,
    responses: u32,
    opted_out: bool,
}

/// Runs the proof of `proposed` against `current` from `start`; `seed` fixes every draw.
#[allow(clippy::too_many_arguments)]
pub fn prove(
    current: &DeliveryStrategy,
    proposed: &DeliveryStrategy,
    goal: Goal,
    observed: &Observed,
    settings: &ProofSettings,
    guardrails: &GuardrailSettings,
    start: Timestamp,
    seed: u64,
) -> Proof {
    let prior = HourPrior::of(observed);
    let mut population = synthetic_segment(&prior.mean_profile(), settings, seed);
    let end = start.plus(i64::from(settings.days) * DAY);
    calibrate(&mut population, current, observed, start, end, seed);
    assign_worlds(&mut population, &prior, settings.worlds, seed);
    let a = run_users(&population, current, start, end, seed);
    let b = run_users(&population, proposed, start, end, seed);
    judge(goal, &a, &b, settings, guardrails)
}

/// The segment's response rate per local hour: Beta(m·p̄ + r_h, m·(1 − p̄) + s_h − r_h),
/// a posterior shrunk toward the segment's mean p̄ with the weight of m sends.
struct HourPrior {
    alpha: [f64; 24],
    beta: [f64; 24],
}

impl HourPrior {
    fn of(observed: &Observed) -> HourPrior {
        let sent: u64 = observed.sent_by_hour.iter().sum();
        let answered: u64 = observed.responses_by_hour.iter().sum();
        let mean = (answered.min(sent) as f64 + 1.0) / (sent as f64 + 2.0);
        let mut prior = HourPrior { alpha: [0.0; 24], beta: [0.0; 24] };
        for h in 0..24 {
            let s = observed.sent_by_hour[h] as f64;
            let r = observed.responses_by_hour[h].min(observed.sent_by_hour[h]) as f64;
            prior.alpha[h] = HOUR_PRIOR_SENDS * mean + r;
            prior.beta[h] = HOUR_PRIOR_SENDS * (1.0 - mean) + s - r;
        }
        prior
    }

    fn mean_profile(&self) -> [f32; 24] {
        std::array::from_fn(|h| (self.alpha[h] / (self.alpha[h] + self.beta[h])) as f32)
    }

    /// One plausible profile given the data.
    fn draw(&self, rng: &mut impl rand::Rng) -> [f32; 24] {
        std::array::from_fn(|h| match Beta::new(self.alpha[h], self.beta[h]) {
            Ok(beta) => rng.sample(beta) as f32,
            Err(_) => (self.alpha[h] / (self.alpha[h] + self.beta[h])) as f32,
        })
    }
}

/// Splits the users over `worlds` hour profiles drawn from the posterior, so that the
/// verdict carries the uncertainty of the estimates and not only the simulation's noise.
/// A user's calibrated propensity keeps its ratio to the profile's best hour.
fn assign_worlds(population: &mut Population, prior: &HourPrior, worlds: u32, seed: u64) {
    let mut rng = stream(seed, u64::MAX, Purpose::Population);
    let profiles: Vec<[f32; 24]> = (0..worlds.max(1)).map(|_| prior.draw(&mut rng)).collect();
    let peak = |p: &[f32; 24]| f64::from(p.iter().copied().fold(f32::EPSILON, f32::max));
    for u in &mut population.users {
        let world = &profiles[(u.id % profiles.len() as u64) as usize];
        u.base_response *= peak(world) / peak(&u.active_hours);
        u.active_hours = *world;
    }
}

/// The users: the hour profile given, propensities log-normal around 1.
fn synthetic_segment(profile: &[f32; 24], settings: &ProofSettings, seed: u64) -> Population {
    let max = profile.iter().copied().fold(f32::EPSILON, f32::max);
    let sigma = settings.heterogeneity;
    let mut scenario = Scenario::default_scenario();
    // The hour profile carries the whole hour effect; content is neutral in the check.
    scenario.behaviour.hour_floor = 0.0;
    scenario.behaviour.content_floor = 1.0;
    let users = (0..u64::from(settings.users))
        .map(|id| {
            let mut rng = stream(seed, id, Purpose::Population);
            // Standard normal by Box–Muller; the factor exp(σz − σ²/2) has mean 1.
            let (u1, u2): (f64, f64) = (rng.random(), rng.random());
            let z = (-2.0 * u1.max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let factor = (sigma * z - sigma * sigma / 2.0).exp();
            SyntheticUser {
                id,
                user_type: UserType::WarmLead,
                utc_offset_minutes: 0,
                joined_at: 0,
                activity_per_day: 0.0,
                active_hours: *profile,
                bots_followed: 1,
                purchases: 0,
                purchase_propensity: 0.0,
                // Scaled by the calibration; `factor` is kept relative to it.
                base_response: f64::from(max) * factor,
                content_affinity: [1.0; 6],
                fatigue_sensitivity: settings.fatigue_sensitivity,
                opt_out_base: factor.min(4.0),
            }
        })
        .collect();
    Population { users, model: BehaviourModel::new(&scenario) }
}

/// Rescales the response and opt-out bases so that a run under `current` reproduces the
/// observed rates per send (one multiplicative correction for each).
fn calibrate(
    population: &mut Population,
    current: &DeliveryStrategy,
    observed: &Observed,
    start: Timestamp,
    end: Timestamp,
    seed: u64,
) {
    // The response rate from whichever record holds more sends (the hour table is
    // cumulative, the totals may be younger); opt-outs only the totals know.
    let totals = observed.totals;
    let table_sent: u64 = observed.sent_by_hour.iter().sum();
    let (sent, responses) = if table_sent >= totals.sent {
        (table_sent, observed.responses_by_hour.iter().sum::<u64>().min(table_sent))
    } else {
        (totals.sent, totals.responses)
    };
    let target_response = (responses as f64 + 0.5) / (sent as f64 + 1.0);
    let target_opt_out = (totals.opt_outs as f64 + 0.5) / (sent.max(totals.sent) as f64 + 1.0);
    // Opt-out bases start at the target; the pilot run tells how far fatigue moves them.
    for u in &mut population.users {
        u.opt_out_base *= target_opt_out;
    }
    let pilot = sum(&run_users(population, current, start, end, seed ^ 0x70_696c_6f74));
    let response_scale = if pilot.responses == 0 { 1.0 } else { target_response / pilot.response_rate() };
    let opt_out_scale = if pilot.opted_out == 0 { 1.0 } else { target_opt_out / pilot.opt_out_rate() };
    for u in &mut population.users {
        u.base_response *= response_scale;
        u.opt_out_base *= opt_out_scale;
    }
}

fn sum(outcomes: &[UserOutcome]) -> ArmOutcome {
    outcomes.iter().fold(ArmOutcome::default(), |mut a, o| {
        a.sends += u64::from(o.sends);
        a.responses += u64::from(o.responses);
        a.opted_out += u64::from(o.opted_out);
        a
    })
}

/// Every user through `strategy`, with the engine's send rule and the user's own streams.
fn run_users(
    population: &Population,
    strategy: &DeliveryStrategy,
    start: Timestamp,
    end: Timestamp,
    seed: u64,
) -> Vec<UserOutcome> {
    let caps = Caps {
        daily_limit: strategy.daily_limit,
        cooldown_secs: strategy.cooldown_secs,
        allowed_hours: strategy.allowed_hours,
        period_days: strategy.frequency.period_days(),
    };
    let content = strategy.content.first().copied().unwrap_or(ContentKind::Offer);
    let offset = UtcOffset(0);
    population
        .users
        .iter()
        .map(|user| {
            let mut behaviour = stream(seed, user.id, Purpose::Behaviour);
            let mut engine = stream(seed, user.id, Purpose::Engine);
            let mut memory = UserMemory::default();
            let mut state = CapState::default();
            let mut out = UserOutcome::default();
            let mut now = start;
            loop {
                let jitter = engine.random_range(0..HOUR);
                let Some(at) = plan_next_send(&state, &caps, strategy.optimal_hours, offset, now, jitter) else {
                    break;
                };
                if at >= end {
                    break;
                }
                let exposure = Exposure { at: at.secs(), content, via_group: false };
                let reaction = population.model.react(user, &mut memory, &mut behaviour, exposure);
                out.sends += 1;
                state.record_send(at, offset);
                if reaction.response_after.is_some() {
                    out.responses += 1;
                }
                if reaction.opt_out_after.is_some() {
                    out.opted_out = true;
                    break;
                }
                now = at.plus(1);
            }
            out
        })
        .collect()
}

/// The verdict: the paired difference of the primary metric and the guardrail.
fn judge(goal: Goal, a: &[UserOutcome], b: &[UserOutcome], settings: &ProofSettings, g: &GuardrailSettings) -> Proof {
    let metric = |o: &UserOutcome| match goal {
        Goal::MoreResponses => f64::from(o.responses),
        Goal::FewerOptOuts => f64::from(u8::from(o.opted_out)),
    };
    // The paired differences, averaged within each world: the worlds are the replicates.
    let worlds = settings.worlds.max(1) as usize;
    let mut sums = vec![(0.0, 0u32); worlds];
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let w = &mut sums[i % worlds];
        w.0 += metric(y) - metric(x);
        w.1 += 1;
    }
    let world_means: Vec<f64> = sums.iter().filter(|w| w.1 > 0).map(|w| w.0 / f64::from(w.1)).collect();
    let summary = MeanSummary::of(&world_means);
    // A two-sided 1 − 2α interval has the one-sided 1 − α bounds at its ends.
    let interval = mean_interval(&summary, 2.0 * g.alpha).ok();
    let (current, proposed) = (sum(a), sum(b));
    let opt_out_rise = proposed.opt_out_rate() - current.opt_out_rate();
    let (bound, won, verdict) = match (goal, interval) {
        (_, None) => (f64::NAN, false, "rejected: too few users to compare".to_string()),
        (Goal::MoreResponses, Some(i)) => {
            let per_user = format!("responses per user {:+.3} (lower bound {:+.3})", summary.mean, i.low);
            if opt_out_rise > g.max_opt_out_increase {
                let why = format!(
                    "opt-out rate per send +{:.2} points > guardrail {:.2}",
                    100.0 * opt_out_rise,
                    100.0 * g.max_opt_out_increase
                );
                (i.low, false, format!("lost: {per_user}, but {why}"))
            } else if i.low > 0.0 {
                (i.low, true, format!("won: {per_user}"))
            } else {
                (i.low, false, format!("lost: {per_user} is not above zero"))
            }
        }
        (Goal::FewerOptOuts, Some(i)) => {
            let per_user = format!("opted-out users per user {:+.4} (upper bound {:+.4})", summary.mean, i.high);
            if i.high < 0.0 {
                (i.high, true, format!("won: {per_user}"))
            } else {
                (i.high, false, format!("lost: {per_user} is not below zero"))
            }
        }
    };
    Proof {
        users: settings.users,
        days: settings.days,
        goal,
        current,
        proposed,
        difference: summary.mean,
        bound,
        won,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StrategyBook;
    use crate::domain::{HourMask, Segment};
    use crate::learner::LearnerSettings;

    const START: Timestamp = Timestamp(1_767_225_600);

    /// ENGAGED, allowed 9–21, answering 25% at 19–21 and 5% elsewhere.
    fn observed() -> Observed {
        let mut o = Observed { sent_by_hour: [0; 24], responses_by_hour: [0; 24], totals: Counts::default() };
        for h in 9..21 {
            o.sent_by_hour[h] = 400;
            o.responses_by_hour[h] = if h >= 18 { 100 } else { 20 };
        }
        let sent = o.sent_by_hour.iter().sum();
        let responses = o.responses_by_hour.iter().sum();
        o.totals = Counts { sent, responses, opt_outs: sent / 500 };
        o
    }

    fn run(current: &DeliveryStrategy, proposed: &DeliveryStrategy, goal: Goal, seed: u64) -> Proof {
        let s = LearnerSettings::defaults();
        prove(current, proposed, goal, &observed(), &s.proof, &s.guardrails, START, seed)
    }

    fn engaged() -> DeliveryStrategy {
        StrategyBook::defaults().get(Segment::Engaged).clone()
    }

    /// Moving the window to the hours that answer wins; moving it away loses.
    #[test]
    fn the_better_hours_win_and_the_worse_lose() {
        let mut bad = engaged();
        bad.optimal_hours = HourMask::window(9, 12);
        let mut good = engaged();
        good.optimal_hours = HourMask::window(18, 21);
        let p = run(&bad, &good, Goal::MoreResponses, 7);
        assert!(p.won, "{}", p.describe());
        let p = run(&good, &bad, Goal::MoreResponses, 7);
        assert!(!p.won, "{}", p.describe());
        assert!(p.bound < 0.0, "{}", p.describe());
    }

    /// A proposal identical to the strategy in force never wins: the paired difference is 0.
    #[test]
    fn no_change_no_win() {
        let p = run(&engaged(), &engaged(), Goal::MoreResponses, 3);
        assert!(!p.won);
        assert_eq!(p.difference, 0.0);
        assert_eq!(p.current, p.proposed);
    }

    /// The calibration reproduces the observed response rate under the strategy in force.
    #[test]
    fn calibration_matches_the_observed_rate() {
        let p = run(&engaged(), &engaged(), Goal::MoreResponses, 11);
        let o = observed().totals;
        let target = o.responses as f64 / o.sent as f64;
        let simulated = p.current.response_rate();
        assert!((simulated - target).abs() < 0.25 * target, "simulated {simulated} vs observed {target}");
    }

    /// Tightening wins on opt-outs when the segment opts out a lot, and the same seed gives
    /// the same verdict.
    #[test]
    fn tightening_wins_against_heavy_opt_outs_and_is_deterministic() {
        let mut o = observed();
        o.totals.opt_outs = o.totals.sent / 50; // 2% per send
        let s = LearnerSettings::defaults();
        let loose = engaged();
        let mut tight = engaged();
        tight.daily_limit = 1;
        let p = prove(&loose, &tight, Goal::FewerOptOuts, &o, &s.proof, &s.guardrails, START, 5);
        assert!(p.won, "{}", p.describe());
        let q = prove(&loose, &tight, Goal::FewerOptOuts, &o, &s.proof, &s.guardrails, START, 5);
        assert_eq!(p, q);
    }
}
