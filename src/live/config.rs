//! `gavat.toml`: what a live engine runs on — the store, the transport, the bots (each by
//! the *name* of the environment variable holding its token), the strategy, rules and
//! learner files, the experiment in force, the HTTP listen address and the log directory.
//! Parsed strictly (unknown keys refused), every error `file:line: field PATH: …`; relative
//! paths are relative to the file's own directory. Documented in docs/configuration.md.
//!
//! Secrets never live here: a bot token or webhook secret is read from the environment when
//! the engine starts, and [`RunConfig`]'s `Display` (the echo of `gavat config check` and of
//! `gavat run`'s start) shows only variable names.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{FieldError, SettingsFileError, parse_settings_toml, read_settings_file};
use crate::store::StoreUrl;
use crate::transport::telegram::{DEFAULT_API_BASE_URL, Limits};

/// The default store of `gavat run`: an SQLite file in the working directory.
pub const DEFAULT_STORE: &str = "gavat.db";
/// The default outbox of the dry-run transport.
pub const DEFAULT_OUTBOX: &str = "outbox.jsonl";
/// The default address of the HTTP API: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// The default prefix of gavat's Redis keys.
pub const DEFAULT_REDIS_PREFIX: &str = "gavat:";
/// The default send timeout of the webhook transport.
pub const DEFAULT_WEBHOOK_TIMEOUT_SECS: u64 = 10;
/// The default connect timeout of the Telegram transport (an exchange may take twice it).
pub const DEFAULT_TELEGRAM_TIMEOUT_SECS: u64 = 3;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    store: Option<String>,
    strategies: Option<PathBuf>,
    rules: Option<PathBuf>,
    learner: Option<PathBuf>,
    learn: Option<bool>,
    experiment: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    threads: Option<usize>,
    redis_prefix: Option<String>,
    transport: Option<TransportSection>,
    http: Option<HttpSection>,
    #[serde(default)]
    bots: Vec<BotSection>,
    messages: Option<crate::compose::MessagesSection>,
    groups: Option<super::groups::GroupsSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportSection {
    kind: String,
    outbox: Option<PathBuf>,
    url: Option<String>,
    secret_env: Option<String>,
    timeout_secs: Option<u64>,
    api_base_url: Option<String>,
    per_bot_per_sec: Option<u32>,
    per_chat_per_sec: Option<f64>,
    per_group_per_min: Option<u32>,
    // Telegram updates (see `TelegramInboundConfig`).
    inbound: Option<String>,
    webhook_secret_env: Option<String>,
    webhook_url: Option<String>,
    poll_timeout_secs: Option<u64>,
    new_user_utc_offset_minutes: Option<i32>,
    new_user_time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    listen: Option<String>,
    enabled: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BotSection {
    name: String,
    token_env: String,
}

/// Where messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportConfig {
    /// Print each message and append it to the outbox; nothing leaves the machine.
    DryRun {
        /// The outbox file.
        outbox: PathBuf,
    },
    /// POST each message as JSON to `url`, signed with HMAC-SHA256 keyed by the secret in
    /// the environment variable `secret_env`.
    Webhook {
        /// Where to POST.
        url: String,
        /// The name of the variable holding the signing secret.
        secret_env: String,
        /// How long one POST may take before its outcome is unknown.
        timeout_secs: u64,
    },
    /// `sendMessage` through the Bot API, one bot per `[[bots]]` entry (at least one).
    Telegram {
        /// The Bot API's base URL (default `https://api.telegram.org`).
        api_base_url: String,
        /// Connecting may take this long; a whole exchange twice as long.
        timeout_secs: u64,
        /// Telegram's limits, as configured (never above the platform's).
        limits: Limits,
    },
}

/// How Telegram updates (what users do on Telegram) reach the engine: `[transport]` keys
/// `inbound`, `webhook_secret_env`, `webhook_url`, `poll_timeout_secs`, `api_base_url`,
/// `new_user_time_zone` or `new_user_utc_offset_minutes` (docs/telegram.md, "Inbound updates").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelegramInboundConfig {
    /// `poll` (getUpdates) or `webhook`; `off` is no config at all.
    pub mode: crate::transport::telegram::InboundMode,
    /// The variable holding the webhook's secret (webhook mode).
    pub webhook_secret_env: Option<String>,
    /// The public `https://` base URL Telegram POSTs to; each bot's webhook is
    /// `{webhook_url}/telegram/{bot name}` (webhook mode).
    pub webhook_url: Option<String>,
    /// How long one `getUpdates` long poll waits (0–50 s).
    pub poll_timeout_secs: u64,
    /// The Bot API's base URL (a local Bot API server, a test).
    pub api_base_url: String,
    /// The time zone of a user created by `/start`: `new_user_time_zone` (an IANA name), or
    /// the fixed `new_user_utc_offset_minutes`, else UTC.
    pub new_user_zone: crate::domain::Zone,
}

/// A bot our users talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotConfig {
    /// Its name in gavat.
    pub name: String,
    /// The environment variable holding its Bot API token.
    pub token_env: String,
}

/// A validated `gavat.toml` (or the defaults, without a file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// The file it came from.
    pub origin: Option<PathBuf>,
    /// The store.
    pub store: StoreUrl,
    /// The transport.
    pub transport: TransportConfig,
    /// The bots.
    pub bots: Vec<BotConfig>,
    /// Strategies (default: the shipped ones).
    pub strategies: Option<PathBuf>,
    /// Segmentation rules (default: the shipped ones).
    pub rules: Option<PathBuf>,
    /// Learner settings (default: the shipped ones).
    pub learner: Option<PathBuf>,
    /// Whether the learner runs (default: yes, every 6 hours of run time).
    pub learn: bool,
    /// The experiment in force, if any.
    pub experiment: Option<PathBuf>,
    /// The HTTP API's address; `None` when it is switched off.
    pub listen: Option<SocketAddr>,
    /// Host names the HTTP API answers to besides loopback and its own address (`[http]
    /// allowed_hosts`: the name a proxy forwards); other `Host` headers get 403.
    pub allowed_hosts: Vec<String>,
    /// Where the run logs go.
    pub log_dir: PathBuf,
    /// Shard threads (default: the machine's cores).
    pub threads: Option<usize>,
    /// The prefix of every Redis key (several deployments can share one server).
    pub redis_prefix: String,
    /// Telegram updates, when they are read (`None`: `inbound = "off"` or not set).
    pub telegram_inbound: Option<TelegramInboundConfig>,
    /// The text of messages: templates, languages, offer, LLM (`[messages]`).
    pub messages: crate::compose::MessagesConfig,
    /// How the store's groups are posted to (`[groups]`; see docs/configuration.md).
    pub groups: crate::actors::scheduler::GroupPolicy,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            origin: None,
            store: StoreUrl::Sqlite(PathBuf::from(DEFAULT_STORE)),
            transport: TransportConfig::DryRun { outbox: PathBuf::from(DEFAULT_OUTBOX) },
            bots: Vec::new(),
            strategies: None,
            rules: None,
            learner: None,
            learn: true,
            experiment: None,
            listen: DEFAULT_LISTEN.parse().ok(),
            allowed_hosts: Vec::new(),
            log_dir: PathBuf::from("logs"),
            threads: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_string(),
            telegram_inbound: None,
            messages: crate::compose::MessagesConfig::default(),
            groups: super::groups::default_group_policy(),
        }
    }
}

impl RunConfig {
    /// Reads and validates `path`.
    pub fn from_path(path: &Path) -> Result<RunConfig, SettingsFileError> {
        read_settings_file(path, |text, origin| RunConfig::from_toml_str(text, origin, path.parent()))
    }

    /// Validates TOML `text` read from `origin`; relative paths are joined to `base`.
    pub fn from_toml_str(text: &str, origin: &str, base: Option<&Path>) -> Result<RunConfig, SettingsFileError> {
        let file: FileConfig = parse_settings_toml(text, origin)?;
        let invalid =
            |field: &str, message: String| SettingsFileError::invalid(origin, text, FieldError::new(field, message));
        let base = base.filter(|b| !b.as_os_str().is_empty());
        let resolve = |p: PathBuf| match base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };
        let mut config = RunConfig { origin: Some(PathBuf::from(origin)), ..RunConfig::default() };
        if let Some(store) = file.store {
            config.store = match StoreUrl::parse(&store).map_err(|e| invalid("store", e.to_string()))? {
                StoreUrl::Sqlite(path) => StoreUrl::Sqlite(resolve(path)),
                redis => redis,
            };
        }
        if let Some(t) = file.transport {
            config.telegram_inbound = telegram_inbound_of(&t, origin, text)?;
            config.transport = match t.kind.as_str() {
                "dry-run" => {
                    for (set, field) in [(t.url.is_some(), "url"), (t.secret_env.is_some(), "secret_env")] {
                        if set {
                            return Err(invalid(
                                &format!("transport.{field}"),
                                "is for the webhook transport, not dry-run".into(),
                            ));
                        }
                    }
                    if let Some(field) = t.telegram_key() {
                        return Err(invalid(
                            &format!("transport.{field}"),
                            "is for the telegram transport, not dry-run".into(),
                        ));
                    }
                    TransportConfig::DryRun { outbox: resolve(t.outbox.unwrap_or_else(|| DEFAULT_OUTBOX.into())) }
                }
                "webhook" => {
                    if t.outbox.is_some() {
                        return Err(invalid("transport.outbox", "is for the dry-run transport, not webhook".into()));
                    }
                    if let Some(field) = t.telegram_key() {
                        return Err(invalid(
                            &format!("transport.{field}"),
                            "is for the telegram transport, not webhook".into(),
                        ));
                    }
                    let url =
                        t.url.ok_or_else(|| invalid("transport", "needs `url` for the webhook transport".into()))?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(invalid("transport.url", "must start with http:// or https://".into()));
                    }
                    let secret_env = t.secret_env.ok_or_else(|| {
                        invalid(
                            "transport",
                            "needs `secret_env`, the name of the variable holding the signing secret".into(),
                        )
                    })?;
                    check_env_name(&secret_env).map_err(|m| name_error(origin, text, "transport.secret_env", m))?;
                    let timeout_secs = t.timeout_secs.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_SECS);
                    if !(1..=300).contains(&timeout_secs) {
                        return Err(invalid("transport.timeout_secs", "must be 1–300 seconds".into()));
                    }
                    TransportConfig::Webhook { url, secret_env, timeout_secs }
                }
                "telegram" => telegram_transport(t).map_err(|(field, message)| invalid(&field, message))?,
                _ => {
                    return Err(invalid(
                        "transport.kind",
                        "is not a transport; use \"dry-run\", \"webhook\" or \"telegram\"".into(),
                    ));
                }
            };
        }
        if let Some(http) = file.http {
            if http.enabled == Some(false) {
                config.listen = None;
            } else if let Some(listen) = http.listen {
                config.listen = Some(
                    listen
                        .parse()
                        .map_err(|_| invalid("http.listen", "is not an address like 127.0.0.1:8787".into()))?,
                );
            }
            for host in http.allowed_hosts.unwrap_or_default() {
                let name = host.trim().trim_end_matches('.');
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
                    return Err(invalid("http.allowed_hosts", format!("{host:?} is not a host name")));
                }
                config.allowed_hosts.push(name.to_ascii_lowercase());
            }
        }
        let mut names = HashSet::new();
        for (i, bot) in file.bots.into_iter().enumerate() {
            if bot.name.is_empty() || bot.name.len() > 64 {
                return Err(invalid(&format!("bots[{i}].name"), "must be 1–64 characters".into()));
            }
            if !names.insert(bot.name.clone()) {
                return Err(invalid(&format!("bots[{i}].name"), "names a bot twice".into()));
            }
            check_env_name(&bot.token_env).map_err(|m| name_error(origin, text, &format!("bots[{i}].token_env"), m))?;
            config.bots.push(BotConfig { name: bot.name, token_env: bot.token_env });
        }
        if matches!(config.transport, TransportConfig::Telegram { .. }) && config.bots.is_empty() {
            return Err(invalid(
                "transport.kind",
                "the telegram transport needs at least one [[bots]] entry (name, token_env)".into(),
            ));
        }
        if let Some(threads) = file.threads {
            if !(1..=256).contains(&threads) {
                return Err(invalid("threads", "must be 1–256".into()));
            }
            config.threads = Some(threads);
        }
        if let Some(prefix) = file.redis_prefix {
            check_redis_prefix(&prefix).map_err(|m| invalid("redis_prefix", m))?;
            config.redis_prefix = prefix;
        }
        if let Some(inbound) = &config.telegram_inbound {
            if config.bots.is_empty() {
                return Err(invalid("transport.inbound", "Telegram updates need at least one [[bots]] entry".into()));
            }
            if inbound.mode == crate::transport::telegram::InboundMode::Webhook && config.listen.is_none() {
                return Err(invalid("transport.inbound", "\"webhook\" needs the HTTP API ([http] enabled)".into()));
            }
        }
        config.groups =
            super::groups::group_policy(file.groups).map_err(|e| SettingsFileError::invalid(origin, text, e))?;
        config.strategies = file.strategies.map(resolve);
        config.rules = file.rules.map(resolve);
        config.learner = file.learner.map(resolve);
        config.experiment = file.experiment.map(resolve);
        config.learn = file.learn.unwrap_or(true);
        if let Some(dir) = file.log_dir {
            config.log_dir = resolve(dir);
        }
        if let Some(messages) = file.messages {
            config.messages = crate::compose::MessagesConfig::from_section(messages, resolve, origin, text)?;
        }
        Ok(config)
    }
}

impl TransportSection {
    /// The first key set here that only the telegram transport reads (`api_base_url` is
    /// read by Telegram updates too, with any transport).
    fn telegram_key(&self) -> Option<&'static str> {
        [
            (self.api_base_url.is_some() && self.inbound.is_none(), "api_base_url"),
            (self.per_bot_per_sec.is_some(), "per_bot_per_sec"),
            (self.per_chat_per_sec.is_some(), "per_chat_per_sec"),
            (self.per_group_per_min.is_some(), "per_group_per_min"),
        ]
        .into_iter()
        .find_map(|(set, field)| set.then_some(field))
    }
}

/// `[transport] kind = "telegram"`: the base URL, the timeout and the limits, each limit
/// at most Telegram's own (a value above it is an error naming the key, never clamped).
/// Errors are (field, message).
fn telegram_transport(t: TransportSection) -> Result<TransportConfig, (String, String)> {
    let fail = |field: &str, message: String| (format!("transport.{field}"), message);
    for (set, field, kind) in [
        (t.outbox.is_some(), "outbox", "dry-run"),
        (t.url.is_some(), "url", "webhook"),
        (t.secret_env.is_some(), "secret_env", "webhook"),
    ] {
        if set {
            return Err(fail(field, format!("is for the {kind} transport, not telegram")));
        }
    }
    let api_base_url = t.api_base_url.unwrap_or_else(|| DEFAULT_API_BASE_URL.to_string());
    if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
        return Err(fail("api_base_url", "must start with https:// (or http:// to a loopback address)".into()));
    }
    let timeout_secs = t.timeout_secs.unwrap_or(DEFAULT_TELEGRAM_TIMEOUT_SECS);
    if !(1..=60).contains(&timeout_secs) {
        return Err(fail("timeout_secs", "must be 1–60 seconds".into()));
    }
    let most = Limits::TELEGRAM;
    let above = |max: String| format!("is above Telegram's limit of {max}; it can be set lower, never higher");
    let per_bot_per_second = t.per_bot_per_sec.unwrap_or(most.per_bot_per_second);
    if per_bot_per_second > most.per_bot_per_second {
        return Err(fail("per_bot_per_sec", above(most.per_bot_per_second.to_string())));
    }
    if per_bot_per_second == 0 {
        return Err(fail("per_bot_per_sec", "must be at least 1".into()));
    }
    let per_private_chat_per_minute = match t.per_chat_per_sec {
        None => most.per_private_chat_per_minute,
        Some(rate) if !rate.is_finite() || rate <= 0.0 => {
            return Err(fail("per_chat_per_sec", "must be more than 0 (e.g. 1, or 0.5 for one every 2 s)".into()));
        }
        Some(rate) if rate > 1.0 => return Err(fail("per_chat_per_sec", above("1".into()))),
        // Kept as sends a minute, rounded down: never above what was set.
        Some(rate) => (rate * 60.0).floor() as u32,
    };
    if per_private_chat_per_minute == 0 {
        return Err(fail("per_chat_per_sec", "must be at least 1/60 (one a minute)".into()));
    }
    let per_group_per_minute = t.per_group_per_min.unwrap_or(most.per_group_per_minute);
    if per_group_per_minute > most.per_group_per_minute {
        return Err(fail("per_group_per_min", above(most.per_group_per_minute.to_string())));
    }
    if per_group_per_minute == 0 {
        return Err(fail("per_group_per_min", "must be at least 1".into()));
    }
    let limits = Limits { per_bot_per_second, per_private_chat_per_minute, per_group_per_minute };
    Ok(TransportConfig::Telegram { api_base_url, timeout_secs, limits })
}

/// The Telegram-updates keys of `[transport]`, checked: `None` when `inbound` is unset or
/// `"off"` (then the other keys must be unset too).
fn telegram_inbound_of(
    t: &TransportSection,
    origin: &str,
    text: &str,
) -> Result<Option<TelegramInboundConfig>, SettingsFileError> {
    use crate::transport::telegram::{DEFAULT_API_BASE_URL, DEFAULT_POLL_TIMEOUT_SECS, InboundMode};
    let invalid =
        |field: &str, message: String| SettingsFileError::invalid(origin, text, FieldError::new(field, message));
    let mode = match t.inbound.as_deref() {
        // With the telegram transport, updates are polled unless said otherwise.
        None if t.kind == "telegram" => Some(InboundMode::Poll),
        None | Some("off") => None,
        Some("poll") => Some(InboundMode::Poll),
        Some("webhook") => Some(InboundMode::Webhook),
        Some(_) => return Err(invalid("transport.inbound", "must be \"poll\", \"webhook\" or \"off\"".into())),
    };
    let Some(mode) = mode else {
        let set = [
            (t.webhook_secret_env.is_some(), "webhook_secret_env"),
            (t.webhook_url.is_some(), "webhook_url"),
            (t.poll_timeout_secs.is_some(), "poll_timeout_secs"),
            (t.new_user_utc_offset_minutes.is_some(), "new_user_utc_offset_minutes"),
            (t.new_user_time_zone.is_some(), "new_user_time_zone"),
        ];
        if let Some((_, field)) = set.iter().find(|(set, _)| *set) {
            return Err(invalid(&format!("transport.{field}"), "is for Telegram updates: set `inbound` too".into()));
        }
        return Ok(None);
    };
    let poll_timeout_secs = t.poll_timeout_secs.unwrap_or(DEFAULT_POLL_TIMEOUT_SECS);
    if poll_timeout_secs > 50 {
        return Err(invalid("transport.poll_timeout_secs", "must be 0–50 seconds".into()));
    }
    let offset = t.new_user_utc_offset_minutes.unwrap_or(0);
    if !crate::api::UTC_OFFSET_RANGE.contains(&offset) || offset % 15 != 0 {
        return Err(invalid(
            "transport.new_user_utc_offset_minutes",
            "must be a UTC offset in minutes (−720..=840, a multiple of 15)".into(),
        ));
    }
    let new_user_zone = match &t.new_user_time_zone {
        Some(_) if t.new_user_utc_offset_minutes.is_some() => {
            return Err(invalid(
                "transport.new_user_time_zone",
                "set either new_user_time_zone or new_user_utc_offset_minutes, not both".into(),
            ));
        }
        Some(name) => {
            name.parse::<crate::domain::Zone>().map_err(|e| invalid("transport.new_user_time_zone", e.to_string()))?
        }
        None => crate::domain::Zone::Fixed(crate::domain::UtcOffset(offset)),
    };
    let api_base_url = t.api_base_url.clone().unwrap_or_else(|| DEFAULT_API_BASE_URL.to_string());
    if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
        return Err(invalid("transport.api_base_url", "must start with https:// (or http:// to loopback)".into()));
    }
    if let Some(name) = &t.webhook_secret_env {
        check_env_name(name).map_err(|m| name_error(origin, text, "transport.webhook_secret_env", m))?;
    }
    if mode == InboundMode::Webhook {
        if t.webhook_secret_env.is_none() {
            return Err(invalid(
                "transport",
                "inbound = \"webhook\" needs `webhook_secret_env`, the name of the variable holding the secret".into(),
            ));
        }
        match &t.webhook_url {
            Some(url) if url.starts_with("https://") || url.starts_with("http://127.0.0.1") => {}
            Some(_) => return Err(invalid("transport.webhook_url", "must be an https:// URL".into())),
            None => {
                return Err(invalid(
                    "transport",
                    "inbound = \"webhook\" needs `webhook_url`, the public https:// address of the HTTP API".into(),
                ));
            }
        }
    }
    Ok(Some(TelegramInboundConfig {
        mode,
        webhook_secret_env: t.webhook_secret_env.clone(),
        webhook_url: t.webhook_url.clone(),
        poll_timeout_secs,
        api_base_url,
        new_user_zone,
    }))
}

/// A Redis key prefix: 1–64 characters, no braces (they would split a user's keys over
/// cluster slots) and no spaces.
pub fn check_redis_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['{', '}', ' ']) {
        return Err("must be 1–64 characters without braces or spaces".into());
    }
    Ok(())
}

/// An environment variable's name: `A-Z`, `0-9` and `_`, not starting with a digit. The
/// check never echoes what was written (it may be the secret itself, pasted by mistake).
fn check_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err("must be the NAME of an environment variable (A–Z, 0–9, _), e.g. GAVAT_BOT_TOKEN — not the secret itself; \
             the value is not shown"
            .into())
    }
}

/// A field error whose value is not echoed (it may be a secret).
fn name_error(origin: &str, text: &str, field: &str, message: String) -> SettingsFileError {
    let (line, _) = FieldError::new(field, "").locate(text);
    SettingsFileError::Invalid { path: origin.to_string(), line, field: field.to_string(), message }
}

impl fmt::Display for RunConfig {
    /// The configuration as `gavat config check` and `gavat run` echo it: names of
    /// variables, never their values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store:      {}", self.store)?;
        if matches!(self.store, StoreUrl::Redis(_)) {
            writeln!(f, "redis keys: {}*", self.redis_prefix)?;
        }
        match &self.transport {
            TransportConfig::DryRun { outbox } => writeln!(f, "transport:  dry-run → {}", outbox.display())?,
            TransportConfig::Webhook { url, secret_env, timeout_secs } => writeln!(
                f,
                "transport:  webhook → {} (signed with ${secret_env}, timeout {timeout_secs} s)",
                crate::store::redact_url(url)
            )?,
            TransportConfig::Telegram { api_base_url, timeout_secs, limits } => writeln!(
                f,
                "transport:  telegram → {} (timeout {timeout_secs} s; at most {}/s per bot, {}/min per private \
                 chat, {}/min per group)",
                crate::store::redact_url(api_base_url),
                limits.per_bot_per_second,
                limits.per_private_chat_per_minute,
                limits.per_group_per_minute
            )?,
        }
        for bot in &self.bots {
            writeln!(f, "bot:        {} (token from ${})", bot.name, bot.token_env)?;
        }
        if let Some(t) = &self.telegram_inbound {
            match (t.mode, &t.webhook_secret_env) {
                (crate::transport::telegram::InboundMode::Webhook, Some(env)) => writeln!(
                    f,
                    "updates:    Telegram webhook at {}/telegram/<bot> (secret from ${env})",
                    t.webhook_url.as_deref().unwrap_or_default()
                )?,
                _ => writeln!(f, "updates:    Telegram getUpdates (long poll {} s)", t.poll_timeout_secs)?,
            }
        }
        let file = |p: &Option<PathBuf>| p.as_ref().map_or_else(|| "shipped".to_string(), |p| p.display().to_string());
        writeln!(f, "strategies: {}", file(&self.strategies))?;
        writeln!(f, "rules:      {}", file(&self.rules))?;
        if self.learn {
            writeln!(f, "learner:    every 6 h of run time, settings {}", file(&self.learner))?;
        } else {
            writeln!(f, "learner:    off")?;
        }
        if let Some(e) = &self.experiment {
            writeln!(f, "experiment: {}", e.display())?;
        }
        writeln!(f, "messages:   {}", self.messages.summary())?;
        let g = &self.groups;
        writeln!(
            f,
            "groups:     {} posts a group local day, cooldown {} s, hours {} (group's time), {} posts/min, each \
             member sees at most {} group posts a local day",
            g.caps.daily_limit, g.caps.cooldown_secs, g.caps.allowed_hours, g.posts_per_minute, g.exposure_limit
        )?;
        match self.listen {
            Some(addr) => writeln!(f, "http:       {addr}")?,
            None => writeln!(f, "http:       off")?,
        }
        write!(f, "logs:       {}", self.log_dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunConfig, String> {
        RunConfig::from_toml_str(text, "gavat.toml", Some(Path::new("/etc/gavat"))).map_err(|e| e.to_string())
    }

    /// The documented example parses, with relative paths taken from the file's directory.
    #[test]
    fn a_full_file_parses() {
        let config = parse(
            r#"
store = "sqlite:data/crm.db"
strategies = "strategies.toml"
log_dir = "/var/log/gavat"
[transport]
kind = "webhook"
url = "http://127.0.0.1:9000/hook"
secret_env = "GAVAT_WEBHOOK_SECRET"
[http]
listen = "127.0.0.1:9999"
[[bots]]
name = "sales"
token_env = "GAVAT_BOT_SALES_TOKEN"
"#,
        )
        .unwrap();
        assert_eq!(config.store, StoreUrl::Sqlite("/etc/gavat/data/crm.db".into()));
        assert_eq!(config.strategies, Some("/etc/gavat/strategies.toml".into()));
        assert_eq!(config.log_dir, PathBuf::from("/var/log/gavat"));
        assert_eq!(config.listen, "127.0.0.1:9999".parse().ok());
        assert!(matches!(config.transport, TransportConfig::Webhook { timeout_secs: 10, .. }));
        assert_eq!(config.bots[0].token_env, "GAVAT_BOT_SALES_TOKEN");
    }

    /// An empty file is the defaults: SQLite `gavat.db`, dry-run, loopback API, learner on.
    #[test]
    fn an_empty_file_is_the_defaults() {
        let config = parse("").unwrap();
        assert_eq!(RunConfig { origin: None, ..config }, RunConfig::default());
    }

    /// Each mistake names the file, the line and the field.
    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            ("store = \"mysql://x\"\n", "gavat.toml:1: field store:"),
            ("[transport]\nkind = \"carrier-pigeon\"\n", "gavat.toml:2: field transport.kind:"),
            ("[transport]\nkind = \"webhook\"\n", "field transport: needs `url`"),
            ("[http]\nlisten = \"localhost\"\n", "gavat.toml:2: field http.listen:"),
            ("threads = 0\n", "gavat.toml:1: field threads:"),
            (
                "[[bots]]\nname = \"a\"\ntoken_env = \"T\"\n[[bots]]\nname = \"a\"\ntoken_env = \"U\"\n",
                "names a bot twice",
            ),
            ("colour = \"blue\"\n", "gavat.toml:1:"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    /// `kind = "telegram"`: the defaults are Telegram's limits; each limit may be set lower;
    /// one above Telegram's is an error naming its key (never a silent clamp); the
    /// transport needs a bot.
    #[test]
    fn telegram_limits_go_down_never_up() {
        let bots = "[[bots]]\nname = \"news\"\ntoken_env = \"GAVAT_BOT_NEWS_TOKEN\"\n";
        let config = parse(&format!("[transport]\nkind = \"telegram\"\n{bots}")).unwrap();
        assert_eq!(
            config.transport,
            TransportConfig::Telegram {
                api_base_url: DEFAULT_API_BASE_URL.into(),
                timeout_secs: DEFAULT_TELEGRAM_TIMEOUT_SECS,
                limits: Limits::TELEGRAM
            }
        );
        assert!(config.to_string().contains("transport:  telegram → https://api.telegram.org"), "{config}");
        let lower = parse(&format!(
            "[transport]\nkind = \"telegram\"\napi_base_url = \"http://127.0.0.1:8081\"\ntimeout_secs = 5\n\
             per_bot_per_sec = 10\nper_chat_per_sec = 0.5\nper_group_per_min = 6\n{bots}"
        ))
        .unwrap();
        let TransportConfig::Telegram { limits, timeout_secs, api_base_url } = lower.transport else {
            panic!("telegram")
        };
        assert_eq!((api_base_url.as_str(), timeout_secs), ("http://127.0.0.1:8081", 5));
        assert_eq!(limits, Limits { per_bot_per_second: 10, per_private_chat_per_minute: 30, per_group_per_minute: 6 });
        let cases = [
            (
                "per_bot_per_sec = 31",
                "gavat.toml:3: field transport.per_bot_per_sec: 31 is above Telegram's limit of 30",
            ),
            ("per_chat_per_sec = 2", "gavat.toml:3: field transport.per_chat_per_sec: 2 is above Telegram's limit"),
            ("per_group_per_min = 21", "field transport.per_group_per_min: 21 is above"),
            ("per_group_per_min = 0", "must be at least 1"),
            ("per_chat_per_sec = 0.001", "must be at least 1/60"),
            ("timeout_secs = 0", "field transport.timeout_secs"),
            ("outbox = \"o.jsonl\"", "is for the dry-run transport, not telegram"),
            ("api_base_url = \"ftp://x\"", "field transport.api_base_url"),
        ];
        for (line, expected) in cases {
            let err = parse(&format!("[transport]\nkind = \"telegram\"\n{line}\n{bots}")).unwrap_err();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let no_bot = parse("[transport]\nkind = \"telegram\"\n").unwrap_err();
        assert!(no_bot.contains("needs at least one [[bots]]"), "{no_bot}");
        let elsewhere = parse("[transport]\nkind = \"dry-run\"\nper_bot_per_sec = 5\n").unwrap_err();
        assert!(elsewhere.contains("is for the telegram transport, not dry-run"), "{elsewhere}");
    }

    /// Telegram updates: off unless `inbound` says so; webhook mode needs its secret's
    /// variable and URL; each mistake names its field.
    #[test]
    fn telegram_inbound_keys_are_checked() {
        let bots = "[[bots]]\nname = \"sales\"\ntoken_env = \"T\"\n";
        assert_eq!(parse(bots).unwrap().telegram_inbound, None);
        let poll = parse(&format!("[transport]\nkind = \"dry-run\"\ninbound = \"poll\"\n{bots}")).unwrap();
        let inbound = poll.telegram_inbound.unwrap();
        assert_eq!((inbound.poll_timeout_secs, inbound.api_base_url.as_str()), (25, "https://api.telegram.org"));
        let cases = [
            ("inbound = \"carrier\"\n", "field transport.inbound"),
            ("inbound = \"webhook\"\n", "needs `webhook_secret_env`"),
            ("inbound = \"webhook\"\nwebhook_secret_env = \"S\"\n", "needs `webhook_url`"),
            ("inbound = \"poll\"\npoll_timeout_secs = 60\n", "field transport.poll_timeout_secs"),
            ("poll_timeout_secs = 5\n", "set `inbound` too"),
            ("inbound = \"poll\"\nwebhook_secret_env = \"abc:secret\"\n", "field transport.webhook_secret_env"),
        ];
        for (keys, expected) in cases {
            let err = parse(&format!("[transport]\nkind = \"dry-run\"\n{keys}{bots}")).unwrap_err();
            assert!(err.contains(expected), "{keys:?}: {err}");
            assert!(!err.contains("abc:secret"), "{err}");
        }
        let err = parse("[transport]\nkind = \"dry-run\"\ninbound = \"poll\"\n").unwrap_err();
        assert!(err.contains("at least one [[bots]]"), "{err}");
    }

    /// A user created by `/start` gets the configured IANA zone, the configured fixed offset,
    /// or UTC; an unknown zone, or both keys at once, is refused naming the field.
    #[test]
    fn a_new_users_zone_is_configured() {
        use crate::domain::{UtcOffset, Zone};
        let bots = "[[bots]]\nname = \"sales\"\ntoken_env = \"T\"\n";
        let zone_of = |keys: &str| {
            parse(&format!("[transport]\nkind = \"dry-run\"\ninbound = \"poll\"\n{keys}{bots}"))
                .map(|c| c.telegram_inbound.expect("inbound configured").new_user_zone)
        };
        assert_eq!(zone_of(""), Ok(Zone::UTC));
        assert_eq!(zone_of("new_user_utc_offset_minutes = 330\n"), Ok(Zone::Fixed(UtcOffset(330))));
        assert_eq!(zone_of("new_user_time_zone = \"Europe/Berlin\"\n"), Ok("Europe/Berlin".parse().expect("known")));
        let err = zone_of("new_user_time_zone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(err.contains("field transport.new_user_time_zone") && err.contains("Mars/Olympus"), "{err}");
        let both = "new_user_time_zone = \"Asia/Kolkata\"\nnew_user_utc_offset_minutes = 330\n";
        assert!(zone_of(both).unwrap_err().contains("not both"));
    }

    /// A token pasted where a variable name belongs is refused without being echoed.
    #[test]
    fn a_pasted_token_is_never_echoed() {
        let token = "123456:AAF-secret-token";
        let err = parse(&format!("[[bots]]\nname = \"sales\"\ntoken_env = \"{token}\"\n")).unwrap_err();
        assert!(err.contains("gavat.toml:3: field bots[0].token_env"), "{err}");
        assert!(!err.contains(token) && !err.contains("AAF"), "{err}");
    }
}
