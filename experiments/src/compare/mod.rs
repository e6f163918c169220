//! Comparing arms from per-user rows: estimates with intervals, each treatment's difference
//! from control with the test that decides and the interval that inverts it, the relative
//! lift (Fieller), adjusted p-values over a stated family, the probability to beat control,
//! the always-valid p-value, guardrails, the holdout as a reference, the sample-ratio check
//! and a plain-language verdict. A figure that cannot be computed is [`Figure::Undefined`]
//! with the reason — never NaN. Formulas: `docs/statistics.md`.
//!
//! - [`arms`]: running sums per arm.
//! - [`monitoring`]: looks at a live experiment over time — the running minimum of the
//!   mSPRT p-value and the running intersection of the confidence sequences.
//! - [`text`]: the text table, the verdict lines and the SVG chart.

mod arms;
pub mod monitoring;
mod text;

use serde::Serialize;
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

pub use arms::{Accumulator, ArmStats};
pub use monitoring::{ArmLook, ArmUsers, Bounds, Look, RunningArm, running};
pub use text::{confidence, p_text};

use crate::design::{Experiment, HOLDOUT, Metric};
use crate::stats::{
    self, Adjustment, ChiSquare, Cuped, Interval, LiftPosterior, LiftPrior, StatsError, beta_binomial,
    chi_square_independence, cuped, fieller_lift, gaussian_lift, mixture_boundary, relative_lift,
    sample_ratio_mismatch, welch_t_test,
};

/// SRM p-values below this mean the split is broken.
pub const SRM_THRESHOLD: f64 = 0.001;

/// The relative minimum detectable effect the mSPRT mixes over without an experiment file.
pub const DEFAULT_MDE: f64 = 0.1;

/// A figure that exists, or the reason it does not (JSON: the value, or
/// `{"undefined": "reason"}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Figure<T> {
    /// The figure.
    Value(T),
    /// Why there is none.
    Undefined {
        /// The reason, as a phrase.
        undefined: String,
    },
}

impl<T: Copy> Figure<T> {
    /// The value, if there is one.
    pub fn value(&self) -> Option<T> {
        match self {
            Figure::Value(v) => Some(*v),
            Figure::Undefined { .. } => None,
        }
    }
}

fn undefined<T>(reason: impl Into<String>) -> Figure<T> {
    Figure::Undefined { undefined: reason.into() }
}

/// The test that decides, with its statistic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestStatistic {
    /// Which test.
    pub test: &'static str,
    /// z or t.
    pub statistic: f64,
    /// Degrees of freedom (`None`: the standard normal reference).
    pub df: Option<f64>,
}

/// A guardrail's state, from the interval of the increase over control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailState {
    /// The whole interval is within the limit: the metric did not rise too much.
    Held,
    /// The interval straddles the limit: a harmful rise is not ruled out (do not ship).
    NotRuledOut,
    /// The whole interval is beyond the limit: the metric rose too much.
    Breached,
}

/// One guardrail for one treatment.
#[derive(Debug, Clone, Serialize)]
pub struct GuardrailCheck {
    /// Which metric.
    pub metric: Metric,
    /// The allowed increase.
    pub max_increase: f64,
    /// Treatment minus control, with its interval at the guardrails' adjusted level.
    pub increase: Interval,
    /// Verdict.
    pub state: GuardrailState,
}

/// One arm against a reference (control, or the holdout).
#[derive(Debug, Clone, Serialize)]
pub struct ArmComparison {
    /// The arm.
    pub arm: String,
    /// What it is compared with.
    pub reference: String,
    /// Arm minus reference (absolute, in the metric's units): the quantity tested, with the
    /// interval that inverts the test (it excludes 0 exactly when p < alpha).
    pub difference: Interval,
    /// Arm / reference − 1 with Fieller's interval (relative).
    pub lift: Figure<Interval>,
    /// The test of the difference.
    pub test: Figure<TestStatistic>,
    /// Unadjusted two-sided p-value.
    pub p_value: Figure<f64>,
    /// Adjusted over the family (treatments against control); for the holdout's
    /// comparisons, which are outside it, the unadjusted p.
    pub p_adjusted: Figure<f64>,
    /// Whether the adjusted p is below alpha.
    pub significant: bool,
    /// P(arm beats the reference) under the posterior: a probability of the hypothesis, not
    /// a p-value.
    pub prob_beat_reference: f64,
    /// Expected loss of choosing the arm, in the units of [`Report::expected_loss_unit`].
    pub expected_loss: f64,
    /// The mSPRT's always-valid p-value at this look.
    pub p_always_valid: Figure<f64>,
    /// The confidence sequence for the difference at this look (it may be watched: it
    /// covers the true difference at every look at once with probability 1 − alpha).
    pub confidence_sequence: Figure<Interval>,
    /// The same boundary applied to the relative lift (Fieller).
    pub confidence_sequence_lift: Figure<Interval>,
    /// Over every look of the history (`compare --looks`), this one included: the running
    /// minimum of the mSPRT p-value and the running intersection of the confidence
    /// sequences. Absent without a history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningArm>,
    /// The Gaussian model on the relative lift with the experiment's prior (GrowthBook
    /// gbstats): chance to win, expected loss and a credible interval.
    pub bayes_lift: Figure<LiftPosterior>,
    /// The CUPED-adjusted difference beside the raw one, when the results have a pre-period
    /// column (the verdict uses the raw test).
    pub cuped: Option<Figure<Cuped>>,
    /// Guardrails (treatments against control only).
    pub guardrails: Vec<GuardrailCheck>,
}

/// Per-arm line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ArmLine {
    /// The arm.
    pub arm: String,
    /// Users.
    pub users: u64,
    /// The primary metric with its interval.
    pub estimate: Figure<Interval>,
}

/// The family over which p-values are adjusted.
#[derive(Debug, Clone, Serialize)]
pub struct Family {
    /// The correction.
    pub adjustment: Adjustment,
    /// Its members: `arm vs control on metric`.
    pub members: Vec<String>,
    /// What it controls, and what is outside it.
    pub statement: String,
}

/// Where the SRM check's weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSource {
    /// The experiment file's weights, every arm of it included.
    Experiment,
    /// The results file's header (`# gavat-experiment …`), every arm of it included.
    ResultsHeader,
    /// Both, checked to agree.
    ExperimentAndResultsHeader,
    /// No weights known: equal weights over the arms present were assumed.
    AssumedEqual,
}

impl WeightSource {
    /// Where the weights came from, as a phrase.
    pub fn describe(self) -> &'static str {
        match self {
            WeightSource::Experiment => "the experiment file",
            WeightSource::ResultsHeader => "the results file's header",
            WeightSource::ExperimentAndResultsHeader => {
                "the experiment file and the results file's header (they agree)"
            }
            WeightSource::AssumedEqual => "none known: equal shares of the arms present assumed",
        }
    }
}

/// The sample-ratio check.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRatio {
    /// Chi-square of the users per arm against the planned shares.
    pub check: ChiSquare,
    /// Where the planned shares came from.
    pub weights: WeightSource,
    /// Arms with a weight but no user in the results.
    pub missing_arms: Vec<String>,
    /// Whether the check failed (p < 0.001, or an arm with a weight has no user).
    pub mismatch: bool,
    /// What the check could not see, when the weights were assumed.
    pub note: Option<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The primary metric.
    pub metric: Metric,
    /// Significance level.
    pub alpha: f64,
    /// Control's name (the first arm).
    pub control: String,
    /// Per arm, every arm of the experiment (with no users: an undefined estimate).
    pub arms: Vec<ArmLine>,
    /// Each treatment against control: the family that is adjusted.
    pub comparisons: Vec<ArmComparison>,
    /// The adjusted family.
    pub family: Family,
    /// Every messaged arm against the holdout: the incremental effect of messaging at all,
    /// unadjusted and outside the family.
    pub holdout: Vec<ArmComparison>,
    /// Chi-square across control and the treatments (share metrics, more than two arms; the
    /// holdout is not in it).
    pub omnibus: Option<ChiSquare>,
    /// Sample-ratio mismatch check of the arms' sizes against their weights.
    pub srm: SampleRatio,
    /// How the guardrails' intervals are adjusted.
    pub guardrail_note: Option<String>,
    /// The unit of `expected_loss`.
    pub expected_loss_unit: String,
    /// Plain-language verdict, one line per treatment (and per holdout comparison).
    pub verdict: Vec<String>,
    /// Looks in the history this report was added to (`compare --looks`), this one
    /// included; absent without a history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looks: Option<usize>,
}

pub(crate) fn z(p: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| n.inverse_cdf(p)).unwrap_or(f64::NAN)
}

fn phi(x: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| n.cdf(x)).unwrap_or(f64::NAN)
}

fn pdf(x: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| n.pdf(x)).unwrap_or(f64::NAN)
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Fewer than two arms with users.
    #[error("need at least two arms with users to compare, found {0}")]
    TooFewArms(usize),
    /// The control arm has no users.
    #[error("the control arm `{0}` has no users in the results: nothing can be compared with it")]
    NoControl(String),
    /// The weights do not match the arms.
    #[error("{weights} weights for {arms} arms")]
    Weights {
        /// Arms in the accumulator.
        arms: usize,
        /// Weights given.
        weights: usize,
    },
    /// A statistic's input was out of range.
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// How to compare.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The metric that decides.
    pub metric: Metric,
    /// Two-sided significance level.
    pub alpha: f64,
    /// The correction over the treatments.
    pub adjustment: Adjustment,
    /// Planned shares of every arm of the accumulator, in its order (the holdout's
    /// included); `None`: unknown, equal shares over the arms present are assumed. The
    /// report says they came from the experiment; a caller that took them from a results
    /// file's header says so with [`Report::set_weight_source`].
    pub weights: Option<&'a [f64]>,
    /// The experiment, for its guardrails and minimum detectable effect.
    pub design: Option<&'a Experiment>,
    /// The prior of the Gaussian model on the relative lift.
    pub prior: LiftPrior,
}

impl<'a> Settings<'a> {
    /// The settings `design` asks for: its primary metric, alpha, multiple-testing
    /// correction and prior, with `weights` — its planned shares in the accumulator's order
    /// (`design.assignment_weights()`).
    pub fn of_experiment(design: &'a Experiment, weights: &'a [f64]) -> Settings<'a> {
        Settings {
            metric: design.primary_metric,
            alpha: design.alpha,
            adjustment: design.multiple_testing,
            weights: Some(weights),
            design: Some(design),
            prior: design.lift_prior,
        }
    }
}

/// Whether a relative lift means something for `metric` (it cannot be zero or negative in a
/// reasonable control): shares and the ratio metric. Engagement is reported as an absolute
/// difference only.
pub fn lift_is_meaningful(metric: Metric) -> bool {
    metric != Metric::Engagement
}

/// Compares every treatment with the first arm, and every messaged arm with the holdout.
pub fn compare(acc: &Accumulator, settings: &Settings<'_>) -> Result<Report, CompareError> {
    let Settings { metric, alpha, adjustment, weights, design, prior } = *settings;
    stats::check_alpha(alpha)?;
    let all = &acc.arms;
    let with_users = all.iter().filter(|a| a.users > 0).count();
    if with_users < 2 {
        return Err(CompareError::TooFewArms(with_users));
    }
    let control = &all[0];
    if control.users == 0 {
        return Err(CompareError::NoControl(control.name.clone()));
    }
    let srm = sample_ratio(all, weights)?;
    let lines = all
        .iter()
        .map(|a| {
            let estimate = if a.users == 0 {
                undefined("no users")
            } else {
                match a.interval(metric, alpha) {
                    Ok(i) => Figure::Value(i),
                    Err(e) => undefined(e.to_string()),
                }
            };
            ArmLine { arm: a.name.clone(), users: a.users, estimate }
        })
        .collect();
    let holdout = all.iter().skip(1).find(|a| a.name == HOLDOUT && a.users > 0);
    let treatments: Vec<&ArmStats> = all.iter().skip(1).filter(|a| a.users > 0 && a.name != HOLDOUT).collect();
    let compared: Vec<&ArmStats> = std::iter::once(control).chain(treatments.iter().copied()).collect();
    let successes: u64 = compared.iter().filter_map(|a| a.successes(metric)).sum();
    let varies = successes > 0 && successes < compared.iter().map(|a| a.users).sum::<u64>();
    // Without a success (or without a failure) in any arm there is nothing to test.
    let omnibus = match control.successes(metric) {
        Some(_) if compared.len() > 2 && varies => Some(chi_square_independence(
            &compared.iter().map(|a| a.successes(metric).unwrap_or(0)).collect::<Vec<_>>(),
            &compared.iter().map(|a| a.users).collect::<Vec<_>>(),
        )?),
        _ => None,
    };
    let mde = design.map_or(DEFAULT_MDE, |e| e.minimum_detectable_effect);
    let guardrail_count = design.map_or(0, |e| e.guardrails.len()) * treatments.len();
    let guardrail_alpha = alpha / guardrail_count.max(1) as f64;

    let mut comparisons = Vec::new();
    for t in &treatments {
        let mut c = compare_pair(t, control, metric, alpha, mde, prior)?;
        c.guardrails = design
            .map(|e| {
                e.guardrails
                    .iter()
                    .map(|g| guardrail(t, control, g.metric, g.max_increase, guardrail_alpha))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        comparisons.push(c);
    }
    // A test that cannot be computed counts as p = 1: it can reject nothing.
    let raw: Vec<f64> = comparisons.iter().map(|c| c.p_value.value().unwrap_or(1.0)).collect();
    for (c, p) in comparisons.iter_mut().zip(adjustment.adjust(&raw)) {
        if let Figure::Value(_) = c.p_value {
            c.p_adjusted = Figure::Value(p);
            c.significant = p < alpha;
        }
    }
    let holdout_comparisons = match holdout {
        Some(h) => {
            compared.iter().map(|a| compare_pair(a, h, metric, alpha, mde, prior)).collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let family = Family {
        adjustment,
        members: comparisons.iter().map(|c| format!("{} vs {} on {}", c.arm, c.reference, metric.as_str())).collect(),
        statement: format!(
            "{} comparison{} of the treatments with {} on {}, {}{}",
            comparisons.len(),
            if comparisons.len() == 1 { "" } else { "s" },
            control.name,
            metric.as_str(),
            adjustment.describe(),
            if holdout.is_some() { "; the holdout comparisons are outside the family (unadjusted)" } else { "" }
        ),
    };
    let guardrail_note = (guardrail_count > 0).then(|| {
        format!(
            "guardrail intervals are Bonferroni-adjusted over {guardrail_count} check{} ({} guardrail{} × {} treatment{}): each at {}% confidence, so that together they hold at {}%",
            if guardrail_count == 1 { "" } else { "s" },
            guardrail_count / treatments.len().max(1),
            if guardrail_count / treatments.len().max(1) == 1 { "" } else { "s" },
            treatments.len(),
            if treatments.len() == 1 { "" } else { "s" },
            text::confidence(guardrail_alpha),
            text::confidence(alpha),
        )
    });
    let mut report = Report {
        metric,
        alpha,
        control: control.name.clone(),
        arms: lines,
        comparisons,
        family,
        holdout: holdout_comparisons,
        omnibus,
        srm,
        guardrail_note,
        expected_loss_unit: expected_loss_unit(metric),
        verdict: Vec::new(),
        looks: None,
    };
    report.verdict = text::verdicts(&report, all);
    Ok(report)
}

impl Report {
    /// Says where the known weights came from (a report with assumed weights keeps saying
    /// so: nothing was known).
    pub fn set_weight_source(&mut self, source: WeightSource) {
        if self.srm.weights != WeightSource::AssumedEqual && source != WeightSource::AssumedEqual {
            self.srm.weights = source;
        }
    }
}

fn expected_loss_unit(metric: Metric) -> String {
    match metric {
        Metric::ResponseRate | Metric::ConversionRate | Metric::OptOutRate => {
            format!("share of users ({}: 0.001 = 0.1 points)", metric.as_str())
        }
        Metric::ResponsesPerMessage => "responses per message".into(),
        Metric::Engagement => "engagement points per user".into(),
    }
}

/// The SRM check: against the experiment's weights over every arm (a missing arm is the
/// worst mismatch), or, without weights, against equal shares of the arms present.
fn sample_ratio(all: &[ArmStats], weights: Option<&[f64]>) -> Result<SampleRatio, CompareError> {
    match weights {
        Some(w) => {
            if w.len() != all.len() {
                return Err(CompareError::Weights { arms: all.len(), weights: w.len() });
            }
            let check = sample_ratio_mismatch(&all.iter().map(|a| a.users).collect::<Vec<_>>(), w)?;
            let missing_arms: Vec<String> = all.iter().filter(|a| a.users == 0).map(|a| a.name.clone()).collect();
            let mismatch = check.p_value < SRM_THRESHOLD || !missing_arms.is_empty();
            Ok(SampleRatio { check, weights: WeightSource::Experiment, missing_arms, mismatch, note: None })
        }
        None => {
            let present: Vec<u64> = all.iter().filter(|a| a.users > 0).map(|a| a.users).collect();
            let check = sample_ratio_mismatch(&present, &vec![1.0; present.len()])?;
            Ok(SampleRatio {
                mismatch: check.p_value < SRM_THRESHOLD,
                check,
                weights: WeightSource::AssumedEqual,
                missing_arms: Vec::new(),
                note: Some(format!(
                    "weights unknown (no experiment file, no header in the results file): equal shares of the {} arms present are assumed, and an arm with no rows at all cannot be seen; pass --experiment for the real check",
                    present.len()
                )),
            })
        }
    }
}

/// One arm against a reference, before adjustment.
fn compare_pair(
    t: &ArmStats,
    c: &ArmStats,
    metric: Metric,
    alpha: f64,
    mde: f64,
    prior: LiftPrior,
) -> Result<ArmComparison, CompareError> {
    let (mt, vt) = t.estimate(metric);
    let (mc, vc) = c.estimate(metric);
    let se = (vt + vc).sqrt();
    let d = mt - mc;
    let zq = z(1.0 - alpha / 2.0);
    let (difference, test) = if metric == Metric::Engagement {
        let w = welch_t_test(&t.engagement(), &c.engagement(), alpha)?;
        let test = if se > 0.0 {
            Figure::Value(TestStatistic { test: "Welch t-test", statistic: w.t, df: Some(w.df) })
        } else {
            undefined("engagement does not vary within either arm: the test is not computable")
        };
        (w.difference, test)
    } else {
        let interval = Interval { estimate: d, low: d - zq * se, high: d + zq * se };
        let degenerate = match (t.successes(metric), c.successes(metric)) {
            (Some(st), Some(sc)) => (st == 0 && sc == 0) || (st == t.users && sc == c.users),
            _ => false,
        };
        let test = if se > 0.0 && !degenerate {
            let name = if t.successes(metric).is_some() { "Wald z-test (unpooled)" } else { "z-test (delta method)" };
            Figure::Value(TestStatistic { test: name, statistic: d / se, df: None })
        } else {
            undefined(no_variation(t, c, metric))
        };
        (interval, test)
    };
    let p_value = match &test {
        Figure::Value(s) => Figure::Value(match s.df {
            Some(df) => stats::t_two_sided_p(s.statistic, df),
            None => stats::z_two_sided_p(s.statistic),
        }),
        Figure::Undefined { undefined: why } => undefined(why.clone()),
    };
    let lift = if !lift_is_meaningful(metric) {
        undefined(format!("{} can be zero or negative, so only the absolute difference is reported", metric.as_str()))
    } else if mc <= 0.0 {
        undefined(format!("{}'s {} is 0: a relative lift is not defined", c.name, metric.as_str()))
    } else {
        match relative_lift(mt, vt, mc, vc, alpha, true) {
            Ok(l) => Figure::Value(Interval { estimate: l.estimate, low: l.low, high: l.high }),
            Err(_) => undefined(format!(
                "{}'s {} is not distinguishable from 0: the ratio's interval is unbounded",
                c.name,
                metric.as_str()
            )),
        }
    };
    let (prob_beat_reference, expected_loss) = bayes(t, c, metric, d, se)?;
    let Sequential { p_always_valid, confidence_sequence, confidence_sequence_lift } =
        sequential(t, c, metric, d, mde, alpha);
    let bayes_lift = if !lift_is_meaningful(metric) {
        undefined(format!(
            "the prior is on the relative lift, which {} does not have (see P(beat) for the absolute difference)",
            metric.as_str()
        ))
    } else if mc <= 0.0 {
        undefined(format!("{}'s {} is 0: a relative lift is not defined", c.name, metric.as_str()))
    } else {
        match gaussian_lift(mt, vt, mc, vc, prior, alpha, metric == Metric::OptOutRate) {
            Ok(p) => Figure::Value(p),
            Err(e) => undefined(e.to_string()),
        }
    };
    let cuped = (t.with_pre_period() > 0 || c.with_pre_period() > 0).then(|| {
        match (t.covariate(metric), c.covariate(metric)) {
            (Some(ct), Some(cc)) => match cuped(ct, cc, alpha) {
                Ok(r) => Figure::Value(r),
                Err(e) => undefined(e.to_string()),
            },
            _ => undefined(format!("CUPED needs a per-user metric; {} is a ratio of sums", metric.as_str())),
        }
    });
    Ok(ArmComparison {
        arm: t.name.clone(),
        reference: c.name.clone(),
        difference,
        lift,
        significant: false,
        p_adjusted: p_value.clone(),
        p_value,
        test,
        prob_beat_reference,
        expected_loss,
        p_always_valid,
        confidence_sequence,
        confidence_sequence_lift,
        running: None,
        bayes_lift,
        cuped,
        guardrails: Vec::new(),
    })
}

/// Why a z-test has no variance to work with.
fn no_variation(t: &ArmStats, c: &ArmStats, metric: Metric) -> String {
    match (t.successes(metric), c.successes(metric)) {
        (Some(0), Some(0)) => "both arms have no successes: the test is not computable".into(),
        (Some(st), Some(sc)) if st == t.users && sc == c.users => {
            "every user of both arms is a success: the test is not computable".into()
        }
        _ => format!("{} does not vary within either arm: the test is not computable", metric.as_str()),
    }
}

/// P(t beats c) and the expected loss of choosing t: Beta–binomial for shares (lower is
/// better for opt-outs), a normal approximation otherwise. Two arms without a single
/// success (or with nothing but) cannot be told apart: 0.5 exactly.
fn bayes(t: &ArmStats, c: &ArmStats, metric: Metric, d: f64, se: f64) -> Result<(f64, f64), StatsError> {
    let lower_is_better = metric == Metric::OptOutRate;
    Ok(match (t.successes(metric), c.successes(metric)) {
        (Some(st), Some(sc)) => {
            let b = beta_binomial(sc, c.users, st, t.users)?;
            let tie = (st == 0 && sc == 0) || (st == t.users && sc == c.users);
            let prob = if tie { 0.5 } else { b.prob_treatment_better };
            if lower_is_better {
                (if tie { 0.5 } else { 1.0 - prob }, b.expected_loss_control)
            } else {
                (prob, b.expected_loss_treatment)
            }
        }
        _ if se > 0.0 => {
            // D ~ N(d, se²); loss = E[max(−D, 0)].
            let k = d / se;
            (phi(k), se * pdf(k) - d * phi(-k))
        }
        _ => (0.5, 0.0),
    })
}

/// The always-valid figures of one comparison at this look.
struct Sequential {
    p_always_valid: Figure<f64>,
    confidence_sequence: Figure<Interval>,
    confidence_sequence_lift: Figure<Interval>,
}

/// The mSPRT p-value for a difference `d` of per-user means and the confidence sequences
/// that invert it: σ² is the pooled per-user variance, n the harmonic mean of the arms'
/// sizes, and the mixing scale τ is the effect the experiment was designed to detect — mde ×
/// control's mean for a share or the ratio metric, mde × σ (in standard deviations) for
/// engagement, whose control mean may be 0 or negative, and for any metric whose control
/// mean is 0.
fn sequential(t: &ArmStats, c: &ArmStats, metric: Metric, d: f64, mde: f64, alpha: f64) -> Sequential {
    let (mc, vc) = c.estimate(metric);
    let (mt, vt) = t.estimate(metric);
    let sigma2 = 0.5 * (vt * t.users as f64 + vc * c.users as f64);
    if sigma2.is_nan() || sigma2 <= 0.0 {
        let why = format!("{} does not vary within either arm", metric.as_str());
        return Sequential {
            p_always_valid: undefined(why.clone()),
            confidence_sequence: undefined(why.clone()),
            confidence_sequence_lift: undefined(why),
        };
    }
    let tau = if lift_is_meaningful(metric) && mc.abs() > 0.0 { mde * mc.abs() } else { mde * sigma2.sqrt() };
    let n = (2.0 / (1.0 / t.users as f64 + 1.0 / c.users as f64)).floor() as u64;
    let p_always_valid = match stats::msprt_mean_difference(n, d, sigma2, tau * tau) {
        Ok(r) => Figure::Value(r.p_value),
        Err(e) => undefined(e.to_string()),
    };
    let boundary = mixture_boundary(n, sigma2, tau * tau, alpha);
    let confidence_sequence = match &boundary {
        Ok(b) => {
            let half = b * (2.0 * sigma2 / n as f64).sqrt();
            Figure::Value(Interval { estimate: d, low: d - half, high: d + half })
        }
        Err(e) => undefined(e.to_string()),
    };
    let confidence_sequence_lift = match boundary {
        _ if !lift_is_meaningful(metric) => {
            undefined(format!("{} can be zero or negative: see the sequence for the difference", metric.as_str()))
        }
        _ if mc <= 0.0 => undefined(format!("{}'s {} is 0: a relative lift is not defined", c.name, metric.as_str())),
        Ok(b) => match fieller_lift(mt, vt, mc, vc, b, true) {
            Ok(l) => Figure::Value(Interval { estimate: l.estimate, low: l.low, high: l.high }),
            Err(_) => undefined(format!(
                "{}'s {} is not distinguishable from 0 at this boundary: the ratio's sequence is unbounded",
                c.name,
                metric.as_str()
            )),
        },
        Err(e) => undefined(e.to_string()),
    };
    Sequential { p_always_valid, confidence_sequence, confidence_sequence_lift }
}

fn guardrail(t: &ArmStats, c: &ArmStats, metric: Metric, max_increase: f64, alpha: f64) -> GuardrailCheck {
    let (mt, vt) = t.estimate(metric);
    let (mc, vc) = c.estimate(metric);
    let d = mt - mc;
    let half = z(1.0 - alpha / 2.0) * (vt + vc).sqrt();
    let increase = Interval { estimate: d, low: d - half, high: d + half };
    let state = if increase.low > max_increase {
        GuardrailState::Breached
    } else if increase.high > max_increase {
        GuardrailState::NotRuledOut
    } else {
        GuardrailState::Held
    };
    GuardrailCheck { metric, max_increase, increase, state }
}

#[cfg(test)]
mod tests;
