//! Per-user results files: one row per user — `user,arm,messages,responses,conversions,
//! opted_out,engagement` — written by `gavat experiment run` (or exported from a live run)
//! and streamed back by `gavat experiment compare`, never loaded whole. Both directions go
//! through the `csv` crate, so an arm name with a comma or a quote round-trips.
//!
//! Every row must be possible: one row per user, at most one reply and one purchase per
//! message received (`responses ≤ messages`, `conversions ≤ messages` — a rate above 1 is
//! refused), `opted_out` 0 or 1, and `engagement` equal to its definition. A row that breaks
//! one is an error naming its line, never a silent skip.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Write};

/// The header line.
pub const HEADER: &str = "user,arm,messages,responses,conversions,opted_out,engagement";

/// The columns, in order.
const COLUMNS: [&str; 7] = ["user", "arm", "messages", "responses", "conversions", "opted_out", "engagement"];

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
}

/// Writes a results file: the header, then one row per [`ResultsWriter::write`], quoted
/// where a field needs it.
#[derive(Debug)]
pub struct ResultsWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> ResultsWriter<W> {
    /// Starts a results file on `out` with the header.
    pub fn new(out: W) -> std::io::Result<ResultsWriter<W>> {
        let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(out);
        csv.write_record(COLUMNS)?;
        Ok(ResultsWriter { csv })
    }

    /// Writes one row.
    pub fn write(&mut self, row: &UserRow) -> std::io::Result<()> {
        let csv = &mut self.csv;
        csv.write_field(row.user.to_string())?;
        csv.write_field(&row.arm)?;
        csv.write_field(row.messages.to_string())?;
        csv.write_field(row.responses.to_string())?;
        csv.write_field(row.conversions.to_string())?;
        csv.write_field(if row.opted_out { "1" } else { "0" })?;
        csv.write_field(row.engagement.to_string())?;
        csv.write_record(None::<&[u8]>)?;
        Ok(())
    }

    /// Flushes and hands back the output.
    pub fn finish(self) -> std::io::Result<W> {
        self.csv.into_inner().map_err(|e| std::io::Error::new(e.error().kind(), e.error().to_string()))
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

/// Hashes a user id with SplitMix64's finaliser: ids are not attacker-chosen keys of a
/// long-lived table, and SipHash would cost more than parsing the row.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The user ids seen so far: a bitset for ids below 2²⁸ (at most 32 MB, grown as needed; a
/// simulation's ids are 0..N) and a hash set for the others (16 bytes or so per user).
#[derive(Default)]
struct SeenUsers {
    dense: Vec<u64>,
    sparse: HashSet<u64, BuildHasherDefault<IdHasher>>,
}

impl SeenUsers {
    const DENSE_LIMIT: u64 = 1 << 28;

    /// Records `user`; `false` if it was already there.
    fn insert(&mut self, user: u64) -> bool {
        if user < Self::DENSE_LIMIT {
            let (word, bit) = ((user / 64) as usize, 1u64 << (user % 64));
            if word >= self.dense.len() {
                self.dense.resize((word + 1).next_power_of_two(), 0);
            }
            let fresh = self.dense[word] & bit == 0;
            self.dense[word] |= bit;
            fresh
        } else {
            self.sparse.insert(user)
        }
    }
}

/// A count: ASCII digits, surrounding spaces allowed.
fn parse_count(field: &[u8]) -> Option<u64> {
    let digits = field.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        if d.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(d - b'0')) } else { None }
    })
}

/// Streams the rows of a results file to `each`, in file order, reusing one record and one
/// row (no allocation per row). The first line must be [`HEADER`]; blank lines are ignored;
/// anything else malformed or impossible (see the module docs) is an error naming the line
/// and column (no row is skipped silently).
pub fn read_rows(
    reader: impl Read,
    path: &str,
    mut each: impl FnMut(&UserRow) -> Result<(), ResultsError>,
) -> Result<u64, ResultsError> {
    let malformed = |line: usize, message: String| ResultsError::Malformed { path: path.to_string(), line, message };
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let mut row = UserRow {
        user: 0,
        arm: String::new(),
        messages: 0,
        responses: 0,
        conversions: 0,
        opted_out: false,
        engagement: 0.0,
    };
    let mut seen = SeenUsers::default();
    let mut rows = 0u64;
    let mut first = true;
    loop {
        let more = csv.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            match e.into_kind() {
                csv::ErrorKind::Io(cause) => ResultsError::Read { path: path.to_string(), cause },
                other => malformed(line, format!("{other:?}")),
            }
        })?;
        if !more {
            break;
        }
        let n = record.position().map_or(0, |p| p.line() as usize);
        if first {
            first = false;
            let header: Vec<&[u8]> = record.iter().map(<[u8]>::trim_ascii).collect();
            if header != COLUMNS.map(str::as_bytes) {
                return Err(malformed(n, format!("expected the header `{HEADER}`")));
            }
            continue;
        }
        if record.len() == 1 && record[0].trim_ascii().is_empty() {
            continue;
        }
        if record.len() > COLUMNS.len() {
            return Err(malformed(n, format!("more than {} columns", COLUMNS.len())));
        }
        if let Some(missing) = COLUMNS.get(record.len()) {
            return Err(malformed(n, format!("column {missing}: missing")));
        }
        let text = |i: usize| String::from_utf8_lossy(&record[i]).into_owned();
        let count = |i: usize| {
            parse_count(&record[i])
                .ok_or_else(|| malformed(n, format!("column {}: `{}` is not a count", COLUMNS[i], text(i))))
        };
        row.user = count(0)?;
        let arm = record[1].trim_ascii();
        if arm.is_empty() {
            return Err(malformed(n, "column arm: empty".into()));
        }
        if arm != row.arm.as_bytes() {
            let name = std::str::from_utf8(arm)
                .map_err(|_| malformed(n, format!("column arm: `{}` is not UTF-8", text(1))))?;
            row.arm.clear();
            row.arm.push_str(name);
        }
        row.messages = count(2)?;
        row.responses = count(3)?;
        row.conversions = count(4)?;
        row.opted_out = match record[5].trim_ascii() {
            b"0" | b"false" => false,
            b"1" | b"true" => true,
            _ => return Err(malformed(n, format!("column opted_out: `{}` is not 0 or 1", text(5)))),
        };
        row.engagement = std::str::from_utf8(record[6].trim_ascii())
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| malformed(n, format!("column engagement: `{}` is not a number", text(6))))?;
        for (i, value) in [(3, row.responses), (4, row.conversions)] {
            if value > row.messages {
                return Err(malformed(
                    n,
                    format!(
                        "column {}: {value} is more than the {} messages received (at most one per message)",
                        COLUMNS[i], row.messages
                    ),
                ));
            }
        }
        let engagement = UserRow::engagement_of(row.responses, row.conversions, row.opted_out);
        if (row.engagement - engagement).abs() > 1e-9 * engagement.abs().max(1.0) {
            return Err(malformed(
                n,
                format!(
                    "column engagement: `{}` is not responses + 2·conversions − 5·opted_out = {engagement}",
                    text(6)
                ),
            ));
        }
        if !seen.insert(row.user) {
            return Err(malformed(n, format!("column user: {} has a row already (one row per user)", row.user)));
        }
        each(&row)?;
        rows += 1;
    }
    if first {
        return Err(malformed(1, format!("empty file: expected the header `{HEADER}`")));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: u64, arm: &str) -> UserRow {
        UserRow { user, arm: arm.into(), messages: 3, responses: 1, conversions: 0, opted_out: false, engagement: 1.0 }
    }

    fn read_all(text: &str) -> Result<Vec<UserRow>, String> {
        let mut seen = Vec::new();
        read_rows(text.as_bytes(), "r.csv", |r| {
            seen.push(r.clone());
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(seen)
    }

    fn error(body: &str) -> String {
        read_all(&format!("{HEADER}\n{body}")).unwrap_err()
    }

    /// Rows round-trip, arm names with commas, quotes and newlines included.
    #[test]
    fn rows_round_trip_through_the_csv_writer() {
        let rows = vec![row(7, "b"), row(8, "a, \"quoted\" arm"), row(9, "two\nlines"), row(10, "b")];
        let mut writer = ResultsWriter::new(Vec::new()).unwrap();
        for r in &rows {
            writer.write(r).unwrap();
        }
        let text = String::from_utf8(writer.finish().unwrap()).unwrap();
        assert!(text.starts_with(&format!("{HEADER}\n7,b,3,1,0,0,1\n8,\"a, \"\"quoted\"\" arm\",")), "{text}");
        assert_eq!(read_all(&text).unwrap(), rows);
        // A row after a quoted newline is still named by its own line.
        let err = read_all(&format!("{text}11,b,1,2,0,0,2\n")).unwrap_err();
        assert!(err.starts_with("r.csv:7: column responses"), "{err}");
    }

    /// Malformed lines are named with their line and column.
    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(error("1,a,1,0,0,0,0\n2,a,x,0,0,0,0\n"), "r.csv:3: column messages: `x` is not a count");
        assert!(read_all("user,arm\n").unwrap_err().starts_with("r.csv:1: expected the header"));
        assert!(read_all("").unwrap_err().starts_with("r.csv:1: empty file"));
        assert!(error("1,a,1,0\n").contains("column conversions: missing"));
        assert!(error("1,a,1,0,0,0,0,9\n").contains("more than 7 columns"));
        assert_eq!(error("1,a,1,0,0,maybe,0\n"), "r.csv:2: column opted_out: `maybe` is not 0 or 1");
        assert_eq!(error("-1,a,1,0,0,0,0\n"), "r.csv:2: column user: `-1` is not a count");
        assert_eq!(error("1, ,1,0,0,0,0\n"), "r.csv:2: column arm: empty");
        assert_eq!(error("1,a,1,0,0,0,inf\n"), "r.csv:2: column engagement: `inf` is not a number");
        // Blank lines are not rows.
        assert_eq!(read_all(&format!("{HEADER}\n\n1,a,1,0,0,0,0\n\n")).unwrap().len(), 1);
    }

    /// Impossible rows are refused: a second row for a user, more replies or purchases than
    /// messages (a rate above 1), an engagement that is not its definition.
    #[test]
    fn impossible_rows_are_refused() {
        assert_eq!(
            error("5,a,1,0,0,0,0\n6,b,1,0,0,0,0\n5,b,1,0,0,0,0\n"),
            "r.csv:4: column user: 5 has a row already (one row per user)"
        );
        let far = 1u64 << 40;
        assert_eq!(
            error(&format!("{far},a,1,0,0,0,0\n{far},a,1,0,0,0,0\n")),
            format!("r.csv:3: column user: {far} has a row already (one row per user)")
        );
        assert_eq!(
            error("1,a,2,3,0,0,3\n"),
            "r.csv:2: column responses: 3 is more than the 2 messages received (at most one per message)"
        );
        assert_eq!(
            error("1,a,2,0,3,0,6\n"),
            "r.csv:2: column conversions: 3 is more than the 2 messages received (at most one per message)"
        );
        assert_eq!(
            error("1,a,2,1,1,1,7\n"),
            "r.csv:2: column engagement: `7` is not responses + 2·conversions − 5·opted_out = -2"
        );
        assert_eq!(read_all(&format!("{HEADER}\n1,a,2,1,1,1,-2\n2,a,0,0,0,1,-5\n")).unwrap().len(), 2);
    }

    /// The user-id set: dense ids in the bitset, large ones in the hash set.
    #[test]
    fn seen_users() {
        let mut seen = SeenUsers::default();
        for id in [0, 63, 64, 1 << 27, (1 << 28) - 1, 1 << 28, u64::MAX] {
            assert!(seen.insert(id), "{id}");
            assert!(!seen.insert(id), "{id}");
        }
        assert!(seen.insert(65));
    }
}
