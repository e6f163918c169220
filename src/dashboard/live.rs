//! The overview's live figures: one [`Snapshot`] (JSON) of the store's totals, the queue and
//! the engine's state, computed at most once a second however many pages watch (less often
//! when the store is slow to answer: see [`SnapshotCache`]), and sent
//! to each page as Server-Sent Events (`GET /events/overview`, event `overview`) every
//! second until the page closes or the server stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::api::SendCounts;
use crate::clock::Stopwatch;
use crate::domain::{HOUR, Segment, Timestamp};
use crate::html::charts::{Series, time_series};
use crate::store::{SegmentCounts, StoreError};

use super::Dashboard;
use super::format::time;
use super::routes::guarded;

/// How often a page gets the figures.
const TICK: Duration = Duration::from_secs(1);

/// The store's counts over its whole log.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Totals {
    pub(super) sent: u64,
    pub(super) responses: u64,
    pub(super) conversions: u64,
    pub(super) opt_outs: u64,
}

/// The overview's live figures.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Snapshot {
    /// `running`, `paused: <why>` or `read-only`.
    pub(super) state: String,
    /// The present of the figures.
    pub(super) at: String,
    pub(super) totals: Totals,
    /// Planned sends of users not opted out.
    pub(super) planned: u64,
    /// Of those, due within the hour.
    pub(super) due_next_hour: u64,
    /// What the transport answered since the engine started (a live run only).
    pub(super) transport: Option<SendCounts>,
    /// The last 48 hours of the log by hour, as an inline SVG chart.
    pub(super) activity_chart: String,
}

/// The engine's state in words: `running`, `paused: <every source's reason>`, or
/// `read-only` for a dashboard over a store.
pub(super) fn engine_state(d: &Dashboard) -> String {
    match &d.live {
        None => "read-only".into(),
        Some(live) => match live.metrics.paused() {
            Some(reason) => format!("paused: {reason}"),
            None => "running".into(),
        },
    }
}

/// The store's reads every figure comes from: per segment counts over the whole log, and
/// the queue by segment with the sends due within the hour of `now`.
pub(super) struct Reads {
    pub(super) now: Timestamp,
    pub(super) counts: Vec<(Segment, SegmentCounts)>,
    pub(super) queue: Vec<(String, u64, u64)>,
}

impl Reads {
    /// Reads them now.
    pub(super) fn of(d: &Dashboard) -> Result<Reads, StoreError> {
        let reader = d.source.reader();
        let now = d.now()?;
        Ok(Reads { now, counts: reader.segment_counts(None)?, queue: reader.queue(now.plus(HOUR))? })
    }
}

/// The figures from `reads` (and the live engine's counters).
pub(super) fn snapshot(d: &Dashboard, reads: &Reads) -> Result<Snapshot, StoreError> {
    let now = reads.now;
    let mut totals = Totals::default();
    for (_, c) in &reads.counts {
        totals.sent += c.sent;
        totals.responses += c.responses;
        totals.conversions += c.conversions;
        totals.opt_outs += c.opt_outs;
    }
    Ok(Snapshot {
        state: engine_state(d),
        at: time(now),
        totals,
        planned: reads.queue.iter().map(|(_, queued, _)| queued).sum(),
        due_next_hour: reads.queue.iter().map(|(_, _, due)| due).sum(),
        transport: d.live.as_ref().map(|live| live.metrics.snapshot().sends),
        activity_chart: activity_chart(
            d,
            "The last 48 hours, per hour",
            HOUR,
            Some(now.plus(-RECENT_HOURS * HOUR)),
            now,
        )?,
    })
}

/// Hours the overview's live chart covers.
const RECENT_HOURS: i64 = 48;

/// The log's sends, responses, conversions and opt-outs per `bucket` seconds from `since`
/// (the log's start with `None`) to `now`, every bucket drawn (one without entries at 0).
pub(super) fn activity_chart(
    d: &Dashboard,
    title: &str,
    bucket: i64,
    since: Option<Timestamp>,
    now: Timestamp,
) -> Result<String, StoreError> {
    let buckets = d.source.reader().activity(bucket, since)?;
    let first = since.map(|t| t.secs()).or_else(|| buckets.first().map(|b| b.start.secs()));
    let Some(first) = first else {
        return Ok(time_series(title, "per bucket", &[]));
    };
    let start = first.div_euclid(bucket) * bucket;
    let end = now.secs().max(buckets.last().map_or(start, |b| b.start.secs()));
    let mut filled: Vec<(i64, [u64; 4])> = Vec::new();
    let mut next = buckets.iter().peekable();
    let mut at = start;
    while at <= end && filled.len() <= MAX_BUCKETS {
        let mut counts = [0u64; 4];
        while let Some(b) = next.peek() {
            if b.start.secs() > at {
                break;
            }
            if b.start.secs() == at {
                counts = [b.sent, b.responses, b.conversions, b.opt_outs];
            }
            next.next();
        }
        filled.push((at, counts));
        at += bucket;
    }
    let series: Vec<Series> = ["sent", "responses", "conversions", "opt-outs"]
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: (*name).to_string(),
            points: filled.iter().map(|(t, c)| (*t, c[i] as f64)).collect(),
        })
        .collect();
    let unit = if bucket == HOUR { "per hour" } else { "per day" };
    Ok(time_series(title, unit, &series))
}

/// The most buckets a chart draws (a long log by the hour would be unreadable anyway).
const MAX_BUCKETS: usize = 2_000;

/// The last figures as JSON, when they were computed and how long that took.
#[derive(Debug, Default)]
pub(super) struct SnapshotCache {
    last: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    age: Stopwatch,
    /// Seconds the store's reads took.
    cost_secs: f64,
    json: Arc<str>,
}

/// How many times its own cost a snapshot is kept: the store spends at most a tenth of its
/// time on the dashboard's figures (a Redis store scans its log stream for them), however
/// large the log and however many pages watch.
const COST_FACTOR: f64 = 10.0;

impl SnapshotCache {
    /// The figures as JSON: the cached ones while younger than a tick (or ten times what
    /// they cost to compute, if that is longer), else fresh.
    fn json(&self, d: &Dashboard) -> Result<Arc<str>, StoreError> {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = last.as_ref()
            && c.age.elapsed_secs() < (TICK.as_secs_f64() * 0.9).max(c.cost_secs * COST_FACTOR)
        {
            return Ok(c.json.clone());
        }
        let watch = Stopwatch::start();
        let fresh = snapshot(d, &Reads::of(d)?)?;
        let json: Arc<str> = serde_json::to_string(&fresh).unwrap_or_else(|_| "{}".into()).into();
        *last = Some(Cached { age: Stopwatch::start(), cost_secs: watch.elapsed_secs(), json: json.clone() });
        Ok(json)
    }
}

/// One event of the stream: the figures, or a comment saying why there are none.
async fn next_event(dashboard: &web::Data<Dashboard>) -> Bytes {
    let shared = dashboard.clone().into_inner();
    let made = web::block(move || shared.snapshot.json(&shared)).await;
    match made {
        Ok(Ok(json)) => Bytes::from(format!("event: overview\ndata: {json}\n\n")),
        Ok(Err(e)) => Bytes::from(format!(": the store could not be read: {}\n\n", one_line(&e.to_string()))),
        Err(_) => Bytes::from_static(b": the figures could not be computed\n\n"),
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `GET /events/overview`: the figures now, then every second.
pub(super) async fn stream(dashboard: web::Data<Dashboard>) -> HttpResponse {
    let events = futures::stream::unfold((dashboard, true), |(dashboard, first)| async move {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        if dashboard.is_closing() {
            return None;
        }
        let event = next_event(&dashboard).await;
        Some((Ok::<Bytes, actix_web::Error>(event), (dashboard, false)))
    });
    guarded(HttpResponse::Ok())
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events)
}
