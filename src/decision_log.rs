//! Daily decision logs: `logs/<name>_YYYY-MM-DD.log`, one line per decision, appended.
//! They never contain secrets: callers write user ids, segments, confidences and reasons.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::domain::Timestamp;

/// An open daily log.
#[derive(Debug)]
pub struct DecisionLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl DecisionLog {
    /// Opens (creating the directory and file if needed) `dir/<name>_<date of today>.log`.
    pub fn open(dir: &Path, name: &str, today: Timestamp) -> std::io::Result<DecisionLog> {
        std::fs::create_dir_all(dir)?;
        let date = today.to_rfc3339();
        let path = dir.join(format!("{name}_{}.log", &date[..10]));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(DecisionLog { path, out: BufWriter::new(file) })
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line stamped with `at`.
    pub fn write(&mut self, at: Timestamp, line: &str) -> std::io::Result<()> {
        writeln!(self.out, "{at} {line}")
    }

    /// Makes it durable.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
