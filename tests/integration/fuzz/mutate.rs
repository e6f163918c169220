//! The mutations a fuzz case applies to a valid document, the proptest runner that draws
//! them from a fixed seed, and the tally that becomes a fault-matrix `RowReport`.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::fault_report::{RowReport, RunKind};

/// Cases per parser when `GAVAT_FUZZ_CASES` is not set: the whole module stays within
/// seconds in a release build.
pub const DEFAULT_CASES: u32 = 96;

/// Cases per parser: `GAVAT_FUZZ_CASES`, else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var("GAVAT_FUZZ_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_CASES)
}

/// Bytes of the one over-long line each parser is given (RELIABILITY.md row 28).
pub const TEN_MB: usize = 10 * 1024 * 1024;

/// How a document is laid out, for the mutations that know structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Lines of records or `key = value` (CSV, JSON lines, TOML): an unknown key is a line.
    Lines,
    /// One JSON document: an unknown key goes just inside an object.
    Json,
}

/// One kind of damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mutation {
    /// Cut the document short.
    Truncate,
    /// XOR one byte with a non-zero mask.
    FlipByte,
    /// A UTF-8 byte order mark in front.
    Bom,
    /// Every `\n` becomes `\r\n`.
    Crlf,
    /// Bytes that are never UTF-8 (`0xFF 0xFE`), somewhere.
    InvalidUtf8,
    /// A line given twice (duplicate ids, duplicate keys or tables).
    DuplicateLine,
    /// A value replaced by a hostile one (NaN, negative, huge, an unknown time zone…).
    HostileValue,
    /// A cell (CSV), a key-value pair (JSON) or a line (TOML) taken out.
    DropCell,
    /// A key, column or table nobody knows.
    UnknownKey,
}

impl Mutation {
    /// Every kind, in a fixed order.
    pub const ALL: [Mutation; 9] = [
        Mutation::Truncate,
        Mutation::FlipByte,
        Mutation::Bom,
        Mutation::Crlf,
        Mutation::InvalidUtf8,
        Mutation::DuplicateLine,
        Mutation::HostileValue,
        Mutation::DropCell,
        Mutation::UnknownKey,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::Truncate => "truncate",
            Mutation::FlipByte => "byte_flip",
            Mutation::Bom => "bom",
            Mutation::Crlf => "crlf",
            Mutation::InvalidUtf8 => "invalid_utf8",
            Mutation::DuplicateLine => "duplicate_line",
            Mutation::HostileValue => "hostile_value",
            Mutation::DropCell => "missing_cell_or_key",
            Mutation::UnknownKey => "unknown_key",
        }
    }
}

/// Values a hostile or careless writer puts where a valid one was.
pub const HOSTILE_VALUES: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "-1",
    "-9223372036854775809",
    "18446744073709551616",
    "1e400",
    "-0.0",
    "99999999999999999999999999",
    "0",
    "Mars/Olympus_Mons",
    "UTC+99:99",
    "\"Mars/Olympus_Mons\"",
    "\"\"",
    "null",
    "[]",
    "{}",
    "true",
    "\u{202e}",
    "\u{0}",
    "2026-02-30T25:61:00Z",
];

/// One edit: a kind, where (`at`, reduced modulo the document's size) and which variant
/// (`pick`).
#[derive(Clone, Copy, Debug)]
pub struct Edit {
    /// What.
    pub kind: Mutation,
    /// Where.
    pub at: u32,
    /// Which variant.
    pub pick: u32,
}

/// What one fuzzed parser is given.
pub struct Target<'a> {
    /// The report's row, e.g. `28-users-csv`.
    pub row: &'static str,
    /// Fixes every case.
    pub seed: u64,
    /// The valid document the cases are made from.
    pub valid: &'a [u8],
    /// How it is laid out.
    pub shape: Shape,
    /// Unknown keys, columns or tables to insert: whole lines for [`Shape::Lines`],
    /// `"key": value` pairs for [`Shape::Json`].
    pub unknown: &'a [&'a str],
}

/// What the parser made of one case.
#[derive(Debug)]
pub enum Verdict {
    /// Taken (a mutation can leave a document valid).
    Accepted,
    /// Refused; `located` when the error names where (file and line, or the field).
    Rejected {
        /// Whether the error names where.
        located: bool,
        /// The error as shown.
        message: String,
    },
    /// An invariant other than "no panic" broke (a refused import changed the store).
    Broken(String),
}

/// The counts of one fuzzed parser.
#[derive(Debug, Default)]
pub struct Tally {
    /// Cases run.
    pub cases: u64,
    /// Mutations applied, by kind.
    pub fired: BTreeMap<&'static str, u64>,
    /// Cases that panicked.
    pub panics: u64,
    /// Cases refused.
    pub rejections: u64,
    /// Refusals whose error names no place.
    pub unlocated: u64,
    /// Cases accepted.
    pub accepted: u64,
    /// Cases that broke another invariant.
    pub broken: u64,
    /// The first few bad cases, for the failure message.
    pub examples: Vec<String>,
}

impl Tally {
    fn take(&mut self, described: &str, outcome: std::thread::Result<Verdict>) {
        self.cases += 1;
        let bad = match outcome {
            Err(panic) => {
                self.panics += 1;
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                Some(format!("panic {text:?}"))
            }
            Ok(Verdict::Accepted) => {
                self.accepted += 1;
                None
            }
            Ok(Verdict::Rejected { located, message }) => {
                self.rejections += 1;
                (!located).then(|| {
                    self.unlocated += 1;
                    format!("rejection without location: {}", message.chars().take(300).collect::<String>())
                })
            }
            Ok(Verdict::Broken(what)) => {
                self.broken += 1;
                Some(what)
            }
        };
        if let Some(bad) = bad
            && self.examples.len() < 5
        {
            self.examples.push(format!("{described}: {bad}"));
        }
    }

    /// The row's report: mutations fired by kind, and the figures.
    pub fn report(&self, target: &Target<'_>) -> RowReport {
        let mut report = RowReport::new(target.row, target.seed, RunKind::Safety);
        for (kind, n) in &self.fired {
            report.fired(kind, *n);
        }
        report
            .figure("panics", self.panics, self.cases)
            .figure("rejections without location", self.unlocated, self.rejections)
            .measure("cases", self.cases)
            .measure("accepted", self.accepted)
            .measure("rejected", self.rejections);
        if !self.examples.is_empty() {
            report.measure("bad cases", self.examples.join(" | "));
        }
        report
    }
}

/// Applies `edits` to `doc`.
pub fn apply(doc: &[u8], edits: &[Edit], shape: Shape, unknown: &[&str]) -> Vec<u8> {
    let mut out = doc.to_vec();
    for edit in edits {
        out = apply_one(out, *edit, shape, unknown);
    }
    out
}

fn apply_one(mut doc: Vec<u8>, edit: Edit, shape: Shape, unknown: &[&str]) -> Vec<u8> {
    let at = |len: usize| if len == 0 { 0 } else { edit.at as usize % (len + 1) };
    match edit.kind {
        Mutation::Truncate => {
            let cut = at(doc.len());
            doc.truncate(cut);
            doc
        }
        Mutation::FlipByte => {
            if !doc.is_empty() {
                let i = edit.at as usize % doc.len();
                doc[i] ^= (edit.pick % 255 + 1) as u8;
            }
            doc
        }
        Mutation::Bom => [&b"\xEF\xBB\xBF"[..], &doc].concat(),
        Mutation::Crlf => {
            let mut out = Vec::with_capacity(doc.len() + doc.len() / 16);
            for b in doc {
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
            }
            out
        }
        Mutation::InvalidUtf8 => {
            let i = at(doc.len());
            doc.splice(i..i, [0xFF, 0xFE]);
            doc
        }
        Mutation::DuplicateLine => {
            let lines = split_lines(&doc);
            let Some(line) = lines.get(edit.at as usize % lines.len().max(1)).cloned() else { return doc };
            let mut copy = doc[line.clone()].to_vec();
            if !copy.ends_with(b"\n") {
                copy.insert(0, b'\n');
            }
            let end = line.end;
            doc.splice(end..end, copy);
            doc
        }
        Mutation::HostileValue => {
            let tokens = value_tokens(&doc);
            if tokens.is_empty() {
                return doc;
            }
            let token = tokens[edit.at as usize % tokens.len()].clone();
            let value = HOSTILE_VALUES[edit.pick as usize % HOSTILE_VALUES.len()];
            doc.splice(token, value.bytes());
            doc
        }
        Mutation::DropCell => {
            let lines = split_lines(&doc);
            let Some(line) = lines.get(edit.at as usize % lines.len().max(1)).cloned() else { return doc };
            let text = &doc[line.clone()];
            let commas: Vec<usize> = text.iter().enumerate().filter(|(_, b)| **b == b',').map(|(i, _)| i).collect();
            if commas.is_empty() {
                doc.drain(line);
                return doc;
            }
            // Cut from one comma to the next (or the line's end): one cell or one pair.
            let k = edit.pick as usize % commas.len();
            let start = line.start + commas[k];
            let end = commas.get(k + 1).map_or_else(
                || {
                    line.start
                        + text
                            .iter()
                            .rposition(|b| *b != b'\n' && *b != b'\r' && *b != b'}')
                            .map_or(text.len(), |i| i + 1)
                },
                |c| line.start + c,
            );
            if start < end {
                doc.drain(start..end);
            }
            doc
        }
        Mutation::UnknownKey => {
            if unknown.is_empty() {
                return doc;
            }
            let snippet = unknown[edit.pick as usize % unknown.len()];
            match shape {
                Shape::Lines => {
                    let lines = split_lines(&doc);
                    let i = if lines.is_empty() { 0 } else { lines[edit.at as usize % lines.len()].start };
                    doc.splice(i..i, format!("{snippet}\n").into_bytes());
                }
                Shape::Json => {
                    let braces: Vec<usize> =
                        doc.iter().enumerate().filter(|(_, b)| **b == b'{').map(|(i, _)| i).collect();
                    if let Some(&brace) = braces.get(edit.at as usize % braces.len().max(1)) {
                        doc.splice(brace + 1..brace + 1, format!("{snippet},").into_bytes());
                    }
                }
            }
            doc
        }
    }
}

/// The byte ranges of the lines, each with its `\n`.
fn split_lines(doc: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in doc.iter().enumerate() {
        if *b == b'\n' {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < doc.len() {
        out.push(start..doc.len());
    }
    out
}

/// The byte ranges of the value-like tokens: runs of letters, digits and `.:+-_/`, or
/// quoted strings.
fn value_tokens(doc: &[u8]) -> Vec<std::ops::Range<usize>> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b".:+-_/".contains(&b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < doc.len() {
        if doc[i] == b'"' {
            let end = doc[i + 1..].iter().position(|b| *b == b'"').map_or(doc.len(), |p| i + 1 + p + 1);
            out.push(i..end);
            i = end;
        } else if word(doc[i]) {
            let start = i;
            while i < doc.len() && word(doc[i]) {
                i += 1;
            }
            out.push(start..i);
        } else {
            i += 1;
        }
    }
    out
}

/// The valid document with one line of [`TEN_MB`] bytes added: `line` repeated, so that it
/// stays the format's own kind of value.
pub fn with_huge_line(valid: &[u8], line: &[u8]) -> Vec<u8> {
    let mut doc = valid.to_vec();
    if !doc.ends_with(b"\n") {
        doc.push(b'\n');
    }
    while doc.len() < valid.len() + TEN_MB {
        doc.extend_from_slice(line);
    }
    doc.push(b'\n');
    doc
}

/// Runs [`cases`] mutated documents and one 10 MB-line document (`huge`, when the parser
/// reads lines) through `parse`, catching panics, and tallies what it made of them.
pub fn fuzz(target: &Target<'_>, huge: Option<Vec<u8>>, parse: impl FnMut(&[u8]) -> Verdict) -> Tally {
    let tally = std::cell::RefCell::new(Tally::default());
    let parse = std::cell::RefCell::new(parse);
    let run = |described: &str, doc: &[u8]| {
        let outcome = catch_unwind(AssertUnwindSafe(|| (parse.borrow_mut())(doc)));
        tally.borrow_mut().take(described, outcome);
    };
    if let Some(doc) = huge {
        *tally.borrow_mut().fired.entry("ten_mb_line").or_default() += 1;
        run("a 10 MB line", &doc);
    }
    // The valid document itself must be taken: else the generators test nothing.
    let valid = catch_unwind(AssertUnwindSafe(|| (parse.borrow_mut())(target.valid)));
    assert!(matches!(valid, Ok(Verdict::Accepted)), "{}: the valid document is refused: {valid:?}", target.row);

    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&target.seed.to_le_bytes());
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let edits = prop::collection::vec((0..Mutation::ALL.len(), any::<u32>(), any::<u32>()), 1..=3);
    let result = runner.run(&edits, |edits| {
        let edits: Vec<Edit> =
            edits.into_iter().map(|(kind, at, pick)| Edit { kind: Mutation::ALL[kind], at, pick }).collect();
        {
            let mut tally = tally.borrow_mut();
            for edit in &edits {
                *tally.fired.entry(edit.kind.name()).or_default() += 1;
            }
        }
        let doc = apply(target.valid, &edits, target.shape, target.unknown);
        run(&format!("{edits:?}"), &doc);
        Ok(())
    });
    assert!(result.is_ok(), "{}: the runner failed: {result:?}", target.row);
    tally.into_inner()
}

/// Whether `message` names `origin` followed by `:LINE`.
pub fn names_file_and_line(message: &str, origin: &str) -> bool {
    message
        .match_indices(&format!("{origin}:"))
        .any(|(i, m)| message[i + m.len()..].chars().next().is_some_and(|c| c.is_ascii_digit()))
}
