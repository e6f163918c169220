//! The comparison says nothing misleading: each test here failed before its fix.

use super::*;
use crate::results::UserRow;

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
                pre_period: None,
            }
        })
        .collect()
}

fn accumulate(names: &[&str], groups: &[Vec<UserRow>]) -> Accumulator {
    let mut acc = Accumulator::with_arms(names.iter().copied());
    for r in groups.iter().flatten() {
        acc.add(r);
    }
    acc
}

fn settings(metric: Metric, alpha: f64, weights: Option<&[f64]>) -> Settings<'_> {
    Settings { metric, alpha, adjustment: Adjustment::Holm, weights, design: None, prior: LiftPrior::Flat }
}

fn json(report: &Report) -> String {
    serde_json::to_string(report).expect("a report serialises")
}

/// A clear effect is found with the unpooled Wald test whose interval is the one shown,
/// and the always-valid p-value is the mSPRT formula's.
#[test]
fn finds_a_clear_effect() -> Result<(), CompareError> {
    let acc = accumulate(&["control", "b"], &[rows("control", 2000, 120, 0), rows("b", 2000, 180, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    let c = &report.comparisons[0];
    let (pt, pc) = (181.0f64 / 2002.0, 121.0f64 / 2002.0);
    let se = (pt * (1.0 - pt) / 2000.0 + pc * (1.0 - pc) / 2000.0).sqrt();
    let test = c.test.value().expect("a test");
    assert!((test.statistic - 0.03 / se).abs() < 1e-12 && test.df.is_none());
    assert!((c.p_value.value().unwrap() - stats::z_two_sided_p(0.03 / se)).abs() < 1e-15);
    assert!((c.lift.value().unwrap().estimate - 0.5).abs() < 1e-12);
    assert!(c.prob_beat_reference > 0.99 && c.significant);
    assert!(c.p_always_valid.value().unwrap() >= c.p_value.value().unwrap());
    let sigma2 = 0.5 * (pt * (1.0 - pt) + pc * (1.0 - pc));
    let expected = stats::msprt_mean_difference(2000, 0.03, sigma2, (0.1f64 * 0.06).powi(2))?.p_value;
    // A treatment without a single success is not known exactly: its lift reaches above −100%.
    let acc = accumulate(&["control", "b"], &[rows("control", 1000, 100, 0), rows("b", 1000, 0, 10_000)]);
    let zero = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    let lift = zero.comparisons[0].lift.value().expect("a lift");
    assert!(lift.low == -1.0 && lift.high > -1.0, "{lift:?}");
    assert!((c.p_always_valid.value().unwrap() - expected).abs() < 1e-12);
    assert!(!report.srm.mismatch);
    assert!(report.verdict[0].starts_with("b raises response rate by 3.00 points ["), "{:?}", report.verdict);
    assert!(report.to_svg().contains("<circle"));
    Ok(())
}

/// Item 1: an arm the experiment gives weight but the results have no user for is the
/// worst sample-ratio mismatch, not "ok"; without weights the report says what it cannot see.
#[test]
fn a_missing_arm_fails_the_sample_ratio_check() -> Result<(), CompareError> {
    let acc = accumulate(&["control", "b", "c"], &[rows("control", 1000, 100, 0), rows("b", 1000, 100, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, Some(&[1.0, 1.0, 1.0])))?;
    assert!(report.srm.mismatch && report.srm.check.p_value < 1e-100, "{:?}", report.srm);
    assert_eq!(report.srm.missing_arms, vec!["c".to_string()]);
    assert!(
        report.verdict[0].starts_with("WARNING: sample ratio mismatch: arm c has a weight"),
        "{:?}",
        report.verdict
    );
    assert!(report.verdict.iter().any(|v| v.starts_with("c: no users in the results")));
    let text = report.to_text();
    assert!(text.contains("<-- MISMATCH") && text.contains("c                            0"), "{text}");
    assert!(!text.contains("(ok)"), "{text}");

    let acc = accumulate(&[], &[rows("control", 1000, 100, 0), rows("b", 1000, 100, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    assert_eq!(report.srm.weights, WeightSource::AssumedEqual);
    assert!(
        report.to_text().contains("weights unknown (no experiment file, no header in the results file)"),
        "{}",
        report.to_text()
    );
    Ok(())
}

/// Item 2: the verdict shows the interval of the quantity tested (the absolute difference),
/// that interval and the relative one exclude 0 exactly when p < alpha, and p is printed
/// with the digits that tell it from alpha.
#[test]
fn the_verdict_agrees_with_its_own_test() -> Result<(), CompareError> {
    assert_eq!(text::p_text(0.0496, 0.05), "0.0496");
    assert_eq!(text::p_text(0.049_999_2, 0.05), "0.049999");
    assert_eq!(text::p_text(0.050_000_4, 0.05), "0.0500004");
    assert_eq!(text::p_text(0.37, 0.05), "0.3700");
    assert_eq!(text::p_text(3.2e-9, 0.05), "3.20e-9");
    assert_eq!(text::p_text(0.0, 0.05), "< 1e-300");
    for treated in 100..=170 {
        let acc = accumulate(&["control", "b"], &[rows("control", 2000, 120, 0), rows("b", 2000, treated, 10_000)]);
        let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
        let c = &report.comparisons[0];
        let p = c.p_value.value().unwrap();
        let excludes = |i: Interval, zero: f64| i.low > zero || i.high < zero;
        assert_eq!(c.significant, p < 0.05);
        assert_eq!(excludes(c.difference, 0.0), c.significant, "{treated}: {c:?}");
        assert_eq!(excludes(c.lift.value().unwrap(), 0.0), c.significant, "{treated}: {c:?}");
        let verdict = &report.verdict[0];
        assert!(verdict.contains("95% CI of the absolute difference"), "{verdict}");
        assert!(verdict.contains(&format!("p = {}", text::p_text(p, 0.05))), "{verdict}");
        assert!(verdict.contains("relative lift"), "{verdict}");
    }
    Ok(())
}

/// Item 3: `alpha` changes every label — a 90% interval is labelled 90%.
#[test]
fn alpha_changes_every_label() -> Result<(), CompareError> {
    let acc = accumulate(&["control", "b"], &[rows("control", 2000, 120, 0), rows("b", 2000, 180, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.1, None))?;
    let text = report.to_text();
    assert!(text.contains("estimate [90% CI]") && text.contains("(absolute, 90% CI)"), "{text}");
    assert!(!text.contains("95%"), "{text}");
    assert!(report.verdict.iter().all(|v| !v.contains("95%")));
    assert!(report.to_svg().contains("90% intervals"));
    assert_eq!(text::confidence(0.001), "99.9");
    Ok(())
}

/// Item 4: the holdout is a reference: no verdict of its own, outside the Holm family and
/// the omnibus test; each messaged arm's effect over it is reported apart.
#[test]
fn the_holdout_is_a_reference_not_a_treatment() -> Result<(), CompareError> {
    let acc = accumulate(
        &["control", "b", "holdout"],
        &[rows("control", 1000, 100, 0), rows("b", 1000, 130, 10_000), rows("holdout", 200, 0, 20_000)],
    );
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, Some(&[1.0, 1.0, 0.2])))?;
    assert_eq!(report.comparisons.len(), 1);
    assert_eq!(report.family.members, vec!["b vs control on response_rate".to_string()]);
    assert!(report.omnibus.is_none(), "two compared arms: no omnibus");
    let holdout: Vec<(&str, &str)> = report.holdout.iter().map(|c| (c.arm.as_str(), c.reference.as_str())).collect();
    assert_eq!(holdout, vec![("control", "holdout"), ("b", "holdout")]);
    assert!(report.verdict.iter().all(|v| !v.starts_with("holdout")), "{:?}", report.verdict);
    assert!(report.verdict.iter().any(|v| v.starts_with("incremental effect of messaging at all, b vs holdout")));
    // The holdout's rate is 0: no relative lift, said so.
    assert!(report.holdout[0].lift.value().is_none());
    let text = report.to_text();
    assert!(!text.contains("-100.0%") && !text.contains("NaN"), "{text}");
    Ok(())
}

/// Item 5: a lift interval never reaches below −100%; engagement (which can be zero or
/// negative in control) is an absolute difference with an mSPRT scale in standard
/// deviations, not one that collapses with a control mean near 0; no NaN anywhere.
#[test]
fn intervals_respect_the_scale() -> Result<(), CompareError> {
    let acc = accumulate(&["control", "b"], &[rows("control", 300, 12, 0), rows("b", 300, 0, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    let lift = report.comparisons[0].lift.value().expect("a lift");
    assert!(lift.low >= -1.0 && lift.estimate == -1.0, "{lift:?}");

    let engaged = |arm: &str, users: u64, responders: u64, opted: u64, first: u64| -> Vec<UserRow> {
        (0..users)
            .map(|i| {
                let (responses, opted_out) = (if i < responders { 5 } else { 0 }, i >= users - opted);
                UserRow {
                    user: first + i,
                    arm: arm.into(),
                    messages: 5,
                    responses,
                    conversions: 0,
                    opted_out,
                    engagement: UserRow::engagement_of(responses, 0, opted_out),
                    pre_period: None,
                }
            })
            .collect()
    };
    // Control: engagement mean 5·200/2000 − 5·200/2000 = 0 exactly; treatment clearly above.
    let acc =
        accumulate(&["control", "b"], &[engaged("control", 2000, 200, 200, 0), engaged("b", 2000, 400, 200, 10_000)]);
    let report = compare(&acc, &settings(Metric::Engagement, 0.05, None))?;
    let c = &report.comparisons[0];
    assert!(c.lift.value().is_none());
    assert!(c.p_value.value().unwrap() < 1e-6);
    assert!(c.p_always_valid.value().unwrap() < 0.01, "{:?}", c.p_always_valid);
    let (text, json) = (report.to_text(), json(&report));
    assert!(text.contains("undefined (engagement can be zero or negative"), "{text}");
    assert!(!text.contains("NaN") && !json.contains("NaN") && !json.contains("\"lift\":null"), "{text}\n{json}");
    assert!(report.verdict[0].starts_with("b raises engagement by 0.5000 ["), "{:?}", report.verdict);
    Ok(())
}

/// Item 6: two arms without a single success: P(beat) = 0.5 exactly and the test is "not
/// computable", not p = 1; the statistic, its df, raw and adjusted p and the expected
/// loss's unit are in the text and the JSON.
#[test]
fn the_same_numbers_visible() -> Result<(), CompareError> {
    let acc = accumulate(&["control", "b"], &[rows("control", 500, 0, 0), rows("b", 700, 0, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    let c = &report.comparisons[0];
    assert_eq!(c.prob_beat_reference, 0.5);
    let why = "both arms have no successes: the test is not computable";
    assert_eq!(c.p_value, Figure::Undefined { undefined: why.into() });
    let text = report.to_text();
    assert!(text.contains(why) && !text.contains("p = 1"), "{text}");

    let acc = accumulate(&["control", "b"], &[rows("control", 2000, 120, 0), rows("b", 2000, 150, 10_000)]);
    let engaged = compare(&acc, &settings(Metric::Engagement, 0.05, None))?;
    let text = engaged.to_text();
    assert!(text.contains("test: Welch t-test, statistic +") && text.contains("(df 3"), "{text}");
    assert!(text.contains(", p = ") && text.contains("adjusted p = "), "{text}");
    assert!(text.contains("(engagement points per user)"), "{text}");
    let json = json(&engaged);
    for key in ["\"statistic\":", "\"df\":", "\"p_value\":", "\"p_adjusted\":", "\"expected_loss_unit\":"] {
        assert!(json.contains(key), "{key} in {json}");
    }
    Ok(())
}

/// Item 7: guardrail intervals are Bonferroni-adjusted over guardrails × treatments, and
/// the report says so.
#[test]
fn guardrails_are_adjusted_for_multiplicity() -> Result<(), Box<dyn std::error::Error>> {
    let text = include_str!("../../cooldown.toml").replace("metric = \"opt_out_rate\"", "metric = \"response_rate\"");
    let design = Experiment::from_toml_str(&text, "cooldown.toml")?;
    let acc = accumulate(
        &["control", "longer-cooldown", "c"],
        &[rows("control", 2000, 120, 0), rows("longer-cooldown", 2000, 150, 10_000), rows("c", 2000, 140, 20_000)],
    );
    let report = compare(
        &acc,
        &Settings {
            metric: Metric::ResponseRate,
            alpha: 0.05,
            adjustment: Adjustment::Holm,
            weights: Some(&[1.0, 1.0, 1.0]),
            design: Some(&design),
            prior: LiftPrior::Flat,
        },
    )?;
    let note = report.guardrail_note.as_deref().expect("a guardrail note");
    assert!(note.starts_with("guardrail intervals are Bonferroni-adjusted over 2 checks"), "{note}");
    assert!(note.contains("each at 97.5% confidence"), "{note}");
    let g = &report.comparisons[0].guardrails[0];
    let (pt, pc) = (151.0f64 / 2002.0, 121.0f64 / 2002.0);
    let se = (pt * (1.0 - pt) / 2000.0 + pc * (1.0 - pc) / 2000.0).sqrt();
    assert!((g.increase.high - g.increase.estimate - z(1.0 - 0.05 / 4.0) * se).abs() < 1e-12, "{g:?}");
    assert!(report.to_text().contains(note));
    Ok(())
}

/// Item 12: Benjamini–Hochberg adjusts the treatments' family instead of Holm, and the
/// report states the family and what it controls.
#[test]
fn benjamini_hochberg_is_an_option_and_the_family_is_stated() -> Result<(), CompareError> {
    let acc = accumulate(
        &["control", "b", "c", "d"],
        &[
            rows("control", 2000, 120, 0),
            rows("b", 2000, 150, 10_000),
            rows("c", 2000, 155, 20_000),
            rows("d", 2000, 160, 30_000),
        ],
    );
    let holm = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    let bh = compare(
        &acc,
        &Settings { adjustment: Adjustment::BenjaminiHochberg, ..settings(Metric::ResponseRate, 0.05, None) },
    )?;
    let raw: Vec<f64> = bh.comparisons.iter().map(|c| c.p_value.value().unwrap()).collect();
    let expected = stats::benjamini_hochberg(&raw);
    for (c, e) in bh.comparisons.iter().zip(&expected) {
        assert_eq!(c.p_adjusted.value(), Some(*e));
    }
    assert!(bh.comparisons.iter().zip(&holm.comparisons).all(|(b, h)| b.p_adjusted.value() <= h.p_adjusted.value()));
    assert!(
        bh.family
            .statement
            .starts_with("3 comparisons of the treatments with control on response_rate, Benjamini–Hochberg")
    );
    assert!(bh.to_text().contains("family: 3 comparisons"), "{}", bh.to_text());
    Ok(())
}

/// The ratio metric and engagement are computed per user, not per message.
#[test]
fn ratio_and_mean_metrics() -> Result<(), CompareError> {
    let acc = accumulate(&[], &[rows("control", 500, 50, 0), rows("b", 500, 50, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponsesPerMessage, 0.05, None))?;
    assert!((report.arms[0].estimate.value().unwrap().estimate - 0.025).abs() < 1e-12);
    assert!((report.comparisons[0].p_value.value().unwrap() - 1.0).abs() < 1e-9);
    let report = compare(&acc, &settings(Metric::Engagement, 0.05, None))?;
    assert!((report.arms[0].estimate.value().unwrap().estimate - 0.1).abs() < 1e-12);
    assert!(compare(&Accumulator::default(), &settings(Metric::Engagement, 0.05, None)).is_err());
    Ok(())
}

/// CUPED: with a pre-period column, each treatment shows the adjusted difference beside
/// the raw one with the variance it removed; without one, nothing is claimed.
#[test]
fn cuped_is_shown_beside_the_raw_estimate() -> Result<(), CompareError> {
    // The pre-period value predicts who responds: users 0..9 of every ten with a high value
    // respond more often.
    let arm = |name: &str, users: u64, extra: u64, first: u64| -> Vec<UserRow> {
        (0..users)
            .map(|i| {
                let pre = (i % 10) as f64;
                let responses = u64::from(i % 10 >= 7 || (i % 10 == 6 && i % 100 < extra));
                UserRow { pre_period: Some(pre), ..rows(name, 1, responses, first + i)[0].clone() }
            })
            .collect()
    };
    let acc = accumulate(&["control", "b"], &[arm("control", 2000, 0, 0), arm("b", 2000, 50, 10_000)]);
    let report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    let c = &report.comparisons[0];
    let r = c.cuped.as_ref().and_then(Figure::value).expect("a CUPED figure");
    assert!(r.variance_reduction > 0.4, "{r:?}");
    assert!(r.difference.high - r.difference.low < c.difference.high - c.difference.low);
    assert!(report.to_text().contains("CUPED (pre-period covariate, 95% CI)"), "{}", report.to_text());
    let ratio = compare(&acc, &settings(Metric::ResponsesPerMessage, 0.05, None))?;
    assert!(matches!(ratio.comparisons[0].cuped, Some(Figure::Undefined { .. })));
    let plain = accumulate(&["control", "b"], &[rows("control", 100, 10, 0), rows("b", 100, 12, 1000)]);
    assert!(compare(&plain, &settings(Metric::ResponseRate, 0.05, None))?.comparisons[0].cuped.is_none());
    Ok(())
}

/// Item 1: weights taken from a results file's header are said to be, in the text and the
/// JSON; assumed weights stay assumed whatever the caller says.
#[test]
fn the_report_names_where_the_weights_came_from() -> Result<(), CompareError> {
    let acc = accumulate(&["control", "b", "c"], &[rows("control", 1000, 100, 0), rows("b", 1000, 100, 10_000)]);
    let mut report = compare(&acc, &settings(Metric::ResponseRate, 0.05, Some(&[1.0, 1.0, 1.0])))?;
    assert!(report.to_text().contains("  planned shares from the experiment file\n"));
    report.set_weight_source(WeightSource::ResultsHeader);
    assert!(report.to_text().contains("  planned shares from the results file's header\n"), "{}", report.to_text());
    assert!(json(&report).contains("\"weights\":\"results_header\""));
    let acc = accumulate(&[], &[rows("control", 1000, 100, 0), rows("b", 1000, 100, 10_000)]);
    let mut report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    report.set_weight_source(WeightSource::ResultsHeader);
    assert_eq!(report.srm.weights, WeightSource::AssumedEqual);
    Ok(())
}

/// Item 10: a report with a history shows this look's mSPRT p beside the running minimum
/// over the looks, and the running intersection of the sequences; without one, neither
/// (and the JSON has no `running` or `looks` key).
#[test]
fn a_history_of_looks_adds_the_running_figures() -> Result<(), CompareError> {
    let acc = accumulate(&["control", "b"], &[rows("control", 2000, 120, 0), rows("b", 2000, 150, 10_000)]);
    let mut report = compare(&acc, &settings(Metric::ResponseRate, 0.05, None))?;
    assert!(!json(&report).contains("\"running\"") && !json(&report).contains("\"looks\""));
    let this = Look::of(&report, "e", "2026-12-06T18:00:00+00:00");
    let p = this.arms[0].msprt_p.expect("a p");
    let cs = this.arms[0].cs.expect("a sequence");
    let mut earlier = this.clone();
    earlier.arms[0].msprt_p = Some(p / 2.0);
    earlier.arms[0].cs = Some(Bounds { low: cs.low - 0.01, high: cs.high - 0.005 });
    report.add_looks(&[earlier, this]);
    let running = report.comparisons[0].running.clone().expect("running figures");
    assert_eq!((running.looks, running.msprt_p_min), (2, Some(p / 2.0)));
    assert_eq!(running.cs, Some(Bounds { low: cs.low, high: cs.high - 0.005 }));
    assert_eq!(report.looks, Some(2));
    let text = report.to_text();
    assert!(text.contains("always-valid p (mSPRT, this look): "), "{text}");
    assert!(text.contains("always-valid p (mSPRT, running minimum over 2 looks): "), "{text}");
    assert!(text.contains("95% confidence sequence, running intersection over 2 looks: difference ["), "{text}");
    Ok(())
}
