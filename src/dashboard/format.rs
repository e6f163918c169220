//! Numbers, rates, intervals and times as the dashboard's pages write them: one place, so
//! that every page (and every figure the event stream refreshes) reads the same.

use gavat_experiments::stats::Interval;

use crate::domain::Timestamp;

pub(crate) use crate::html::fragments::{count as grouped, percent};

/// A share with its interval: `12.3% [10.1%, 14.8%]`.
pub(crate) fn percent_interval(i: &Interval) -> String {
    format!("{} [{}, {}]", percent(i.estimate, 1), percent(i.low, 1), percent(i.high, 1))
}

/// A signed relative change with its interval: `+4.1% [−2.0%, +10.3%]`.
pub(crate) fn signed_percent_interval(i: &Interval) -> String {
    let p = |v: f64| if v.is_finite() { format!("{:+.1}%", v * 100.0) } else { "—".into() };
    format!("{} [{}, {}]", p(i.estimate), p(i.low), p(i.high))
}

/// An absolute difference with its interval, in the metric's units.
pub(crate) fn signed_interval(i: &Interval, decimals: usize) -> String {
    let p = |v: f64| if v.is_finite() { format!("{:+.*}", decimals, v) } else { "—".into() };
    format!("{} [{}, {}]", p(i.estimate), p(i.low), p(i.high))
}

/// A p-value with enough digits to tell it from a threshold: four places, `< 0.0001`
/// below that.
pub(crate) fn p_value(p: f64) -> String {
    if !p.is_finite() {
        "—".into()
    } else if p < 1e-4 {
        "< 0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

/// A time as `2026-01-15 14:00:05 UTC`.
pub(crate) fn time(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.secs(), 0)
        .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// An optional time, or `what` when there is none.
pub(crate) fn time_or(t: Option<Timestamp>, what: &str) -> String {
    t.map_or_else(|| what.to_string(), time)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands are grouped, shares rounded, p-values keep four places, and undefined
    /// figures never print as NaN.
    #[test]
    fn figures_read_the_same_everywhere() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(percent(0.1234, 1), "12.3%");
        assert_eq!(percent(f64::NAN, 1), "undefined");
        assert_eq!(p_value(0.04961), "0.0496");
        assert_eq!(p_value(0.00001), "< 0.0001");
        let i = Interval { estimate: 0.041, low: -0.02, high: 0.103 };
        assert_eq!(signed_percent_interval(&i), "+4.1% [-2.0%, +10.3%]");
        assert_eq!(time(Timestamp(0)), "1970-01-01 00:00:00 UTC");
    }
}
