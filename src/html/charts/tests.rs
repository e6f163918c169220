//! The charts' promises: well-formed markup, escaped text, no NaN, "no data" for nothing,
//! one point drawable, the same bytes for the same input, round ticks.

use super::*;

const JAN1: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// A tiny XML check: every tag closed in order, attribute quotes paired, no raw `<`, `>` or
/// stray `&` in text, nothing after the root. Returns the element names in document order.
pub(crate) fn well_formed(markup: &str) -> Result<Vec<String>, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = markup;
    let mut closed_root = false;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        if closed_root && !rest[..open].trim().is_empty() {
            return Err(format!("text after the root: {:?}", &rest[..open]));
        }
        let close = rest[open..].find('>').ok_or_else(|| format!("unclosed tag at {:?}", &rest[open..]))?;
        let tag = &rest[open + 1..open + close];
        if !tag.matches('"').count().is_multiple_of(2) {
            return Err(format!("unpaired quote in <{tag}>"));
        }
        if tag.contains('<') {
            return Err(format!("'<' inside <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open_name) if open_name == name.trim() => closed_root = stack.is_empty(),
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
            if name.is_empty() {
                return Err(format!("empty tag <{tag}>"));
            }
            if closed_root {
                return Err(format!("a second root <{name}>"));
            }
            names.push(name.clone());
            if tag.ends_with('/') {
                closed_root = stack.is_empty();
            } else {
                stack.push(name);
            }
        }
        rest = &rest[open + close + 1..];
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed: {stack:?}"));
    }
    Ok(names)
}

fn check_text(text: &str) -> Result<(), String> {
    if text.contains('>') {
        return Err(format!("raw '>' in text {text:?}"));
    }
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| entity.starts_with(e));
        if !ok {
            return Err(format!("stray '&' in {text:?}"));
        }
    }
    Ok(())
}

/// Checks what every chart must be; returns it for more checks.
fn sound(svg: String) -> String {
    assert!(svg.starts_with("<svg class=\"chart\" viewBox=\"0 0 720 "), "{svg}");
    if let Err(e) = well_formed(&svg) {
        panic!("not well-formed: {e}\n{svg}");
    }
    for bad in ["NaN", "inf", "http", "<script", "id=\""] {
        assert!(!svg.contains(bad), "{bad} in\n{svg}");
    }
    svg
}

fn daily(name: &str, values: &[f64]) -> Series {
    Series {
        name: name.into(),
        points: values.iter().enumerate().map(|(i, v)| (JAN1 + 86_400 * i as i64, *v)).collect(),
    }
}

fn row(label: &str, estimate: f64, low: f64, high: f64) -> IntervalRow {
    IntervalRow { label: label.into(), estimate, low, high, note: None }
}

/// The checker itself refuses what it should: an unclosed tag, a misnested one, an
/// unescaped `<` or `&` in text, an unpaired quote.
#[test]
fn the_checker_catches_broken_markup() {
    assert!(well_formed("<svg><g></g></svg>").is_ok());
    for broken in
        ["<svg><g></svg>", "<svg><g></svg></g>", "<svg>a < b</svg>", "<svg>a & b</svg>", r#"<svg x="1></svg>"#]
    {
        assert!(well_formed(broken).is_err(), "{broken} passed");
    }
}

/// A time series of several lines: well-formed, one line and one marker with a tooltip per
/// point, a legend entry per series, day ticks over a week.
#[test]
fn a_time_series_is_well_formed_with_tooltips_and_legend() {
    let svg = sound(time_series(
        "Outcomes per day",
        "messages",
        &[
            daily("sent", &[120.0, 130.0, 90.0, 150.0, 140.0, 100.0, 80.0]),
            daily("responses", &[12.0, 15.0, 9.0, 14.0, 16.0, 10.0, 8.0]),
        ],
    ));
    assert_eq!(svg.matches("<polyline points=").count(), 3, "two series and the frame");
    assert_eq!(svg.matches("<circle").count(), 14);
    assert!(svg.contains("<title>sent · 2026-01-04 00:00 UTC: 150</title>"), "{svg}");
    assert!(svg.contains(">responses</text>"), "legend: {svg}");
    for day in ["Jan 1", "Jan 4", "Jan 7"] {
        assert!(svg.contains(&format!(">{day}</text>")), "{day} tick missing: {svg}");
    }
    assert!(svg.contains(">2026</text>"), "the year under the first date: {svg}");
    assert!(svg.contains(">150</text>") || svg.contains(">160</text>"), "round y ticks: {svg}");
}

/// Over a day the ticks are hours, the date under the first and under midnight.
#[test]
fn hourly_series_get_hour_ticks() {
    let points = (0..=24).map(|h| (JAN1 + 3_600 * h, h as f64)).collect();
    let svg = sound(time_series("per hour", "sends", &[Series { name: "sent".into(), points }]));
    assert!(svg.contains(">00:00</text>") && svg.contains(">03:00</text>") && svg.contains(">21:00</text>"), "{svg}");
    assert!(svg.contains(">Jan 1</text>") && svg.contains(">Jan 2</text>"), "{svg}");
}

/// An interval chart draws each row's interval and estimate with a tooltip, the dashed
/// reference with its value in the legend, notes under the labels.
#[test]
fn intervals_draw_rows_reference_and_notes() {
    let mut rows = vec![row("control", 5.0, 4.2, 5.9), row("early_hours", 6.1, 5.2, 7.0)];
    rows[0].note = Some("n = 1,200".into());
    let svg = sound(intervals("Response rate by arm", &rows, Some(5.0), "%"));
    assert!(svg.contains("<title>control: 5% [4.2, 5.9] (n = 1,200)</title>"), "{svg}");
    assert!(svg.contains("<title>early_hours: 6.1% [5.2, 7]</title>"), "{svg}");
    assert!(svg.contains("stroke-dasharray=\"5 4\"><title>reference (5%)</title>"), "{svg}");
    assert!(svg.contains(">n = 1,200</text>"), "{svg}");
    assert_eq!(svg.matches("r=\"5\"").count(), 3, "two estimates and the legend's dot");
}

/// Bars: one per row with its value written and in a tooltip; a negative bar goes left of 0.
#[test]
fn bars_show_values_both_ways() {
    let rows = vec![("quiet_hours".to_string(), 1_234.0), ("cooldown".to_string(), 56.0), ("loss".to_string(), -3.5)];
    let svg = sound(bars("Suppressions by reason", &rows, "sends"));
    assert_eq!(svg.matches("<rect x=").count(), 3);
    assert!(svg.contains("<title>quiet_hours: 1234 sends</title>") && svg.contains(">1234 sends</text>"), "{svg}");
    assert!(svg.contains("text-anchor=\"end\">-3.5 sends</text>"), "{svg}");
}

/// Markup in every piece of text — title, axis label, series, rows, notes, unit — comes out
/// as text.
#[test]
fn every_text_is_escaped() {
    let evil = "<script>alert('x')</script> & \"q\"";
    let series = [Series { name: evil.into(), points: vec![(JAN1, 1.0), (JAN1 + 3_600, 2.0)] }];
    let mut rows = vec![row(evil, 1.0, 0.5, 1.5)];
    rows[0].note = Some(evil.into());
    for svg in [
        time_series(evil, evil, &series),
        intervals(evil, &rows, Some(1.0), evil),
        bars(evil, &[(evil.to_string(), 2.0)], evil),
        time_series(evil, evil, &[]),
    ] {
        let svg = sound(svg);
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"), "{svg}");
    }
}

/// Nothing to draw — no series, series without points, no rows, only undefined values —
/// gives a chart that says "no data" (and what was skipped).
#[test]
fn empty_input_says_no_data() {
    let empties = [
        time_series("t", "y", &[]),
        time_series("t", "y", &[Series { name: "s".into(), points: vec![] }]),
        intervals("t", &[], Some(0.0), ""),
        bars("t", &[], ""),
        bars("t", &[("a".into(), f64::NAN)], ""),
        intervals("t", &[row("a", f64::INFINITY, 0.0, 1.0)], None, ""),
    ];
    for svg in empties {
        let svg = sound(svg);
        assert!(svg.contains(">no data</text>"), "{svg}");
    }
    let svg = bars("t", &[("a".into(), f64::NAN)], "");
    assert!(svg.contains("undefined values not drawn: a"), "{svg}");
}

/// One point, one row, one bar: each drawn on an axis widened around it.
#[test]
fn one_point_is_drawn() {
    let svg = sound(time_series("t", "y", &[Series { name: "s".into(), points: vec![(JAN1 + 36_000, 7.0)] }]));
    assert_eq!(svg.matches("<circle").count(), 1);
    assert!(svg.contains("<title>s · 2026-01-01 10:00 UTC: 7</title>"), "{svg}");
    let svg = sound(intervals("t", &[row("only", 0.3, 0.3, 0.3)], None, ""));
    assert!(svg.contains("<title>only: 0.3 [0.3, 0.3]</title>"), "{svg}");
    let svg = sound(bars("t", &[("zero".into(), 0.0)], ""));
    assert!(svg.contains("<title>zero: 0</title>"), "{svg}");
}

/// Undefined values (NaN, ±∞, beyond 10¹²) are not drawn and the caption names them; a
/// line breaks around them; an undefined interval keeps the estimate.
#[test]
fn undefined_values_are_skipped_and_said() {
    let svg = sound(time_series(
        "t",
        "y",
        &[daily("a", &[1.0, f64::NAN, 3.0, 4.0]), daily("b", &[1.0, 2.0, f64::INFINITY, 1e13])],
    ));
    assert!(svg.contains("undefined values skipped: a (1), b (2)"), "{svg}");
    assert_eq!(svg.matches("<circle").count(), 5);
    let svg = sound(intervals(
        "t",
        &[row("ok", 1.0, 0.0, 2.0), row("gone", f64::NAN, 0.0, 1.0), row("half", 1.0, f64::NEG_INFINITY, 2.0)],
        Some(f64::NAN),
        "",
    ));
    assert!(svg.contains("undefined estimates not drawn: gone"), "{svg}");
    assert!(svg.contains("intervals undefined, estimate only: half"), "{svg}");
    assert!(svg.contains("<title>half: 1, interval undefined</title>"), "{svg}");
    assert!(!svg.contains("reference"), "a NaN reference is not drawn: {svg}");
}

/// The same input gives the same bytes; another input other bytes.
#[test]
fn charts_are_deterministic() {
    let series = [daily("sent", &[3.0, 1.0, 4.0, 1.0, 5.0]), daily("responses", &[1.0, 0.0, 2.0, 0.0, 1.0])];
    assert_eq!(time_series("t", "y", &series), time_series("t", "y", &series));
    let rows = [row("a", 0.1, 0.05, 0.2), row("b", 0.15, 0.1, 0.22)];
    assert_eq!(intervals("t", &rows, Some(0.1), ""), intervals("t", &rows, Some(0.1), ""));
    assert_ne!(intervals("t", &rows, Some(0.1), ""), intervals("t", &rows[..1], Some(0.1), ""));
}

/// Axes tick at 1, 2 or 5 × 10ⁿ covering the data; large counts in k and M; never `-0`.
#[test]
fn numeric_ticks_are_round() {
    let labels = |lo, hi| Axis::numeric(lo, hi, 0.0, 100.0, 5).ticks.into_iter().map(|t| t.label).collect::<Vec<_>>();
    assert_eq!(labels(0.0, 137.0), ["0", "50", "100", "150"]);
    assert_eq!(labels(0.012, 0.049), ["0.01", "0.02", "0.03", "0.04", "0.05"]);
    assert_eq!(labels(-0.3, 0.2), ["-0.3", "-0.2", "-0.1", "0", "0.1", "0.2"]);
    assert_eq!(labels(0.0, 48_000.0), ["0", "10k", "20k", "30k", "40k", "50k"]);
    assert_eq!(labels(0.0, 2_500_000.0), ["0", "0.5M", "1.0M", "1.5M", "2.0M", "2.5M"]);
    assert_eq!(labels(5.0, 5.0), ["2", "3", "4", "5", "6", "7", "8"]);
}
