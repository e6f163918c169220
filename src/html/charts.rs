//! The charts of the dashboard and the report files: pure functions from data to an inline
//! `<svg class="chart">` string — a line chart over time ([`time_series`]), a forest plot
//! of estimates with intervals ([`intervals`]) and horizontal bars ([`bars`]).
//!
//! What every chart promises:
//! - **Self-contained and deterministic**: no script, no external reference (not even an
//!   `xmlns`, which inline SVG in HTML does not need), no ids that could clash between two
//!   charts of a page; the same input gives the same bytes.
//! - **Readable at 720 px**: a `viewBox` 720 wide (the stylesheet's `svg.chart` scales it
//!   down on narrow screens), 12 px text, axes with ticks at round numbers (1, 2, 5 × 10ⁿ)
//!   or, over time, at whole hours and UTC days.
//! - **Colour-blind safe**: the Okabe–Ito palette ([`PALETTE`]), and the series of a time
//!   chart also differ by dash pattern.
//! - **Every text escaped** with [`super::escape`]; every point, bar and interval has a
//!   `<title>` tooltip with its exact value; a chart with several kinds of marks has a
//!   legend.
//! - **Never NaN or infinity**: a value that is not finite, or beyond ±10¹² (it could not be
//!   placed on an axis), is undefined; it is not drawn and a caption under the chart says
//!   which. A chart with nothing to draw says "no data".

use std::fmt::Write as _;

use chrono::DateTime;

use super::escape;

/// The width every chart is drawn at (its `viewBox`), in CSS pixels.
pub const WIDTH: f64 = 720.0;

/// Okabe & Ito's colour-blind-safe palette (blue, orange, bluish green, vermilion, reddish
/// purple, sky blue, black, grey), in the order series take them.
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#999999"];

/// Dash patterns of the series of a time chart (solid first), so that lines differ even
/// without colour.
const DASHES: [&str; 4] = ["", "7 4", "2 3", "10 3 2 3"];

/// Largest magnitude drawn: beyond it a value is undefined (the axis arithmetic would lose
/// its precision long before it overflowed).
const LIMIT: f64 = 1e12;

/// Unix seconds that chrono can name (years 1 to 9999); others are undefined.
const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Series drawn with a marker (and tooltip) per point up to this many points; longer ones
/// are drawn as lines with one tooltip each.
const MAX_MARKED_POINTS: usize = 400;

/// Text colours and strokes.
const MUTED: &str = "#5b6472";
const GRID: &str = "#e3e7ed";
const AXIS: &str = "#8a93a0";

/// One line of a [`time_series`] chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Shown in the legend and the tooltips.
    pub name: String,
    /// `(unix seconds UTC, value)`, in any order.
    pub points: Vec<(i64, f64)>,
}

/// One row of an [`intervals`] chart.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// The row's name (an arm, a segment).
    pub label: String,
    /// The point estimate.
    pub estimate: f64,
    /// The interval's lower end.
    pub low: f64,
    /// The interval's upper end.
    pub high: f64,
    /// A short remark shown under the label and in the tooltip (`n = 120`, `control`).
    pub note: Option<String>,
}

/// A line chart over time: one line per series, the time axis in UTC with hour or date
/// ticks, `y_label` on the vertical axis.
pub fn time_series(title: &str, y_label: &str, series: &[Series]) -> String {
    let mut skipped: Vec<String> = Vec::new();
    let mut lines: Vec<(&Series, Vec<(i64, f64)>)> = Vec::new();
    for s in series {
        let mut points: Vec<(i64, f64)> =
            s.points.iter().copied().filter(|&(t, v)| drawable_time(t) && drawable(v)).collect();
        let undefined = s.points.len() - points.len();
        if undefined > 0 {
            skipped.push(format!("{} ({undefined})", s.name));
        }
        points.sort_by_key(|&(t, _)| t);
        lines.push((s, points));
    }
    let defined = || lines.iter().flat_map(|(_, p)| p.iter());
    let (Some(t_min), Some(t_max)) = (defined().map(|p| p.0).min(), defined().map(|p| p.0).max()) else {
        return no_data(title, &skipped_caption("undefined values skipped", &skipped));
    };
    let v_min = defined().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let v_max = defined().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);

    let mut svg = Svg::new(title);
    let legend: Vec<LegendItem> = lines
        .iter()
        .enumerate()
        .map(|(i, (s, _))| LegendItem::Line { name: &s.name, colour: colour(i), dash: dash(i) })
        .collect();
    let top = svg.legend(&legend, 64.0);
    let (left, right, height) = (64.0, WIDTH - 20.0, 240.0);
    let bottom = top + height;
    let x = time_axis(t_min, t_max, left, right);
    let (lo, hi) = if v_min >= 0.0 { (0.0, v_max) } else { (v_min, v_max.max(0.0)) };
    let y = Axis::numeric(lo, hi, bottom, top, 5);

    // Grid and axes.
    for tick in &y.ticks {
        let py = y.at(tick.value);
        let _ =
            writeln!(svg.out, r#"<line x1="{left:.1}" y1="{py:.1}" x2="{right:.1}" y2="{py:.1}" stroke="{GRID}"/>"#);
        let _ = writeln!(
            svg.out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{MUTED}">{}</text>"#,
            left - 6.0,
            py + 4.0,
            escape(&tick.label)
        );
    }
    for tick in &x.ticks {
        let px = x.at(tick.value);
        let _ =
            writeln!(svg.out, r#"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="{GRID}"/>"#);
        for (k, part) in tick.label.split('\n').enumerate() {
            let _ = writeln!(
                svg.out,
                r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
                bottom + 16.0 + 14.0 * k as f64,
                escape(part)
            );
        }
    }
    svg.frame(left, top, right, bottom);
    let _ = writeln!(
        svg.out,
        r#"<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" fill="{MUTED}">{}</text>"#,
        (top + bottom) / 2.0,
        escape(y_label)
    );
    let _ = writeln!(
        svg.out,
        r#"<text x="{right:.1}" y="{:.1}" text-anchor="end" fill="{MUTED}">time (UTC)</text>"#,
        bottom + 46.0
    );

    // The lines: one polyline per run of points, a marker with its tooltip per point.
    for (i, (s, points)) in lines.iter().enumerate() {
        let (c, d) = (colour(i), dash(i));
        let dash_attr = if d.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{d}""#) };
        let name = escape(&s.name);
        if points.len() > 1 {
            let coords: Vec<String> =
                points.iter().map(|&(t, v)| format!("{:.1},{:.1}", x.at(t as f64), y.at(v))).collect();
            let _ = write!(
                svg.out,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{dash_attr}>"#,
                coords.join(" ")
            );
            let _ = writeln!(svg.out, "<title>{name}</title></polyline>");
        }
        if points.len() <= MAX_MARKED_POINTS {
            for &(t, v) in points {
                let _ = writeln!(
                    svg.out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{name} · {}: {}</title></circle>"#,
                    x.at(t as f64),
                    y.at(v),
                    escape(&time_text(t)),
                    number(v)
                );
            }
        }
    }
    let mut end = bottom + 52.0;
    if !skipped.is_empty() {
        end = svg.caption(&skipped_caption("undefined values skipped", &skipped), end + 6.0);
    }
    svg.finish(end + 8.0)
}

/// A forest plot: one row per estimate with its interval (a line from `low` to `high`, a
/// dot at `estimate`), a dashed vertical line at `reference` (control's rate, 0), `unit`
/// on the axis and in the tooltips (`%`, `points`).
pub fn intervals(title: &str, rows: &[IntervalRow], reference: Option<f64>, unit: &str) -> String {
    let reference = reference.filter(|r| drawable(*r));
    let drawn: Vec<&IntervalRow> = rows.iter().filter(|r| drawable(r.estimate)).collect();
    let mut skipped: Vec<String> = rows.iter().filter(|r| !drawable(r.estimate)).map(|r| r.label.clone()).collect();
    let whole = |r: &IntervalRow| drawable(r.low) && drawable(r.high) && r.low <= r.high;
    let no_interval: Vec<String> = drawn.iter().filter(|r| !whole(r)).map(|r| r.label.clone()).collect();
    if drawn.is_empty() {
        return no_data(title, &skipped_caption("undefined estimates not drawn", &skipped));
    }
    let values = drawn
        .iter()
        .flat_map(|r| if whole(r) { vec![r.estimate, r.low, r.high] } else { vec![r.estimate] })
        .chain(reference);
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));

    let mut svg = Svg::new(title);
    let mut legend = vec![
        LegendItem::Dot { name: "estimate", colour: PALETTE[0] },
        LegendItem::Line { name: "interval", colour: PALETTE[0], dash: "" },
    ];
    let reference_name = reference.map(|r| format!("reference ({})", with_unit(&number(r), unit)));
    if let Some(name) = &reference_name {
        legend.push(LegendItem::Line { name, colour: MUTED, dash: "5 4" });
    }
    let top = svg.legend(&legend, 12.0) + 4.0;
    let (left, right) = (210.0, WIDTH - 24.0);
    let row_height = |r: &IntervalRow| if r.note.is_some() { 40.0 } else { 30.0 };
    let bottom = top + rows.iter().map(row_height).sum::<f64>() + 8.0;
    let x = Axis::numeric(lo, hi, left, right, 6);
    for tick in &x.ticks {
        let px = x.at(tick.value);
        let _ =
            writeln!(svg.out, r#"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="{GRID}"/>"#);
        let _ = writeln!(
            svg.out,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
            bottom + 16.0,
            escape(&tick.label)
        );
    }
    svg.frame(left, top, right, bottom);
    if !unit.is_empty() {
        let _ = writeln!(
            svg.out,
            r#"<text x="{right:.1}" y="{:.1}" text-anchor="end" fill="{MUTED}">{}</text>"#,
            bottom + 34.0,
            escape(unit)
        );
    }
    if let (Some(r), Some(name)) = (reference, &reference_name) {
        let px = x.at(r);
        let _ = writeln!(
            svg.out,
            r#"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="{MUTED}" stroke-width="1.5" stroke-dasharray="5 4"><title>{}</title></line>"#,
            escape(name)
        );
    }
    let mut row_top = top + 4.0;
    for row in rows {
        let h = row_height(row);
        let cy = row_top + 15.0;
        let label = escape(&row.label);
        let _ = writeln!(
            svg.out,
            r#"<text x="12" y="{:.1}">{}<title>{label}</title></text>"#,
            cy + 4.0,
            escape(&shorten(&row.label, 28))
        );
        if let Some(note) = &row.note {
            let _ = writeln!(
                svg.out,
                r#"<text x="12" y="{:.1}" font-size="11" fill="{MUTED}">{}</text>"#,
                cy + 18.0,
                escape(&shorten(note, 34))
            );
        }
        if drawable(row.estimate) {
            let note = row.note.as_deref().map(|n| format!(" ({})", escape(n))).unwrap_or_default();
            let tooltip = if whole(row) {
                format!(
                    "{label}: {} [{}, {}]{note}",
                    escape(&with_unit(&number(row.estimate), unit)),
                    number(row.low),
                    number(row.high)
                )
            } else {
                format!("{label}: {}, interval undefined{note}", escape(&with_unit(&number(row.estimate), unit)))
            };
            let _ = write!(svg.out, "<g><title>{tooltip}</title>");
            if whole(row) {
                let _ = write!(
                    svg.out,
                    r#"<line x1="{:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="{}" stroke-width="3" stroke-linecap="round"/>"#,
                    x.at(row.low),
                    x.at(row.high),
                    PALETTE[0]
                );
            }
            let _ = writeln!(
                svg.out,
                r#"<circle cx="{:.1}" cy="{cy:.1}" r="5" fill="{}"/></g>"#,
                x.at(row.estimate),
                PALETTE[0]
            );
        } else {
            let _ = writeln!(
                svg.out,
                r#"<text x="{left:.1}" y="{:.1}" fill="{MUTED}" font-style="italic">undefined</text>"#,
                cy + 4.0
            );
        }
        row_top += h;
    }
    let mut end = bottom + 40.0;
    if !skipped.is_empty() {
        end = svg.caption(&skipped_caption("undefined estimates not drawn", &skipped), end);
    }
    if !no_interval.is_empty() {
        skipped = no_interval;
        end = svg.caption(&skipped_caption("intervals undefined, estimate only", &skipped), end);
    }
    svg.finish(end + 4.0)
}

/// Horizontal bars, one per row, from 0 to the value, the value written at the bar's end
/// (`unit` after it).
pub fn bars(title: &str, rows: &[(String, f64)], unit: &str) -> String {
    let skipped: Vec<String> = rows.iter().filter(|(_, v)| !drawable(*v)).map(|(l, _)| l.clone()).collect();
    let drawn: Vec<f64> = rows.iter().map(|(_, v)| *v).filter(|v| drawable(*v)).collect();
    if drawn.is_empty() {
        return no_data(title, &skipped_caption("undefined values not drawn", &skipped));
    }
    let lo = drawn.iter().copied().fold(0.0, f64::min);
    let hi = drawn.iter().copied().fold(0.0, f64::max);
    let mut svg = Svg::new(title);
    let top = 36.0;
    let (left, right, row_h) = (210.0, WIDTH - 90.0, 26.0);
    let bottom = top + row_h * rows.len() as f64 + 6.0;
    let x = Axis::numeric(lo, hi, left, right, 6);
    for tick in &x.ticks {
        let px = x.at(tick.value);
        let _ =
            writeln!(svg.out, r#"<line x1="{px:.1}" y1="{top:.1}" x2="{px:.1}" y2="{bottom:.1}" stroke="{GRID}"/>"#);
        let _ = writeln!(
            svg.out,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
            bottom + 16.0,
            escape(&tick.label)
        );
    }
    svg.frame(left, top, right, bottom);
    if !unit.is_empty() {
        let _ = writeln!(
            svg.out,
            r#"<text x="{right:.1}" y="{:.1}" text-anchor="end" fill="{MUTED}">{}</text>"#,
            bottom + 34.0,
            escape(unit)
        );
    }
    let zero = x.at(0.0);
    for (i, (label, value)) in rows.iter().enumerate() {
        let cy = top + 3.0 + row_h * i as f64 + row_h / 2.0;
        let full = escape(label);
        let _ = writeln!(
            svg.out,
            r#"<text x="12" y="{:.1}">{}<title>{full}</title></text>"#,
            cy + 4.0,
            escape(&shorten(label, 28))
        );
        if !drawable(*value) {
            let _ = writeln!(
                svg.out,
                r#"<text x="{zero:.1}" y="{:.1}" fill="{MUTED}" font-style="italic">undefined</text>"#,
                cy + 4.0
            );
            continue;
        }
        let end = x.at(*value);
        let shown = escape(&with_unit(&number(*value), unit));
        let _ = writeln!(
            svg.out,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="16" fill="{}"><title>{full}: {shown}</title></rect>"#,
            end.min(zero),
            cy - 8.0,
            (end - zero).abs().max(1.0),
            PALETTE[0]
        );
        let (tx, anchor) = if *value < 0.0 { (end - 4.0, "end") } else { (end + 4.0, "start") };
        let _ = writeln!(svg.out, r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}">{shown}</text>"#, cy + 4.0);
    }
    let mut end = bottom + 40.0;
    if !skipped.is_empty() {
        end = svg.caption(&skipped_caption("undefined values not drawn", &skipped), end);
    }
    svg.finish(end + 4.0)
}

/// Whether a value can be drawn.
fn drawable(v: f64) -> bool {
    v.is_finite() && v.abs() <= LIMIT
}

/// Whether an instant can be drawn (and named).
fn drawable_time(t: i64) -> bool {
    TIME_RANGE.contains(&t)
}

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn dash(i: usize) -> &'static str {
    DASHES[(i / PALETTE.len() + i) % DASHES.len()]
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A value as a tooltip shows it: whole numbers whole, others to four significant digits.
fn number(v: f64) -> String {
    let text = if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
        let text = format!("{v:.digits$}");
        if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
    };
    if text == "-0" { "0".to_string() } else { text }
}

/// `value` followed by `unit`: `%` sticks to the number, a word is spaced.
fn with_unit(value: &str, unit: &str) -> String {
    match unit {
        "" => value.to_string(),
        "%" => format!("{value}%"),
        _ => format!("{value} {unit}"),
    }
}

/// An instant as a tooltip shows it: `2026-01-03 14:00 UTC`.
fn time_text(t: i64) -> String {
    DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

fn skipped_caption(what: &str, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut names: Vec<String> = items.iter().take(6).cloned().collect();
    if items.len() > 6 {
        names.push(format!("{} more", items.len() - 6));
    }
    format!("{what}: {}", names.join(", "))
}

/// A tick: where, and what it says (lines split by `\n`).
#[derive(Debug)]
struct Tick {
    value: f64,
    label: String,
}

/// A linear axis from `lo` to `hi` onto the pixels `from` to `to`, with its ticks.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    ticks: Vec<Tick>,
}

impl Axis {
    /// An axis over `[lo, hi]` widened to round ticks, about `target` of them: steps of
    /// 1, 2 or 5 × 10ⁿ. A range of one value is widened around it.
    fn numeric(lo: f64, hi: f64, from: f64, to: f64, target: usize) -> Axis {
        // Below a millionth of the values' size (and 10⁻⁹), a range is one value: widened by
        // half its size, or to [0, 1] around zero.
        let size = lo.abs().max(hi.abs());
        let (lo, hi) = if hi - lo > (size * 1e-6).max(1e-9) {
            (lo, hi)
        } else if size < 1e-9 {
            (0.0, 1.0)
        } else {
            let centre = (lo + hi) / 2.0;
            let pad = centre.abs() * 0.5;
            (centre - pad, centre + pad)
        };
        let raw = (hi - lo) / target.max(1) as f64;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
        let first = (lo / step).floor();
        let last = (hi / step).ceil();
        let decimals = (-step.log10().floor()).clamp(0.0, 10.0) as usize;
        let largest = (first * step).abs().max((last * step).abs());
        let ticks = (0..=((last - first) as i64).clamp(1, 50))
            .map(|k| {
                let value = (first + k as f64) * step;
                Tick { value, label: tick_label(value, step, decimals, largest) }
            })
            .collect();
        Axis { lo: first * step, hi: last * step, from, to, ticks }
    }

    /// The pixel of `v`.
    fn at(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }
}

/// A numeric tick's label: thousands as `k` and millions as `M` when the step allows.
fn tick_label(value: f64, step: f64, decimals: usize, largest: f64) -> String {
    let text = if value == 0.0 {
        "0".to_string()
    } else if largest >= 1e6 && step >= 1e5 {
        let d = (-(step / 1e6).log10().floor()).clamp(0.0, 10.0) as usize;
        format!("{:.d$}M", value / 1e6)
    } else if largest >= 1e4 && step >= 1e3 {
        let d = (-(step / 1e3).log10().floor()).clamp(0.0, 10.0) as usize;
        format!("{:.d$}k", value / 1e3)
    } else {
        format!("{value:.decimals$}")
    };
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| matches!(c, '0' | '.' | 'k' | 'M')) => rest.to_string(),
        _ => text,
    }
}

/// Steps of a time axis: hours, days, weeks, then multiples of a year.
const TIME_STEPS: [i64; 13] = [
    3_600,
    2 * 3_600,
    3 * 3_600,
    6 * 3_600,
    12 * 3_600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    14 * 86_400,
    28 * 86_400,
    91 * 86_400,
    182 * 86_400,
    364 * 86_400,
];

/// A time axis from `t_min` to `t_max` (Unix seconds) with ticks at whole UTC hours or
/// midnights, at most 8: hours labelled `14:00` (with the date under a midnight and the
/// first tick), days `Jan 3` (with the year under the first tick and each January).
fn time_axis(t_min: i64, t_max: i64, from: f64, to: f64) -> Axis {
    let (lo, hi) = if t_max > t_min { (t_min, t_max) } else { (t_min - 43_200, t_max + 43_200) };
    let span = hi - lo;
    let mut step = TIME_STEPS.iter().copied().find(|s| span / s <= 8).unwrap_or(364 * 86_400);
    while span / step > 8 {
        step *= 2;
    }
    let mut ticks = Vec::new();
    let mut t = lo.div_euclid(step) * step;
    if t < lo {
        t += step;
    }
    let mut previous_year = None;
    while t <= hi {
        let label = match DateTime::from_timestamp(t, 0) {
            Some(d) if step < 86_400 => {
                let first = ticks.is_empty();
                if first || t.rem_euclid(86_400) == 0 {
                    d.format("%H:%M\n%b %-d").to_string()
                } else {
                    d.format("%H:%M").to_string()
                }
            }
            Some(d) => {
                let year = d.format("%Y").to_string();
                let label = if previous_year.as_ref() != Some(&year) {
                    format!("{}\n{year}", d.format("%b %-d"))
                } else {
                    d.format("%b %-d").to_string()
                };
                previous_year = Some(year);
                label
            }
            None => t.to_string(),
        };
        ticks.push(Tick { value: t as f64, label });
        t += step;
    }
    Axis { lo: lo as f64, hi: hi as f64, from, to, ticks }
}

/// A legend entry.
#[derive(Debug)]
enum LegendItem<'a> {
    /// A line sample (a series, an interval, a reference).
    Line { name: &'a str, colour: &'a str, dash: &'a str },
    /// A dot (an estimate).
    Dot { name: &'a str, colour: &'a str },
}

/// A chart being written.
#[derive(Debug)]
struct Svg {
    title: String,
    out: String,
}

impl Svg {
    /// A chart titled `title` (its body; the `<svg>` element is opened by [`Svg::finish`],
    /// once the height is known).
    fn new(title: &str) -> Svg {
        let mut out = String::new();
        let _ = writeln!(out, r#"<text x="12" y="22" font-size="15" font-weight="600">{}</text>"#, escape(title));
        Svg { title: title.to_string(), out }
    }

    /// Writes the legend in rows from `x0` under the title; returns the y where the plot
    /// may start.
    fn legend(&mut self, items: &[LegendItem<'_>], x0: f64) -> f64 {
        let (mut x, mut y) = (x0, 44.0);
        for item in items {
            let name = match item {
                LegendItem::Line { name, .. } | LegendItem::Dot { name, .. } => *name,
            };
            let shown = shorten(name, 40);
            let width = 28.0 + 7.0 * shown.chars().count() as f64 + 18.0;
            if x + width > WIDTH - 12.0 && x > x0 {
                x = x0;
                y += 18.0;
            }
            match item {
                LegendItem::Line { colour, dash, .. } => {
                    let dash = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
                    let _ = writeln!(
                        self.out,
                        r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2.5"{dash}/>"#,
                        y - 4.0,
                        x + 22.0,
                        y - 4.0
                    );
                }
                LegendItem::Dot { colour, .. } => {
                    let _ = writeln!(
                        self.out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{colour}"/>"#,
                        x + 11.0,
                        y - 4.0
                    );
                }
            }
            let _ = writeln!(self.out, r#"<text x="{:.1}" y="{y:.1}">{}</text>"#, x + 28.0, escape(&shown));
            x += width;
        }
        y + 16.0
    }

    /// The plot's frame: the left and bottom axis lines.
    fn frame(&mut self, left: f64, top: f64, right: f64, bottom: f64) {
        let _ = writeln!(
            self.out,
            r#"<polyline points="{left:.1},{top:.1} {left:.1},{bottom:.1} {right:.1},{bottom:.1}" fill="none" stroke="{AXIS}"/>"#
        );
    }

    /// A caption line at `y` (what was not drawn); returns the y after it.
    fn caption(&mut self, text: &str, y: f64) -> f64 {
        let _ = writeln!(
            self.out,
            r#"<text x="12" y="{:.1}" font-size="12" fill="{MUTED}" font-style="italic">{}</text>"#,
            y + 12.0,
            escape(&shorten(text, 110))
        );
        y + 18.0
    }

    /// The whole `<svg>` element, `height` high.
    fn finish(self, height: f64) -> String {
        let mut svg = String::with_capacity(self.out.len() + 256);
        let _ = writeln!(
            svg,
            r#"<svg class="chart" viewBox="0 0 {WIDTH:.0} {height:.0}" width="{WIDTH:.0}" height="{height:.0}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="12">"#,
            escape(&self.title)
        );
        let _ = writeln!(svg, r#"<rect width="{WIDTH:.0}" height="{height:.0}" fill="white"/>"#);
        svg.push_str(&self.out);
        svg.push_str("</svg>\n");
        svg
    }
}

/// The chart of nothing: the title and "no data" (and why, if something was skipped).
fn no_data(title: &str, why: &str) -> String {
    let mut svg = Svg::new(title);
    let _ = writeln!(
        svg.out,
        r#"<text x="{:.1}" y="72" text-anchor="middle" fill="{MUTED}" font-size="14">no data</text>"#,
        WIDTH / 2.0
    );
    let end = if why.is_empty() { 96.0 } else { svg.caption(why, 90.0) };
    svg.finish(end + 8.0)
}

#[cfg(test)]
mod tests;
