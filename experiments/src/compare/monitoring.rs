//! Monitoring a live experiment over many looks: what one look of `compare` records (a
//! [`Look`]: users per arm and, per treatment against control, the mSPRT p-value and the
//! confidence sequence), and what the history of looks says ([`running`]): the always-valid
//! p-value to report is the **running minimum** of the looks' mSPRT p-values (Johari et al.
//! 2017), and the interval to report is the **running intersection** of the looks'
//! confidence sequences (Howard et al. 2021: a sequence covers the truth at every look at
//! once with probability 1 − α, so it covers it in their intersection too). Pure functions
//! over plain data: `gavat experiment compare --looks` keeps the history in a JSON-lines
//! file, and a dashboard can keep it anywhere else.

use serde::{Deserialize, Serialize};

use super::Report;
use crate::design::Metric;

/// The two ends of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// Users of one arm at a look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmUsers {
    /// The arm.
    pub arm: String,
    /// Its users at the look.
    pub users: u64,
}

/// One treatment against control at a look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmLook {
    /// The treatment.
    pub arm: String,
    /// The mSPRT's always-valid p-value at this look (`None`: not computable, e.g. no
    /// variation yet).
    pub msprt_p: Option<f64>,
    /// The confidence sequence for the difference from control at this look (`None`: not
    /// computable).
    pub cs: Option<Bounds>,
}

/// One look at an experiment: one line of a looks file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Look {
    /// The experiment's name.
    pub experiment: String,
    /// The metric compared.
    pub metric: Metric,
    /// The level of the confidence sequences.
    pub alpha: f64,
    /// The control arm.
    pub control: String,
    /// When the data of the look was taken (RFC 3339).
    pub at: String,
    /// Users per arm, in the report's order.
    pub users: Vec<ArmUsers>,
    /// Each treatment against control.
    pub arms: Vec<ArmLook>,
}

impl Look {
    /// The look that `report` (of `experiment`, on data taken `at`) is.
    pub fn of(report: &Report, experiment: &str, at: &str) -> Look {
        Look {
            experiment: experiment.to_string(),
            metric: report.metric,
            alpha: report.alpha,
            control: report.control.clone(),
            at: at.to_string(),
            users: report.arms.iter().map(|a| ArmUsers { arm: a.arm.clone(), users: a.users }).collect(),
            arms: report
                .comparisons
                .iter()
                .map(|c| ArmLook {
                    arm: c.arm.clone(),
                    msprt_p: c.p_always_valid.value(),
                    cs: c.confidence_sequence.value().map(|i| Bounds { low: i.low, high: i.high }),
                })
                .collect(),
        }
    }

    /// The series the look belongs to, as a phrase: looks of one series may be combined.
    pub fn series(&self) -> String {
        format!(
            "experiment {:?}, metric {}, alpha {}, control {:?}",
            self.experiment,
            self.metric.as_str(),
            self.alpha,
            self.control
        )
    }

    /// Whether `other` belongs to the same series (same experiment, metric, alpha and
    /// control): a minimum or an intersection across series means nothing.
    pub fn same_series(&self, other: &Look) -> bool {
        self.experiment == other.experiment
            && self.metric == other.metric
            && self.alpha == other.alpha
            && self.control == other.control
    }

    /// Whether `other` saw the same data (users per arm and every figure): comparing one
    /// results file twice is one look, not two.
    pub fn same_data(&self, other: &Look) -> bool {
        self.same_series(other) && self.users == other.users && self.arms == other.arms
    }
}

/// What the looks so far say about one treatment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunningArm {
    /// The treatment.
    pub arm: String,
    /// Looks that name it.
    pub looks: usize,
    /// The smallest mSPRT p-value over those looks: the always-valid p-value to report
    /// (`None`: no look had one).
    pub msprt_p_min: Option<f64>,
    /// The intersection of the confidence sequences over those looks (`None`: no look had
    /// one). Empty when `low > high`: see [`RunningArm::cs_empty`].
    pub cs: Option<Bounds>,
    /// Whether the sequences of different looks do not overlap at all — with a fixed true
    /// difference that happens with probability at most α; more often, the effect moved.
    pub cs_empty: bool,
}

/// The running minimum of the mSPRT p-values and the running intersection of the
/// confidence sequences, per treatment, over `looks` (in the order treatments first appear).
/// The caller keeps the looks of one series ([`Look::same_series`]).
pub fn running(looks: &[Look]) -> Vec<RunningArm> {
    let mut out: Vec<RunningArm> = Vec::new();
    for arm in looks.iter().flat_map(|l| &l.arms) {
        let i = match out.iter().position(|r| r.arm == arm.arm) {
            Some(i) => i,
            None => {
                out.push(RunningArm { arm: arm.arm.clone(), looks: 0, msprt_p_min: None, cs: None, cs_empty: false });
                out.len() - 1
            }
        };
        let r = &mut out[i];
        r.looks += 1;
        if let Some(p) = arm.msprt_p.filter(|p| !p.is_nan()) {
            r.msprt_p_min = Some(r.msprt_p_min.map_or(p, |m| m.min(p)));
        }
        if let Some(b) = arm.cs.filter(|b| !b.low.is_nan() && !b.high.is_nan()) {
            r.cs = Some(match r.cs {
                Some(c) => Bounds { low: c.low.max(b.low), high: c.high.min(b.high) },
                None => b,
            });
        }
        r.cs_empty = r.cs.is_some_and(|c| c.low > c.high);
    }
    out
}

impl Report {
    /// Adds what `looks` (this report's look last, all of one series) say to each
    /// treatment's comparison, and their number to the report.
    pub fn add_looks(&mut self, looks: &[Look]) {
        let runs = running(looks);
        for c in &mut self.comparisons {
            c.running = runs.iter().find(|r| r.arm == c.arm).cloned();
        }
        self.looks = Some(looks.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A treatment's figures at a look: name, mSPRT p, sequence.
    type Figures<'a> = (&'a str, Option<f64>, Option<(f64, f64)>);

    fn look(at: &str, arms: &[Figures<'_>]) -> Look {
        Look {
            experiment: "e".into(),
            metric: Metric::ResponseRate,
            alpha: 0.05,
            control: "control".into(),
            at: at.into(),
            users: vec![ArmUsers { arm: "control".into(), users: 10 }],
            arms: arms
                .iter()
                .map(|(arm, p, cs)| ArmLook {
                    arm: (*arm).into(),
                    msprt_p: *p,
                    cs: cs.map(|(low, high)| Bounds { low, high }),
                })
                .collect(),
        }
    }

    /// The running minimum is the smallest p of the looks, not the last; the intersection
    /// keeps the largest low and the smallest high; a look without a figure leaves them be.
    #[test]
    fn running_minimum_and_intersection() {
        let looks = [
            look("1", &[("b", Some(0.4), Some((-0.05, 0.03))), ("c", None, None)]),
            look("2", &[("b", Some(0.02), Some((-0.01, 0.05))), ("c", Some(0.9), Some((-0.2, 0.2)))]),
            look("3", &[("b", Some(0.3), Some((-0.03, 0.02))), ("c", None, None)]),
        ];
        let r = running(&looks);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].arm.as_str(), r[0].looks, r[0].msprt_p_min), ("b", 3, Some(0.02)));
        assert_eq!(r[0].cs, Some(Bounds { low: -0.01, high: 0.02 }));
        assert!(!r[0].cs_empty);
        assert_eq!((r[1].arm.as_str(), r[1].looks, r[1].msprt_p_min), ("c", 3, Some(0.9)));
        assert_eq!(r[1].cs, Some(Bounds { low: -0.2, high: 0.2 }));
        assert!(running(&[]).is_empty());
    }

    /// Sequences that do not overlap leave an empty intersection, flagged as such.
    #[test]
    fn disjoint_sequences_are_flagged() {
        let r = running(&[
            look("1", &[("b", Some(0.5), Some((0.0, 0.1)))]),
            look("2", &[("b", Some(0.5), Some((0.2, 0.3)))]),
        ]);
        assert!(r[0].cs_empty, "{r:?}");
    }

    /// A look round-trips through its JSON line; looks of another experiment, metric, alpha
    /// or control are another series.
    #[test]
    fn looks_round_trip_and_series_are_told_apart() {
        let a = look("2026-12-06T18:00:00+00:00", &[("b", Some(0.25), Some((-0.1, 0.2))), ("c", None, None)]);
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Look>(&line).unwrap(), a);
        assert!(a.same_series(&look("later", &[])));
        let mut again = a.clone();
        again.at = "later".into();
        assert!(a.same_data(&again), "the same data at another time is the same look");
        again.users[0].users += 1;
        assert!(!a.same_data(&again));
        for change in [
            |l: &mut Look| l.experiment = "f".into(),
            |l: &mut Look| l.metric = Metric::Engagement,
            |l: &mut Look| l.alpha = 0.1,
            |l: &mut Look| l.control = "b".into(),
        ] {
            let mut other = a.clone();
            change(&mut other);
            assert!(!a.same_series(&other), "{}", other.series());
        }
        assert_eq!(a.series(), "experiment \"e\", metric response_rate, alpha 0.05, control \"control\"");
    }
}
