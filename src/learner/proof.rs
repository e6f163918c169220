//! Simulate before deploy: a proposal for one segment's strategy is run as a **paired A/B
//! experiment** — the strategy in force (A) against the proposal (B) — on a synthetic
//! population of that segment calibrated to what the segment's real sends produced, and
//! it may be applied only if it wins.
//!
//! The synthetic users are built for the check from what the CRM observes. User *i* takes
//! the activity profile (sessions by local hour) of a real user whose messages the segment's
//! strategy governs, and answers
//! at hour *h* in proportion to floor + (1 − floor)·activity(h)/max activity, times a
//! log-normal propensity; fatigue and opt-outs follow `gavat-sim`'s behaviour model. A
//! pilot run under A rescales the response and opt-out bases so that the simulated rates
//! per send equal the observed ones. The users are split over `worlds`, each with per-hour
//! corrections drawn from the posterior of the observed response rate at that hour
//! relative to the pilot's, so that the verdict carries what the outcomes say hour by hour
//! and how uncertain it is. Both arms then run the engine's own send rule
//! ([`plan_next_send`]) over the same users with the same random streams (common random
//! numbers), so the comparison is paired user by user.
//!
//! A proposal that loosens a cap or moves the send hours wins if the paired difference in
//! responses per user has a one-sided (1 − α) lower bound above a margin (`min_gain` of
//! the current responses per user) and neither the simulated opt-out rate per send nor
//! the share of users opting out rises by more than the guardrail. A proposal that only
//! tightens (a guardrail action against opt-outs) wins if the paired difference in users
//! opted out has a one-sided upper bound below zero. Formulas: `docs/learner.md`.

use rand::RngExt;
use rand_distr::Beta;
use serde::Serialize;

use gavat_experiments::stats::{MeanSummary, mean_interval};
use gavat_sim::{BehaviourModel, Exposure, Purpose, Scenario, SyntheticUser, UserMemory, UserType, stream};

use crate::domain::{Caps, ContentKind, DAY, DeliveryStrategy, HOUR, Segment, Timestamp, Zone};
use crate::policy::{CapState, plan_next_send};

use super::counts::Counts;
use super::settings::{GuardrailSettings, ProofSettings};

/// Prior weight (in sends) of the model's rate at an hour against the observed one.
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

/// A proposed change of one segment's strategy, from the statistics or an adviser.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// `statistics` or `llm`.
    pub source: &'static str,
    /// The field it changes: `send_hours`, `daily_limit` or `cooldown_hours`.
    pub field: &'static str,
    /// What it is for (its primary metric in the simulation).
    pub goal: Goal,
    /// The whole strategy proposed.
    pub proposed: DeliveryStrategy,
    /// Why it was proposed.
    pub evidence: String,
}

/// What the CRM knows of the segment: its users' activity profiles and what its real sends
/// produced (the calibration targets).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed<'a> {
    /// Sends per local hour.
    pub sent_by_hour: [u64; 24],
    /// Responses per local hour of the send answered.
    pub responses_by_hour: [u64; 24],
    /// The segment's totals so far.
    pub totals: Counts,
    /// Activity profiles of users of the segment (sessions by local hour, any scale); empty:
    /// every hour alike.
    pub activity: &'a [[f32; 24]],
}

/// Activity profiles per segment: what the proof's synthetic users are drawn from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActivityProfiles {
    by_segment: [Vec<[f32; 24]>; 8],
}

impl ActivityProfiles {
    /// At most `per_segment` profiles of each segment's users, in the order given.
    pub fn collect<'a>(
        users: impl IntoIterator<Item = (&'a [u16; 24], Vec<Segment>)>,
        per_segment: usize,
    ) -> ActivityProfiles {
        let mut profiles = ActivityProfiles::default();
        for (hours, segments) in users {
            if hours.iter().all(|&n| n == 0) {
                continue;
            }
            let profile: [f32; 24] = std::array::from_fn(|h| f32::from(hours[h]));
            for segment in segments {
                let list = &mut profiles.by_segment[segment.index()];
                if list.len() < per_segment {
                    list.push(profile);
                }
            }
        }
        profiles
    }

    /// The profiles of `segment`'s users.
    pub fn of(&self, segment: Segment) -> &[[f32; 24]] {
        &self.by_segment[segment.index()]
    }
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
    observed: &Observed<'_>,
    settings: &ProofSettings,
    guardrails: &GuardrailSettings,
    start: Timestamp,
    seed: u64,
) -> Proof {
    let mut population = synthetic_segment(observed.activity, settings, seed);
    let end = start.plus(i64::from(settings.days) * DAY);
    let kappa = calibrate(&mut population, current, observed, start, end, seed);
    assign_worlds(&mut population, observed, kappa, settings.worlds, seed);
    let (a, _) = run_users(&population, current, start, end, seed);
    let (b, _) = run_users(&population, proposed, start, end, seed);
    judge(goal, &a, &b, settings, guardrails)
}

/// What a simulated run says about the model's rates.
#[derive(Clone, Copy, Debug, Default)]
struct PilotRates {
    /// Responses per send in the run.
    responses: u64,
    /// Σ over sends of the unfatigued response probability.
    unfatigued: f64,
}

/// Splits the users over `worlds`; in each, hour *h*'s response propensity is multiplied
/// by ρ_h = (θ_h·s_h + π_h·m) / (π_h·(s_h + m)), with θ_h ~ Beta(1 + r_h, 1 + s_h − r_h)
/// the observed rate at *h* (s_h sends, r_h answered), π_h the model's rate at *h* (the
/// users' mean unfatigued propensity at *h* times the pilot's fatigue damping κ) and m the
/// prior weight in sends: the outcomes correct the activity model hour by hour, more the
/// more sends they rest on. Hours without sends keep ρ = 1.
fn assign_worlds(population: &mut Population, observed: &Observed<'_>, kappa: f64, worlds: u32, seed: u64) {
    let n = population.users.len().max(1) as f64;
    let model_rate: [f64; 24] = std::array::from_fn(|h| {
        let sum: f64 = population.users.iter().map(|u| u.base_response * unfatigued_fit(u, h)).sum();
        (kappa * sum / n).clamp(1e-6, 1.0)
    });
    let mut rng = stream(seed, u64::MAX, Purpose::Population);
    let corrections: Vec<[f32; 24]> = (0..worlds.max(1))
        .map(|_| {
            std::array::from_fn(|h| {
                let (s, r) = (observed.sent_by_hour[h], observed.responses_by_hour[h].min(observed.sent_by_hour[h]));
                if s == 0 {
                    return 1.0;
                }
                let pi = model_rate[h];
                let theta = match Beta::new(1.0 + r as f64, 1.0 + (s - r) as f64) {
                    Ok(beta) => rng.sample(beta),
                    Err(_) => pi,
                };
                ((theta * s as f64 + pi * HOUR_PRIOR_SENDS) / (pi * (s as f64 + HOUR_PRIOR_SENDS))) as f32
            })
        })
        .collect();
    let peak = |p: &[f32; 24]| f64::from(p.iter().copied().fold(f32::EPSILON, f32::max));
    for u in &mut population.users {
        let rho = &corrections[(u.id % corrections.len() as u64) as usize];
        let before = peak(&u.active_hours);
        u.active_hours = std::array::from_fn(|h| u.active_hours[h] * rho[h]);
        // The model divides by the profile's peak: keep the absolute propensities.
        u.base_response *= peak(&u.active_hours) / before;
    }
}

/// The user's hour factor at `h` as the behaviour model computes it (hour floor 0): the
/// profile over its peak.
fn unfatigued_fit(u: &SyntheticUser, h: usize) -> f64 {
    let peak = u.active_hours.iter().copied().fold(f32::EPSILON, f32::max);
    f64::from(u.active_hours[h] / peak)
}

/// The users: user *i* takes an activity profile drawn at random, as the hour factor
/// floor + (1 − floor)·a(h)/max a, and a log-normal propensity factor with mean 1.
fn synthetic_segment(activity: &[[f32; 24]], settings: &ProofSettings, seed: u64) -> Population {
    let sigma = settings.heterogeneity;
    let floor = settings.hour_floor as f32;
    let mut scenario = Scenario::default_scenario();
    // The hour factor is built here; content is neutral in the check.
    scenario.behaviour.hour_floor = 0.0;
    scenario.behaviour.content_floor = 1.0;
    let flat = [1.0f32; 24];
    let users = (0..u64::from(settings.users))
        .map(|id| {
            let mut rng = stream(seed, id, Purpose::Population);
            // A profile drawn at random, so that every world gets a mix of them.
            let a = if activity.is_empty() { &flat } else { &activity[rng.random_range(0..activity.len())] };
            let max = a.iter().copied().fold(f32::EPSILON, f32::max);
            let profile: [f32; 24] = std::array::from_fn(|h| floor + (1.0 - floor) * a[h] / max);
            // Standard normal by Box–Muller; the factor exp(σz − σ²/2) has mean 1.
            let (u1, u2): (f64, f64) = (rng.random(), rng.random());
            let z = (-2.0 * u1.max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let factor = (sigma * z - sigma * sigma / 2.0).exp();
            SyntheticUser {
                id,
                user_type: UserType::WarmLead,
                time_zone: gavat_sim::TimeZone::Offset(0),
                joined_at: 0,
                activity_per_day: 0.0,
                active_hours: profile,
                bots_followed: 1,
                purchases: 0,
                purchase_propensity: 0.0,
                // The profile peaks at 1: this is the propensity at the best hour, before
                // the calibration scales it.
                base_response: factor,
                content_affinity: [1.0; 6],
                fatigue_sensitivity: settings.fatigue_sensitivity,
                opt_out_base: factor.min(4.0),
            }
        })
        .collect();
    Population { users, model: BehaviourModel::new(&scenario) }
}

/// Rescales the response and opt-out bases so that a run under `current` reproduces the
/// observed rates per send (one multiplicative correction for each); returns the pilot's
/// fatigue damping κ (responses over the unfatigued expectation of its sends).
fn calibrate(
    population: &mut Population,
    current: &DeliveryStrategy,
    observed: &Observed<'_>,
    start: Timestamp,
    end: Timestamp,
    seed: u64,
) -> f64 {
    // The response rate from whichever record holds more sends (both count the same sends
    // in an engine run; a caller may hand in a table alone); opt-outs only the totals know.
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
    // A first guess of the scale: the target over the mean propensity.
    for u in &mut population.users {
        u.base_response *= target_response;
    }
    let (outcomes, rates) = run_users(population, current, start, end, seed ^ 0x70_696c_6f74);
    let pilot = sum(&outcomes);
    let response_scale = if pilot.responses == 0 { 1.0 } else { target_response / pilot.response_rate() };
    let opt_out_scale = if pilot.opted_out == 0 { 1.0 } else { target_opt_out / pilot.opt_out_rate() };
    for u in &mut population.users {
        u.base_response *= response_scale;
        u.opt_out_base *= opt_out_scale;
    }
    if rates.unfatigued > 0.0 && rates.responses > 0 { rates.responses as f64 / rates.unfatigued } else { 1.0 }
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
) -> (Vec<UserOutcome>, PilotRates) {
    let caps = Caps {
        daily_limit: strategy.daily_limit,
        cooldown_secs: strategy.cooldown_secs,
        allowed_hours: strategy.allowed_hours,
        period_days: strategy.frequency.period_days(),
    };
    let content = strategy.content.first().copied().unwrap_or(ContentKind::Offer);
    let zone = Zone::UTC;
    let mut rates = PilotRates::default();
    let outcomes = population
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
                let Some(at) = plan_next_send(&state, &caps, strategy.optimal_hours, zone, now, jitter) else {
                    break;
                };
                if at >= end {
                    break;
                }
                let exposure = Exposure { at: at.secs(), content: content.into(), via_group: false };
                let reaction = population.model.react(user, &mut memory, &mut behaviour, exposure);
                let h = usize::from(at.local_hour(zone));
                out.sends += 1;
                rates.unfatigued += user.base_response * unfatigued_fit(user, h);
                state.record_send(at, zone);
                if reaction.response_after.is_some() {
                    out.responses += 1;
                    rates.responses += 1;
                }
                if reaction.opt_out_after.is_some() {
                    out.opted_out = true;
                    break;
                }
                now = at.plus(1);
            }
            out
        })
        .collect();
    (outcomes, rates)
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
    let users = a.len().max(1) as f64;
    let opted_out_share_rise = (proposed.opted_out as f64 - current.opted_out as f64) / users;
    // A win must clear a margin: `min_gain` of the current responses per user.
    let margin = settings.min_gain * current.responses as f64 / users;
    let (bound, won, verdict) = match (goal, interval) {
        (_, None) => (f64::NAN, false, "rejected: too few users to compare".to_string()),
        (Goal::MoreResponses, Some(i)) => {
            let per_user = format!("responses per user {:+.3} (lower bound {:+.3})", summary.mean, i.low);
            let breach = if opt_out_rise > g.max_opt_out_increase {
                Some(format!(
                    "opt-out rate per send +{:.2} points > guardrail {:.2}",
                    100.0 * opt_out_rise,
                    100.0 * g.max_opt_out_increase
                ))
            } else if opted_out_share_rise > g.max_opt_out_increase {
                Some(format!(
                    "users opted out +{:.2} points > guardrail {:.2}",
                    100.0 * opted_out_share_rise,
                    100.0 * g.max_opt_out_increase
                ))
            } else {
                None
            };
            match breach {
                Some(why) => (i.low, false, format!("lost: {per_user}, but {why}")),
                None if i.low > margin => (i.low, true, format!("won: {per_user}")),
                None => (i.low, false, format!("lost: {per_user} is not above the margin {margin:+.3}")),
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
    fn observed() -> Observed<'static> {
        let mut o =
            Observed { sent_by_hour: [0; 24], responses_by_hour: [0; 24], totals: Counts::default(), activity: &[] };
        for h in 9..21 {
            o.sent_by_hour[h] = 400;
            o.responses_by_hour[h] = if h >= 18 { 100 } else { 20 };
        }
        let sent = o.sent_by_hour.iter().sum();
        let responses = o.responses_by_hour.iter().sum();
        o.totals = Counts { sent, responses, opt_outs: sent / 500, conversions: 0 };
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
        let mut o = observed();
        for h in 9..21 {
            o.responses_by_hour[h] = 40; // 10% at every hour
        }
        o.totals.responses = o.responses_by_hour.iter().sum();
        let s = LearnerSettings::defaults();
        let p = prove(&engaged(), &engaged(), Goal::MoreResponses, &o, &s.proof, &s.guardrails, START, 11);
        let simulated = p.current.response_rate();
        assert!((simulated - 0.10).abs() < 0.02, "simulated {simulated} vs observed 0.10");
    }

    /// Users active in the evening make evening sends win even before any outcome says so:
    /// the synthetic users take the segment's activity profiles.
    #[test]
    fn activity_profiles_shape_the_synthetic_users() {
        let evening: [f32; 24] = std::array::from_fn(|h| if (18..21).contains(&h) { 10.0 } else { 1.0 });
        let mut o = observed();
        o.sent_by_hour = [0; 24];
        o.responses_by_hour = [0; 24];
        o.totals = Counts { sent: 1_000, responses: 100, opt_outs: 1, conversions: 0 };
        let profiles = vec![evening; 10];
        o.activity = &profiles;
        let s = LearnerSettings::defaults();
        let mut noon = engaged();
        noon.optimal_hours = HourMask::window(12, 15);
        let mut late = engaged();
        late.optimal_hours = HourMask::window(18, 21);
        let p = prove(&noon, &late, Goal::MoreResponses, &o, &s.proof, &s.guardrails, START, 2);
        assert!(p.won, "{}", p.describe());
        o.activity = &[];
        let p = prove(&noon, &late, Goal::MoreResponses, &o, &s.proof, &s.guardrails, START, 2);
        assert!(!p.won, "without activity data every hour looks alike: {}", p.describe());
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
