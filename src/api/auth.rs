//! Who may use the `/v1` API: a client presenting `Authorization: Bearer <token>` with the
//! token the process was started with (`GAVAT_API_TOKEN`). With no token configured the
//! `/v1` API is off (403). The token is kept only as its SHA-256 digest and compared in
//! constant time (digests of equal length, every byte looked at), and it is never logged,
//! echoed or shown by `Debug`.

use actix_web::HttpRequest;
use actix_web::http::header;
use sha2::{Digest, Sha256};

use super::ApiError;
use super::reply::Failure;

/// The shortest token accepted: a bearer token guards every write, so it must not be
/// guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured token, as its digest.
pub struct WriteToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for WriteToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteToken(<redacted>)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl WriteToken {
    /// The token, if it is long enough and printable ASCII without spaces (what a header
    /// can carry).
    pub fn new(token: &str) -> Result<WriteToken, ApiError> {
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::WeakToken { min_len: MIN_TOKEN_LEN });
        }
        Ok(WriteToken { digest: digest(token.as_bytes()) })
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let difference = self.digest.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// Lets the request through if it carries the configured token.
pub(super) fn authorize(req: &HttpRequest, token: Option<&WriteToken>) -> Result<(), Failure> {
    let Some(token) = token else {
        return Err(Failure::api_off());
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(Failure::unauthorized("missing `Authorization: Bearer <token>`"));
    };
    let presented = value
        .as_bytes()
        .split_at_checked(7)
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"Bearer "))
        .map(|(_, rest)| rest.trim_ascii());
    match presented {
        Some(presented) if token.matches(presented) => Ok(()),
        _ => Err(Failure::unauthorized("the bearer token is not valid")),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const TOKEN: &str = "correct-horse-battery-staple";

    /// Only the exact token passes, with any case of the scheme; short tokens are refused
    /// at start; `Debug` never shows the token.
    #[test]
    fn only_the_exact_token_passes() -> Result<(), ApiError> {
        let token = WriteToken::new(TOKEN)?;
        let with = |value: &str| TestRequest::default().insert_header((header::AUTHORIZATION, value)).to_http_request();
        assert!(authorize(&with(&format!("Bearer {TOKEN}")), Some(&token)).is_ok());
        assert!(authorize(&with(&format!("bearer  {TOKEN} ")), Some(&token)).is_ok());
        for wrong in [format!("Bearer {TOKEN}x"), format!("Basic {TOKEN}"), "Bearer".into(), TOKEN.into()] {
            assert!(authorize(&with(&wrong), Some(&token)).is_err(), "{wrong}");
        }
        assert!(authorize(&TestRequest::default().to_http_request(), Some(&token)).is_err());
        assert!(WriteToken::new("short").is_err());
        assert!(WriteToken::new("has a space in it, long enough").is_err());
        assert!(!format!("{token:?}").contains(TOKEN));
        Ok(())
    }
}
