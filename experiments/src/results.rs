//! Per-user results files: one row per user — `user,arm,messages,responses,conversions,
//! opted_out,engagement`, and optionally `pre_period` (the user's value before the experiment,
//! for CUPED) — written by `gavat experiment run` (or exported from a live run) and streamed
//! back by `gavat experiment compare`, never loaded whole. CSV goes through the `csv` crate,
//! so an arm name with a comma or a quote round-trips; a file whose first character (after
//! the header) is `{` is read as JSON lines instead, one object per user with the same fields.
//!
//! A file gavat writes starts with a [`ResultsHeader`] (the experiment, its groups and
//! weights, the export time): a first line `# gavat-experiment {…}` in CSV, a first object
//! `{"gavat_experiment": {…}}` in JSON lines. Files without one (older ones)
//! are read as before.
//!
//! Every row must be possible: one row per user, at most one reply and one purchase per
//! message received (`responses ≤ messages`, `conversions ≤ messages` — a rate above 1 is
//! refused), `opted_out` 0 or 1, and `engagement` equal to its definition. A row that breaks
//! one is an error naming its line, never a silent skip.

mod header;

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, Read, Write};

pub use header::{CSV_MARKER, GroupWeight, JSON_KEY, ResultsHeader, weights_text};

/// The header line.
pub const HEADER: &str = "user,arm,messages,responses,conversions,opted_out,engagement";

/// The header line of a file with each user's pre-period value.
pub const HEADER_WITH_PRE_PERIOD: &str = "user,arm,messages,responses,conversions,opted_out,engagement,pre_period";

/// The columns, in order (the last is optional).
const COLUMNS: [&str; 8] =
    ["user", "arm", "messages", "responses", "conversions", "opted_out", "engagement", "pre_period"];

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
    /// The user's value before the experiment started (CUPED's covariate), when the file
    /// has one.
    pub pre_period: Option<f64>,
}

impl UserRow {
    /// The per-user engagement score: responses + 2·conversions − 5·(opted out).
    pub fn engagement_of(responses: u64, conversions: u64, opted_out: bool) -> f64 {
        responses as f64 + 2.0 * conversions as f64 - if opted_out { 5.0 } else { 0.0 }
    }
}

/// How a results file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultsFormat {
    /// Comma-separated, quoted where a field needs it.
    Csv,
    /// One JSON object per user.
    JsonLines,
}

impl ResultsFormat {
    /// JSON lines for a path ending in `.jsonl` or `.ndjson`, else CSV.
    pub fn of_path(path: &std::path::Path) -> ResultsFormat {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "ndjson") => ResultsFormat::JsonLines,
            _ => ResultsFormat::Csv,
        }
    }
}

/// Where the rows go.
#[derive(Debug)]
enum Sink<W: Write> {
    /// Boxed: the csv writer with its buffer state is large, and a writer lives for a whole
    /// file, so one allocation costs nothing.
    Csv(Box<csv::Writer<W>>),
    Json(W),
}

/// One row of a JSON-lines file as written.
#[derive(serde::Serialize)]
struct JsonRowOut<'a> {
    user: u64,
    arm: &'a str,
    messages: u64,
    responses: u64,
    conversions: u64,
    opted_out: bool,
    engagement: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pre_period: Option<f64>,
}

/// Writes a results file: the [`ResultsHeader`] if given, the column line (CSV), then one
/// row per [`ResultsWriter::write`].
#[derive(Debug)]
pub struct ResultsWriter<W: Write> {
    sink: Sink<W>,
    pre_period: bool,
}

impl<W: Write> ResultsWriter<W> {
    /// Starts a CSV results file on `out` with the column line, without a header.
    pub fn new(out: W) -> std::io::Result<ResultsWriter<W>> {
        ResultsWriter::start(out, ResultsFormat::Csv, None, false)
    }

    /// Starts a CSV results file on `out` with the column line that has a `pre_period`
    /// column, without a header.
    pub fn with_pre_period(out: W) -> std::io::Result<ResultsWriter<W>> {
        ResultsWriter::start(out, ResultsFormat::Csv, None, true)
    }

    /// Starts a results file on `out` in `format`, with `header` first when given, and a
    /// `pre_period` column (field) when `pre_period`.
    pub fn start(
        mut out: W,
        format: ResultsFormat,
        header: Option<&ResultsHeader>,
        pre_period: bool,
    ) -> std::io::Result<ResultsWriter<W>> {
        let sink = match format {
            ResultsFormat::Csv => {
                if let Some(h) = header {
                    writeln!(out, "{}", h.to_csv_line())?;
                }
                let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(out);
                csv.write_record(&COLUMNS[..if pre_period { 8 } else { 7 }])?;
                Sink::Csv(Box::new(csv))
            }
            ResultsFormat::JsonLines => {
                if let Some(h) = header {
                    writeln!(out, "{}", h.to_json_line())?;
                }
                Sink::Json(out)
            }
        };
        Ok(ResultsWriter { sink, pre_period })
    }

    /// Writes one row (a file with a `pre_period` column writes a row without one as an
    /// error: every user has a pre-period or none has).
    pub fn write(&mut self, row: &UserRow) -> std::io::Result<()> {
        match (self.pre_period, row.pre_period) {
            (true, Some(_)) | (false, None) => {}
            (true, None) => return Err(std::io::Error::other(format!("user {}: no pre-period value", row.user))),
            (false, Some(_)) => {
                return Err(std::io::Error::other(format!(
                    "user {}: a pre-period value in a file without the column",
                    row.user
                )));
            }
        }
        match &mut self.sink {
            Sink::Csv(csv) => {
                csv.write_field(row.user.to_string())?;
                csv.write_field(&row.arm)?;
                csv.write_field(row.messages.to_string())?;
                csv.write_field(row.responses.to_string())?;
                csv.write_field(row.conversions.to_string())?;
                csv.write_field(if row.opted_out { "1" } else { "0" })?;
                csv.write_field(row.engagement.to_string())?;
                if let Some(x) = row.pre_period {
                    csv.write_field(x.to_string())?;
                }
                csv.write_record(None::<&[u8]>)?;
            }
            Sink::Json(out) => {
                let json = JsonRowOut {
                    user: row.user,
                    arm: &row.arm,
                    messages: row.messages,
                    responses: row.responses,
                    conversions: row.conversions,
                    opted_out: row.opted_out,
                    engagement: row.engagement,
                    pre_period: row.pre_period,
                };
                serde_json::to_writer(&mut *out, &json)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Flushes and hands back the output.
    pub fn finish(self) -> std::io::Result<W> {
        match self.sink {
            Sink::Csv(csv) => {
                (*csv).into_inner().map_err(|e| std::io::Error::new(e.error().kind(), e.error().to_string()))
            }
            Sink::Json(mut out) => {
                out.flush()?;
                Ok(out)
            }
        }
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

/// Checks a parsed row against the rules of the module docs; the message names the column.
fn check_row(row: &UserRow) -> Result<(), String> {
    for (name, value) in [("responses", row.responses), ("conversions", row.conversions)] {
        if value > row.messages {
            return Err(format!(
                "column {name}: {value} is more than the {} messages received (at most one per message)",
                row.messages
            ));
        }
    }
    let engagement = UserRow::engagement_of(row.responses, row.conversions, row.opted_out);
    if (row.engagement - engagement).abs() > 1e-9 * engagement.abs().max(1.0) {
        return Err(format!(
            "column engagement: `{}` is not responses + 2·conversions − 5·opted_out = {engagement}",
            row.engagement
        ));
    }
    Ok(())
}

/// Streams the rows of a results file to `each`, in file order, reusing one row (no
/// allocation per CSV row); see [`ResultsFile`]. The header, if any, is checked and passed
/// over.
pub fn read_rows(
    reader: impl Read,
    path: &str,
    each: impl FnMut(&UserRow) -> Result<(), ResultsError>,
) -> Result<u64, ResultsError> {
    ResultsFile::open(reader, path)?.read_rows(each)
}

/// A results file opened for reading: its [`ResultsHeader`] (if it has one) is read first,
/// so that the caller knows the experiment's groups before the rows stream by.
///
/// After the header, a CSV file's first line must be [`HEADER`] or
/// [`HEADER_WITH_PRE_PERIOD`]; a file whose first character is `{` is JSON lines. Blank
/// lines are ignored; anything else malformed or impossible (see the module docs) is an
/// error naming the line and column (no row is skipped silently), line numbers counting the
/// header line.
#[derive(Debug)]
pub struct ResultsFile<R: Read> {
    reader: std::io::BufReader<R>,
    path: String,
    header: Option<ResultsHeader>,
    /// The first line when it was read to look for a header and is not one.
    first: Vec<u8>,
    /// Lines before the rows' text (1 after a header).
    offset: usize,
}

impl<R: Read> ResultsFile<R> {
    /// Opens `reader` (`path` names it in errors) and reads its header, if any. A first
    /// line starting with `#`, or a first JSON object with the key [`JSON_KEY`], must be a
    /// valid header: else an error at line 1.
    pub fn open(reader: R, path: &str) -> Result<ResultsFile<R>, ResultsError> {
        let read_error = |cause| ResultsError::Read { path: path.to_string(), cause };
        let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
        let mut first = Vec::new();
        let starts = reader.fill_buf().map_err(read_error)?.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let mut header = None;
        if matches!(starts, Some(b'#' | b'{')) {
            reader.read_until(b'\n', &mut first).map_err(read_error)?;
            let malformed = |message: String| ResultsError::Malformed { path: path.to_string(), line: 1, message };
            let text = std::str::from_utf8(&first).map_err(|_| malformed("header: not UTF-8".into()));
            if first.trim_ascii_start().starts_with(b"#") {
                header = Some(ResultsHeader::from_csv_line(text?.trim()).map_err(malformed)?);
            } else if let Ok(text) = text
                && ResultsHeader::is_json_header(text)
            {
                header = Some(ResultsHeader::from_json_line(text).map_err(malformed)?);
            }
            if header.is_some() {
                first.clear();
            }
        }
        let offset = usize::from(header.is_some());
        Ok(ResultsFile { reader, path: path.to_string(), header, first, offset })
    }

    /// The header, if the file has one.
    pub fn header(&self) -> Option<&ResultsHeader> {
        self.header.as_ref()
    }

    /// Streams the rows to `each`; returns how many there were.
    pub fn read_rows(mut self, each: impl FnMut(&UserRow) -> Result<(), ResultsError>) -> Result<u64, ResultsError> {
        let path = self.path;
        let starts = match self.first.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b) => Some(*b),
            None => self
                .reader
                .fill_buf()
                .map_err(|cause| ResultsError::Read { path: path.clone(), cause })?
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .copied(),
        };
        let rest = std::io::Cursor::new(self.first).chain(self.reader);
        if starts == Some(b'{') {
            read_json_lines(rest, &path, self.offset, each)
        } else {
            read_csv(rest, &path, self.offset, each)
        }
    }
}

/// One row of a JSON-lines results file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    user: u64,
    arm: String,
    messages: u64,
    responses: u64,
    conversions: u64,
    opted_out: JsonFlag,
    engagement: f64,
    #[serde(default)]
    pre_period: Option<f64>,
}

/// `opted_out` as `true`/`false` or `1`/`0`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonFlag {
    Bool(bool),
    Number(u8),
}

fn read_json_lines(
    reader: impl BufRead,
    path: &str,
    offset: usize,
    mut each: impl FnMut(&UserRow) -> Result<(), ResultsError>,
) -> Result<u64, ResultsError> {
    let malformed = |line: usize, message: String| ResultsError::Malformed { path: path.to_string(), line, message };
    let mut seen = SeenUsers::default();
    let mut rows = 0u64;
    let mut with_pre_period = None;
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1 + offset;
        let line = line.map_err(|cause| ResultsError::Read { path: path.to_string(), cause })?;
        if line.trim().is_empty() {
            continue;
        }
        if ResultsHeader::is_json_header(&line) {
            return Err(malformed(n, "a header object is allowed only on the first line".into()));
        }
        let raw: JsonRow = serde_json::from_str(&line).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_string();
            malformed(n, message)
        })?;
        let opted_out = match raw.opted_out {
            JsonFlag::Bool(b) => b,
            JsonFlag::Number(0) => false,
            JsonFlag::Number(1) => true,
            JsonFlag::Number(other) => return Err(malformed(n, format!("field opted_out: `{other}` is not 0 or 1"))),
        };
        let arm = raw.arm.trim();
        if arm.is_empty() {
            return Err(malformed(n, "field arm: empty".into()));
        }
        if !raw.engagement.is_finite() {
            return Err(malformed(n, "field engagement: not a number".into()));
        }
        match (with_pre_period, raw.pre_period) {
            (_, Some(x)) if !x.is_finite() => return Err(malformed(n, "field pre_period: not a number".into())),
            (None, x) => with_pre_period = Some(x.is_some()),
            (Some(true), None) => {
                return Err(malformed(
                    n,
                    "field pre_period: missing (earlier rows have one: every row or none)".into(),
                ));
            }
            (Some(false), Some(_)) => {
                return Err(malformed(n, "field pre_period: earlier rows have none (every row or none)".into()));
            }
            _ => {}
        }
        let row = UserRow {
            user: raw.user,
            arm: arm.to_string(),
            messages: raw.messages,
            responses: raw.responses,
            conversions: raw.conversions,
            opted_out,
            engagement: raw.engagement,
            pre_period: raw.pre_period,
        };
        check_row(&row).map_err(|m| malformed(n, m.replacen("column ", "field ", 1)))?;
        if !seen.insert(row.user) {
            return Err(malformed(n, format!("field user: {} has a row already (one row per user)", row.user)));
        }
        each(&row)?;
        rows += 1;
    }
    Ok(rows)
}

fn read_csv(
    reader: impl Read,
    path: &str,
    offset: usize,
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
        pre_period: None,
    };
    let mut seen = SeenUsers::default();
    let mut rows = 0u64;
    let mut first = true;
    let mut columns = 7;
    loop {
        let more = csv.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize) + offset;
            match e.into_kind() {
                csv::ErrorKind::Io(cause) => ResultsError::Read { path: path.to_string(), cause },
                other => malformed(line, format!("{other:?}")),
            }
        })?;
        if !more {
            break;
        }
        let n = record.position().map_or(0, |p| p.line() as usize) + offset;
        if first {
            first = false;
            let header: Vec<&[u8]> = record.iter().map(<[u8]>::trim_ascii).collect();
            columns = header.len();
            if !(7..=8).contains(&columns)
                || header != COLUMNS[..columns].iter().map(|c| c.as_bytes()).collect::<Vec<_>>()
            {
                return Err(malformed(n, format!("expected the header `{HEADER}` (optionally with `,pre_period`)")));
            }
            continue;
        }
        if record.len() == 1 && record[0].trim_ascii().is_empty() {
            continue;
        }
        if record.len() > columns {
            return Err(malformed(n, format!("more than {columns} columns")));
        }
        if let Some(missing) = COLUMNS[..columns].get(record.len()) {
            return Err(malformed(n, format!("column {missing}: missing")));
        }
        let text = |i: usize| String::from_utf8_lossy(&record[i]).into_owned();
        let count = |i: usize| {
            parse_count(&record[i])
                .ok_or_else(|| malformed(n, format!("column {}: `{}` is not a count", COLUMNS[i], text(i))))
        };
        let number = |i: usize| {
            std::str::from_utf8(record[i].trim_ascii())
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| malformed(n, format!("column {}: `{}` is not a number", COLUMNS[i], text(i))))
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
        row.engagement = number(6)?;
        row.pre_period = if columns == 8 { Some(number(7)?) } else { None };
        check_row(&row).map_err(|m| malformed(n, m))?;
        if !seen.insert(row.user) {
            return Err(malformed(n, format!("column user: {} has a row already (one row per user)", row.user)));
        }
        each(&row)?;
        rows += 1;
    }
    if first {
        return Err(malformed(1 + offset, format!("empty file: expected the header `{HEADER}`")));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: u64, arm: &str) -> UserRow {
        UserRow {
            user,
            arm: arm.into(),
            messages: 3,
            responses: 1,
            conversions: 0,
            opted_out: false,
            engagement: 1.0,
            pre_period: None,
        }
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

    /// A `pre_period` column round-trips; every row of such a file needs a value.
    #[test]
    fn the_pre_period_column_round_trips() {
        let rows: Vec<UserRow> = (1..4).map(|u| UserRow { pre_period: Some(u as f64 * 0.5), ..row(u, "a") }).collect();
        let mut writer = ResultsWriter::with_pre_period(Vec::new()).unwrap();
        for r in &rows {
            writer.write(r).unwrap();
        }
        let text = String::from_utf8(writer.finish().unwrap()).unwrap();
        assert!(text.starts_with(&format!("{HEADER_WITH_PRE_PERIOD}\n1,a,3,1,0,0,1,0.5\n")), "{text}");
        assert_eq!(read_all(&text).unwrap(), rows);
        let err = read_all(&format!("{HEADER_WITH_PRE_PERIOD}\n1,a,1,0,0,0,0\n")).unwrap_err();
        assert_eq!(err, "r.csv:2: column pre_period: missing");
        let err = read_all(&format!("{HEADER_WITH_PRE_PERIOD}\n1,a,1,0,0,0,0,x\n")).unwrap_err();
        assert_eq!(err, "r.csv:2: column pre_period: `x` is not a number");
        assert!(ResultsWriter::new(Vec::new()).unwrap().write(&rows[0]).is_err());
    }

    /// JSON lines are read with the same rules, errors naming the line and the field.
    #[test]
    fn json_lines_are_accepted() {
        let text = concat!(
            "{\"user\":1,\"arm\":\"a\",\"messages\":2,\"responses\":1,\"conversions\":0,\"opted_out\":false,\"engagement\":1,\"pre_period\":3}\n",
            "\n",
            "{\"user\":2,\"arm\":\"b\",\"messages\":2,\"responses\":0,\"conversions\":0,\"opted_out\":1,\"engagement\":-5,\"pre_period\":0}\n",
        );
        let rows = read_all(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].opted_out, rows[1].pre_period), (true, Some(0.0)));
        let bad = |line: &str| read_all(&format!("{}\n{line}\n", text.lines().next().unwrap())).unwrap_err();
        assert_eq!(
            bad(
                "{\"user\":2,\"arm\":\"b\",\"messages\":2,\"responses\":0,\"conversions\":0,\"opted_out\":0,\"engagement\":0}"
            ),
            "r.csv:2: field pre_period: missing (earlier rows have one: every row or none)"
        );
        assert_eq!(
            bad(
                "{\"user\":1,\"arm\":\"b\",\"messages\":2,\"responses\":0,\"conversions\":0,\"opted_out\":0,\"engagement\":0,\"pre_period\":1}"
            ),
            "r.csv:2: field user: 1 has a row already (one row per user)"
        );
        assert_eq!(
            bad(
                "{\"user\":2,\"arm\":\"b\",\"messages\":2,\"responses\":3,\"conversions\":0,\"opted_out\":0,\"engagement\":3,\"pre_period\":1}"
            ),
            "r.csv:2: field responses: 3 is more than the 2 messages received (at most one per message)"
        );
        assert!(bad("{\"user\":2,\"arm\":\"b\"}").starts_with("r.csv:2: missing field `messages`"));
        assert!(bad("{\"user\":2,\"colour\":1}").starts_with("r.csv:2: unknown field `colour`"));
    }

    fn header() -> ResultsHeader {
        ResultsHeader {
            experiment: "e".into(),
            arms: ["a", "b", "c"].iter().map(|n| GroupWeight { name: (*n).into(), weight: 1.0 }).collect(),
            exported_at: Some("2026-12-06T18:00:00+00:00".into()),
            log_end: None,
        }
    }

    /// A header is written first, in CSV and in JSON lines, and read back before the rows;
    /// the rows' line numbers count it.
    #[test]
    fn the_header_comes_first_in_both_formats() {
        let rows: Vec<UserRow> = (1..4).map(|u| UserRow { pre_period: Some(0.5), ..row(u, "a") }).collect();
        for format in [ResultsFormat::Csv, ResultsFormat::JsonLines] {
            let mut writer = ResultsWriter::start(Vec::new(), format, Some(&header()), true).unwrap();
            for r in &rows {
                writer.write(r).unwrap();
            }
            let text = String::from_utf8(writer.finish().unwrap()).unwrap();
            let first = text.lines().next().unwrap();
            match format {
                ResultsFormat::Csv => assert_eq!(first, header().to_csv_line()),
                ResultsFormat::JsonLines => assert_eq!(first, header().to_json_line()),
            }
            let file = ResultsFile::open(text.as_bytes(), "r").unwrap();
            assert_eq!(file.header(), Some(&header()));
            let mut seen = Vec::new();
            file.read_rows(|r| {
                seen.push(r.clone());
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, rows, "{format:?}");
            let err = read_all(&format!("{text}{}\n", text.lines().nth(2).unwrap())).unwrap_err();
            let line = if format == ResultsFormat::Csv { 6 } else { 5 };
            assert!(err.starts_with(&format!("r.csv:{line}: ")) && err.contains("has a row already"), "{err}");
        }
        // Files without a header read as before.
        let plain = format!("{HEADER}\n1,a,1,0,0,0,0\n");
        let file = ResultsFile::open(plain.as_bytes(), "r").unwrap();
        assert_eq!(file.header(), None);
        assert_eq!(file.read_rows(|_| Ok(())).unwrap(), 1);
        assert_eq!(ResultsFormat::of_path(std::path::Path::new("x.JSONL")), ResultsFormat::JsonLines);
        assert_eq!(ResultsFormat::of_path(std::path::Path::new("x.csv")), ResultsFormat::Csv);
    }

    /// A malformed header is an error at line 1, naming the file; a header object after the
    /// first line is refused at its line.
    #[test]
    fn malformed_headers_are_named_with_file_and_line() {
        let err = read_all(&format!("# gavat-experiment {{\"experiment\":\"e\"}}\n{HEADER}\n")).unwrap_err();
        assert_eq!(err, "r.csv:1: header: missing field `arms`");
        assert_eq!(
            read_all(&format!("# a comment\n{HEADER}\n")).unwrap_err(),
            "r.csv:1: a first line starting with `#` must be the header `# gavat-experiment {…}`"
        );
        let err = read_all("{\"gavat_experiment\":{\"experiment\":\"e\",\"arms\":7}}\n").unwrap_err();
        assert!(err.starts_with("r.csv:1: header: invalid type"), "{err}");
        let row = "{\"user\":1,\"arm\":\"a\",\"messages\":2,\"responses\":1,\"conversions\":0,\"opted_out\":false,\"engagement\":1}";
        let err = read_all(&format!("{row}\n{}\n", header().to_json_line())).unwrap_err();
        assert_eq!(err, "r.csv:2: a header object is allowed only on the first line");
        assert_eq!(read_all(&format!("{}\n{HEADER}\n", header().to_csv_line())).unwrap().len(), 0);
        let err = read_all(&format!("{}\n", header().to_csv_line())).unwrap_err();
        assert!(err.starts_with("r.csv:2: empty file"), "{err}");
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
