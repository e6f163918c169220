//! `gavat run`: the live engine. The same [`Engine`](crate::engine::Engine) as `gavat
//! simulate`, built on a system (or scaled) clock, a store on disk, the store's cap ledger
//! and a real transport; runs until `--for` has passed or SIGINT/SIGTERM, then finishes what
//! is in flight, flushes, and prints a summary.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::clock::{Clock, ScaledClock, SystemClock};
use crate::config::StrategyBook;
use crate::domain::{Timestamp, UserId};
use crate::engine::RunResult;
use crate::learner::LearnerSettings;
use crate::live::config::{RunConfig, TransportConfig};
use crate::live::experiment::LiveExperiment;
use crate::live::instance::{Instance, random_nonce};
use crate::live::parts::{LiveError, LiveParts, open_parts};
use crate::output::check_log_dir;
use crate::policy::{caps_for, next_send};
use crate::run_logs::{RunLogLines, write_run_log_lines};
use crate::segmentation::SegmentationRules;
use crate::store::StoreUrl;

use super::CliError;

/// Flags of `gavat run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (docs/configuration.md). Without it, `./gavat.toml` is read
    /// when it exists; otherwise the defaults: SQLite `gavat.db` here, the dry-run
    /// transport, the HTTP API on 127.0.0.1:8787. Flags override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The store: `sqlite:PATH`, a bare path (SQLite), or `redis://HOST:PORT/DB`.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Where messages go: `dry-run` (print each as a JSON line and append it to the
    /// outbox; nothing leaves the machine), `webhook` (needs `[transport]` in the config) or
    /// `telegram` (the Bot API through the config's `[[bots]]`, each token read from the
    /// variable it names; `[transport]` may set the base URL, timeout and lower limits).
    #[arg(long, value_name = "KIND")]
    pub transport: Option<String>,
    /// The dry-run transport's outbox file (default `outbox.jsonl`).
    #[arg(long, value_name = "FILE")]
    pub outbox: Option<PathBuf>,
    /// Run the clock K times faster than the wall clock: a 30-day dress rehearsal in
    /// minutes (`--time-scale 3600`: an hour a second). Caps, quiet hours and cooldowns
    /// are kept in the faster time.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub time_scale: u32,
    /// Stop after this much run time (engine time: with `--time-scale` it passes faster),
    /// e.g. `90m`, `12h`, `3d`, `2w`. Default: until SIGINT or SIGTERM.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub run_for: Option<i64>,
    /// Serve only the users whose hash falls in share I of N (`--shard 0/2` and `--shard
    /// 1/2` on two instances split the users). Instances on one store share its cap gate,
    /// so even two started with the same share keep every cap.
    #[arg(long, value_name = "I/N", value_parser = Instance::parse)]
    pub shard: Option<Instance>,
    /// The HTTP API's address (default 127.0.0.1:8787); port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Do not serve the HTTP API.
    #[arg(long, conflicts_with = "listen")]
    pub no_http: bool,
    /// The prefix of every Redis key (default `gavat:`, or `redis_prefix` of the config).
    #[arg(long, value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// Shard threads (default: the machine's cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Do not run the learner (default: it re-plans every 6 hours of run time, within its
    /// hard limits, or as `learn` in the config says).
    #[arg(long)]
    pub no_learn: bool,
    /// Do not print each dry-run message on standard output (the outbox still has them).
    #[arg(long)]
    pub quiet: bool,
    /// Where the run logs go (default `logs`, or `log_dir` of the config).
    #[arg(long, value_name = "DIR", env = "GAVAT_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// The experiment in force (the file `gavat experiment run` takes), overriding
    /// `experiment` of the config: users are split into its arms by the same hash as a
    /// simulation, the holdout gets nothing (docs/statistics.md, "Live experiments").
    #[arg(long, value_name = "FILE")]
    pub experiment: Option<PathBuf>,
}

/// `3d`, `12h`, `90m`, `30s`, `2w` → seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90m, 12h, 3d or 2w"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h, d or w (e.g. 3d)")),
    };
    let secs = n.checked_mul(unit_secs).filter(|s| (1..=10 * 366 * 86_400).contains(s));
    secs.ok_or_else(|| format!("`{text}` must be between 1 s and 10 years"))
}

/// The configuration in force: the file (given, or `./gavat.toml`), then the flags.
fn settle_config(args: &RunArgs) -> Result<RunConfig, CliError> {
    let default_file = PathBuf::from("gavat.toml");
    let file = match &args.config {
        Some(path) => Some(path.clone()),
        None if default_file.is_file() => Some(default_file),
        None => None,
    };
    let mut config = match &file {
        Some(path) => RunConfig::from_path(path).map_err(CliError::usage)?,
        None => RunConfig::default(),
    };
    if let Some(path) = &file {
        eprintln!("gavat run: configuration {}", path.display());
    }
    if let Some(store) = &args.store {
        config.store = StoreUrl::parse(store).map_err(|e| CliError::usage(anyhow::anyhow!("--store: {e}")))?;
    }
    match args.transport.as_deref() {
        None => {}
        Some("dry-run") if matches!(config.transport, TransportConfig::DryRun { .. }) => {}
        Some("dry-run") => {
            config.transport = TransportConfig::DryRun { outbox: crate::live::config::DEFAULT_OUTBOX.into() };
        }
        Some("webhook") if matches!(config.transport, TransportConfig::Webhook { .. }) => {}
        Some("webhook") => {
            return Err(CliError::usage(anyhow::anyhow!(
                "--transport webhook needs a [transport] section with kind = \"webhook\", url and secret_env in the \
                 config file (docs/configuration.md)"
            )));
        }
        Some("telegram") if matches!(config.transport, TransportConfig::Telegram { .. }) => {}
        Some("telegram") if !config.bots.is_empty() => {
            config.transport = TransportConfig::Telegram {
                api_base_url: crate::transport::telegram::DEFAULT_API_BASE_URL.to_string(),
                timeout_secs: crate::live::config::DEFAULT_TELEGRAM_TIMEOUT_SECS,
                limits: crate::transport::telegram::Limits::TELEGRAM,
            };
        }
        Some("telegram") => {
            return Err(CliError::usage(anyhow::anyhow!(
                "--transport telegram needs at least one [[bots]] entry (name, token_env) in the config file \
                 (docs/configuration.md, docs/telegram.md)"
            )));
        }
        Some(other) => {
            return Err(CliError::usage(anyhow::anyhow!(
                "--transport: `{other}` is not a transport; use dry-run, webhook or telegram"
            )));
        }
    }
    if let Some(outbox) = &args.outbox {
        match &mut config.transport {
            TransportConfig::DryRun { outbox: o } => *o = outbox.clone(),
            TransportConfig::Webhook { .. } | TransportConfig::Telegram { .. } => {
                return Err(CliError::usage(anyhow::anyhow!("--outbox is for the dry-run transport only")));
            }
        }
    }
    if args.no_http {
        config.listen = None;
    } else if let Some(listen) = args.listen {
        config.listen = Some(listen);
    }
    if args.no_learn {
        config.learn = false;
    }
    if let Some(threads) = args.threads {
        config.threads = Some(usize::from(threads));
    }
    if let Some(dir) = &args.log_dir {
        config.log_dir = dir.clone();
    }
    if let Some(prefix) = &args.redis_prefix {
        crate::live::config::check_redis_prefix(prefix)
            .map_err(|m| CliError::usage(anyhow::anyhow!("--redis-prefix: {prefix:?} {m}")))?;
        config.redis_prefix = prefix.clone();
    }
    if let Some(file) = &args.experiment {
        config.experiment = Some(file.clone());
    }
    Ok(config)
}

/// Runs `gavat run`.
pub fn run(args: RunArgs) -> Result<(), CliError> {
    let config = settle_config(&args)?;
    #[cfg(feature = "failpoints")]
    let _failpoints = test_build::start(&config)?;
    let book = match &config.strategies {
        Some(path) => StrategyBook::from_path(path).map_err(CliError::usage)?,
        None => StrategyBook::defaults(),
    };
    let rules = match &config.rules {
        Some(path) => SegmentationRules::from_path(path).map_err(CliError::usage)?,
        None => SegmentationRules::defaults(),
    };
    let experiment = match &config.experiment {
        Some(path) => Some(LiveExperiment::load(path, &book).map_err(CliError::usage)?),
        None => None,
    };
    // With an experiment its arms decide where the learner runs, as in `gavat experiment
    // run`: on the arms with `learner = true` only; `learn` decides without one.
    let learns = experiment.as_ref().map_or(config.learn, LiveExperiment::learns);
    let learner = match (&config.learner, learns) {
        (_, false) => None,
        (Some(path), true) => Some(LearnerSettings::from_path(path).map_err(CliError::usage)?),
        (None, true) => Some(LearnerSettings::defaults()),
    };
    check_log_dir("log_dir", &config.log_dir).map_err(CliError::usage)?;
    let instance = args.shard.unwrap_or_default();
    let system_now = SystemClock.now();
    let clock: Arc<dyn Clock> = if args.time_scale > 1 {
        Arc::new(ScaledClock::new(system_now, args.time_scale))
    } else {
        Arc::new(SystemClock)
    };
    let start = clock.now();

    let parts = open_parts(&config, instance, args.quiet).map_err(open_error)?;
    // What earlier runs learned, or an operator rolled back, stays in force.
    let (book, strategies_version) = match &parts.users_at {
        crate::live::parts::UsersAt::Sqlite(store) => {
            let crate::live::strategy_watch::StartingBook { book, kept, version } =
                crate::live::strategy_watch::with_stored_changes(book, store)
                    .map_err(|e| CliError::failure(anyhow::anyhow!(e)))?;
            if kept > 0 {
                eprintln!(
                    "gavat run: {kept} segment strategies as the store has them in force (learned or rolled back)"
                );
            }
            (book, version)
        }
        crate::live::parts::UsersAt::Redis(_) => (book, 0),
    };
    let LiveParts { users, recovered, .. } = &parts;
    let opted_out = users.iter().filter(|u| u.caps.opted_out).count();
    eprintln!(
        "gavat run: store {} — {} users{}{}",
        config.store,
        users.len(),
        if opted_out > 0 { format!(" ({opted_out} opted out)") } else { String::new() },
        if instance.count > 1 { format!(", share {instance} of the store's users") } else { String::new() },
    );
    if recovered.unknown + recovered.released > 0 {
        eprintln!(
            "gavat run: recovered the last run's unsettled messages: {} counted as unknown (may have gone out; never \
             resent), {} released (never handed to the transport; planned again)",
            recovered.unknown, recovered.released
        );
    }
    match &config.transport {
        TransportConfig::DryRun { outbox } => eprintln!(
            "gavat run: transport dry-run — every message is {} {}; nothing is sent",
            if args.quiet { "appended (not printed: --quiet) to" } else { "printed and appended to" },
            outbox.display()
        ),
        TransportConfig::Webhook { url, .. } => {
            eprintln!("gavat run: transport webhook → {}", crate::store::redact_url(url))
        }
        TransportConfig::Telegram { api_base_url, limits, .. } => {
            let bots: Vec<String> = config.bots.iter().map(|b| format!("{} (${})", b.name, b.token_env)).collect();
            eprintln!(
                "gavat run: transport telegram → {} through {}; at most {}/s per bot, {}/min per private chat, \
                 {}/min per group",
                crate::store::redact_url(api_base_url),
                bots.join(", "),
                limits.per_bot_per_second,
                limits.per_private_chat_per_minute,
                limits.per_group_per_minute
            )
        }
    }
    let clock_text = if args.time_scale > 1 {
        format!("system clock ×{} from {}", args.time_scale, start.to_rfc3339())
    } else {
        format!("system clock, now {}", start.to_rfc3339())
    };
    let stop_text = match args.run_for {
        Some(secs) => format!("; stops at {} (after {} of run time)", start.plus(secs).to_rfc3339(), human(secs)),
        None => "; runs until SIGINT/SIGTERM".to_string(),
    };
    eprintln!("gavat run: {clock_text}{stop_text}");
    if users.is_empty() {
        let import = match &config.store {
            StoreUrl::Sqlite(_) => format!("import them (`gavat import users users.csv --store {}`), ", config.store),
            StoreUrl::Redis(_) => String::new(),
        };
        eprintln!(
            "gavat run: hint: the store holds no users yet — {import}add them through the API (`PUT /v1/users/{{id}}`), \
             or try a demo store (`gavat simulate --users 1000 --save-state demo.db`, then `gavat run --store \
             sqlite:demo.db --time-scale 3600 --for 2d`)"
        );
    } else {
        match first_due(users, &book, &rules, start) {
            Some((at, user)) => eprintln!("gavat run: first send due {} (user {user})", at.to_rfc3339()),
            None => eprintln!("gavat run: no send is due under the current caps (every user opted out or unsegmented)"),
        }
    }

    let strategy_name = book.name.to_string();
    let arms = experiment.as_ref().map(|e| {
        print_experiment(e, users, config.learn);
        e.arms_for(users)
    });

    let threads = config.threads.unwrap_or_else(crate::engine::default_threads);
    let write_token = std::env::var("GAVAT_API_TOKEN").ok().filter(|t| !t.is_empty());
    let directory = crate::live::directory::for_store(
        &parts.users_at,
        clock.clone(),
        Arc::new(rules.clone()),
        Arc::new(book.clone()),
    );
    let writes = if write_token.is_some() {
        "writes need `Authorization: Bearer $GAVAT_API_TOKEN`"
    } else {
        "the /v1 API is off: GAVAT_API_TOKEN is not set (health, readiness and /metrics still answer)"
    };
    let on_listening = Box::new(move |addr: std::net::SocketAddr| {
        eprintln!("gavat run: HTTP API on http://{addr} — {writes}; metrics at http://{addr}/metrics");
        eprintln!("gavat run: dashboard at http://{addr}/");
    });
    let result = crate::live::serve::run_live(crate::live::serve::LiveRun {
        config: &config,
        parts,
        clock,
        start,
        run_for: args.run_for,
        book,
        strategies_version,
        rules,
        learner: learner.clone(),
        arms,
        experiment: experiment.as_ref().map(|e| e.design.clone()),
        threads,
        nonce: random_nonce(instance),
        directory,
        write_token,
        on_listening,
    })
    .map_err(CliError::failure)?;
    print_summary(&result, start);
    // The learner ran when it was on and (with an experiment) some arm learns.
    let learning = learner.is_some();
    let lines = live_log_lines(&config, experiment.as_ref(), &strategy_name, &result, start);
    let logs = write_run_log_lines(&config.log_dir, &lines, learning).map_err(|e| {
        CliError::failure(anyhow::anyhow!("{}: cannot write the run logs: {e}", config.log_dir.display()))
    })?;
    for log in &logs {
        eprintln!("gavat run: run log: {}", log.display());
    }
    Ok(())
}

/// What only a test build (`--features failpoints`, on under `cargo test`) does at the
/// start of `gavat run`: the fail points named in `FAILPOINTS` are set, a panic (a fail
/// point's `panic`) aborts the process at once like a `kill -9`, and with
/// `GAVAT_TEST_PROFILE=1` every configured host must be loopback (RELIABILITY.md §7.1).
#[cfg(feature = "failpoints")]
mod test_build {
    use super::CliError;
    use crate::live::config::{RunConfig, TransportConfig};

    /// Sets the fail points and the test profile's guard; keep the scenario for the run.
    pub(super) fn start(config: &RunConfig) -> Result<fail::FailScenario<'static>, CliError> {
        if std::env::var("GAVAT_TEST_PROFILE").as_deref() == Ok("1") {
            refuse_non_loopback(config)?;
        }
        if std::env::var_os("FAILPOINTS").is_some() {
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                report(info);
                std::process::abort();
            }));
        }
        Ok(fail::FailScenario::setup())
    }

    /// Every host the run would reach: the Telegram Bot API (sends and updates), the LLM,
    /// the webhook, Redis. One that is not loopback is a usage error naming the setting.
    fn refuse_non_loopback(config: &RunConfig) -> Result<(), CliError> {
        let mut hosts: Vec<(&str, String)> = Vec::new();
        match &config.transport {
            TransportConfig::Telegram { api_base_url, .. } => {
                hosts.push(("transport.api_base_url", api_base_url.clone()))
            }
            TransportConfig::Webhook { url, .. } => hosts.push(("transport.url", url.clone())),
            TransportConfig::DryRun { .. } => {}
        }
        if let Some(inbound) = &config.telegram_inbound {
            hosts.push(("transport.api_base_url (inbound)", inbound.api_base_url.clone()));
        }
        if let Some(llm) = &config.messages.llm {
            let url = match &llm.base_url {
                crate::compose::settings::BaseUrl::Fixed(url) => url.clone(),
                crate::compose::settings::BaseUrl::FromEnv(name) => std::env::var(name).unwrap_or_default(),
            };
            hosts.push(("messages.llm.base_url", url));
        }
        if let crate::store::StoreUrl::Redis(url) = &config.store {
            hosts.push(("store", url.clone()));
        }
        for (setting, url) in hosts {
            let host = reqwest::Url::parse(&url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = bare.eq_ignore_ascii_case("localhost")
                || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(CliError::usage(anyhow::anyhow!(
                    "GAVAT_TEST_PROFILE=1: {setting} ({}) is not a loopback host; a test run reaches 127.0.0.1 only",
                    crate::store::redact_url(&url)
                )));
            }
        }
        Ok(())
    }
}

/// Which experiment is in force, its arms and how many of the loaded users each got.
fn print_experiment(e: &LiveExperiment, users: &[crate::store::UserState], learn: bool) {
    let counts: Vec<String> = e
        .counts(users)
        .iter()
        .zip(e.learning.iter().copied().chain(std::iter::repeat(false)))
        .map(|((name, n), learns)| format!("{name} {n}{}", if learns { " (learner)" } else { "" }))
        .collect();
    eprintln!(
        "gavat run: experiment {} ({}) in force, salt {:?}: {}; users who join get their arm by the same hash",
        e.design.name,
        e.origin,
        e.design.salt,
        counts.join(", ")
    );
    if !learn && e.learns() {
        eprintln!(
            "gavat run: note: `learn = false` is set, but the experiment's arms decide: the learner runs on theirs"
        );
    }
}

/// The run-log lines of a live run: the same fields as a simulation's, labelled `live`.
fn live_log_lines(
    config: &RunConfig,
    experiment: Option<&LiveExperiment>,
    strategy: &str,
    result: &RunResult,
    start: Timestamp,
) -> RunLogLines {
    let (segments, total) = crate::simulation::segment_rows(result);
    let end = result.scheduler.ended_at;
    let run = format!(
        "live store={} strategy={} experiment={}",
        config.store,
        strategy,
        experiment.map_or("none", |e| e.design.name.as_str())
    );
    RunLogLines {
        extent: format!(
            "users={} joined={} ran={}..{}",
            result.users,
            result.scheduler.joined_users,
            start.to_rfc3339(),
            end.to_rfc3339()
        ),
        run,
        segments,
        total,
        opted_out_users: result.opted_out_users,
        cap_violations: result.scheduler.cap_violations,
        strategy_changes: result.scheduler.strategy_changes.clone(),
        learner_notes: result.scheduler.learner_notes.iter().map(|(at, n)| (at.to_rfc3339(), n.clone())).collect(),
    }
}

/// A store that is not a store, a missing secret, a bad outbox path: bad input (exit 2);
/// anything else failed while starting (exit 1).
fn open_error(e: LiveError) -> CliError {
    match &e {
        LiveError::Store(crate::store::StoreError::Io { .. } | crate::store::StoreError::Redis { .. })
        | LiveError::Ledger(_)
        | LiveError::Redis(_)
        | LiveError::Runtime(_) => CliError::failure(e),
        _ => CliError::usage(e),
    }
}

/// The earliest send any user could get under their caps now, and whose.
fn first_due(
    users: &[crate::store::UserState],
    book: &StrategyBook,
    rules: &SegmentationRules,
    now: Timestamp,
) -> Option<(Timestamp, UserId)> {
    users
        .iter()
        .filter(|u| !u.caps.opted_out)
        .filter_map(|u| {
            let held = crate::segmentation::segment(&u.profile, now, rules);
            crate::policy::governing_segment(&held, book)?;
            let caps = caps_for(&held, book);
            Some((next_send(&u.caps, &caps, u.profile.zone, now).at?, u.profile.id))
        })
        .min()
}

/// `259200` → `3d`, `5400` → `1h 30m`.
fn human(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() { "0s".into() } else { parts.join(" ") }
}

/// What the run did, on standard error (standard output carries the dry-run messages).
fn print_summary(result: &RunResult, start: Timestamp) {
    let mut total = crate::actors::segment::SegmentStats::default();
    for s in &result.segments {
        total.absorb(s);
    }
    let end = result.scheduler.ended_at;
    eprintln!(
        "gavat run: stopped at {} after {} of run time",
        end.to_rfc3339(),
        human((end.secs() - start.secs()).max(0))
    );
    eprintln!(
        "gavat run: {} sent ({} via groups), {} responses, {} conversions, {} opt-outs, {} users joined",
        total.sent,
        total.sent_via_group,
        total.responses,
        total.conversions,
        total.opt_outs,
        result.scheduler.joined_users
    );
    let suppressed: u64 = total.suppressed.values().sum();
    if suppressed > 0 {
        let reasons: Vec<String> = total.suppressed.iter().map(|(r, n)| format!("{} {n}", r.as_str())).collect();
        eprintln!("gavat run: {suppressed} sends held back by the caps: {}", reasons.join(", "));
    }
    if !total.failed.is_empty() {
        let failed: Vec<String> = total.failed.iter().map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!("gavat run: transport failures: {}", failed.join(", "));
    }
    if !result.scheduler.strategy_changes.is_empty() {
        eprintln!("gavat run: the learner changed {} strategy fields", result.scheduler.strategy_changes.len());
    }
    eprintln!("gavat run: cap violations found by the audit: {}", result.scheduler.cap_violations);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations read as the help says; nonsense is refused with the reason.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("3d"), Ok(3 * 86_400));
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert!(parse_duration("3").unwrap_err().contains("unit"));
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("99999999999d").is_err());
        assert_eq!(human(5_400), "1h 30m");
        assert_eq!(human(3 * 86_400), "3d");
    }
}
