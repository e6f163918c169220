//! Where a store lives, as the command line and `gavat.toml` spell it: `sqlite:PATH`, a bare
//! path (SQLite, as the management commands have always taken), or `redis://HOST:PORT/DB`.
//! A Redis URL's password is never shown: [`StoreUrl`]'s `Display` redacts it.

use std::fmt;
use std::path::PathBuf;

/// A parsed store location.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file (created when missing by commands that write).
    Sqlite(PathBuf),
    /// A Redis server (or a cluster node), as the `redis` crate takes it.
    Redis(String),
}

/// Why a store location could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// Nothing was given.
    #[error("the store is empty; give `sqlite:PATH`, a file path, or `redis://HOST:PORT/DB`")]
    Empty,
    /// A scheme gavat does not speak.
    #[error("unknown store scheme `{0}:`; give `sqlite:PATH`, a file path, or `redis://HOST:PORT/DB`")]
    Scheme(String),
    /// `sqlite:` without a path.
    #[error("`sqlite:` needs a file path after it, e.g. `sqlite:gavat.db`")]
    NoPath,
    /// A Redis URL without a host, or with a database that is not a number.
    #[error("{0}")]
    Redis(String),
}

impl StoreUrl {
    /// Parses what a user wrote.
    pub fn parse(text: &str) -> Result<StoreUrl, StoreUrlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StoreUrlError::Empty);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(StoreUrlError::NoPath);
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("redis://") {
            let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let (host, db) = host_part.split_once('/').unwrap_or((host_part, ""));
            if host.is_empty() {
                return Err(StoreUrlError::Redis("a Redis URL needs a host: redis://127.0.0.1:6379/0".into()));
            }
            if !db.is_empty() && db.parse::<u32>().is_err() {
                return Err(StoreUrlError::Redis(format!(
                    "the Redis database must be a number, as in redis://{host}/0; found `{db}`"
                )));
            }
            return Ok(StoreUrl::Redis(text.to_string()));
        }
        // A Windows drive letter aside, `word:` before any slash is a scheme.
        if let Some((scheme, _)) = text.split_once(':')
            && !scheme.contains('/')
            && scheme.len() > 1
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        {
            return Err(StoreUrlError::Scheme(scheme.to_string()));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(text)))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Redis(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// `scheme://user:secret@host/…` with the secret replaced by `***` (a URL without one is
/// returned as it is).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_string() };
    let user = userinfo.split_once(':').map_or("", |(u, _)| u);
    format!("{scheme}://{user}:***@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling the docs promise, and each refusal names what to write instead.
    #[test]
    fn parses_the_documented_spellings() {
        assert_eq!(StoreUrl::parse("sqlite:gavat.db"), Ok(StoreUrl::Sqlite("gavat.db".into())));
        assert_eq!(StoreUrl::parse("sqlite:///tmp/x.db"), Ok(StoreUrl::Sqlite("/tmp/x.db".into())));
        assert_eq!(StoreUrl::parse("demo.db"), Ok(StoreUrl::Sqlite("demo.db".into())));
        assert_eq!(StoreUrl::parse("./a:b.db"), Ok(StoreUrl::Sqlite("./a:b.db".into())));
        assert_eq!(StoreUrl::parse("redis://127.0.0.1:6379/2"), Ok(StoreUrl::Redis("redis://127.0.0.1:6379/2".into())));
        assert_eq!(StoreUrl::parse(""), Err(StoreUrlError::Empty));
        assert_eq!(StoreUrl::parse("sqlite:"), Err(StoreUrlError::NoPath));
        assert_eq!(StoreUrl::parse("postgres://x/y"), Err(StoreUrlError::Scheme("postgres".into())));
        assert!(matches!(StoreUrl::parse("redis://h:1/zero"), Err(StoreUrlError::Redis(_))));
        assert!(matches!(StoreUrl::parse("redis:///0"), Err(StoreUrlError::Redis(_))));
    }

    /// A password in a Redis URL never reaches a message.
    #[test]
    fn display_redacts_the_password() {
        let url = StoreUrl::parse("redis://gavat:s3cret@127.0.0.1:6379/0").unwrap();
        assert_eq!(url.to_string(), "redis://gavat:***@127.0.0.1:6379/0");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
