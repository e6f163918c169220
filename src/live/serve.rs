//! Runs the live engine: an actix system on a real-time runtime, the [`Engine`] built from
//! the opened [`LiveParts`], stopped by `--for` or by SIGINT/SIGTERM (a second signal ends
//! the process at once), then the run's record saved in the store.

use std::sync::Arc;

use actix::Actor as _;

use crate::actors::entity::PersistPolicy;
use crate::api::{
    ApiInbound, ApiState, MeteredLedger, MeteredSender, Metrics, MetricsListener, SendingControl, UserDirectory,
};
use crate::clock::Clock;
use crate::config::StrategyBook;
use crate::domain::{Segment, Timestamp};
use crate::engine::{Arms, Engine, RunResult, user_arrivals};
use crate::learner::LearnerSettings;
use crate::segmentation::SegmentationRules;
use crate::store::RunRecord;
use crate::transport::telegram::FanIn;
use crate::transport::{InboundSource, Silence};

use super::config::RunConfig;
use super::parts::{LiveError, LiveParts, UsersAt};

/// Everything a live run is made of.
pub struct LiveRun<'a> {
    /// The configuration in force.
    pub config: &'a RunConfig,
    /// The opened store, ledger, sender and users.
    pub parts: LiveParts,
    /// The clock (system, or scaled for a rehearsal).
    pub clock: Arc<dyn Clock>,
    /// The clock's reading at the start.
    pub start: Timestamp,
    /// Stop after this many seconds of engine time (`None`: until a signal).
    pub run_for: Option<i64>,
    /// The strategies.
    pub book: StrategyBook,
    /// The store's latest strategy version when `book` was read (a later one is an
    /// operator's rollback to pick up).
    pub strategies_version: i64,
    /// The segmentation rules.
    pub rules: SegmentationRules,
    /// The learner's settings, when it runs.
    pub learner: Option<LearnerSettings>,
    /// The experiment in force: each user's arm and the arms' strategies.
    pub arms: Option<Arms>,
    /// The experiment in force as written, for the dashboard's Experiments page.
    pub experiment: Option<gavat_experiments::design::Experiment>,
    /// Shard threads.
    pub threads: usize,
    /// This process's message-id nonce.
    pub nonce: u64,
    /// The API's users.
    pub directory: Arc<dyn UserDirectory>,
    /// The API's write token (from `GAVAT_API_TOKEN`; `None`: the write API is off).
    pub write_token: Option<String>,
    /// Told the API's address once it listens.
    pub on_listening: Box<dyn FnOnce(std::net::SocketAddr)>,
}

impl std::fmt::Debug for LiveRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The write token is a secret: never shown.
        f.debug_struct("LiveRun").field("start", &self.start).field("run_for", &self.run_for).finish_non_exhaustive()
    }
}

/// Runs until `run_for` has passed or a signal comes; returns what the run did.
pub fn run_live(run: LiveRun<'_>) -> Result<RunResult, LiveError> {
    let system = actix_rt::System::new();
    system.block_on(run_in_system(run))
}

async fn run_in_system(run: LiveRun<'_>) -> Result<RunResult, LiveError> {
    let LiveRun {
        config,
        parts,
        clock,
        start,
        run_for,
        book,
        strategies_version,
        rules,
        learner,
        arms,
        experiment: design,
        threads,
        nonce,
        directory,
        write_token,
        on_listening,
    } = run;
    let (join, arrivals) = user_arrivals();
    let strategy_name = book.name.to_string();
    let metrics = Arc::new(Metrics::new());
    let control = Arc::new(SendingControl::new(metrics.clone()));
    let dashboard = match config.listen {
        Some(_) => Some(actix_web::web::Data::new(live_dashboard(
            config,
            design.into_iter().collect(),
            (metrics.clone(), control.clone()),
            clock.clone(),
            write_token.as_deref(),
        )?)),
        None => None,
    };
    let listener = MetricsListener::new(metrics.clone()).start();
    // The API is an inbound source when it runs, Telegram's updates another when configured.
    let api_inbound = Arc::new(ApiInbound::new());
    let telegram =
        super::telegram::telegram_inbound(config, &parts.users_at, directory.clone(), join.clone(), clock.clone())?;

    let server = match config.listen {
        Some(listen) => {
            let state = ApiState {
                clock: clock.clone(),
                inbound: api_inbound.clone(),
                arrivals: join,
                users: directory,
                metrics: metrics.clone(),
                control: control.clone(),
                write_token,
                allowed_hosts: allowed_hosts(config),
            };
            let server = crate::api::serve_with_telegram(listen, state, telegram.clone(), dashboard.clone())
                .await
                .map_err(|e| LiveError::Api(e.to_string()))?;
            on_listening(server.local_addr());
            Some(server)
        }
        None => None,
    };
    let mut sources: Vec<Arc<dyn InboundSource>> = Vec::new();
    if server.is_some() {
        sources.push(api_inbound);
    }
    if let Some(telegram) = &telegram {
        sources.push(telegram.clone());
    }
    let source: Arc<dyn InboundSource> = match sources.len() {
        0 => Arc::new(Silence),
        1 => sources.remove(0),
        _ => Arc::new(FanIn::new(sources)),
    };
    let mut builder = Engine::builder()
        .clock(clock)
        .sender(Arc::new(MeteredSender::new(parts.sender.clone(), metrics.clone())))
        .inbound_source(source)
        .store(parts.store.clone())
        .ledger(Arc::new(MeteredLedger::new(parts.ledger.clone(), metrics.clone(), control)))
        .outcome_listener(listener.recipient())
        .strategies(book.clone())
        .segmentation(rules)
        .users_with_state(parts.users)
        .seed(nonce.rotate_left(17))
        .run_nonce(nonce)
        .persist(PersistPolicy::EveryChange)
        .send_timeout(parts.send_timeout)
        .arrivals(arrivals)
        .threads(threads);
    if let Some(secs) = run_for {
        builder = builder.horizon(start.plus(secs));
    }
    if let Some(settings) = learner {
        builder = builder.learner(settings);
    }
    let experiment = arms.is_some();
    if let Some(arms) = arms {
        builder = builder.arms(arms);
    }
    // An operator's rollback in the store takes effect in the running engine (the store
    // keeps one set of strategies: without an experiment's arms).
    let strategy_watch = match &parts.users_at {
        UsersAt::Sqlite(store) if !experiment => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            builder = builder.strategy_updates(rx);
            Some(actix_rt::spawn(super::strategy_watch::watch(
                store.clone(),
                book.name.to_string(),
                strategies_version,
                tx,
            )))
        }
        _ => None,
    };
    // The store's groups, posted to under `[groups]`, their memberships followed as they
    // change. Not with an experiment: one post reaches members of every arm.
    let group_watch = if experiment {
        None
    } else {
        let groups: Arc<dyn crate::store::GroupStore> = match &parts.users_at {
            UsersAt::Sqlite(store) => store.clone(),
            UsersAt::Redis(store) => store.clone(),
        };
        let stored = groups.load_groups()?;
        if stored.is_empty() {
            None
        } else {
            tracing::info!(groups = stored.len(), "Posting to the store's groups.");
            let (tx, rx) = crate::engine::group_updates();
            builder = builder.groups(stored.iter().map(|g| g.profile()).collect(), config.groups).group_updates(rx);
            Some(actix_rt::spawn(super::groups::watch(groups, stored, tx)))
        }
    };
    let engine = builder.build()?;
    let pollers = match &telegram {
        Some(telegram) => super::telegram::start_inbound(config, telegram).await?,
        None => Vec::new(),
    };
    // Say when sending pauses (the cap gate or the store unavailable: nothing is sent) and
    // when it resumes, once each.
    let watched = metrics.clone();
    let watcher = actix_rt::spawn(async move {
        let mut shown: Option<String> = None;
        loop {
            let now = watched.paused();
            if now != shown {
                match &now {
                    Some(reason) => eprintln!("gavat run: sending paused — {reason}"),
                    None => eprintln!("gavat run: sending resumed"),
                }
                shown = now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    });
    let shutdown = shutdown_signal().map_err(LiveError::Runtime)?;
    let result = engine.run_until(shutdown).await;
    watcher.abort();
    for poller in pollers {
        poller.abort();
    }
    if let Some(w) = strategy_watch {
        w.abort();
    }
    if let Some(w) = group_watch {
        w.abort();
    }
    if let Some(dashboard) = &dashboard {
        dashboard.close();
    }
    if let Some(server) = server {
        server.stop(true).await;
    }
    let result = result?;

    let suppressed = Segment::ALL
        .iter()
        .flat_map(|seg| result.segments[seg.index()].suppressed.iter().map(|(reason, n)| (*seg, *reason, *n)))
        .collect();
    let in_force = result.scheduler.final_books.first().cloned().flatten();
    let in_force = in_force.as_deref().unwrap_or(&book);
    let record = RunRecord {
        ended_at: result.scheduler.ended_at,
        strategy: strategy_name,
        seed: None,
        suppressed,
        strategies: in_force.iter().cloned().collect(),
        strategy_changes: result.scheduler.strategy_changes.clone(),
        simulation: None,
    };
    parts.store.save_run(&record).await?;
    parts.store.flush().await?;
    Ok(result)
}

/// The dashboard of this run: its own connection to the run's store (a rollback is written
/// there, and the strategy watch brings it into the engine), the run's experiment, its
/// metrics and clock, and the API token for writes.
fn live_dashboard(
    config: &RunConfig,
    experiments: Vec<gavat_experiments::design::Experiment>,
    (metrics, control): (Arc<Metrics>, Arc<SendingControl>),
    clock: Arc<dyn Clock>,
    token: Option<&str>,
) -> Result<crate::dashboard::Dashboard, LiveError> {
    let dashboard_error = |e: &dyn std::fmt::Display| LiveError::Api(format!("the dashboard cannot start: {e}"));
    let source = crate::dashboard::StoreSource::open(&config.store, &config.redis_prefix, true)
        .map_err(|e| dashboard_error(&e))?;
    let name = match &config.store {
        crate::store::StoreUrl::Sqlite(path) => path.display().to_string(),
        redis => format!("{redis} (key prefix {:?})", config.redis_prefix),
    };
    crate::dashboard::Dashboard::live(source, name, experiments, config.clone(), metrics, control, clock, token)
        .map_err(|e| dashboard_error(&e))
}

/// Completes at the first SIGINT or SIGTERM (saying so on standard error); a second one
/// ends the process at once with exit code 130.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + use<>> {
    shutdown_signal_saying(
        "gavat run: stopping — nothing more is planned; sends in flight finish or time out, then the store is \
         flushed (a second signal stops at once)",
        "gavat run: stopped at once; unsettled messages are settled at the next start",
    )
}

/// Completes at the first SIGINT or SIGTERM, printing `stopping` on standard error; a
/// second one prints `stopped` and ends the process at once with exit code 130.
pub(crate) fn shutdown_signal_saying(
    stopping: &'static str,
    stopped: &'static str,
) -> std::io::Result<impl std::future::Future<Output = ()> + use<>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("{stopping}");
        actix_rt::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("{stopped}");
            std::process::exit(130);
        });
    })
}

/// The host names the API answers to besides loopback: `[http] allowed_hosts`, and the
/// host of the Telegram webhook URL (Telegram's requests name it).
fn allowed_hosts(config: &RunConfig) -> Vec<String> {
    let mut hosts = config.allowed_hosts.clone();
    let webhook = config.telegram_inbound.as_ref().and_then(|t| t.webhook_url.as_deref());
    if let Some(host) =
        webhook.and_then(|url| reqwest::Url::parse(url).ok()).and_then(|u| u.host_str().map(str::to_owned))
    {
        hosts.push(host);
    }
    hosts
}
