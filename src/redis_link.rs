//! The link to Redis shared by the Redis cap ledger and the Redis store: a private tokio
//! runtime on a thread of its own, the connection (one node or a Redis Cluster), the
//! fail-closed health state (`paused`), and Lua scripts run by `EVALSHA`.
//!
//! # Why a private runtime and blocking calls
//! The engine polls every ledger and store future exactly once (`at_once` in
//! `actors/entity.rs`) and treats a future that is not ready as "unavailable". A Redis call
//! is network I/O, so each call is driven to completion on the link's own runtime thread
//! while the caller waits on a channel with a timeout, and the method returns a future that
//! is already ready. The caller's thread is blocked for at most [`RedisOptions::call_timeout`]
//! (plus a small grace): an actor waits for the gate, it never sends without an answer. The
//! runtime is a current-thread runtime that nobody else uses; the engine's own runtime may
//! run on a paused (virtual) clock, the link's timeouts and backoff are always real time.
//!
//! # Health: how the link fails closed (RELIABILITY.md rules 3 and 6)
//! - **Connection trouble** (refused, reset, timeout): the connection is dropped, a new one is
//!   made and *verified* (the server's `run_id` is the one seen at connect) and the call is
//!   retried once — every ledger call is idempotent, so a blind retry is safe (row 17, row
//!   36). If reconnecting fails the link is paused; calls fail at once until a backoff
//!   (50 ms doubling to 2 s) has passed, then one call tries again. Such a pause ends by
//!   itself.
//! - **Server refusals** (`BUSY`, `OOM`, `LOADING`, `CLUSTERDOWN`, `TRYAGAIN`, …): the call
//!   fails, the link is paused until a later call succeeds (rows 18, 37).
//! - **Data loss** (a `run_id` that changed: a restart; the epoch key gone or changed:
//!   `FLUSHALL`, a failover to a node without the data): the link is paused **for good**;
//!   only an operator restarting gavat ends it (rows 15, 52). A restart is noticed on the
//!   first call after it even through a transparent reconnect, because a restart empties the
//!   script cache: `NOSCRIPT` makes the link compare `run_id`s before it reloads a script
//!   (row 20).
//!
//! Secrets: the URL's password is never logged nor put in an error; every reason passes
//! through the link's `scrub`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Cmd, ErrorKind, RedisError, Value};

/// How the link behaves; the defaults suit a live engine on a local network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// How long one call (reserve, confirm, …) may take, retries included, before it fails as
    /// unavailable. The caller's thread is blocked that long at most.
    pub call_timeout: Duration,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// How long a settled message id (and a message → user index entry) is kept: a retry
    /// of a reservation older than this is not recognised as a retry. Wall-clock time, as
    /// Redis expires keys on its own clock.
    pub retention: Duration,
    /// The most the engine's clock may differ from the Redis server's (`TIME`) for the cap
    /// ledger to take a new decision; beyond it a reservation is refused as unavailable and
    /// counted (RELIABILITY.md rows 24, 41), so a host clock jumped or skewed by minutes
    /// never shortens a cooldown or opens a new day's cap. `None` turns the check off: a
    /// rehearsal at `--time-scale` runs on an engine clock far from any wall clock.
    pub max_clock_skew: Option<Duration>,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            call_timeout: Duration::from_millis(1_000),
            connect_timeout: Duration::from_millis(1_000),
            retention: Duration::from_secs(crate::ledger::DEFAULT_RETENTION_SECS as u64),
            max_clock_skew: None,
        }
    }
}

/// Why a Redis ledger or store could not be opened. Every variant is fatal for the start
/// of an engine: nothing is sent until an operator fixes the cause.
#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    /// The URL cannot be used (the text shown has its password removed).
    #[error("Redis URL {url}: {reason}")]
    BadUrl {
        /// The URL without its password.
        url: String,
        /// Why.
        reason: String,
    },
    /// The key prefix cannot be used.
    #[error("Redis key prefix {prefix:?}: {reason}")]
    BadPrefix {
        /// The prefix.
        prefix: String,
        /// Why.
        reason: String,
    },
    /// The server could not be reached or did not answer.
    #[error("Redis at {address}: {reason}")]
    Unreachable {
        /// `host:port` (no password).
        address: String,
        /// Why.
        reason: String,
    },
    /// The server runs with settings under which caps could silently be lost.
    #[error("Redis at {address}: {reason}")]
    Unsafe {
        /// `host:port` of the node at fault.
        address: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// Why one call failed, as the link classifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No usable connection (refused, reset, timed out): retried with backoff, then resumes.
    Connection(String),
    /// The server refused the call (`BUSY`, `OOM`, …): a later call may succeed.
    Server(String),
    /// The data can no longer be trusted (restart, lost epoch): paused for good.
    Lost(String),
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Connection(r) | Failure::Server(r) | Failure::Lost(r) => r,
        }
    }

    /// What went wrong, for an error message.
    pub(crate) fn reason_text(&self) -> String {
        self.reason().to_string()
    }
}

/// One Lua script, loaded once and run by its SHA-1.
#[derive(Debug)]
pub(crate) struct Script {
    name: &'static str,
    source: &'static str,
    sha: String,
}

impl Script {
    pub(crate) fn new(name: &'static str, source: &'static str) -> Script {
        Script { name, source, sha: ::redis::Script::new(source).get_hash().to_string() }
    }
}

/// The connection: one node, or a cluster.
enum Conn {
    /// A single node: the multiplexed connection in use (`None` after a failure: the next
    /// call makes and verifies a new one).
    Single { client: Box<::redis::Client>, current: Mutex<Option<MultiplexedConnection>> },
    /// A Redis Cluster: the cluster connection reconnects nodes itself; the link verifies
    /// the nodes' `run_id`s after any connection failure.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Single { .. } => f.write_str("Single"),
            Conn::Cluster(_) => f.write_str("Cluster"),
        }
    }
}

/// The health state (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
enum Health {
    Ok,
    /// Paused until a call succeeds; with connection trouble, calls before `retry_at` fail
    /// at once.
    Transient {
        reason: String,
        retry_at: Option<tokio::time::Instant>,
        backoff: Duration,
    },
    /// Paused for good.
    Lost {
        reason: String,
    },
}

/// What every call's task shares. Its `Debug` shows no secret.
pub(crate) struct Shared {
    conn: Conn,
    /// `host:port` of the node given (no password), for messages.
    address: String,
    /// The URL's password, removed from every message.
    secret: Option<String>,
    /// `run_id` of every primary at connect, by address: a change is a restart. Updated
    /// only when a single node restarted with every acknowledged write on disk.
    run_ids: Mutex<BTreeMap<String, String>>,
    /// Whether the single node fsynced every write (`appendonly yes`, `appendfsync always`)
    /// when last seen: a restart is trusted only if it did before **and** does after, so a
    /// server restarted with a changed configuration cannot hide lost writes.
    kept_every_write: AtomicBool,
    health: Mutex<Health>,
    options: RedisOptions,
    pauses_total: AtomicU64,
    reconnects_total: AtomicU64,
    durable_restarts_total: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("conn", &self.conn)
            .field("address", &self.address)
            .field("health", &*self.health())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The runtime thread; stopping it cancels every task and closes every connection.
#[derive(Debug)]
struct RuntimeThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeThread {
    fn start() -> std::io::Result<RuntimeThread> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("gavat-redis".into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(RuntimeThread { handle, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// The link: a runtime thread and the state its tasks share. Owned by one ledger or store.
#[derive(Debug)]
pub(crate) struct Link {
    shared: Arc<Shared>,
    // Declared last: dropped after `shared`, so no connection outlives its runtime.
    runtime: RuntimeThread,
}

/// Removes the password of a URL (`redis://user:secret@host` → `redis://user:***@host`).
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "<unparsable URL>".to_string() };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The text of a reply that should be a string.
pub(crate) fn text(value: &Value) -> Result<String, Failure> {
    value_text(value).ok_or_else(|| Failure::Server(format!("unexpected reply from Redis: {value:?}")))
}

/// A field of `INFO` output.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

/// Whether a failure means the connection (not the server's answer) is at fault.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
}

impl Link {
    /// Opens a link: connects, reads `INFO server` (version, `run_id`, mode) and, for a
    /// cluster node, opens a cluster connection. Blocks the caller until done.
    pub(crate) fn connect(url: &str, options: RedisOptions) -> Result<Link, RedisConnectError> {
        let shown = redact_url(url);
        let bad = |reason: String| RedisConnectError::BadUrl { url: shown.clone(), reason };
        let client = ::redis::Client::open(url).map_err(|e| bad(e.to_string().replace(url, &shown)))?;
        let info = client.get_connection_info();
        let address = info.addr().to_string();
        let secret = info.redis_settings().password().filter(|p| !p.is_empty()).map(str::to_string);
        if matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { .. }) {
            return Err(bad("TLS is not supported by this build (use redis://)".to_string()));
        }
        let runtime = RuntimeThread::start()
            .map_err(|e| RedisConnectError::Unreachable { address: address.clone(), reason: e.to_string() })?;
        let scrub = {
            let secret = secret.clone();
            move |s: String| match &secret {
                Some(p) => s.replace(p.as_str(), "***"),
                None => s,
            }
        };
        let unreachable = {
            let address = address.clone();
            let scrub = scrub.clone();
            move |reason: String| RedisConnectError::Unreachable { address: address.clone(), reason: scrub(reason) }
        };
        let url_owned = url.to_string();
        let opened = block_on(&runtime.handle, options.connect_timeout * 4, async move {
            let config = ::redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.connect_timeout))
                .set_response_timeout(Some(options.call_timeout));
            let mut single = client.get_multiplexed_async_connection_with_config(&config).await?;
            let info = text(&Cmd::new().arg("INFO").arg("server").query_async::<Value>(&mut single).await?)
                .unwrap_or_default();
            if info_field(&info, "redis_mode").as_deref() != Some("cluster") {
                let durable = keeps_every_write(&mut single).await;
                return Ok::<_, RedisError>((
                    Conn::Single { client: Box::new(client), current: Mutex::new(Some(single)) },
                    info,
                    None,
                    durable,
                ));
            }
            let cluster = ::redis::cluster::ClusterClient::builder(vec![url_owned])
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.call_timeout)
                .retries(2)
                .build()?;
            let mut conn = cluster.get_async_connection().await?;
            let infos = all_primaries(&mut conn, Cmd::new().arg("INFO").arg("server").to_owned()).await?;
            Ok((Conn::Cluster(conn), info, Some(infos), false))
        });
        let (conn, info, cluster_infos, durable_at_connect) = match opened {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(unreachable(e.to_string())),
            None => return Err(unreachable("timed out connecting".to_string())),
        };
        let version = info_field(&info, "redis_version").unwrap_or_default();
        let major: u32 = version.split('.').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if major < 7 {
            return Err(RedisConnectError::Unsafe {
                address,
                reason: format!(
                    "Redis {version} is too old: the cap gate needs Redis 7.0 or later (Lua scripts with \
                     flags, SET … NX GET)"
                ),
            });
        }
        let mut run_ids = BTreeMap::new();
        match cluster_infos {
            None => {
                let id = info_field(&info, "run_id").ok_or_else(|| unreachable("INFO server has no run_id".into()))?;
                run_ids.insert(address.clone(), id);
            }
            Some(infos) => {
                for (node, info) in infos {
                    let id = info_field(&info, "run_id")
                        .ok_or_else(|| unreachable(format!("INFO server of {node} has no run_id")))?;
                    run_ids.insert(node, id);
                }
            }
        }
        let shared = Arc::new(Shared {
            conn,
            address,
            secret,
            run_ids: Mutex::new(run_ids),
            kept_every_write: AtomicBool::new(durable_at_connect),
            health: Mutex::new(Health::Ok),
            options,
            pauses_total: AtomicU64::new(0),
            reconnects_total: AtomicU64::new(0),
            durable_restarts_total: AtomicU64::new(0),
        });
        Ok(Link { shared, runtime })
    }

    /// Whether the link talks to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.shared.conn, Conn::Cluster(_))
    }

    /// `host:port` of the node the link was opened with (no password).
    pub(crate) fn address(&self) -> &str {
        &self.shared.address
    }

    /// Removes the URL's password from a text.
    pub(crate) fn scrub(&self, text: String) -> String {
        self.shared.scrub(text)
    }

    /// Why calls fail now, if they do.
    pub(crate) fn paused(&self) -> Option<String> {
        match &*self.shared.health() {
            Health::Ok => None,
            Health::Transient { reason, .. } | Health::Lost { reason } => Some(reason.clone()),
        }
    }

    /// Times the link went from answering to paused (or from a transient pause to a lost
    /// one).
    pub(crate) fn pauses_total(&self) -> u64 {
        self.shared.pauses_total.load(Ordering::Relaxed)
    }

    /// Connections made again after a failure.
    pub(crate) fn reconnects_total(&self) -> u64 {
        self.shared.reconnects_total.load(Ordering::Relaxed)
    }

    /// Restarts of the node accepted because it keeps every acknowledged write on disk
    /// (`appendonly yes`, `appendfsync always`).
    pub(crate) fn durable_restarts_total(&self) -> u64 {
        self.shared.durable_restarts_total.load(Ordering::Relaxed)
    }

    /// Runs one call on the link's runtime and waits for it; the health state is checked
    /// before (a lost link fails at once) and updated after.
    pub(crate) fn run<T, F, Fut>(&self, call: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    {
        self.run_for(self.shared.options.call_timeout, call)
    }

    /// [`Link::run`] with a timeout of its own (start-up and recovery work, which touch every
    /// slot of a cluster).
    pub(crate) fn run_for<T, F, Fut>(&self, timeout: Duration, call: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    {
        if let Health::Lost { reason } = &*self.shared.health() {
            return Err(Failure::Lost(reason.clone()));
        }
        let shared = Arc::clone(&self.shared);
        let answer = block_on(&self.runtime.handle, timeout + Duration::from_millis(250), async move {
            if let Some(fail) = shared.fail_fast() {
                return Err(fail);
            }
            let result = match tokio::time::timeout(timeout, call(Arc::clone(&shared))).await {
                Ok(result) => result,
                Err(_) => {
                    shared.drop_connection();
                    Err(Failure::Connection(format!("no answer from Redis at {} within {timeout:?}", shared.address)))
                }
            };
            shared.note(&result);
            result
        });
        answer.unwrap_or_else(|| {
            Err(Failure::Connection(format!("the Redis link at {} did not answer in time", self.shared.address)))
        })
    }
}

/// Runs a future on the runtime behind `handle` and waits for it at most `wait`; `None` if
/// it did not finish in time (it is then left to finish or time out on its own).
fn block_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    wait: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(wait).ok()
}

/// Whether the server fsyncs every write before it answers (`appendonly yes`,
/// `appendfsync always`). A server that will not say (CONFIG disabled) is taken not to.
async fn keeps_every_write(c: &mut MultiplexedConnection) -> bool {
    let appendonly = config_value(c, "appendonly").await;
    let appendfsync = config_value(c, "appendfsync").await;
    appendonly.as_deref() == Some("yes") && appendfsync.as_deref() == Some("always")
}

/// One setting of the server (`CONFIG GET name`), if it answers.
async fn config_value(c: &mut MultiplexedConnection, name: &str) -> Option<String> {
    let reply = Cmd::new().arg("CONFIG").arg("GET").arg(name).query_async::<Value>(c).await.ok()?;
    match reply {
        Value::Array(items) if items.len() == 2 => value_text(&items[1]),
        Value::Map(pairs) if pairs.len() == 1 => value_text(&pairs[0].1),
        _ => None,
    }
}

/// Sends a command to every primary of a cluster; the replies by node address.
async fn all_primaries(conn: &mut ClusterConnection, cmd: Cmd) -> Result<BTreeMap<String, String>, RedisError> {
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::Special)));
    let reply = conn.route_command(cmd, routing).await?;
    let mut out = BTreeMap::new();
    if let Value::Map(pairs) = reply {
        for (node, value) in pairs {
            let value = match value {
                Value::ServerError(e) => return Err(e.into()),
                Value::Array(items) => items.iter().filter_map(value_text).collect::<Vec<_>>().join("\n"),
                other => value_text(&other).unwrap_or_default(),
            };
            out.insert(value_text(&node).unwrap_or_default(), value);
        }
    }
    Ok(out)
}

impl Shared {
    fn health(&self) -> MutexGuard<'_, Health> {
        // Every update is a single assignment: a poisoned lock holds a whole value.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn scrub(&self, text: String) -> String {
        match &self.secret {
            Some(p) => text.replace(p.as_str(), "***"),
            None => text,
        }
    }

    /// A call that must not reach Redis now: lost for good, or within a connection backoff.
    fn fail_fast(&self) -> Option<Failure> {
        match &*self.health() {
            Health::Lost { reason } => Some(Failure::Lost(reason.clone())),
            Health::Transient { reason, retry_at: Some(at), .. } if tokio::time::Instant::now() < *at => {
                Some(Failure::Connection(reason.clone()))
            }
            _ => None,
        }
    }

    /// Updates the health state after a call, counting and logging every pause.
    fn note<T>(&self, result: &Result<T, Failure>) {
        let mut health = self.health();
        let next = match (result, &*health) {
            (_, Health::Lost { .. }) => return,
            (Ok(_), Health::Ok) => return,
            (Ok(_), Health::Transient { .. }) => {
                tracing::info!(redis = %self.address, "Redis cap gate resumed.");
                Health::Ok
            }
            (Err(Failure::Lost(reason)), _) => {
                self.pauses_total.fetch_add(1, Ordering::Relaxed);
                tracing::error!(redis = %self.address, reason = %reason, "Redis cap gate paused for good; an operator must act.");
                Health::Lost { reason: reason.clone() }
            }
            (Err(fail), previous) => {
                let (was_paused, backoff) = match previous {
                    Health::Transient { backoff, .. } => (true, (*backoff * 2).min(Duration::from_secs(2))),
                    _ => (false, Duration::from_millis(50)),
                };
                let retry_at = match fail {
                    Failure::Connection(_) => Some(tokio::time::Instant::now() + backoff),
                    _ => None,
                };
                if !was_paused {
                    self.pauses_total.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(redis = %self.address, reason = %fail.reason(), "Redis cap gate paused; nothing is sent until it answers again.");
                }
                Health::Transient { reason: fail.reason().to_string(), retry_at, backoff }
            }
        };
        *health = next;
    }

    fn drop_connection(&self) {
        if let Conn::Single { current, .. } = &self.conn {
            *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// The classification of a failed command.
    fn classify(&self, e: &RedisError) -> Failure {
        let text = self.scrub(e.to_string());
        // Checked before connection trouble: redis-rs counts a refused AUTH as a reason to
        // reconnect, but reconnecting cannot fix a password (row 51).
        if e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) {
            return Failure::Server(format!(
                "Redis at {} refused gavat's credentials ({text}): fix the password or user in the Redis URL (or \
                 the server's requirepass/ACL); nothing is sent until it is accepted",
                self.address
            ));
        }
        if is_connection_error(e) {
            return Failure::Connection(format!(
                "Redis at {} unreachable ({text}); reconnecting with backoff",
                self.address
            ));
        }
        if e.kind() == ErrorKind::Server(::redis::ServerErrorKind::NoScript) {
            return Failure::Server(format!("Redis has no such script (NOSCRIPT: {text})"));
        }
        let advice = match e.code() {
            Some("BUSY") => {
                "Redis is BUSY running a script (busy-reply-threshold passed): retrying; if it lasts, SCRIPT KILL \
                 or SHUTDOWN NOSAVE the script's server"
            }
            Some("OOM") => {
                "Redis is out of memory (maxmemory reached under noeviction): raise maxmemory or free memory; the \
                 gate resumes by itself"
            }
            Some("LOADING") => "Redis is loading its data set: retrying",
            Some("NOPERM") => "Redis refused gavat's permissions: fix the ACL of the URL's user",
            Some("CLUSTERDOWN") | Some("TRYAGAIN") | Some("MASTERDOWN") | Some("READONLY") => {
                "the Redis Cluster cannot serve the user's slot now: retrying"
            }
            _ => "Redis refused the call",
        };
        Failure::Server(format!("{advice} ({text})"))
    }

    /// A connection to send on: the current one, or a new one verified first.
    async fn single(&self) -> Result<MultiplexedConnection, Failure> {
        let Conn::Single { client, current } = &self.conn else {
            return Err(Failure::Server("internal: not a single-node link".into()));
        };
        if let Some(c) = current.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.call_timeout));
        let mut c =
            client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| self.classify(&e))?;
        let info =
            Cmd::new().arg("INFO").arg("server").query_async::<Value>(&mut c).await.map_err(|e| self.classify(&e))?;
        let run_id = info_field(&text(&info)?, "run_id").unwrap_or_default();
        self.accept_run_id(&mut c, run_id).await?;
        self.reconnects_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(redis = %self.address, "Reconnected to Redis; same server, same data.");
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// A single node's `run_id` now, compared with the one seen at connect. A restart is
    /// accepted only when the node keeps every acknowledged write on disk (`appendonly yes`
    /// with `appendfsync always`, read from the server itself): then nothing the ledger was
    /// told is lost, and the epoch every script checks still guards against a data set
    /// swapped or emptied (RELIABILITY.md rows 14, 54). Any other restart is data loss.
    async fn accept_run_id(&self, c: &mut MultiplexedConnection, run_id: String) -> Result<(), Failure> {
        let now = BTreeMap::from([(self.address.clone(), run_id.clone())]);
        let Err(lost) = self.compare_run_ids(&now) else { return Ok(()) };
        let durable_now = keeps_every_write(c).await;
        if !(self.kept_every_write.load(Ordering::Relaxed) && durable_now) {
            self.kept_every_write.store(durable_now, Ordering::Relaxed);
            return Err(lost);
        }
        let was = self.run_ids().insert(self.address.clone(), run_id.clone()).unwrap_or_default();
        self.durable_restarts_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            redis = %self.address, was = short(&was), now = short(&run_id),
            "Redis restarted with appendfsync always: every acknowledged write was on disk; resuming."
        );
        Ok(())
    }

    fn run_ids(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.run_ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A `run_id` that differs from the one seen at connect is a restart (or a failover):
    /// the data may be older or gone.
    fn compare_run_ids(&self, now: &BTreeMap<String, String>) -> Result<(), Failure> {
        for (node, was) in self.run_ids().iter() {
            match now.get(node) {
                Some(id) if id == was => {}
                Some(id) => {
                    return Err(Failure::Lost(format!(
                        "Redis at {node} restarted (run_id {} → {}): counters, opt-outs and reservations may be \
                         gone or older than what was decided; nothing is sent. Check or restore the data, then \
                         restart gavat (RELIABILITY.md row 15)",
                        short(was),
                        short(id)
                    )));
                }
                None => {
                    return Err(Failure::Lost(format!(
                        "Redis node {node} (run_id {}) is no longer a primary (failover or topology change): its \
                         data cannot be shown to be the same; nothing is sent. Check the cluster, then restart gavat",
                        short(was)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Compares every primary's `run_id` with the one seen at connect.
    pub(crate) async fn verify(&self) -> Result<(), Failure> {
        match &self.conn {
            Conn::Single { .. } => {
                // A new connection is verified as it is made; this asks on the current one.
                let mut c = self.single().await?;
                let info = Cmd::new().arg("INFO").arg("server").query_async::<Value>(&mut c).await.map_err(|e| {
                    if is_connection_error(&e) {
                        self.drop_connection();
                    }
                    self.classify(&e)
                })?;
                let run_id = info_field(&text(&info)?, "run_id").unwrap_or_default();
                self.accept_run_id(&mut c, run_id).await
            }
            Conn::Cluster(conn) => {
                let infos = all_primaries(&mut conn.clone(), Cmd::new().arg("INFO").arg("server").to_owned())
                    .await
                    .map_err(|e| self.classify(&e))?;
                let now = infos.into_iter().map(|(n, i)| (n, info_field(&i, "run_id").unwrap_or_default())).collect();
                self.compare_run_ids(&now)
            }
        }
    }

    /// Sends one command (routed by its first key on a cluster). On a connection failure the
    /// connection is made again (and verified) and the command sent once more: callers only
    /// send idempotent commands.
    pub(crate) async fn query(&self, cmd: Cmd) -> Result<Value, Failure> {
        let mut retried = false;
        loop {
            let sent = match &self.conn {
                Conn::Single { .. } => {
                    let mut c = self.single().await?;
                    c.req_packed_command(&cmd).await
                }
                Conn::Cluster(c) => c.clone().req_packed_command(&cmd).await,
            };
            match sent {
                Ok(Value::ServerError(e)) => return Err(self.classify(&e.into())),
                Ok(v) => return Ok(v),
                Err(e) if is_connection_error(&e) && !retried => {
                    retried = true;
                    self.drop_connection();
                    if matches!(self.conn, Conn::Cluster(_)) {
                        self.verify().await?;
                        self.reconnects_total.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    if is_connection_error(&e) {
                        self.drop_connection();
                    }
                    return Err(self.classify(&e));
                }
            }
        }
    }

    /// Sends many commands, each touching the keys of one slot (given), in pipelines of
    /// up to 1,000 to the node that serves the slot (`CLUSTER SLOTS`); the replies in the
    /// commands' order. For start-up and recovery work over every slot: 16,384 commands cost
    /// a few round trips instead of 16,384.
    pub(crate) async fn query_by_slot(&self, cmds: Vec<(usize, Cmd)>) -> Result<Vec<Value>, Failure> {
        const CHUNK: usize = 1_000;
        let mut out = vec![Value::Nil; cmds.len()];
        let send = |pipe: ::redis::Pipeline, n: usize, route: Option<SingleNodeRoutingInfo>| async move {
            match (&self.conn, route) {
                (Conn::Cluster(c), Some(route)) => c.clone().route_pipeline(pipe, 0, n, route).await,
                _ => match self.single().await {
                    Ok(mut c) => c.req_packed_commands(&pipe, 0, n).await,
                    Err(f) => Err(RedisError::from(std::io::Error::other(f.reason_text()))),
                },
            }
        };
        // The node of every command: one group on one node.
        let mut groups: BTreeMap<(String, u16), Vec<usize>> = BTreeMap::new();
        match &self.conn {
            Conn::Single { .. } => {
                groups.insert((String::new(), 0), (0..cmds.len()).collect());
            }
            Conn::Cluster(_) => {
                let slots = self.query(Cmd::new().arg("CLUSTER").arg("SLOTS").to_owned()).await?;
                let ranges = parse_cluster_slots(&slots)
                    .ok_or_else(|| Failure::Server(format!("unreadable CLUSTER SLOTS reply: {slots:?}")))?;
                for (i, (slot, _)) in cmds.iter().enumerate() {
                    let node = ranges
                        .iter()
                        .find(|(lo, hi, _, _)| (*lo..=*hi).contains(slot))
                        .map(|(_, _, host, port)| (host.clone(), *port))
                        .ok_or_else(|| Failure::Server(format!("no Redis Cluster node serves slot {slot}")))?;
                    groups.entry(node).or_default().push(i);
                }
            }
        }
        let mut batches = Vec::new();
        for ((host, port), indices) in groups {
            for chunk in indices.chunks(CHUNK) {
                let mut pipe = ::redis::Pipeline::with_capacity(chunk.len());
                for &i in chunk {
                    pipe.add_command(cmds[i].1.clone());
                }
                let route = (!host.is_empty()).then(|| SingleNodeRoutingInfo::ByAddress { host: host.clone(), port });
                batches.push((chunk.to_vec(), send(pipe, chunk.len(), route)));
            }
        }
        let (indices, futures): (Vec<_>, Vec<_>) = batches.into_iter().unzip();
        let replies = futures::future::join_all(futures).await;
        for (chunk, reply) in indices.into_iter().zip(replies) {
            let values = reply.map_err(|e| {
                if is_connection_error(&e) {
                    self.drop_connection();
                }
                self.classify(&e)
            })?;
            for (i, v) in chunk.into_iter().zip(values) {
                if let Value::ServerError(e) = v {
                    return Err(self.classify(&e.into()));
                }
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Sends a command to every primary (one node: to it); the replies by node.
    pub(crate) async fn on_every_primary(&self, cmd: Cmd) -> Result<BTreeMap<String, Value>, Failure> {
        match &self.conn {
            Conn::Single { .. } => {
                let v = self.query(cmd).await?;
                Ok(BTreeMap::from([(self.address.clone(), v)]))
            }
            Conn::Cluster(conn) => {
                let routing =
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::Special)));
                let reply = conn.clone().route_command(cmd, routing).await.map_err(|e| self.classify(&e))?;
                let mut out = BTreeMap::new();
                if let Value::Map(pairs) = reply {
                    for (node, value) in pairs {
                        if let Value::ServerError(e) = value {
                            return Err(self.classify(&e.into()));
                        }
                        out.insert(value_text(&node).unwrap_or_default(), value);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Loads scripts on every node (a cluster routes `SCRIPT LOAD` to all of them).
    pub(crate) async fn load_scripts(&self, scripts: &[&Script]) -> Result<(), Failure> {
        for s in scripts {
            let reply = self.query(Cmd::new().arg("SCRIPT").arg("LOAD").arg(s.source).to_owned()).await?;
            let sha = text(&reply)?;
            if sha != s.sha {
                return Err(Failure::Server(format!(
                    "script {}: Redis computed SHA {sha}, expected {}",
                    s.name, s.sha
                )));
            }
        }
        Ok(())
    }

    /// Runs a script by its SHA. `NOSCRIPT` means the script cache was emptied: by a
    /// restart (then the `run_id` changed and the link is lost for good) or by
    /// `SCRIPT FLUSH` (then the script is loaded again and the call repeated).
    pub(crate) async fn eval(&self, script: &Script, keys: &[String], args: &[String]) -> Result<Value, Failure> {
        let mut cmd = Cmd::new();
        cmd.arg("EVALSHA").arg(&script.sha).arg(keys.len()).arg(keys).arg(args);
        match self.query(cmd.clone()).await {
            Err(Failure::Server(reason)) if reason.contains("NOSCRIPT") => {
                self.verify().await?;
                tracing::warn!(redis = %self.address, script = script.name, "Redis lost its scripts (SCRIPT FLUSH); loading them again.");
                self.load_scripts(&[script]).await?;
                self.query(cmd).await
            }
            other => other,
        }
    }
}

/// Redis Cluster's slot count.
pub(crate) const SLOTS: usize = 16_384;

/// The cluster slot of a hash tag (the text between `{` and `}` of a key).
pub(crate) fn slot_of(tag: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes())) % SLOTS
}

/// For every slot, a short hash tag that maps to it (`s0`, `s1`, … the first found), so
/// that a key per slot can sit beside any user's keys: the epoch key and the set of
/// pending reservations of the user's slot (the only way one cluster script can see them).
pub(crate) fn slot_tags() -> &'static [String] {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); SLOTS];
        let mut missing = SLOTS;
        let mut i = 0u64;
        while missing > 0 {
            let tag = format!("s{i}");
            let slot = slot_of(&tag);
            if tags[slot].is_empty() {
                tags[slot] = tag;
                missing -= 1;
            }
            i += 1;
        }
        tags
    })
}

/// `CLUSTER SLOTS` as `(first slot, last slot, host, port)` of each range's primary.
fn parse_cluster_slots(reply: &Value) -> Option<Vec<(usize, usize, String, u16)>> {
    let Value::Array(ranges) = reply else { return None };
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else { return None };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let host = value_text(primary.first()?)?;
        let Value::Int(port) = primary.get(1)? else { return None };
        out.push((usize::try_from(*lo).ok()?, usize::try_from(*hi).ok()?, host, u16::try_from(*port).ok()?));
    }
    Some(out)
}

/// The first characters of a `run_id`, enough to tell two apart in a message.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A password never survives redaction; a URL without one is unchanged.
    #[test]
    fn redact_url_hides_the_password() {
        assert_eq!(redact_url("redis://:s3cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://app:s3cret@localhost"), "redis://app:***@localhost");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(!redact_url("nonsense s3cret").contains("s3cret"));
    }

    /// `INFO` fields are read by exact name.
    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\nrun_id_extra:x\r\n";
        assert_eq!(info_field(info, "run_id").as_deref(), Some("abc"));
        assert_eq!(info_field(info, "redis_version").as_deref(), Some("7.0.15"));
        assert_eq!(info_field(info, "missing"), None);
    }

    /// Slots are Redis Cluster's (CRC16/XMODEM of the tag, mod 16384), and every slot has a
    /// tag of its own.
    #[test]
    fn slot_tags_cover_every_slot() {
        assert_eq!(slot_of("123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot_of("foo"), 12_182);
        let tags = slot_tags();
        assert_eq!(tags.len(), SLOTS);
        for (slot, tag) in tags.iter().enumerate() {
            assert_eq!(slot_of(tag), slot, "{tag}");
        }
    }

    /// A bad URL is refused without echoing its password.
    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let err = Link::connect("redis://:hunter2@[::1:6379", RedisOptions::default()).expect_err("bad URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
