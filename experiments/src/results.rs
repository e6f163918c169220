//! Per-user results files: one row per user — `user,arm,messages,responses,conversions,
//! opted_out,engagement` — written by `gavat experiment run` (or exported from a live run)
//! and streamed back by `gavat experiment compare`, never loaded whole.

use std::io::{BufRead, Write};

/// The header line.
pub const HEADER: &str = "user,arm,messages,responses,conversions,opted_out,engagement";

/// One user's outcome in an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// User id.
    pub user: u64,
    /// Arm name.
    pub arm: String,
    /// Messages received.
    pub messages: u64,
    /// Replies.
    pub responses: u64,
    /// Purchases.
    pub conversions: u64,
    /// Opted out.
    pub opted_out: bool,
    /// responses + 2·conversions − 5·opted_out.
    pub engagement: f64,
}

impl UserRow {
    /// The per-user engagement score: responses + 2·conversions − 5·(opted out).
    pub fn engagement_of(responses: u64, conversions: u64, opted_out: bool) -> f64 {
        responses as f64 + 2.0 * conversions as f64 - if opted_out { 5.0 } else { 0.0 }
    }

    /// Writes the row as one CSV line.
    pub fn write_csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            self.user,
            self.arm,
            self.messages,
            self.responses,
            self.conversions,
            u8::from(self.opted_out),
            self.engagement
        )
    }
}

/// Why a results file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Reading failed.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong, naming the column.
        message: String,
    },
}

/// Streams the rows of a results file to `each`, in file order, reusing one line buffer
/// and one row (no allocation per row). The first line must be [`HEADER`]; blank lines are
/// ignored; anything else malformed is an error naming the line and column (no row is
/// skipped silently).
pub fn read_rows(
    mut reader: impl BufRead,
    path: &str,
    mut each: impl FnMut(&UserRow) -> Result<(), ResultsError>,
) -> Result<u64, ResultsError> {
    let malformed = |line: usize, message: String| ResultsError::Malformed { path: path.to_string(), line, message };
    let mut line = String::new();
    let mut row = UserRow {
        user: 0,
        arm: String::new(),
        messages: 0,
        responses: 0,
        conversions: 0,
        opted_out: false,
        engagement: 0.0,
    };
    let mut rows = 0u64;
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|cause| ResultsError::Read { path: path.to_string(), cause })?;
        if read == 0 {
            break;
        }
        n += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if n == 1 {
            if text.trim() != HEADER {
                return Err(malformed(1, format!("expected the header `{HEADER}`")));
            }
            continue;
        }
        if text.trim().is_empty() {
            continue;
        }
        let mut fields = text.split(',');
        let mut next = |name: &str| fields.next().ok_or_else(|| malformed(n, format!("column {name}: missing")));
        let int = |value: &str, name: &str| -> Result<u64, ResultsError> {
            value.trim().parse().map_err(|_| malformed(n, format!("column {name}: `{value}` is not a count")))
        };
        row.user = int(next("user")?, "user")?;
        let arm = next("arm")?.trim();
        if arm.is_empty() {
            return Err(malformed(n, "column arm: empty".into()));
        }
        row.arm.clear();
        row.arm.push_str(arm);
        row.messages = int(next("messages")?, "messages")?;
        row.responses = int(next("responses")?, "responses")?;
        row.conversions = int(next("conversions")?, "conversions")?;
        row.opted_out = match next("opted_out")?.trim() {
            "0" | "false" => false,
            "1" | "true" => true,
            other => return Err(malformed(n, format!("column opted_out: `{other}` is not 0 or 1"))),
        };
        let engagement = next("engagement")?;
        row.engagement = engagement
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| malformed(n, format!("column engagement: `{engagement}` is not a number")))?;
        if fields.next().is_some() {
            return Err(malformed(n, "more than 7 columns".into()));
        }
        each(&row)?;
        rows += 1;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows round-trip; malformed lines are named.
    #[test]
    fn round_trip_and_errors() {
        let row = UserRow {
            user: 7,
            arm: "b".into(),
            messages: 3,
            responses: 1,
            conversions: 0,
            opted_out: false,
            engagement: 1.0,
        };
        let mut text = format!("{HEADER}\n").into_bytes();
        row.write_csv(&mut text).unwrap();
        let mut seen = Vec::new();
        let n = read_rows(&text[..], "r.csv", |r| {
            seen.push(r.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!((n, &seen[0]), (1, &row));

        let bad = format!("{HEADER}\n1,a,1,0,0,0,0\n2,a,x,0,0,0,0\n");
        let err = read_rows(bad.as_bytes(), "r.csv", |_| Ok(())).unwrap_err().to_string();
        assert_eq!(err, "r.csv:3: column messages: `x` is not a count");
        let err = read_rows("user,arm\n".as_bytes(), "r.csv", |_| Ok(())).unwrap_err().to_string();
        assert!(err.starts_with("r.csv:1:"), "{err}");
        let err = read_rows(format!("{HEADER}\n1,a,1,0\n").as_bytes(), "r.csv", |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("column conversions: missing"), "{err}");
        let err =
            read_rows(format!("{HEADER}\n1,a,1,0,0,0,0,9\n").as_bytes(), "r.csv", |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("more than 7 columns"), "{err}");
    }
}
