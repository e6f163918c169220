//! [`Metrics`]: the live engine's counters, gauges and one histogram, lock-free on every hot
//! path, rendered in the Prometheus text format 0.0.4 for `GET /metrics`.
//!
//! Who feeds what: [`MeteredSender`](super::MeteredSender) the send outcomes,
//! [`MeteredLedger`](super::MeteredLedger) the reservation latency, the queue depth, the store
//! errors and the pause, [`MetricsListener`](super::MetricsListener) the suppressions and the
//! inbound events the engine recorded, the HTTP server its own requests and events. Every
//! series a metric can have is written, zeros included, in a fixed order (no map is iterated),
//! so that a scrape always has the same shape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::actors::messages::OutcomeKind;
use crate::domain::InboundKind;
use crate::policy::SuppressReason;
use crate::transport::FailureKind;

/// Upper bounds (seconds) of the reservation latency histogram's buckets; `+Inf` follows.
/// From half a millisecond (an embedded store) to ten seconds (a store about to time out).
pub const RESERVATION_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The `outcome` label of `gavat_sends_total`, in the order they are written.
const SEND_OUTCOMES: [&str; 6] =
    ["delivered", "unknown", "failed_blocked", "failed_fatal", "failed_rate_limited", "failed_transient"];

/// The `kind` label of `gavat_inbound_events_total`: what the engine records as an outcome.
const RECORDED_INBOUND: [&str; 3] = ["response", "conversion", "opt_out"];

/// The kinds an API event can have, in the order they are written.
const API_EVENT_KINDS: [InboundKind; 4] =
    [InboundKind::Reply, InboundKind::Conversion, InboundKind::OptOut, InboundKind::Activity];

/// HTTP status codes counted one by one (100–599); anything else is not a status.
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 599;

/// One source's pause of sending, as [`Metrics::pauses`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// Who paused: `operator` ([`OPERATOR_PAUSE`](super::OPERATOR_PAUSE)), `ledger`
    /// ([`LEDGER_PAUSE`](super::LEDGER_PAUSE)).
    pub source: String,
    /// Why, as they said it.
    pub reason: String,
}

/// The metrics at one moment ([`Metrics::snapshot`]), as plain numbers: what the dashboard
/// streams. Counters count from the start of the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Messages handed to the transport, by outcome.
    pub sends: SendCounts,
    /// Sends a rule held back, by reason name, in report order ([`SuppressReason::ALL`]),
    /// zeros included.
    pub suppressions: Vec<ReasonCount>,
    /// Replies, conversions and opt-outs the engine recorded.
    pub inbound: InboundCounts,
    /// Reservations the cap ledger answered (those a pause denied are not asked).
    pub reservations: u64,
    /// Reservations granted and not yet settled (sends in flight).
    pub queue_depth: u64,
    /// Calls the store or the cap ledger could not answer.
    pub store_errors: u64,
    /// Every pause of sending in force, by source name: empty while sending runs.
    pub paused: Vec<Pause>,
}

/// Sends by outcome: the labels of `gavat_sends_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SendCounts {
    /// The platform accepted it.
    pub delivered: u64,
    /// It may have gone out (a timeout after the request was written, or given up on).
    pub unknown: u64,
    /// The user blocked the bot.
    pub failed_blocked: u64,
    /// The platform refused it for good.
    pub failed_fatal: u64,
    /// The platform's rate limit (HTTP 429): planned again after its wait.
    pub failed_rate_limited: u64,
    /// A transient failure: planned again.
    pub failed_transient: u64,
}

/// One reason's count of suppressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// The reason's report name ([`SuppressReason::as_str`]).
    pub reason: &'static str,
    /// Sends it held back.
    pub count: u64,
}

/// Inbound events the engine recorded, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InboundCounts {
    /// Replies.
    pub responses: u64,
    /// Purchases.
    pub conversions: u64,
    /// Opt-outs.
    pub opt_outs: u64,
}

/// Counts of values at or below each bucket bound (not cumulated: each observation
/// increments one slot, so an observation costs two atomic adds).
#[derive(Debug)]
struct Histogram {
    /// One slot per bound of [`RESERVATION_BUCKETS`], then `+Inf`.
    slots: [AtomicU64; RESERVATION_BUCKETS.len() + 1],
    /// Sum of the observations, nanoseconds (584 years before it wraps).
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram { slots: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: AtomicU64::new(0) }
    }

    fn observe(&self, secs: f64) {
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        let slot = RESERVATION_BUCKETS.iter().position(|le| secs <= *le).unwrap_or(RESERVATION_BUCKETS.len());
        self.slots[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
    }
}

/// The live engine's metrics. Share one in an `Arc` between the seams' wrappers, the
/// listener and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    /// By [`SEND_OUTCOMES`] index.
    sends: [AtomicU64; SEND_OUTCOMES.len()],
    /// By the position of the reason in [`SuppressReason::ALL`].
    suppressions: [AtomicU64; SuppressReason::ALL.len()],
    /// By [`RECORDED_INBOUND`] index.
    inbound: [AtomicU64; RECORDED_INBOUND.len()],
    /// By [`API_EVENT_KINDS`] index, then accepted (0) or duplicate (1).
    api_events: [[AtomicU64; 2]; API_EVENT_KINDS.len()],
    reservation: Histogram,
    /// Reservations granted and not yet settled (set by the metered ledger).
    queue_depth: AtomicU64,
    store_errors: AtomicU64,
    /// Whether any source has paused sending: read without the lock on every ledger call.
    paused: AtomicBool,
    /// Who paused and why. A `Mutex` (no `.await` is held) around a small ordered map, so the
    /// reasons are listed in a fixed order; touched only when a pause starts or ends.
    pauses: Mutex<BTreeMap<&'static str, String>>,
    /// HTTP answers by status code, `STATUS_MIN..=STATUS_MAX`.
    api_status: Box<[AtomicU64]>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// All counters at zero, not paused.
    pub fn new() -> Metrics {
        Metrics {
            sends: std::array::from_fn(|_| AtomicU64::new(0)),
            suppressions: std::array::from_fn(|_| AtomicU64::new(0)),
            inbound: std::array::from_fn(|_| AtomicU64::new(0)),
            api_events: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            reservation: Histogram::new(),
            queue_depth: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            pauses: Mutex::new(BTreeMap::new()),
            api_status: (STATUS_MIN..=STATUS_MAX).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A send the platform accepted.
    pub fn record_delivered(&self) {
        self.sends[0].fetch_add(1, Ordering::Relaxed);
    }

    /// A send that failed; [`FailureKind::Unknown`] (it may have gone out) is counted as
    /// `unknown`, the others as `failed_<kind>`.
    pub fn record_send_failed(&self, kind: FailureKind) {
        let slot = match kind {
            FailureKind::Unknown => 1,
            FailureKind::Blocked => 2,
            FailureKind::Fatal => 3,
            FailureKind::RateLimited => 4,
            FailureKind::Transient => 5,
        };
        self.sends[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// One outcome the engine recorded: suppressions by reason, and the replies,
    /// conversions and opt-outs. Sends and failures are counted at the transport by
    /// [`MeteredSender`](super::MeteredSender), so they are ignored here.
    pub fn record_outcome(&self, outcome: &OutcomeKind) {
        match outcome {
            OutcomeKind::Suppressed(reason) => {
                if let Some(slot) = SuppressReason::ALL.iter().position(|r| r == reason) {
                    self.suppressions[slot].fetch_add(1, Ordering::Relaxed);
                }
            }
            OutcomeKind::Response { .. } => {
                self.inbound[0].fetch_add(1, Ordering::Relaxed);
            }
            OutcomeKind::Conversion => {
                self.inbound[1].fetch_add(1, Ordering::Relaxed);
            }
            OutcomeKind::OptOut => {
                self.inbound[2].fetch_add(1, Ordering::Relaxed);
            }
            OutcomeKind::Sent { .. } | OutcomeKind::Failed(_) => {}
        }
    }

    /// An event the API answered for: taken in by the engine, or a duplicate of one.
    pub fn record_api_event(&self, kind: InboundKind, duplicate: bool) {
        if let Some(slot) = API_EVENT_KINDS.iter().position(|k| *k == kind) {
            self.api_events[slot][usize::from(duplicate)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How long one reservation took, seconds.
    pub fn observe_reservation(&self, secs: f64) {
        self.reservation.observe(secs);
    }

    /// Reservations granted and not yet settled.
    pub fn set_queue_depth(&self, depth: u64) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }

    /// A store (or ledger) that could not answer.
    pub fn record_store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// `source` (`"ledger"`, `"operator"`) has paused sending, because of `reason` (shown by
    /// `/readyz`: it must not contain a secret). This only records the pause: what stops the
    /// sends is the source itself (the ledger failing closed, the operator's
    /// [`SendingControl`](super::SendingControl)). A later pause of the same source replaces
    /// its reason.
    pub fn pause(&self, source: &'static str, reason: String) {
        let mut pauses = self.lock_pauses();
        pauses.insert(source, reason);
        self.paused.store(true, Ordering::Release);
    }

    /// `source` works again. Sending is paused while any other source still is.
    pub fn resume(&self, source: &'static str) {
        if !self.paused.load(Ordering::Acquire) {
            return; // the common case, without the lock
        }
        let mut pauses = self.lock_pauses();
        pauses.remove(source);
        self.paused.store(!pauses.is_empty(), Ordering::Release);
    }

    /// Why sending is paused (every source's reason, `source: reason`, joined by `; `), or
    /// `None` when it is not.
    pub fn paused(&self) -> Option<String> {
        if !self.paused.load(Ordering::Acquire) {
            return None;
        }
        let pauses = self.lock_pauses();
        if pauses.is_empty() {
            return None;
        }
        Some(pauses.iter().map(|(source, reason)| format!("{source}: {reason}")).collect::<Vec<_>>().join("; "))
    }

    /// Every pause in force, by source name (empty when sending is not paused).
    pub fn pauses(&self) -> Vec<Pause> {
        if !self.paused.load(Ordering::Acquire) {
            return Vec::new();
        }
        let pauses = self.lock_pauses();
        pauses.iter().map(|(source, reason)| Pause { source: (*source).to_string(), reason: reason.clone() }).collect()
    }

    /// Every counter and gauge the dashboard shows, copied now. Each value is read on its
    /// own (relaxed), so two values may straddle an update in progress — as two lines of one
    /// `/metrics` scrape may — but each is a value it really had.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let [delivered, unknown, failed_blocked, failed_fatal, failed_rate_limited, failed_transient] =
            self.sends.each_ref().map(load);
        let [responses, conversions, opt_outs] = self.inbound.each_ref().map(load);
        MetricsSnapshot {
            sends: SendCounts {
                delivered,
                unknown,
                failed_blocked,
                failed_fatal,
                failed_rate_limited,
                failed_transient,
            },
            suppressions: SuppressReason::ALL
                .iter()
                .zip(&self.suppressions)
                .map(|(reason, n)| ReasonCount { reason: reason.as_str(), count: load(n) })
                .collect(),
            inbound: InboundCounts { responses, conversions, opt_outs },
            reservations: self.reservation.slots.iter().map(load).sum(),
            queue_depth: load(&self.queue_depth),
            store_errors: load(&self.store_errors),
            paused: self.pauses(),
        }
    }

    /// One HTTP answer with this status (codes outside 100–599 are not counted).
    pub fn record_api_status(&self, status: u16) {
        if (STATUS_MIN..=STATUS_MAX).contains(&status) {
            self.api_status[usize::from(status - STATUS_MIN)].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn lock_pauses(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        // Every update is one insert or remove: a panic elsewhere cannot leave it half done.
        self.pauses.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every metric in the Prometheus text format 0.0.4, with `# HELP` and `# TYPE` lines.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4_096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        header(&mut out, "gavat_sends_total", "counter", "Messages handed to the transport, by outcome.");
        for (label, n) in SEND_OUTCOMES.iter().zip(&self.sends) {
            let _ = writeln!(out, "gavat_sends_total{{outcome=\"{label}\"}} {}", load(n));
        }

        header(
            &mut out,
            "gavat_suppressions_total",
            "counter",
            "Sends a rule held back, by the first rule that said no.",
        );
        for (reason, n) in SuppressReason::ALL.iter().zip(&self.suppressions) {
            let _ = writeln!(out, "gavat_suppressions_total{{reason=\"{}\"}} {}", reason.as_str(), load(n));
        }

        header(&mut out, "gavat_reservation_seconds", "histogram", "Time the cap ledger took to answer a reservation.");
        let mut cumulative = 0u64;
        for (le, n) in RESERVATION_BUCKETS.iter().zip(&self.reservation.slots) {
            cumulative += load(n);
            let _ = writeln!(out, "gavat_reservation_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += load(&self.reservation.slots[RESERVATION_BUCKETS.len()]);
        let _ = writeln!(out, "gavat_reservation_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = load(&self.reservation.sum_nanos) as f64 / 1e9;
        let _ = writeln!(out, "gavat_reservation_seconds_sum {sum}");
        let _ = writeln!(out, "gavat_reservation_seconds_count {cumulative}");

        header(&mut out, "gavat_queue_depth", "gauge", "Reservations granted and not yet settled (sends in flight).");
        let _ = writeln!(out, "gavat_queue_depth {}", load(&self.queue_depth));

        header(
            &mut out,
            "gavat_paused",
            "gauge",
            "1 while sending is paused: by an operator, or because a store or the ledger is down.",
        );
        let _ = writeln!(out, "gavat_paused {}", u8::from(self.paused.load(Ordering::Acquire)));

        header(&mut out, "gavat_store_errors_total", "counter", "Calls the store or the cap ledger could not answer.");
        let _ = writeln!(out, "gavat_store_errors_total {}", load(&self.store_errors));

        header(
            &mut out,
            "gavat_inbound_events_total",
            "counter",
            "Replies, conversions and opt-outs the engine recorded, by kind.",
        );
        for (kind, n) in RECORDED_INBOUND.iter().zip(&self.inbound) {
            let _ = writeln!(out, "gavat_inbound_events_total{{kind=\"{kind}\"}} {}", load(n));
        }

        header(
            &mut out,
            "gavat_api_events_total",
            "counter",
            "Events posted to the API and answered, by kind and result (accepted or duplicate).",
        );
        for (kind, pair) in API_EVENT_KINDS.iter().zip(&self.api_events) {
            for (result, n) in ["accepted", "duplicate"].iter().zip(pair) {
                let _ = writeln!(
                    out,
                    "gavat_api_events_total{{kind=\"{}\",result=\"{result}\"}} {}",
                    kind.as_str(),
                    load(n)
                );
            }
        }

        header(&mut out, "gavat_api_requests_total", "counter", "HTTP requests answered, by status code.");
        for (status, n) in (STATUS_MIN..=STATUS_MAX).zip(self.api_status.iter()) {
            let n = load(n);
            if n > 0 {
                let _ = writeln!(out, "gavat_api_requests_total{{status=\"{status}\"}} {n}");
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line `series value` in a rendering.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Every counter shows up under its label, zeros included, and every metric has its
    /// HELP and TYPE lines.
    #[test]
    fn counters_render_under_their_labels() {
        let m = Metrics::new();
        m.record_delivered();
        m.record_delivered();
        m.record_send_failed(FailureKind::Unknown);
        m.record_send_failed(FailureKind::RateLimited);
        m.record_outcome(&OutcomeKind::Suppressed(SuppressReason::Cooldown));
        m.record_outcome(&OutcomeKind::Conversion);
        m.record_api_event(InboundKind::Activity, true);
        m.record_api_status(202);
        m.record_api_status(1_000); // not a status: ignored
        m.record_store_error();
        let text = m.render();
        assert_eq!(sample(&text, "gavat_sends_total{outcome=\"delivered\"}"), Some(2.0));
        assert_eq!(sample(&text, "gavat_sends_total{outcome=\"unknown\"}"), Some(1.0));
        assert_eq!(sample(&text, "gavat_sends_total{outcome=\"failed_rate_limited\"}"), Some(1.0));
        assert_eq!(sample(&text, "gavat_sends_total{outcome=\"failed_blocked\"}"), Some(0.0));
        assert_eq!(sample(&text, "gavat_suppressions_total{reason=\"cooldown\"}"), Some(1.0));
        assert_eq!(sample(&text, "gavat_suppressions_total{reason=\"gate_unavailable\"}"), Some(0.0));
        assert_eq!(sample(&text, "gavat_inbound_events_total{kind=\"conversion\"}"), Some(1.0));
        assert_eq!(sample(&text, "gavat_api_events_total{kind=\"activity\",result=\"duplicate\"}"), Some(1.0));
        assert_eq!(sample(&text, "gavat_api_requests_total{status=\"202\"}"), Some(1.0));
        assert_eq!(sample(&text, "gavat_store_errors_total"), Some(1.0));
        for name in [
            "gavat_sends_total",
            "gavat_suppressions_total",
            "gavat_reservation_seconds",
            "gavat_queue_depth",
            "gavat_paused",
            "gavat_store_errors_total",
            "gavat_inbound_events_total",
            "gavat_api_events_total",
            "gavat_api_requests_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "HELP of {name}");
            assert!(text.contains(&format!("# TYPE {name} ")), "TYPE of {name}");
        }
    }

    /// Histogram buckets are cumulative, `+Inf` equals `_count`, and the sum adds up.
    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        for secs in [0.0001, 0.003, 0.003, 0.2, 60.0, f64::NAN] {
            m.observe_reservation(secs);
        }
        let text = m.render();
        assert_eq!(sample(&text, "gavat_reservation_seconds_bucket{le=\"0.0005\"}"), Some(2.0)); // NaN counts as 0
        assert_eq!(sample(&text, "gavat_reservation_seconds_bucket{le=\"0.005\"}"), Some(4.0));
        assert_eq!(sample(&text, "gavat_reservation_seconds_bucket{le=\"0.25\"}"), Some(5.0));
        assert_eq!(sample(&text, "gavat_reservation_seconds_bucket{le=\"10\"}"), Some(5.0));
        assert_eq!(sample(&text, "gavat_reservation_seconds_bucket{le=\"+Inf\"}"), Some(6.0));
        assert_eq!(sample(&text, "gavat_reservation_seconds_count"), Some(6.0));
        let sum = sample(&text, "gavat_reservation_seconds_sum").unwrap_or(f64::NAN);
        assert!((sum - 60.2061).abs() < 1e-6, "sum {sum}");
    }

    /// The snapshot holds what was recorded under the same names as `/metrics`, every
    /// reason in report order with zeros, and the pauses in force by source.
    #[test]
    fn the_snapshot_copies_every_counter() -> Result<(), serde_json::Error> {
        let m = Metrics::new();
        m.record_delivered();
        m.record_delivered();
        m.record_send_failed(FailureKind::Unknown);
        m.record_send_failed(FailureKind::RateLimited);
        m.record_send_failed(FailureKind::Blocked);
        m.record_outcome(&OutcomeKind::Suppressed(SuppressReason::Paused));
        m.record_outcome(&OutcomeKind::Suppressed(SuppressReason::Paused));
        m.record_outcome(&OutcomeKind::Suppressed(SuppressReason::QuietHours));
        m.record_outcome(&OutcomeKind::Response { send_hour: 9 });
        m.record_outcome(&OutcomeKind::OptOut);
        m.observe_reservation(0.001);
        m.set_queue_depth(3);
        m.record_store_error();
        m.pause("operator", "review".into());
        m.pause("ledger", "down".into());
        let snap = m.snapshot();
        assert_eq!(
            snap.sends,
            SendCounts {
                delivered: 2,
                unknown: 1,
                failed_blocked: 1,
                failed_fatal: 0,
                failed_rate_limited: 1,
                failed_transient: 0
            }
        );
        let reasons: Vec<&str> = snap.suppressions.iter().map(|r| r.reason).collect();
        let all: Vec<&str> = SuppressReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(reasons, all, "every reason, in report order");
        let count = |name: &str| snap.suppressions.iter().find(|r| r.reason == name).map(|r| r.count);
        assert_eq!(count("paused_by_operator"), Some(2));
        assert_eq!(count("quiet_hours"), Some(1));
        assert_eq!(count("cooldown"), Some(0));
        assert_eq!(snap.inbound, InboundCounts { responses: 1, conversions: 0, opt_outs: 1 });
        assert_eq!((snap.reservations, snap.queue_depth, snap.store_errors), (1, 3, 1));
        let sources: Vec<&str> = snap.paused.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(sources, ["ledger", "operator"]);
        let json = serde_json::to_value(&snap)?;
        assert_eq!(json["sends"]["failed_rate_limited"], 1);
        assert_eq!(json["paused"][1]["reason"], "review");
        m.resume("ledger");
        m.resume("operator");
        assert!(m.snapshot().paused.is_empty());
        Ok(())
    }

    /// Sending stays paused while any source is, and each source clears only its own pause.
    #[test]
    fn pauses_are_kept_per_source() {
        let m = Metrics::new();
        assert_eq!(m.paused(), None);
        m.pause("ledger", "connection refused".into());
        m.pause("store", "disk full".into());
        assert_eq!(m.paused().as_deref(), Some("ledger: connection refused; store: disk full"));
        m.resume("ledger");
        assert_eq!(m.paused().as_deref(), Some("store: disk full"));
        assert_eq!(sample(&m.render(), "gavat_paused"), Some(1.0));
        m.resume("store");
        assert_eq!(m.paused(), None);
        assert_eq!(sample(&m.render(), "gavat_paused"), Some(0.0));
    }
}
