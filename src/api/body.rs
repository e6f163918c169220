//! Request bodies: read with a size limit, parsed as strict JSON. A body must be sent as
//! `application/json`, be at most [`BODY_LIMIT`] bytes (else 413, checked on
//! `Content-Length` before anything is read, and again while reading), and be exactly one
//! JSON object whose fields the target type knows (`deny_unknown_fields`). A 400 names the
//! field at fault — unknown, of the wrong type, or out of range.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::reply::Failure;

/// The largest body accepted, bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How much of a body too large is read and dropped before the 413 goes out: a client that
/// is still writing then reads the answer instead of a reset connection. A larger body is
/// not read at all.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads the body of `req` (at most `limit` bytes) and parses it as a `T`.
pub(super) async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, Failure> {
    if !is_json(req) {
        return Err(Failure::unsupported_media_type());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        if declared.is_some_and(|n| n <= DRAIN_LIMIT as u64) {
            drain(&mut payload, 0).await;
        }
        return Err(Failure::too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.map_or(1_024, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Failure::bad_request(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            drain(&mut payload, body.len() + chunk.len()).await;
            return Err(Failure::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    parse_strict(&body)
}

/// Reads and drops the rest of a body, up to [`DRAIN_LIMIT`] bytes in all (`read` so far).
async fn drain(payload: &mut web::Payload, mut read: usize) {
    while read <= DRAIN_LIMIT {
        match payload.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            Some(Err(_)) | None => return,
        }
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parses `body` as one JSON object of type `T`, naming the field at fault on error.
pub(super) fn parse_strict<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(Failure::bad_request("the body is empty: expected a JSON object")),
        Some(b'{') => {}
        Some(_) => return Err(Failure::bad_request("the body must be a JSON object")),
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                Failure::bad_field(path.clone(), format!("field `{path}`: {inner}"))
            }
            // A field missing, repeated or unknown is reported at the object: its name is in
            // serde's message, between backticks.
            serde_json::error::Category::Data => match named_field(&inner.to_string()) {
                Some(field) => Failure::bad_field(field.clone(), format!("field `{field}`: {inner}")),
                None => Failure::bad_request(format!("the body does not fit: {inner}")),
            },
            // Inside a field: bytes that are not UTF-8 are that field's fault, and so is a
            // value of the wrong kind for an enum (an array where a name was expected), which
            // serde_json reports as a syntax error.
            _ if path != "." && std::str::from_utf8(body).is_err() => {
                Failure::bad_field(path.clone(), format!("field `{path}`: not valid UTF-8"))
            }
            _ if path != "." && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => {
                Failure::bad_field(path.clone(), format!("field `{path}`: not a value of the expected type"))
            }
            _ => Failure::bad_request(format!("the body is not valid JSON: {inner}")),
        }
    })?;
    de.end().map_err(|e| Failure::bad_request(format!("the body is not one JSON object: {e}")))?;
    Ok(value)
}

/// The field a serde message about the whole object names (`duplicate field `user``,
/// `missing field `kind``, `unknown field `x``).
fn named_field(message: &str) -> Option<String> {
    let rest = ["duplicate field `", "missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))?;
    rest.split_once('`').map(|(name, _)| name.to_owned()).filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use actix_web::body::MessageBody;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only parsed")]
    struct Probe {
        user: Option<u64>,
        kind: Option<String>,
    }

    /// The answer's status and JSON body.
    fn answer(failure: Failure) -> (u16, serde_json::Value) {
        let response = failure.error_response();
        let status = response.status().as_u16();
        let bytes = response.into_body().try_into_bytes().unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// Unknown fields and fields of the wrong type are named; non-objects, broken JSON and
    /// trailing data are refused without a field.
    #[test]
    fn names_the_field_at_fault() {
        let cases: [(&str, Option<&str>); 9] = [
            (r#"{"user": 1, "bogus": 2}"#, Some("bogus")),
            (r#"{"user": 1, "user": 2}"#, Some("user")),
            (r#"{"kind": ["a"]}"#, Some("kind")),
            (r#"{"user": "x"}"#, Some("user")),
            (r#"{"user": -1}"#, Some("user")),
            (r#"{"kind": 3}"#, Some("kind")),
            (r#"[1, "a"]"#, None),
            (r#"{"user": 1"#, None),
            (r#"{"user": 1} {}"#, None),
        ];
        for (body, field) in cases {
            let failure = match parse_strict::<Probe>(body.as_bytes()) {
                Ok(parsed) => panic!("{body} parsed as {parsed:?}"),
                Err(f) => f,
            };
            let (status, json) = answer(failure);
            assert_eq!(status, 400, "{body}");
            assert_eq!(json.get("field").and_then(|f| f.as_str()), field, "{body}: {json}");
        }
        assert!(parse_strict::<Probe>(br#" {"user": 7, "kind": null} "#).is_ok());
    }
}
