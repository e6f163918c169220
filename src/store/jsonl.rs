//! A store decorator that also writes every log entry as one JSON object per line (the
//! `--events` file; schema in `docs/events.md`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::{LogEntry, RunRecord, Store, StoreError, StoreFuture, UserRecord};

/// Writes the log to a JSON-lines file, then passes everything on to `inner`.
#[derive(Debug)]
pub struct JsonlLog<S> {
    inner: S,
    path: String,
    out: Mutex<BufWriter<File>>,
}

impl<S: Store> JsonlLog<S> {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path, inner: S) -> Result<JsonlLog<S>, StoreError> {
        let display = path.display().to_string();
        let file = File::create(path).map_err(|cause| StoreError::Io { path: display.clone(), cause })?;
        Ok(JsonlLog { inner, path: display, out: Mutex::new(BufWriter::with_capacity(1 << 20, file)) })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn out(&self) -> MutexGuard<'_, BufWriter<File>> {
        self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn io_error(&self, cause: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), cause }
    }
}

impl<S: Store> Store for JsonlLog<S> {
    fn save_user(&self, record: &UserRecord) -> StoreFuture<()> {
        self.inner.save_user(record)
    }

    fn append(&self, entry: &LogEntry) -> StoreFuture<()> {
        let written = {
            let mut out = self.out();
            serde_json::to_writer(&mut *out, entry).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n"))
        };
        if let Err(e) = written {
            return Box::pin(std::future::ready(Err(self.io_error(e))));
        }
        self.inner.append(entry)
    }

    fn save_run(&self, run: &RunRecord) -> StoreFuture<()> {
        self.inner.save_run(run)
    }

    fn flush(&self) -> StoreFuture<()> {
        if let Err(e) = self.out().flush() {
            return Box::pin(std::future::ready(Err(self.io_error(e))));
        }
        self.inner.flush()
    }
}
