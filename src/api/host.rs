//! Which `Host` a request may name: the API answers only to loopback names and addresses,
//! the address it is bound to, and the names configured in `[http] allowed_hosts`. Anything
//! else is a 403 before any handler runs, so that a web page on `evil.example` whose name
//! an attacker re-points at 127.0.0.1 (DNS rebinding) cannot reach the API from a browser.
//!
//! The port is not compared (a proxy may forward from another); an address literal is
//! allowed when the API is bound to the unspecified address, since rebinding needs a
//! name. A request without `Host` (HTTP/1.0) passes: browsers always send one.

use std::net::{IpAddr, SocketAddr};

/// The hosts a request may name.
#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts {
    bound: IpAddr,
    names: Vec<String>,
}

impl AllowedHosts {
    /// Loopback, `bound`'s address, and `names` (any case, without a port).
    pub(crate) fn new(bound: SocketAddr, names: &[String]) -> AllowedHosts {
        let names = names.iter().map(|n| normalise(n)).collect();
        AllowedHosts { bound: bound.ip(), names }
    }

    /// The host `header` names, if it is refused (`None`: allowed).
    pub(crate) fn refused<'a>(&self, header: Option<&'a [u8]>) -> Option<std::borrow::Cow<'a, str>> {
        let raw = header?;
        let Ok(value) = std::str::from_utf8(raw) else {
            return Some(String::from_utf8_lossy(raw));
        };
        let host = normalise(value);
        let allowed = host == "localhost"
            || host.ends_with(".localhost")
            || match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                Ok(ip) => ip.is_loopback() || ip == self.bound || self.bound.is_unspecified(),
                Err(_) => self.names.contains(&host),
            };
        (!allowed).then_some(std::borrow::Cow::Borrowed(value))
    }
}

/// Lower case, without a port or a trailing dot.
fn normalise(host: &str) -> String {
    let host = host.trim();
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => name,
            _ => host,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback names and addresses, the bound address and configured names pass, with any
    /// port; other names are refused; an unspecified bind lets address literals through.
    #[test]
    fn only_loopback_the_bound_address_and_configured_names_pass() {
        let hosts = AllowedHosts::new("192.0.2.7:8787".parse().unwrap(), &["CRM.internal".into()]);
        let refused = |h: &str| hosts.refused(Some(h.as_bytes())).is_some();
        for ok in [
            "127.0.0.1:8787",
            "localhost",
            "LOCALHOST.:1",
            "[::1]:9",
            "192.0.2.7:80",
            "crm.internal:443",
            "a.localhost",
        ] {
            assert!(!refused(ok), "{ok}");
        }
        for bad in ["evil.example:8787", "evil.example", "192.0.2.8", "crm.internal.evil.example", "localhost.evil", ""]
        {
            assert!(refused(bad), "{bad}");
        }
        assert!(hosts.refused(Some(b"\xff")).is_some());
        assert!(hosts.refused(None).is_none());
        let any = AllowedHosts::new("0.0.0.0:8787".parse().unwrap(), &[]);
        assert!(any.refused(Some(b"203.0.113.5:8787")).is_none());
        assert!(any.refused(Some(b"evil.example:8787")).is_some());
    }
}
