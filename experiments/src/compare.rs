//! Comparing arms from per-user rows: streaming accumulators per arm, then estimates with
//! intervals, differences and lifts against control, adjusted p-values, the probability to
//! beat control, guardrails, the sample-ratio check and a plain-language verdict.
//! Formulas: `docs/statistics.md`.

use std::fmt::Write as _;

use serde::Serialize;
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

use crate::design::{Experiment, Metric};
use crate::results::UserRow;
use crate::stats::{
    self, ChiSquare, Interval, MeanSummary, StatsError, beta_binomial, chi_square_independence, holm, relative_lift,
    sample_ratio_mismatch, two_proportion_z_test, welch_t_test, wilson,
};

/// SRM p-values below this mean the split is broken.
pub const SRM_THRESHOLD: f64 = 0.001;

/// Running sums for one arm: O(1) memory whatever the number of users.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ArmStats {
    /// The arm.
    pub name: String,
    /// Users.
    pub users: u64,
    /// Users with at least one reply.
    pub responders: u64,
    /// Users with at least one purchase.
    pub converters: u64,
    /// Users who opted out.
    pub opted_out: u64,
    /// Σ messages, Σ responses and their squares and cross product (ratio metric).
    sum_messages: f64,
    sum_responses: f64,
    sum_messages2: f64,
    sum_responses2: f64,
    sum_cross: f64,
    /// Welford accumulators of engagement.
    engagement_mean: f64,
    engagement_m2: f64,
}

impl ArmStats {
    fn new(name: &str) -> ArmStats {
        ArmStats { name: name.to_string(), ..ArmStats::default() }
    }

    /// Adds one user.
    pub fn add(&mut self, row: &UserRow) {
        self.users += 1;
        self.responders += u64::from(row.responses > 0);
        self.converters += u64::from(row.conversions > 0);
        self.opted_out += u64::from(row.opted_out);
        let (x, y) = (row.responses as f64, row.messages as f64);
        self.sum_responses += x;
        self.sum_messages += y;
        self.sum_responses2 += x * x;
        self.sum_messages2 += y * y;
        self.sum_cross += x * y;
        let delta = row.engagement - self.engagement_mean;
        self.engagement_mean += delta / self.users as f64;
        self.engagement_m2 += delta * (row.engagement - self.engagement_mean);
    }

    fn successes(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::ResponseRate => Some(self.responders),
            Metric::ConversionRate => Some(self.converters),
            Metric::OptOutRate => Some(self.opted_out),
            Metric::ResponsesPerMessage | Metric::Engagement => None,
        }
    }

    fn engagement(&self) -> MeanSummary {
        let variance = if self.users > 1 { self.engagement_m2 / (self.users - 1) as f64 } else { 0.0 };
        MeanSummary { n: self.users, mean: self.engagement_mean, variance }
    }

    /// Responses per message and the delta-method variance of that ratio of means:
    /// Var(X̄/Ȳ) ≈ (Var X − 2R·Cov(X,Y) + R²·Var Y) / (n·Ȳ²).
    fn ratio(&self) -> (f64, f64) {
        let n = self.users as f64;
        if n < 2.0 || self.sum_messages == 0.0 {
            return (0.0, 0.0);
        }
        let (mx, my) = (self.sum_responses / n, self.sum_messages / n);
        let r = mx / my;
        let var_x = (self.sum_responses2 - n * mx * mx) / (n - 1.0);
        let var_y = (self.sum_messages2 - n * my * my) / (n - 1.0);
        let cov = (self.sum_cross - n * mx * my) / (n - 1.0);
        (r, ((var_x - 2.0 * r * cov + r * r * var_y) / (n * my * my)).max(0.0))
    }

    /// The metric's estimate and the variance of that estimate.
    fn estimate(&self, metric: Metric) -> (f64, f64) {
        match self.successes(metric) {
            Some(s) => {
                let p = s as f64 / self.users.max(1) as f64;
                (p, p * (1.0 - p) / self.users.max(1) as f64)
            }
            None if metric == Metric::Engagement => {
                let e = self.engagement();
                (e.mean, e.variance / e.n.max(1) as f64)
            }
            None => self.ratio(),
        }
    }

    fn interval(&self, metric: Metric, alpha: f64) -> Result<Interval, StatsError> {
        match self.successes(metric) {
            Some(s) => wilson(s, self.users, alpha),
            None if metric == Metric::Engagement => stats::mean_interval(&self.engagement(), alpha),
            None => {
                let (r, var) = self.ratio();
                let half = z(1.0 - alpha / 2.0) * var.sqrt();
                Ok(Interval { estimate: r, low: r - half, high: r + half })
            }
        }
    }
}

/// Streams rows into per-arm sums.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    arms: Vec<ArmStats>,
}

impl Accumulator {
    /// An accumulator that lists `arms` first, in this order (the first is control).
    pub fn with_arms<'a>(arms: impl IntoIterator<Item = &'a str>) -> Accumulator {
        Accumulator { arms: arms.into_iter().map(ArmStats::new).collect() }
    }

    /// Adds one user to their arm (a new arm is appended).
    pub fn add(&mut self, row: &UserRow) {
        match self.arms.iter_mut().find(|a| a.name == row.arm) {
            Some(arm) => arm.add(row),
            None => {
                let mut arm = ArmStats::new(&row.arm);
                arm.add(row);
                self.arms.push(arm);
            }
        }
    }

    /// The arms so far.
    pub fn arms(&self) -> &[ArmStats] {
        &self.arms
    }

    /// Makes the arm called `name` the control (first); `false` if there is no such arm.
    pub fn set_control(&mut self, name: &str) -> bool {
        match self.arms.iter().position(|a| a.name == name) {
            Some(i) => {
                let arm = self.arms.remove(i);
                self.arms.insert(0, arm);
                true
            }
            None => false,
        }
    }
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
    /// Treatment minus control, with its interval.
    pub increase: Interval,
    /// Verdict.
    pub state: GuardrailState,
}

/// A treatment against control.
#[derive(Debug, Clone, Serialize)]
pub struct ArmComparison {
    /// The treatment.
    pub arm: String,
    /// Treatment minus control, with its interval.
    pub difference: Interval,
    /// Treatment / control − 1, delta-method interval.
    pub lift: Interval,
    /// Unadjusted two-sided p-value.
    pub p_value: f64,
    /// Holm-adjusted over all treatments.
    pub p_adjusted: f64,
    /// P(treatment beats control).
    pub prob_beat_control: f64,
    /// Expected loss of choosing the treatment, in the metric's units.
    pub expected_loss: f64,
    /// The mSPRT's always-valid p-value at this look: valid however often a live experiment
    /// is looked at (its running minimum over looks is what to watch).
    pub p_always_valid: f64,
    /// Guardrails.
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
    pub estimate: Interval,
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
    /// Per arm.
    pub arms: Vec<ArmLine>,
    /// Each treatment against control.
    pub comparisons: Vec<ArmComparison>,
    /// Chi-square across all arms (proportion metrics with more than two arms).
    pub omnibus: Option<ChiSquare>,
    /// Sample-ratio mismatch check of the arms' sizes against their weights.
    pub srm: ChiSquare,
    /// Whether the SRM check failed (p < 0.001).
    pub srm_warning: bool,
    /// Plain-language verdict, one line per treatment.
    pub verdict: Vec<String>,
}

fn z(p: f64) -> f64 {
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
    /// A statistic's input was out of range.
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// Compares every arm with the first. `weights` are the planned shares for the SRM check
/// (in arm order; `None` = equal). Guardrails come from `design` when given.
pub fn compare(
    acc: &Accumulator,
    metric: Metric,
    alpha: f64,
    weights: Option<&[f64]>,
    design: Option<&Experiment>,
) -> Result<Report, CompareError> {
    let arms: Vec<&ArmStats> = acc.arms.iter().filter(|a| a.users > 0).collect();
    if arms.len() < 2 {
        return Err(CompareError::TooFewArms(arms.len()));
    }
    let control = arms[0];
    let equal = vec![1.0; arms.len()];
    let planned: Vec<f64> = match weights {
        Some(w) => acc.arms.iter().zip(w).filter(|(a, _)| a.users > 0).map(|(_, w)| *w).collect(),
        None => equal,
    };
    let srm = sample_ratio_mismatch(&arms.iter().map(|a| a.users).collect::<Vec<_>>(), &planned)?;
    let lines = arms
        .iter()
        .map(|a| Ok(ArmLine { arm: a.name.clone(), users: a.users, estimate: a.interval(metric, alpha)? }))
        .collect::<Result<Vec<_>, StatsError>>()?;
    let omnibus = match arms[0].successes(metric) {
        Some(_) if arms.len() > 2 => Some(chi_square_independence(
            &arms.iter().map(|a| a.successes(metric).unwrap_or(0)).collect::<Vec<_>>(),
            &arms.iter().map(|a| a.users).collect::<Vec<_>>(),
        )?),
        _ => None,
    };

    let zq = z(1.0 - alpha / 2.0);
    let mut comparisons = Vec::new();
    for t in &arms[1..] {
        let (mt, vt) = t.estimate(metric);
        let (mc, vc) = control.estimate(metric);
        let se = (vt + vc).sqrt();
        let d = mt - mc;
        let (difference, p_value) = match (t.successes(metric), control.successes(metric)) {
            (Some(st), Some(sc)) => {
                let test = two_proportion_z_test(st, t.users, sc, control.users)?;
                (Interval { estimate: d, low: d - zq * se, high: d + zq * se }, test.p_value)
            }
            _ if metric == Metric::Engagement => {
                let w = welch_t_test(&t.engagement(), &control.engagement(), alpha)?;
                (w.difference, w.p_value)
            }
            _ => {
                let p = if se > 0.0 { 2.0 * (1.0 - phi((d / se).abs())) } else { 1.0 };
                (Interval { estimate: d, low: d - zq * se, high: d + zq * se }, p)
            }
        };
        let lift = if mc > 0.0 {
            let l = relative_lift(mt, vt, mc, vc, alpha)?;
            Interval { estimate: l.estimate, low: l.low, high: l.high }
        } else {
            Interval { estimate: f64::NAN, low: f64::NAN, high: f64::NAN }
        };
        // For a metric where lower is better (opt-outs), "beating" control means lower.
        let lower_is_better = metric == Metric::OptOutRate;
        let (prob_beat_control, expected_loss) = match (t.successes(metric), control.successes(metric)) {
            (Some(st), Some(sc)) => {
                let b = beta_binomial(sc, control.users, st, t.users)?;
                if lower_is_better {
                    (1.0 - b.prob_treatment_better, b.expected_loss_control)
                } else {
                    (b.prob_treatment_better, b.expected_loss_treatment)
                }
            }
            _ if se > 0.0 => {
                // Normal approximation: D ~ N(d, se²); loss = E[max(−D, 0)].
                let k = d / se;
                (phi(k), se * pdf(k) - d * phi(-k))
            }
            _ => (0.5, 0.0),
        };
        let p_always_valid = always_valid_p(t, control, metric, d, design.map(|e| e.minimum_detectable_effect))?;
        let guardrails = design
            .map(|e| {
                e.guardrails.iter().map(|g| guardrail(t, control, g.metric, g.max_increase, zq)).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        comparisons.push(ArmComparison {
            arm: t.name.clone(),
            difference,
            lift,
            p_value,
            p_adjusted: p_value,
            prob_beat_control,
            expected_loss,
            p_always_valid,
            guardrails,
        });
    }
    let adjusted = holm(&comparisons.iter().map(|c| c.p_value).collect::<Vec<_>>());
    for (c, p) in comparisons.iter_mut().zip(adjusted) {
        c.p_adjusted = p;
    }
    let srm_warning = srm.p_value < SRM_THRESHOLD;
    let verdict = verdicts(metric, alpha, &control.name, &comparisons, srm_warning, srm.p_value);
    Ok(Report {
        metric,
        alpha,
        control: control.name.clone(),
        arms: lines,
        comparisons,
        omnibus,
        srm,
        srm_warning,
        verdict,
    })
}

/// The mSPRT p-value for a difference `d` of per-user means: σ² is the pooled per-user
/// variance, n the harmonic mean of the arms' sizes, and the mixing variance τ² = (mde ·
/// control mean)² — the effect the experiment was designed to detect (mde 10% without a
/// design). The ratio metric uses the variance of its linearised per-user values.
fn always_valid_p(t: &ArmStats, c: &ArmStats, metric: Metric, d: f64, mde: Option<f64>) -> Result<f64, StatsError> {
    let (mc, vc) = c.estimate(metric);
    let (_, vt) = t.estimate(metric);
    // Per-user variances from the variances of the arm estimates.
    let sigma2 = 0.5 * (vt * t.users as f64 + vc * c.users as f64);
    let n = 2.0 / (1.0 / t.users as f64 + 1.0 / c.users as f64);
    let tau = mde.unwrap_or(0.1) * mc.abs();
    if sigma2 <= 0.0 || tau <= 0.0 {
        return Ok(1.0);
    }
    Ok(stats::msprt_mean_difference(n.floor() as u64, d, sigma2, tau * tau)?.p_value)
}

fn guardrail(t: &ArmStats, c: &ArmStats, metric: Metric, max_increase: f64, zq: f64) -> GuardrailCheck {
    let (mt, vt) = t.estimate(metric);
    let (mc, vc) = c.estimate(metric);
    let d = mt - mc;
    let half = zq * (vt + vc).sqrt();
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

fn pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn verdicts(
    metric: Metric,
    alpha: f64,
    control: &str,
    comparisons: &[ArmComparison],
    srm_warning: bool,
    srm_p: f64,
) -> Vec<String> {
    let mut out = Vec::new();
    if srm_warning {
        out.push(format!(
            "WARNING: sample ratio mismatch (p = {srm_p:.2e}): the arms' sizes do not match their weights; do not trust this comparison."
        ));
    }
    for c in comparisons {
        let what = metric.as_str().replace('_', " ");
        let mut line = if c.p_adjusted < alpha {
            let direction = if c.difference.estimate > 0.0 { "raises" } else { "lowers" };
            format!(
                "{} {direction} {what} by {} [{}, {}] against {control} (adjusted p = {:.3}; P(better than {control}) = {:.1}%)",
                c.arm,
                pct(c.lift.estimate.abs()).trim_start_matches('+'),
                pct(c.lift.low),
                pct(c.lift.high),
                c.p_adjusted,
                100.0 * c.prob_beat_control
            )
        } else {
            format!(
                "{}: no significant difference in {what} from {control}: lift {} [{}, {}] (adjusted p = {:.3})",
                c.arm,
                pct(c.lift.estimate),
                pct(c.lift.low),
                pct(c.lift.high),
                c.p_adjusted
            )
        };
        let breached: Vec<&str> =
            c.guardrails.iter().filter(|g| g.state == GuardrailState::Breached).map(|g| g.metric.as_str()).collect();
        let open: Vec<&str> =
            c.guardrails.iter().filter(|g| g.state == GuardrailState::NotRuledOut).map(|g| g.metric.as_str()).collect();
        if !breached.is_empty() {
            let _ = write!(line, "; GUARDRAIL BREACHED: {}", breached.join(", "));
        } else if !open.is_empty() {
            let _ = write!(line, "; guardrail not yet ruled out: {}", open.join(", "));
        } else if !c.guardrails.is_empty() {
            line.push_str("; no guardrail breached");
        }
        out.push(line);
    }
    out
}

impl Report {
    /// A readable table and the verdict.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let metric = self.metric.as_str();
        let _ = writeln!(out, "primary metric: {metric}   alpha: {}   control: {}", self.alpha, self.control);
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>26} {:>26} {:>9} {:>9} {:>8} {:>9}",
            "arm", "users", "estimate [95% CI]", "lift [CI]", "p (adj)", "p (mSPRT)", "P(beat)", "exp.loss"
        );
        for line in &self.arms {
            let e = &line.estimate;
            let cmp = self.comparisons.iter().find(|c| c.arm == line.arm);
            let (lift, p, seq, beat, loss) = match cmp {
                Some(c) => (
                    format!("{} [{}, {}]", pct(c.lift.estimate), pct(c.lift.low), pct(c.lift.high)),
                    format!("{:.4}", c.p_adjusted),
                    format!("{:.4}", c.p_always_valid),
                    format!("{:.1}%", 100.0 * c.prob_beat_control),
                    format!("{:.2e}", c.expected_loss),
                ),
                None => ("(control)".into(), "".into(), "".into(), "".into(), "".into()),
            };
            let _ = writeln!(
                out,
                "{:<20} {:>9} {:>26} {:>26} {:>9} {:>9} {:>8} {:>9}",
                line.arm,
                line.users,
                format!("{:.4} [{:.4}, {:.4}]", e.estimate, e.low, e.high),
                lift,
                p,
                seq,
                beat,
                loss
            );
        }
        for c in &self.comparisons {
            for g in &c.guardrails {
                let _ = writeln!(
                    out,
                    "guardrail {} for {}: increase {:+.4} [{:+.4}, {:+.4}], allowed {:+.4}: {:?}",
                    g.metric.as_str(),
                    c.arm,
                    g.increase.estimate,
                    g.increase.low,
                    g.increase.high,
                    g.max_increase,
                    g.state
                );
            }
        }
        if let Some(o) = &self.omnibus {
            let _ = writeln!(out, "all arms equal? chi-square {:.3}, df {}, p = {:.4}", o.statistic, o.df, o.p_value);
        }
        let _ = writeln!(
            out,
            "sample ratio: chi-square {:.3}, p = {:.4}{}",
            self.srm.statistic,
            self.srm.p_value,
            if self.srm_warning { "  <-- MISMATCH" } else { " (ok)" }
        );
        let _ = writeln!(out);
        for v in &self.verdict {
            let _ = writeln!(out, "{v}");
        }
        out
    }

    /// An SVG chart: each arm's estimate with its interval, control's estimate as a line.
    pub fn to_svg(&self) -> String {
        let (width, row_h, left, right) = (720.0, 36.0, 170.0, 40.0);
        let height = 70.0 + row_h * self.arms.len() as f64;
        let lo = self.arms.iter().map(|a| a.estimate.low).fold(f64::INFINITY, f64::min);
        let hi = self.arms.iter().map(|a| a.estimate.high).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.1).max(1e-9);
        let (lo, hi) = (lo - pad, hi + pad);
        let x = |v: f64| left + (v - lo) / (hi - lo) * (width - left - right);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="10" y="22" font-size="15">{} by arm, {}% intervals</text>"#,
            escape(self.metric.as_str()),
            100.0 * (1.0 - self.alpha)
        );
        if let Some(control) = self.arms.first() {
            let cx = x(control.estimate.estimate);
            let _ = writeln!(
                s,
                r#"<line x1="{cx:.1}" y1="35" x2="{cx:.1}" y2="{:.1}" stroke="grey" stroke-dasharray="4 3"/>"#,
                height - 25.0
            );
        }
        for (i, a) in self.arms.iter().enumerate() {
            let y = 55.0 + row_h * i as f64;
            let colour = if i == 0 { "#555" } else { "#1f77b4" };
            let _ = writeln!(s, r#"<text x="10" y="{:.1}">{}</text>"#, y + 4.0, escape(&a.arm));
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/>"#,
                x(a.estimate.low),
                x(a.estimate.high)
            );
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{y:.1}" r="5" fill="{colour}"/>"#, x(a.estimate.estimate));
        }
        for (v, anchor) in [(lo, "start"), (hi, "end")] {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" fill="grey">{v:.4}</text>"#,
                x(v),
                height - 8.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(arm: &str, users: u64, responders: u64, first_id: u64) -> Vec<UserRow> {
        (0..users)
            .map(|i| {
                let responses = u64::from(i < responders);
                UserRow {
                    user: first_id + i,
                    arm: arm.into(),
                    messages: 4,
                    responses,
                    conversions: 0,
                    opted_out: false,
                    engagement: responses as f64,
                }
            })
            .collect()
    }

    /// A clear effect is found, with the numbers the statistics module gives.
    #[test]
    fn finds_a_clear_effect() {
        let mut acc = Accumulator::with_arms(["control", "b"]);
        for r in rows("control", 2000, 120, 0).iter().chain(&rows("b", 2000, 180, 10_000)) {
            acc.add(r);
        }
        let report = compare(&acc, Metric::ResponseRate, 0.05, None, None).unwrap();
        let c = &report.comparisons[0];
        let z = two_proportion_z_test(180, 2000, 120, 2000).unwrap();
        assert!((c.p_value - z.p_value).abs() < 1e-12);
        assert!((c.lift.estimate - 0.5).abs() < 1e-12);
        assert!(c.prob_beat_control > 0.99);
        // The always-valid p-value pays for optional stopping: above the fixed-n one, and
        // equal to the mSPRT formula with the pooled per-user variance.
        assert!(c.p_always_valid >= c.p_value && c.p_always_valid <= 1.0, "{}", c.p_always_valid);
        let sigma2 = 0.5 * (0.09 * 0.91 + 0.06 * 0.94);
        let expected = stats::msprt_mean_difference(2000, 0.03, sigma2, (0.1f64 * 0.06).powi(2)).unwrap().p_value;
        assert!((c.p_always_valid - expected).abs() < 1e-12, "{} vs {expected}", c.p_always_valid);
        assert!(!report.srm_warning);
        assert!(report.verdict[0].starts_with("b raises response rate by 50.0%"), "{:?}", report.verdict);
        assert!(report.to_svg().contains("<circle"));
    }

    /// A lopsided split is flagged as a sample-ratio mismatch.
    #[test]
    fn flags_sample_ratio_mismatch() {
        let mut acc = Accumulator::default();
        for r in rows("control", 2000, 100, 0).iter().chain(&rows("b", 1700, 85, 10_000)) {
            acc.add(r);
        }
        let report = compare(&acc, Metric::ResponseRate, 0.05, Some(&[1.0, 1.0]), None).unwrap();
        assert!(report.srm_warning);
        assert!(report.verdict[0].starts_with("WARNING: sample ratio mismatch"));
    }

    /// The ratio metric and engagement are computed per user, not per message.
    #[test]
    fn ratio_and_mean_metrics() {
        let mut acc = Accumulator::default();
        for r in rows("control", 500, 50, 0).iter().chain(&rows("b", 500, 50, 10_000)) {
            acc.add(r);
        }
        let report = compare(&acc, Metric::ResponsesPerMessage, 0.05, None, None).unwrap();
        assert!((report.arms[0].estimate.estimate - 0.025).abs() < 1e-12);
        assert!((report.comparisons[0].p_value - 1.0).abs() < 1e-9);
        let report = compare(&acc, Metric::Engagement, 0.05, None, None).unwrap();
        assert!((report.arms[0].estimate.estimate - 0.1).abs() < 1e-12);
        assert!(compare(&Accumulator::default(), Metric::Engagement, 0.05, None, None).is_err());
    }
}
