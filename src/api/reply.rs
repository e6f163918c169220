//! [`Failure`]: every error answer of the API, as one JSON shape —
//! `{"error": code, "message": …, "field": …, "hint": …}` (`field` and `hint` only when
//! there is one) — with its status and headers. A handler returns `Result<HttpResponse,
//! Failure>`; nothing in a failure ever repeats a secret the client sent.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    hint: Option<String>,
    /// Seconds for a `Retry-After` header (retryable answers).
    retry_after: Option<u32>,
}

/// The JSON body of a [`Failure`].
#[derive(Serialize)]
struct FailureBody<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
        Failure { status, code, message: message.into(), field: None, hint: None, retry_after: None }
    }

    /// 400: the request is malformed as a whole (not JSON, not an object).
    pub(super) fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400: one field (or header, or path segment) is wrong; the answer names it.
    pub(super) fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Failure {
        let field = field.into();
        Failure { field: Some(field), ..Failure::new(StatusCode::BAD_REQUEST, "invalid_field", message) }
    }

    /// 401: no token, or not the right one (never says which part was wrong).
    pub(super) fn unauthorized(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: no token is configured, so the `/v1` API is off.
    pub(super) fn api_off() -> Failure {
        Failure {
            hint: Some("start gavat with GAVAT_API_TOKEN set to enable the /v1 API".into()),
            ..Failure::new(StatusCode::FORBIDDEN, "api_disabled", "the /v1 API is off: no API token is configured")
        }
    }

    /// 403: the `Host` header names a host this API does not answer to (DNS rebinding).
    pub(super) fn foreign_host(host: &str) -> Failure {
        let shown: String = host.chars().filter(|c| !c.is_control()).take(100).collect();
        Failure {
            hint: Some("add the name to [http] allowed_hosts if a proxy forwards it".into()),
            ..Failure::new(StatusCode::FORBIDDEN, "foreign_host", format!("this API does not answer to Host {shown:?}"))
        }
    }

    /// 404 with a code and a hint at what to do.
    pub(super) fn not_found(code: &'static str, message: impl Into<String>, hint: Option<String>) -> Failure {
        Failure { hint, ..Failure::new(StatusCode::NOT_FOUND, code, message) }
    }

    /// 405.
    pub(super) fn method_not_allowed(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
    }

    /// 409: the same idempotency key is still being handled.
    pub(super) fn conflict(code: &'static str, message: impl Into<String>) -> Failure {
        Failure { retry_after: Some(1), ..Failure::new(StatusCode::CONFLICT, code, message) }
    }

    /// 413: the body is larger than `limit` bytes.
    pub(super) fn too_large(limit: usize) -> Failure {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415: not `application/json`.
    pub(super) fn unsupported_media_type() -> Failure {
        Failure {
            field: Some("Content-Type".into()),
            ..Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be sent as Content-Type: application/json",
            )
        }
    }

    /// 422: understood, but in conflict with what was sent before under the same key.
    pub(super) fn unprocessable(code: &'static str, field: &str, message: impl Into<String>) -> Failure {
        Failure { field: Some(field.into()), ..Failure::new(StatusCode::UNPROCESSABLE_ENTITY, code, message) }
    }

    /// The field the failure names, if any.
    #[cfg(test)]
    pub(super) fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// 503: retryable; the answer carries `Retry-After`.
    pub(super) fn unavailable(code: &'static str, message: impl Into<String>) -> Failure {
        Failure { retry_after: Some(1), ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, code, message) }
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"gavat\"")));
        }
        response.json(FailureBody {
            error: self.code,
            message: &self.message,
            field: self.field.as_deref(),
            hint: self.hint.as_deref(),
        })
    }
}
