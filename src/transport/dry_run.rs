//! The dry-run transport of `gavat run`: every message that would go out is printed as one
//! JSON line (schema: [`super::wire`]) on standard output and appended to an outbox file,
//! and counts as delivered. Nothing leaves the machine. Also [`Silence`], the inbound source
//! of a live engine that has no inbound channel (no HTTP API, no bot).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::domain::{InboundEvent, OutboundMessage};

use super::wire::message_line;
use super::{Delivered, InboundSink, InboundSource, SendFuture, Sender, TransportError};

/// Prints and appends every message; see the module documentation.
#[derive(Debug)]
pub struct DryRunSender {
    outbox: Option<(PathBuf, Mutex<std::fs::File>)>,
    echo: bool,
}

/// Why the dry-run transport could not start.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot open the outbox for appending: {cause}")]
pub struct OutboxError {
    /// The outbox file.
    pub path: String,
    /// Why.
    pub cause: std::io::Error,
}

impl DryRunSender {
    /// Appends to `outbox` (created when missing; earlier lines are kept, so a restarted run
    /// continues the same file) and, with `echo`, prints each line on standard output.
    pub fn new(outbox: Option<&Path>, echo: bool) -> Result<DryRunSender, OutboxError> {
        let outbox = match outbox {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|cause| OutboxError { path: path.display().to_string(), cause })?;
                Some((path.to_path_buf(), Mutex::new(file)))
            }
            None => None,
        };
        Ok(DryRunSender { outbox, echo })
    }

    fn write(&self, line: &str) -> Result<(), TransportError> {
        if let Some((path, file)) = &self.outbox {
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // One write per line: a line is in the file whole or not at all, even if the
            // process is killed right after.
            let mut bytes = Vec::with_capacity(line.len() + 1);
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            file.write_all(&bytes).map_err(|e| TransportError::Transient {
                reason: format!("{}: cannot append to the outbox: {e}", path.display()),
            })?;
        }
        if self.echo {
            let mut out = std::io::stdout().lock();
            // A closed stdout does not stop a live run: the outbox file keeps the record.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
        Ok(())
    }
}

impl Sender for DryRunSender {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        let result = self.write(&message_line(message)).map(|()| Delivered);
        Box::pin(std::future::ready(result))
    }
}

/// An inbound source that never reports anything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silence;

impl InboundSource for Silence {
    fn start(&self, _sink: InboundSink) {}
    fn acknowledge(&self, _event: &InboundEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BotId, ContentKind, Destination, Segment, Timestamp, UserId};

    fn message(id: u64) -> OutboundMessage {
        OutboundMessage {
            id,
            to: Destination::User(UserId(7)),
            bot: BotId(1),
            content: ContentKind::Offer,
            segment: Segment::HotLead,
            at: Timestamp(1_800_000_000),
        }
    }

    /// Each send is one whole JSON line in the outbox, earlier lines kept across reopening.
    #[test]
    fn appends_one_json_line_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        std::fs::write(&path, "{\"id\":\"1\"}\n").unwrap();
        let sender = DryRunSender::new(Some(&path), false).unwrap();
        let result = futures::executor::block_on(sender.send(&message(u64::MAX)));
        assert_eq!(result, Ok(Delivered));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["id"], u64::MAX.to_string());
        assert_eq!(v["to"]["user"], 7);
        assert_eq!(v["segment"], "HOT_LEAD");
        assert_eq!(v["content"], "offer");
        assert_eq!(v["at_unix"], 1_800_000_000);
    }

    /// An outbox that cannot be opened is named in the error.
    #[test]
    fn an_unopenable_outbox_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = DryRunSender::new(Some(dir.path()), false).unwrap_err();
        assert!(err.to_string().starts_with(&dir.path().display().to_string()), "{err}");
    }
}
