//! Cross-site request forgery: a page on another site must not make a browser that can
//! reach the dashboard press its buttons. Two checks guard every write, both before the
//! API token is even looked at:
//!
//! 1. **Same origin.** A browser names the page that sends a form: `Sec-Fetch-Site` must be
//!    `same-origin` (or `none`: typed by the user) when present, and `Origin`, when present,
//!    must name the host the request was sent to (`Host`). A foreign origin is refused.
//! 2. **A form token** ([`FormToken`]): every form carries a random value drawn when the
//!    process started; another site cannot read it (the same-origin policy), so it cannot
//!    forge a form that carries it. It is compared in constant time.
//!
//! The `Host` header itself is checked for every request by the API's Host allow-list
//! (DNS rebinding), so "same origin" means one of the names the dashboard answers to.

use actix_web::HttpRequest;
use actix_web::http::header;

/// The random value every dashboard form carries.
pub struct FormToken {
    hex: String,
}

impl std::fmt::Debug for FormToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormToken(<redacted>)")
    }
}

/// Why a write was refused before its token was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    /// The browser says another site sent it.
    #[error("the form was sent from another site ({0}); writes are accepted from the dashboard's own pages only")]
    ForeignOrigin(String),
    /// The form token is missing or wrong (a form from an earlier run of the process, or a
    /// forged one).
    #[error("the form is stale or forged: reload the page and try again")]
    BadFormToken,
}

impl FormToken {
    /// 32 random bytes from the operating system.
    pub fn generate() -> std::io::Result<FormToken> {
        use std::io::Read as _;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(FormToken { hex: bytes.iter().map(|b| format!("{b:02x}")).collect() })
    }

    /// The value to put in a form's hidden `csrf` field.
    pub fn value(&self) -> &str {
        &self.hex
    }

    /// Checks a write: same origin, then the form token `presented`.
    pub fn check(&self, req: &HttpRequest, presented: &str) -> Result<(), CrossSite> {
        same_origin(req)?;
        let (a, b) = (self.hex.as_bytes(), presented.as_bytes());
        let differ = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
        if differ { Err(CrossSite::BadFormToken) } else { Ok(()) }
    }
}

/// Refuses a request a browser says came from another site.
fn same_origin(req: &HttpRequest) -> Result<(), CrossSite> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = String::from_utf8_lossy(site.as_bytes()).to_ascii_lowercase();
        if site != "same-origin" && site != "none" {
            return Err(CrossSite::ForeignOrigin(format!("Sec-Fetch-Site: {site}")));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let host = headers.get(header::HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).to_ascii_lowercase());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .map(|rest| rest.trim_end_matches('/').to_ascii_lowercase());
    match (origin_host, host) {
        (Some(o), Some(h)) if o == h => Ok(()),
        _ => Err(CrossSite::ForeignOrigin(format!("Origin: {}", origin.chars().take(100).collect::<String>()))),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    /// The page's own form passes; another origin, another site's fetch, or a wrong or
    /// missing token does not.
    #[test]
    fn only_the_dashboards_own_forms_pass() -> std::io::Result<()> {
        let token = FormToken::generate()?;
        let own = TestRequest::post()
            .insert_header((header::HOST, "127.0.0.1:8787"))
            .insert_header((header::ORIGIN, "http://127.0.0.1:8787"))
            .insert_header(("sec-fetch-site", "same-origin"))
            .to_http_request();
        assert_eq!(token.check(&own, token.value()), Ok(()));
        assert_eq!(token.check(&own, "0000"), Err(CrossSite::BadFormToken));
        assert_eq!(token.check(&own, ""), Err(CrossSite::BadFormToken));
        let foreign = TestRequest::post()
            .insert_header((header::HOST, "127.0.0.1:8787"))
            .insert_header((header::ORIGIN, "http://evil.example"))
            .to_http_request();
        assert!(matches!(token.check(&foreign, token.value()), Err(CrossSite::ForeignOrigin(_))));
        let cross = TestRequest::post()
            .insert_header((header::HOST, "127.0.0.1:8787"))
            .insert_header(("sec-fetch-site", "cross-site"))
            .to_http_request();
        assert!(matches!(token.check(&cross, token.value()), Err(CrossSite::ForeignOrigin(_))));
        // A client that is not a browser (curl) sends neither header: the form token decides.
        let plain = TestRequest::post().insert_header((header::HOST, "127.0.0.1:8787")).to_http_request();
        assert_eq!(token.check(&plain, token.value()), Ok(()));
        assert_ne!(FormToken::generate()?.value(), token.value());
        Ok(())
    }
}
