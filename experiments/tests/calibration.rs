//! Calibration of the comparison on synthetic users, every run seeded (the seeds are
//! stated in each test): A/A experiments with two and three identical arms reject at the
//! nominal rate for the raw, Holm-adjusted and CUPED p-values; looking every day inflates a
//! naive z-test but not the mSPRT or the confidence sequence; planted effects are found at
//! the power `sample_size_*` promised, raw and with CUPED, for a rate and for a mean.
//!
//! Users are drawn here rather than by the engine so that hundreds of experiments run in
//! seconds; `tests/integration/experiments.rs` calibrates the engine's own A/A runs. Bands
//! are binomial 99% bands (scipy `binom.ppf(0.005 / 0.995, n, p)`): for 400 runs at 0.05,
//! [10, 32]; the power bands are the promised power ± 5 points.

use gavat_experiments::compare::{Accumulator, ArmLook, Bounds, Look, Report, Settings, compare, running};
use gavat_experiments::design::Metric;
use gavat_experiments::results::UserRow;
use gavat_experiments::stats::{
    Adjustment, Effect, LiftPrior, confidence_sequence, msprt_mean_difference, sample_size_for_mean,
    sample_size_per_arm, sample_size_per_arm_cuped,
};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use statrs::distribution::{ContinuousCDF, Normal};

const RUNS: u64 = 400;
const ALPHA: f64 = 0.05;
/// binom.ppf(0.005, 400, 0.05), binom.ppf(0.995, 400, 0.05).
const AA_BAND: std::ops::RangeInclusive<usize> = 10..=32;

/// One synthetic user: a quarter are keen (each message answered with probability 0.2, the
/// rest 0.02), times 1 + `lift`; 20 messages in a pre-period and 20 in the experiment, so
/// that the pre-period count predicts the experiment's (ρ ≈ 0.7 for the count, 0.47 for
/// "answered at least once"). The lift applies to the experiment period only.
fn user(rng: &mut Pcg64Mcg, id: u64, arm: &str, lift: f64) -> UserRow {
    let keen = rng.random::<f64>() < 0.25;
    let p = if keen { 0.2 } else { 0.02 };
    let mut answered = |p: f64| (0..20).filter(|_| rng.random::<f64>() < p).count() as u64;
    // The pre-period is before the experiment: the treatment does not reach it.
    let pre = answered(p);
    let responses = answered((p * (1.0 + lift)).min(1.0));
    UserRow {
        user: id,
        arm: arm.to_string(),
        messages: 20,
        responses,
        conversions: 0,
        opted_out: false,
        engagement: responses as f64,
        pre_period: Some(pre as f64),
    }
}

fn settings(metric: Metric) -> Settings<'static> {
    Settings { metric, alpha: ALPHA, adjustment: Adjustment::Holm, weights: None, design: None, prior: LiftPrior::Flat }
}

/// One experiment: `per_arm` users in each arm, the arms' lifts in `lifts` (the first is
/// control), seeded by `seed`.
fn experiment(seed: u64, per_arm: u64, lifts: &[f64], metric: Metric) -> Report {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let names: Vec<String> =
        (0..lifts.len()).map(|i| if i == 0 { "control".into() } else { format!("t{i}") }).collect();
    let mut acc = Accumulator::with_arms(names.iter().map(String::as_str));
    for i in 0..per_arm {
        for (k, lift) in lifts.iter().enumerate() {
            acc.add(&user(&mut rng, i * lifts.len() as u64 + k as u64, &names[k], *lift));
        }
    }
    compare(&acc, &settings(metric)).expect("a comparison")
}

/// Runs `f` over seeds `first..first + RUNS` on two threads, in seed order.
fn sweep<T: Send>(first: u64, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let half = RUNS / 2;
    std::thread::scope(|s| {
        let low = s.spawn(|| (first..first + half).map(&f).collect::<Vec<_>>());
        let high: Vec<T> = (first + half..first + RUNS).map(&f).collect();
        let mut all = low.join().expect("the sweep's thread");
        all.extend(high);
        all
    })
}

fn below(p: Option<f64>) -> bool {
    p.is_some_and(|p| p < ALPHA)
}

/// A/A with two identical arms (seeds 1000..1400, 2,000 users per arm): the raw p-value and
/// the CUPED p-value each reject inside [10, 32] of 400.
#[test]
fn a_a_two_arms_reject_at_alpha() {
    let reports = sweep(1000, |seed| experiment(seed, 2000, &[0.0, 0.0], Metric::ResponseRate));
    let raw = reports.iter().filter(|r| below(r.comparisons[0].p_value.value())).count();
    let cuped = reports
        .iter()
        .filter(|r| below(r.comparisons[0].cuped.as_ref().and_then(|c| c.value()).map(|c| c.p_value)))
        .count();
    eprintln!("A/A two arms, seeds 1000..1400: raw {raw}/400, CUPED {cuped}/400 rejected at alpha 0.05");
    assert!(AA_BAND.contains(&raw), "raw: {raw} of 400");
    assert!(AA_BAND.contains(&cuped), "CUPED: {cuped} of 400");
}

/// A/A with three identical arms (seeds 2000..2400, 1,500 users per arm): each raw
/// comparison rejects at alpha, and the Holm-adjusted family (any treatment significant)
/// rejects at most at alpha — inside [10, 32] of 400 for the first, at most 32 for the second.
#[test]
fn a_a_three_arms_holm_controls_the_family() {
    let reports = sweep(2000, |seed| experiment(seed, 1500, &[0.0, 0.0, 0.0], Metric::ResponseRate));
    let raw_first = reports.iter().filter(|r| below(r.comparisons[0].p_value.value())).count();
    let family = reports.iter().filter(|r| r.comparisons.iter().any(|c| c.significant)).count();
    let unadjusted_family = reports.iter().filter(|r| r.comparisons.iter().any(|c| below(c.p_value.value()))).count();
    eprintln!(
        "A/A three arms, seeds 2000..2400: first raw {raw_first}/400, any raw {unadjusted_family}/400, any Holm-adjusted {family}/400"
    );
    assert!(AA_BAND.contains(&raw_first), "raw: {raw_first} of 400");
    assert!(family <= *AA_BAND.end(), "Holm family: {family} of 400");
    assert!(family <= unadjusted_family);
}

/// Looking every day for 14 days (seeds 3000..3400, 150 new users per arm a day): a naive
/// z-test that stops at the first p < 0.05 rejects far more than 5% (above 32 of 400), while
/// the mSPRT's running minimum and the confidence sequence stay at most at alpha. The
/// looks go through `compare::running` too: its running minimum is below alpha exactly when
/// some look's p was, and its running intersection excludes 0 when some look's sequence did.
#[test]
fn daily_looks_inflate_a_naive_test_but_not_the_always_valid_ones() {
    let outcomes = sweep(3000, |seed| {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let (mut sums, mut squares, mut n) = ([0.0f64; 2], [0.0f64; 2], 0u64);
        let (mut naive, mut msprt, mut sequence) = (false, false, false);
        let mut looks = Vec::new();
        for day in 0..14 {
            for i in 0..150 {
                for (arm, (sum, square)) in sums.iter_mut().zip(squares.iter_mut()).enumerate() {
                    let y = f64::from(u8::from(user(&mut rng, i * 2 + arm as u64, "x", 0.0).responses > 0));
                    *sum += y;
                    *square += y * y;
                }
            }
            n += 150;
            let nf = n as f64;
            let (m0, m1) = (sums[0] / nf, sums[1] / nf);
            let var = |q: f64, m: f64| (q - nf * m * m) / (nf - 1.0);
            let (v0, v1) = (var(squares[0], m0), var(squares[1], m1));
            let d = m1 - m0;
            let se = ((v0 + v1) / nf).sqrt();
            let z = d / se;
            naive |= 2.0 * (1.0 - normal_cdf(z.abs())) < ALPHA;
            let sigma2 = 0.5 * (v0 + v1);
            let tau2 = (0.1 * m0).powi(2);
            let p = msprt_mean_difference(n, d, sigma2, tau2).expect("an mSPRT").p_value;
            msprt |= p < ALPHA;
            let cs = confidence_sequence(n, d, sigma2, tau2, ALPHA).expect("a sequence");
            sequence |= cs.low > 0.0 || cs.high < 0.0;
            looks.push(Look {
                experiment: "a/a".into(),
                metric: Metric::ResponseRate,
                alpha: ALPHA,
                control: "a".into(),
                at: format!("day {day}"),
                users: Vec::new(),
                arms: vec![ArmLook {
                    arm: "b".into(),
                    msprt_p: Some(p),
                    cs: Some(Bounds { low: cs.low, high: cs.high }),
                }],
            });
        }
        let run = &running(&looks)[0];
        assert_eq!(run.looks, 14);
        assert_eq!(run.msprt_p_min.expect("a minimum") < ALPHA, msprt, "seed {seed}");
        let cs = run.cs.expect("an intersection");
        assert!(!sequence || cs.low > 0.0 || cs.high < 0.0 || run.cs_empty, "seed {seed}: {cs:?}");
        (naive, msprt, sequence)
    });
    let count = |f: fn(&(bool, bool, bool)) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let (naive, msprt, sequence) = (count(|o| o.0), count(|o| o.1), count(|o| o.2));
    eprintln!(
        "A/A with 14 daily looks, seeds 3000..3400: naive z-test {naive}/400, mSPRT running minimum {msprt}/400, confidence sequence {sequence}/400"
    );
    assert!(naive > *AA_BAND.end(), "the naive daily test should inflate: {naive} of 400");
    assert!(msprt <= *AA_BAND.end() && sequence <= *AA_BAND.end(), "mSPRT {msprt}, sequence {sequence}");
    assert_eq!(msprt, sequence, "the sequence excludes 0 exactly when the mSPRT rejects");
}

fn normal_cdf(x: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| n.cdf(x)).unwrap_or(f64::NAN)
}

/// The true response rate, mean and sd of responses, and their correlations with the
/// pre-period, of synthetic users lifted by `lift`, measured on a large pilot (200,000
/// users, seeded by `seed`).
struct Truth {
    rate: f64,
    rate_rho: f64,
    mean: f64,
    sd: f64,
    mean_rho: f64,
}

fn truth(seed: u64, lift: f64) -> Truth {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let users: Vec<UserRow> = (0..200_000).map(|i| user(&mut rng, i, "pilot", lift)).collect();
    let correlation = |ys: &[f64], xs: &[f64]| {
        let n = ys.len() as f64;
        let (my, mx) = (ys.iter().sum::<f64>() / n, xs.iter().sum::<f64>() / n);
        let sxy: f64 = ys.iter().zip(xs).map(|(y, x)| (y - my) * (x - mx)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
        (my, (syy / (n - 1.0)).sqrt(), sxy / (sxx * syy).sqrt())
    };
    let xs: Vec<f64> = users.iter().map(|u| u.pre_period.unwrap_or(0.0)).collect();
    let responded: Vec<f64> = users.iter().map(|u| f64::from(u8::from(u.responses > 0))).collect();
    let responses: Vec<f64> = users.iter().map(|u| u.responses as f64).collect();
    let (rate, _, rate_rho) = correlation(&responded, &xs);
    let (mean, sd, mean_rho) = correlation(&responses, &xs);
    Truth { rate, rate_rho, mean, sd, mean_rho }
}

/// Counts the runs (seeds `first..first + 400`) in which the treatment, lifted by `lift`,
/// is found significant and positive by the raw test and by CUPED.
fn detections(first: u64, per_arm: u64, lift: f64, metric: Metric) -> (usize, usize) {
    let reports = sweep(first, |seed| experiment(seed, per_arm, &[0.0, lift], metric));
    let raw = reports.iter().filter(|r| r.comparisons[0].significant && r.comparisons[0].difference.estimate > 0.0);
    let cuped = reports.iter().filter(|r| {
        r.comparisons[0]
            .cuped
            .as_ref()
            .and_then(|c| c.value())
            .is_some_and(|c| c.p_value < ALPHA && c.difference.estimate > 0.0)
    });
    (raw.count(), cuped.count())
}

/// A planted 25% lift of the per-message answer probability, planned for 80% power on the
/// effect measured by pilots (seeds 9 and 10): the raw test at the raw plan's size (seeds 4000..4400) and CUPED at the CUPED
/// plan's size (seeds 5000..5400, fewer users by 1 − ρ²) each detect it in 75–85% of runs.
#[test]
fn a_planted_effect_on_a_rate_is_found_at_the_planned_power() {
    let (base, lifted) = (truth(9, 0.0), truth(10, 0.25).rate);
    let effect = Effect::Absolute(lifted - base.rate);
    let n = sample_size_per_arm(base.rate, effect, ALPHA, 0.8).expect("a plan");
    let n_cuped = sample_size_per_arm_cuped(base.rate, effect, ALPHA, 0.8, base.rate_rho).expect("a plan");
    let (raw, _) = detections(4000, n, 0.25, Metric::ResponseRate);
    let (_, cuped) = detections(5000, n_cuped, 0.25, Metric::ResponseRate);
    eprintln!(
        "planted rate effect {:.4} → {lifted:.4} (ρ = {:.3}): raw {raw}/400 at {n} per arm, CUPED {cuped}/400 at {n_cuped} per arm",
        base.rate, base.rate_rho
    );
    assert!(n_cuped < n, "CUPED needs fewer users");
    assert!((300..=340).contains(&raw), "raw power {raw} of 400");
    assert!((300..=340).contains(&cuped), "CUPED power {cuped} of 400");
}

/// A planted 15% lift on a mean (responses per user), planned with `sample_size_for_mean`
/// from the measured means, sds and correlations (pilots seeded 9 and 11): detected in 75–85% of runs raw (seeds 6000..6400) and
/// with CUPED at its smaller plan (seeds 7000..7400).
#[test]
fn a_planted_effect_on_a_mean_is_found_at_the_planned_power() {
    let (base, treated) = (truth(9, 0.0), truth(11, 0.15));
    let lifted = treated.mean;
    // The lift raises the variance too: plan with the arms' average variance, and for CUPED
    // with the average of what it leaves in each arm, σ²(1 − ρ²).
    let sd = ((base.sd.powi(2) + treated.sd.powi(2)) / 2.0).sqrt();
    let left =
        (base.sd.powi(2) * (1.0 - base.mean_rho.powi(2)) + treated.sd.powi(2) * (1.0 - treated.mean_rho.powi(2))) / 2.0;
    let rho = (1.0 - left / (sd * sd)).sqrt();
    let effect = Effect::Absolute(lifted - base.mean);
    let n = sample_size_for_mean(base.mean, sd, effect, ALPHA, 0.8, 0.0).expect("a plan");
    let n_cuped = sample_size_for_mean(base.mean, sd, effect, ALPHA, 0.8, rho).expect("a plan");
    let (raw, _) = detections(6000, n, 0.15, Metric::Engagement);
    let (_, cuped) = detections(7000, n_cuped, 0.15, Metric::Engagement);
    eprintln!(
        "planted mean effect {:.4} → {lifted:.4} (sd {sd:.3}, ρ = {rho:.3}): raw {raw}/400 at {n} per arm, CUPED {cuped}/400 at {n_cuped} per arm",
        base.mean
    );
    assert!(n_cuped < n, "CUPED needs fewer users");
    assert!((300..=340).contains(&raw), "raw power {raw} of 400");
    assert!((300..=340).contains(&cuped), "CUPED power {cuped} of 400");
}
