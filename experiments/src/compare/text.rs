//! The report as text: the arms' table, one block per comparison (difference, relative lift,
//! test, always-valid p, Bayesian view), the family, the sample-ratio check, and the verdict
//! lines; and as an SVG chart. Every label follows alpha; every p-value is printed with the
//! digits it takes to tell it from alpha; every undefined figure says why.

use std::fmt::Write as _;

use super::{ArmComparison, ArmStats, Figure, GuardrailState, Report};
use crate::design::Metric;
use crate::stats::{Interval, LiftPrior};

/// The confidence level of `alpha` in percent, as short as exact: 0.05 → `95`, 0.001 →
/// `99.9`, 0.0125 → `98.75`.
pub(crate) fn confidence(alpha: f64) -> String {
    let text = format!("{:.10}", 100.0 * (1.0 - alpha));
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A p-value with enough digits to tell it from `alpha`: the shortest of 4 to 15 significant
/// places whose rounded value falls on the same side of alpha as `p` and is not alpha itself
/// (0.0496 at alpha 0.05 is `0.0496`, never `0.050`); below 0.0001 in scientific notation,
/// and a p that underflowed to 0 as `< 1e-300`.
pub(crate) fn p_text(p: f64, alpha: f64) -> String {
    if p == 0.0 {
        // Below the smallest double: 2·(1 − Φ(z)) underflowed.
        return "< 1e-300".to_string();
    }
    let scientific = p != 0.0 && p < 1e-4;
    let mut last = String::new();
    for digits in 3..=15 {
        last = if scientific {
            format!("{p:.digits$e}", digits = digits - 1)
        } else {
            format!("{p:.digits$}", digits = digits + 1)
        };
        let Ok(shown) = last.parse::<f64>() else { continue };
        if (shown < alpha) == (p < alpha) && shown != alpha {
            return last;
        }
    }
    last
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn is_share(metric: Metric) -> bool {
    metric.is_share()
}

/// A difference in the metric's units: percentage points for shares.
fn difference_value(metric: Metric, x: f64) -> String {
    if is_share(metric) { format!("{:+.2}", 100.0 * x) } else { format!("{x:+.4}") }
}

fn difference_text(metric: Metric, d: &Interval) -> String {
    let unit = if is_share(metric) { " points" } else { "" };
    format!(
        "{}{unit} [{}, {}]",
        difference_value(metric, d.estimate),
        difference_value(metric, d.low),
        difference_value(metric, d.high)
    )
}

fn lift_text(lift: &Figure<Interval>) -> String {
    match lift {
        Figure::Value(l) => format!("{} [{}, {}]", pct(l.estimate), pct(l.low), pct(l.high)),
        Figure::Undefined { undefined } => format!("undefined ({undefined})"),
    }
}

fn p_figure(p: &Figure<f64>, alpha: f64) -> String {
    match p {
        Figure::Value(p) => p_text(*p, alpha),
        Figure::Undefined { undefined } => format!("undefined ({undefined})"),
    }
}

/// The verdict lines: the SRM warning first, then one line per treatment, per arm without
/// users, and per holdout comparison.
pub(super) fn verdicts(report: &Report, all: &[ArmStats]) -> Vec<String> {
    let mut out = Vec::new();
    let srm = &report.srm;
    if !srm.missing_arms.is_empty() {
        out.push(format!(
            "WARNING: sample ratio mismatch: arm{} {} {} a weight in the experiment but no user in the results; do not trust this comparison.",
            if srm.missing_arms.len() == 1 { "" } else { "s" },
            srm.missing_arms.join(", "),
            if srm.missing_arms.len() == 1 { "has" } else { "have" },
        ));
    } else if srm.mismatch {
        out.push(format!(
            "WARNING: sample ratio mismatch (p = {:.2e}): the arms' sizes do not match their weights; do not trust this comparison.",
            srm.check.p_value
        ));
    }
    let what = report.metric.as_str().replace('_', " ");
    let conf = confidence(report.alpha);
    let alpha = report.alpha;
    for c in &report.comparisons {
        let mut line = match (&c.test, &c.p_value, &c.p_adjusted) {
            (Figure::Value(test), Figure::Value(p), Figure::Value(adjusted)) => {
                let evidence = format!(
                    "{conf}% CI of the absolute difference; {}, p = {}, adjusted p = {} {} alpha {alpha}",
                    test.test,
                    p_text(*p, alpha),
                    p_text(*adjusted, alpha),
                    if c.significant { "<" } else { "≥" }
                );
                if c.significant {
                    let direction = if c.difference.estimate > 0.0 { "raises" } else { "lowers" };
                    format!(
                        "{} {direction} {what} by {} against {} ({evidence}); relative lift {}; P(better than {}) = {:.1}%",
                        c.arm,
                        difference_text(report.metric, &c.difference).trim_start_matches(['+', '-']),
                        c.reference,
                        lift_text(&c.lift),
                        c.reference,
                        100.0 * c.prob_beat_reference
                    )
                } else {
                    format!(
                        "{}: no significant difference in {what} from {}: difference {} ({evidence}); relative lift {}",
                        c.arm,
                        c.reference,
                        difference_text(report.metric, &c.difference),
                        lift_text(&c.lift)
                    )
                }
            }
            (Figure::Undefined { undefined }, _, _) | (_, Figure::Undefined { undefined }, _) => {
                format!("{}: no verdict on {what}: {undefined}", c.arm)
            }
            (_, _, Figure::Undefined { undefined }) => format!("{}: no verdict on {what}: {undefined}", c.arm),
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
    for a in all.iter().skip(1).filter(|a| a.users == 0) {
        out.push(format!("{}: no users in the results: not compared (see the sample-ratio check)", a.name));
    }
    for c in &report.holdout {
        out.push(format!(
            "incremental effect of messaging at all, {} vs {}: {what} {} ({conf}% CI, p = {}, unadjusted: outside the family); relative {}",
            c.arm,
            c.reference,
            difference_text(report.metric, &c.difference),
            p_figure(&c.p_value, alpha),
            lift_text(&c.lift)
        ));
    }
    out
}

fn comparison_block(out: &mut String, report: &Report, c: &ArmComparison, in_family: bool) {
    let (alpha, conf) = (report.alpha, confidence(report.alpha));
    let _ = writeln!(out, "{} vs {}:", c.arm, c.reference);
    let _ = writeln!(out, "  difference (absolute, {conf}% CI):    {}", difference_text(report.metric, &c.difference));
    let _ = writeln!(out, "  relative lift (Fieller, {conf}% CI): {}", lift_text(&c.lift));
    match &c.test {
        Figure::Value(t) => {
            let df = t.df.map_or("normal reference".to_string(), |df| format!("df {df:.1}"));
            let adjusted = if in_family {
                format!("adjusted p = {} ({})", p_figure(&c.p_adjusted, alpha), report.family.adjustment.as_str())
            } else {
                "unadjusted (outside the family)".to_string()
            };
            let _ = writeln!(
                out,
                "  test: {}, statistic {:+.4} ({df}), p = {}, {adjusted}",
                t.test,
                t.statistic,
                p_figure(&c.p_value, alpha)
            );
        }
        Figure::Undefined { undefined } => {
            let _ = writeln!(out, "  test: undefined ({undefined})");
        }
    }
    let _ = writeln!(out, "  always-valid p (mSPRT, this look): {}", p_figure(&c.p_always_valid, alpha));
    let sequence = |f: &Figure<Interval>, relative: bool| match f {
        Figure::Value(i) if relative => lift_text(&Figure::Value(*i)),
        Figure::Value(i) => difference_text(report.metric, i),
        Figure::Undefined { undefined } => format!("undefined ({undefined})"),
    };
    let _ = writeln!(
        out,
        "  {conf}% confidence sequence (may be watched at every look): difference {}; relative {}",
        sequence(&c.confidence_sequence, false),
        sequence(&c.confidence_sequence_lift, true)
    );
    if let Some(r) = &c.running {
        let looks = format!("{} look{}", r.looks, if r.looks == 1 { "" } else { "s" });
        let p = r.msprt_p_min.map_or("undefined (no look had one)".to_string(), |p| p_text(p, alpha));
        let _ = writeln!(out, "  always-valid p (mSPRT, running minimum over {looks}): {p}");
        let cs = match r.cs {
            Some(b) if r.cs_empty => format!(
                "empty ({} > {}: the looks' sequences do not overlap — the effect moved, or a miss of probability ≤ alpha)",
                difference_value(report.metric, b.low),
                difference_value(report.metric, b.high)
            ),
            Some(b) => format!(
                "[{}, {}]{}",
                difference_value(report.metric, b.low),
                difference_value(report.metric, b.high),
                if is_share(report.metric) { " points" } else { "" }
            ),
            None => "undefined (no look had one)".to_string(),
        };
        let _ = writeln!(out, "  {conf}% confidence sequence, running intersection over {looks}: difference {cs}");
    }
    match &c.cuped {
        Some(Figure::Value(r)) => {
            let _ = writeln!(
                out,
                "  CUPED (pre-period covariate, {conf}% CI):  {}; z {:+.4}, p = {}; variance {} by {:.1}% (theta {:.4}, correlation {:.3}); raw beside it: {}",
                difference_text(report.metric, &r.difference),
                r.z,
                p_text(r.p_value, alpha),
                if r.variance_reduction >= 0.0 { "reduced" } else { "increased (CUPED does not help here)" },
                100.0 * r.variance_reduction.abs(),
                r.theta,
                r.correlation,
                difference_text(report.metric, &c.difference)
            );
        }
        Some(Figure::Undefined { undefined }) => {
            let _ = writeln!(out, "  CUPED: undefined ({undefined})");
        }
        None => {}
    }
    let _ = writeln!(
        out,
        "  Bayesian: P({} better than {}) = {:.1}% (a posterior probability, not a p-value); expected loss of choosing {}: {:.3e} ({})",
        c.arm,
        c.reference,
        100.0 * c.prob_beat_reference,
        c.arm,
        c.expected_loss,
        report.expected_loss_unit
    );
    match &c.bayes_lift {
        Figure::Value(b) => {
            let prior = match b.prior {
                LiftPrior::Flat => "flat prior".to_string(),
                LiftPrior::Normal { sd } => format!("prior N(0, {sd}²)"),
            };
            let _ = writeln!(
                out,
                "  Bayesian, Gaussian on the relative lift ({prior}): lift {} [{}, {}] ({conf}% credible interval), chance to win {:.1}%, expected loss {:.3}% of {}'s value (posterior figures, not p-values)",
                pct(b.mean),
                pct(b.low),
                pct(b.high),
                100.0 * b.chance_to_win,
                100.0 * b.expected_loss,
                c.reference
            );
        }
        Figure::Undefined { undefined } => {
            let _ = writeln!(out, "  Bayesian, Gaussian on the relative lift: undefined ({undefined})");
        }
    }
    for g in &c.guardrails {
        let _ = writeln!(
            out,
            "  guardrail {}: increase {:+.4} [{:+.4}, {:+.4}], allowed {:+.4}: {:?}",
            g.metric.as_str(),
            g.increase.estimate,
            g.increase.low,
            g.increase.high,
            g.max_increase,
            g.state
        );
    }
}

impl Report {
    /// A readable table, a block per comparison, the checks and the verdict.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let metric = self.metric.as_str();
        let conf = confidence(self.alpha);
        let _ = writeln!(out, "primary metric: {metric}   alpha: {}   control: {}", self.alpha, self.control);
        let _ = writeln!(out, "{:<20} {:>9} {:>34}", "arm", "users", format!("estimate [{conf}% CI]"));
        for line in &self.arms {
            let estimate = match &line.estimate {
                Figure::Value(e) => format!("{:.4} [{:.4}, {:.4}]", e.estimate, e.low, e.high),
                Figure::Undefined { undefined } => format!("undefined ({undefined})"),
            };
            let _ = writeln!(out, "{:<20} {:>9} {:>34}", line.arm, line.users, estimate);
        }
        let _ = writeln!(out);
        for c in &self.comparisons {
            comparison_block(&mut out, self, c, true);
        }
        let _ = writeln!(out, "family: {}", self.family.statement);
        if let Some(note) = &self.guardrail_note {
            let _ = writeln!(out, "{note}");
        }
        if !self.holdout.is_empty() {
            let _ = writeln!(out, "\nincremental effect of messaging at all (each arm against the holdout):");
            for c in &self.holdout {
                comparison_block(&mut out, self, c, false);
            }
        }
        if let Some(o) = &self.omnibus {
            let _ = writeln!(
                out,
                "all arms equal (control and treatments)? chi-square {:.3}, df {}, p = {}",
                o.statistic,
                o.df,
                p_text(o.p_value, self.alpha)
            );
        }
        let srm = &self.srm;
        let _ = writeln!(
            out,
            "sample ratio: chi-square {:.3}, df {}, p = {}{}",
            srm.check.statistic,
            srm.check.df,
            p_text(srm.check.p_value, super::SRM_THRESHOLD),
            if srm.mismatch { "  <-- MISMATCH" } else { " (ok)" }
        );
        if !srm.missing_arms.is_empty() {
            let _ = writeln!(out, "  arms with a weight but no user: {}", srm.missing_arms.join(", "));
        }
        if srm.weights != super::WeightSource::AssumedEqual {
            let _ = writeln!(out, "  planned shares from {}", srm.weights.describe());
        }
        if let Some(note) = &srm.note {
            let _ = writeln!(out, "  {note}");
        }
        let _ = writeln!(out);
        for v in &self.verdict {
            let _ = writeln!(out, "{v}");
        }
        out
    }

    /// An SVG chart: each arm's estimate with its interval, control's estimate as a line
    /// (arms without an estimate are listed without a bar).
    pub fn to_svg(&self) -> String {
        let (width, row_h, left, right) = (720.0, 36.0, 170.0, 40.0);
        let height = 70.0 + row_h * self.arms.len() as f64;
        let defined = || self.arms.iter().filter_map(|a| a.estimate.value());
        let lo = defined().map(|e| e.low).fold(f64::INFINITY, f64::min);
        let hi = defined().map(|e| e.high).fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
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
            confidence(self.alpha)
        );
        if let Some(control) = self.arms.first().and_then(|a| a.estimate.value()) {
            let cx = x(control.estimate);
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
            let Some(e) = a.estimate.value() else { continue };
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/>"#,
                x(e.low),
                x(e.high)
            );
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{y:.1}" r="5" fill="{colour}"/>"#, x(e.estimate));
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
