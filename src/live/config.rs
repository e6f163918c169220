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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    listen: Option<String>,
    enabled: Option<bool>,
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
    /// Where the run logs go.
    pub log_dir: PathBuf,
    /// Shard threads (default: the machine's cores).
    pub threads: Option<usize>,
    /// The prefix of every Redis key (several deployments can share one server).
    pub redis_prefix: String,
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
            log_dir: PathBuf::from("logs"),
            threads: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_string(),
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
                    TransportConfig::DryRun { outbox: resolve(t.outbox.unwrap_or_else(|| DEFAULT_OUTBOX.into())) }
                }
                "webhook" => {
                    if t.outbox.is_some() {
                        return Err(invalid("transport.outbox", "is for the dry-run transport, not webhook".into()));
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
                _ => {
                    return Err(invalid(
                        "transport.kind",
                        "is not a transport; use \"dry-run\" or \"webhook\" (Telegram comes with its own issue)".into(),
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
        Ok(config)
    }
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
        }
        for bot in &self.bots {
            writeln!(f, "bot:        {} (token from ${})", bot.name, bot.token_env)?;
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

    /// A token pasted where a variable name belongs is refused without being echoed.
    #[test]
    fn a_pasted_token_is_never_echoed() {
        let token = "123456:AAF-secret-token";
        let err = parse(&format!("[[bots]]\nname = \"sales\"\ntoken_env = \"{token}\"\n")).unwrap_err();
        assert!(err.contains("gavat.toml:3: field bots[0].token_env"), "{err}");
        assert!(!err.contains(token) && !err.contains("AAF"), "{err}");
    }
}
