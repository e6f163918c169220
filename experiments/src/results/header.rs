//! The header of a results file: the experiment's name, its groups (arms, then the holdout)
//! with their weights, and when the data was taken — so that `compare` knows the planned
//! split (and can see an arm with no rows) without the experiment file.
//!
//! In CSV it is a first comment line, `# gavat-experiment {…JSON…}`, which a CSV reader
//! told to skip comments (`pandas.read_csv(path, comment="#")`, R's `comment.char = "#"`) or
//! the first line (`skiprows=1`) passes over; in JSON lines it is a first object
//! `{"gavat_experiment": {…}}`. The JSON inside is the same:
//!
//! ```text
//! {"experiment":"send-hours","arms":[{"name":"control","weight":1.0},{"name":"evening","weight":1.0},
//!  {"name":"holdout","weight":0.2}],"exported_at":"2026-12-06T18:00:00+00:00","log_end":"…"}
//! ```
//!
//! JSON, rather than `key=value` pairs, because an arm name may hold commas, colons, quotes
//! and spaces.

use serde::{Deserialize, Serialize};

use crate::design::{Experiment, HOLDOUT, arm_name_problem};

/// What starts the header line of a CSV results file (then a space and the JSON).
pub const CSV_MARKER: &str = "# gavat-experiment";

/// The key of the header object of a JSON-lines results file.
pub const JSON_KEY: &str = "gavat_experiment";

/// One group of the experiment with its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupWeight {
    /// The group's name as in the rows (`holdout` for the holdout).
    pub name: String,
    /// Its weight as in the experiment file (shares are weight / Σ weights).
    pub weight: f64,
}

/// The header of a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsHeader {
    /// The experiment's name.
    pub experiment: String,
    /// Its groups in assignment order — the arms (the first is control), then the holdout.
    pub arms: Vec<GroupWeight>,
    /// When the file was exported from a live store (RFC 3339); `None` for a simulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    /// The time of the last entry of the store's log at export (RFC 3339): the data runs to
    /// here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_end: Option<String>,
}

/// The JSON-lines header object.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonHeader {
    gavat_experiment: ResultsHeader,
}

impl ResultsHeader {
    /// The header of `design`'s results, without times.
    pub fn of(design: &Experiment) -> ResultsHeader {
        ResultsHeader {
            experiment: design.name.clone(),
            arms: design
                .group_names()
                .zip(design.assignment_weights())
                .map(|(name, weight)| GroupWeight { name: name.to_string(), weight })
                .collect(),
            exported_at: None,
            log_end: None,
        }
    }

    /// The groups' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.arms.iter().map(|a| a.name.as_str())
    }

    /// The groups' weights, in order.
    pub fn weights(&self) -> Vec<f64> {
        self.arms.iter().map(|a| a.weight).collect()
    }

    /// The CSV header line (without the newline).
    pub fn to_csv_line(&self) -> String {
        format!("{CSV_MARKER} {}", self.json())
    }

    /// The JSON-lines header line (without the newline).
    pub fn to_json_line(&self) -> String {
        format!("{{\"{JSON_KEY}\":{}}}", self.json())
    }

    fn json(&self) -> String {
        // A struct of strings and finite numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a CSV header line (`# gavat-experiment {…}`); the message says what is wrong.
    pub fn from_csv_line(line: &str) -> Result<ResultsHeader, String> {
        let json = line
            .trim_end()
            .strip_prefix(CSV_MARKER)
            .filter(|rest| rest.starts_with(' '))
            .ok_or_else(|| format!("a first line starting with `#` must be the header `{CSV_MARKER} {{…}}`"))?;
        let header: ResultsHeader = serde_json::from_str(json.trim()).map_err(|e| format!("header: {}", short(&e)))?;
        header.check()?;
        Ok(header)
    }

    /// Reads a JSON-lines header object (`{"gavat_experiment": {…}}`).
    pub fn from_json_line(line: &str) -> Result<ResultsHeader, String> {
        let JsonHeader { gavat_experiment: header } =
            serde_json::from_str(line).map_err(|e| format!("header: {}", short(&e)))?;
        header.check()?;
        Ok(header)
    }

    /// Whether a JSON line is a header object (rather than a row); cheap for a row, which
    /// does not name the key.
    pub(crate) fn is_json_header(line: &str) -> bool {
        line.contains(JSON_KEY)
            && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line)
                .is_ok_and(|object| object.contains_key(JSON_KEY))
    }

    /// The rules a header obeys: a name, at least two groups with valid unique names (the
    /// holdout only last), positive finite weights, times without control characters.
    fn check(&self) -> Result<(), String> {
        let name = self.experiment.trim();
        if name.is_empty() || self.experiment.chars().any(char::is_control) {
            return Err("header: field experiment: must be a name without control characters".into());
        }
        if self.arms.len() < 2 {
            return Err(format!("header: field arms: needs at least two groups, found {}", self.arms.len()));
        }
        for (i, arm) in self.arms.iter().enumerate() {
            let holdout_last = arm.name == HOLDOUT && i + 1 == self.arms.len() && i >= 2;
            if !holdout_last && let Some(problem) = arm_name_problem(&arm.name) {
                return Err(format!("header: field arms[{i}].name: {:?} {problem}", arm.name));
            }
            if self.arms[..i].iter().any(|a| a.name == arm.name) {
                return Err(format!("header: field arms[{i}].name: {:?} appears twice", arm.name));
            }
            if !(arm.weight.is_finite() && arm.weight > 0.0) {
                return Err(format!("header: field arms[{i}].weight: {} must be positive", arm.weight));
            }
        }
        for (field, value) in [("exported_at", &self.exported_at), ("log_end", &self.log_end)] {
            if let Some(v) = value
                && (v.is_empty() || v.len() > 64 || v.chars().any(char::is_control))
            {
                return Err(format!("header: field {field}: {v:?} is not a time"));
            }
        }
        Ok(())
    }

    /// Why `design` is not the experiment of this header (`None`: it is): another name,
    /// other groups, or other shares (weights are compared as shares of their sum).
    pub fn disagreement(&self, design: &Experiment) -> Option<String> {
        if self.experiment != design.name {
            return Some(format!("experiment {:?} against {:?}", self.experiment, design.name));
        }
        let theirs = ResultsHeader::of(design);
        let mine: Vec<&str> = self.names().collect();
        let other: Vec<&str> = theirs.names().collect();
        if mine != other {
            return Some(format!("groups {mine:?} against {other:?}"));
        }
        let shares = |w: Vec<f64>| {
            let total: f64 = w.iter().sum();
            w.into_iter().map(move |x| x / total)
        };
        let differ = shares(self.weights()).zip(shares(theirs.weights())).any(|(a, b)| (a - b).abs() > 1e-9 * a.max(b));
        differ.then(|| format!("weights {} against {}", weights_text(self), weights_text(&theirs)))
    }
}

/// `a:1, b:1, holdout:0.2`.
pub fn weights_text(header: &ResultsHeader) -> String {
    header.arms.iter().map(|a| format!("{}:{}", a.name, a.weight)).collect::<Vec<_>>().join(", ")
}

/// serde_json's message without its ` at line 1 column 7` (the caller names the line).
fn short(e: &serde_json::Error) -> String {
    let message = e.to_string();
    message.split(" at line ").next().unwrap_or(&message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN: &str = "name = \"h\"\nsalt = \"s\"\nprimary_metric = \"response_rate\"\n\
                          minimum_detectable_effect = 0.1\n[[arms]]\nname = \"a, \\\"x\\\": y\"\nweight = 2.0\n\
                          [[arms]]\nname = \"b\"\nweight = 1.0\n[holdout]\nweight = 0.5\n";

    /// A header round-trips through both forms, arm names with commas, colons and quotes
    /// included, and agrees with its own experiment.
    #[test]
    fn the_header_round_trips() {
        let design = Experiment::from_toml_str(DESIGN, "h.toml").unwrap();
        let mut header = ResultsHeader::of(&design);
        header.exported_at = Some("2026-12-06T18:00:00+00:00".into());
        let line = header.to_csv_line();
        assert!(
            line.starts_with("# gavat-experiment {\"experiment\":\"h\",\"arms\":[{\"name\":\"a, \\\"x\\\": y\""),
            "{line}"
        );
        assert_eq!(ResultsHeader::from_csv_line(&line).unwrap(), header);
        assert_eq!(ResultsHeader::from_json_line(&header.to_json_line()).unwrap(), header);
        assert!(ResultsHeader::is_json_header(&header.to_json_line()));
        assert_eq!(header.names().collect::<Vec<_>>(), vec!["a, \"x\": y", "b", "holdout"]);
        assert_eq!(header.disagreement(&design), None);
    }

    /// Another name, other groups or other shares are a disagreement, said as such; the same
    /// shares from other weights are not.
    #[test]
    fn disagreements_are_named() {
        let design = Experiment::from_toml_str(DESIGN, "h.toml").unwrap();
        let mut header = ResultsHeader::of(&design);
        for arm in &mut header.arms {
            arm.weight *= 3.0;
        }
        assert_eq!(header.disagreement(&design), None);
        header.arms[1].weight = 9.0;
        let why = header.disagreement(&design).unwrap();
        assert!(why.starts_with("weights a, \"x\": y:6, b:9, holdout:1.5 against"), "{why}");
        header.arms.pop();
        assert!(header.disagreement(&design).unwrap().starts_with("groups"));
        header.experiment = "other".into();
        assert_eq!(header.disagreement(&design).unwrap(), "experiment \"other\" against \"h\"");
    }

    /// Malformed headers are refused with the field at fault.
    #[test]
    fn malformed_headers_are_refused() {
        let bad = |json: &str| ResultsHeader::from_csv_line(&format!("{CSV_MARKER} {json}")).unwrap_err();
        assert!(ResultsHeader::from_csv_line("# hello").unwrap_err().contains("must be the header"));
        assert!(ResultsHeader::from_csv_line("# gavat-experimentX {}").unwrap_err().contains("must be the header"));
        assert_eq!(bad("{\"experiment\":\"e\"}"), "header: missing field `arms`");
        assert_eq!(
            bad("{\"experiment\":\"e\",\"arms\":[{\"name\":\"a\",\"weight\":1}]}"),
            "header: field arms: needs at least two groups, found 1"
        );
        assert_eq!(
            bad("{\"experiment\":\"e\",\"arms\":[{\"name\":\"a\",\"weight\":1},{\"name\":\"b\",\"weight\":0}]}"),
            "header: field arms[1].weight: 0 must be positive"
        );
        assert_eq!(
            bad("{\"experiment\":\"e\",\"arms\":[{\"name\":\"a\",\"weight\":1},{\"name\":\"a\",\"weight\":1}]}"),
            "header: field arms[1].name: \"a\" appears twice"
        );
        assert!(
            bad("{\"experiment\":\"e\",\"arms\":[{\"name\":\"holdout\",\"weight\":1},{\"name\":\"a\",\"weight\":1}]}")
                .contains("is reserved")
        );
        assert!(bad("{\"experiment\":\"e\",\"arms\":[],\"colour\":1}").contains("unknown field `colour`"));
        assert!(bad("not json").starts_with("header: expected"), "{}", bad("not json"));
    }
}
