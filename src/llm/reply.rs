//! The model's reply, strictly: one JSON object `{"segments": [{"segment", "confidence"}],
//! "reason"}` and nothing else — no prose around it, no extra fields, known segment names
//! only, each once, confidences in [0, 1], a short reason. Anything else is rejected with
//! the reason it was, and the caller falls back to the rules.

use serde::{Deserialize, Serialize};

use crate::domain::Segment;

use super::client::one_line;

/// Longest reason accepted, characters.
pub const MAX_REASON_CHARS: usize = 300;

/// Why a reply was not accepted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReplyError {
    /// Not a JSON object of the expected shape (prose, a missing or extra field, a wrong type).
    #[error("not the expected JSON: {0}")]
    Malformed(String),
    /// A segment name we do not have.
    #[error("unknown segment {0:?}")]
    UnknownSegment(String),
    /// A confidence outside [0, 1] (or not finite).
    #[error("confidence {value} for {segment} is outside [0, 1]")]
    ConfidenceOutOfRange {
        /// The segment.
        segment: String,
        /// The value given.
        value: f64,
    },
    /// A segment listed twice.
    #[error("segment {0} listed twice")]
    Duplicate(String),
    /// No segment at all.
    #[error("no segment given")]
    Empty,
    /// A reason too long to be a reason.
    #[error("reason longer than {MAX_REASON_CHARS} characters")]
    ReasonTooLong,
}

impl ReplyError {
    /// A short label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ReplyError::Malformed(_) => "malformed_json",
            ReplyError::UnknownSegment(_) => "unknown_segment",
            ReplyError::ConfidenceOutOfRange { .. } => "confidence_out_of_range",
            ReplyError::Duplicate(_) => "duplicate_segment",
            ReplyError::Empty => "no_segment",
            ReplyError::ReasonTooLong => "reason_too_long",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReply {
    segments: Vec<RawAssignment>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssignment {
    segment: String,
    confidence: f64,
}

/// A validated reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Segments with confidence, highest first.
    pub segments: Vec<(Segment, f32)>,
    /// The model's reason, on one line, without control characters.
    pub reason: String,
}

impl Verdict {
    /// Validates a reply's text.
    pub fn parse(text: &str) -> Result<Verdict, ReplyError> {
        let raw: RawReply = serde_json::from_str(text.trim()).map_err(|e| ReplyError::Malformed(e.to_string()))?;
        if raw.segments.is_empty() {
            return Err(ReplyError::Empty);
        }
        if raw.reason.chars().count() > MAX_REASON_CHARS {
            return Err(ReplyError::ReasonTooLong);
        }
        let mut segments: Vec<(Segment, f32)> = Vec::with_capacity(raw.segments.len());
        for a in raw.segments {
            // Exact names only: a model that cannot spell the schema is not trusted with it.
            let Some(segment) = Segment::ALL.into_iter().find(|s| s.as_str() == a.segment) else {
                return Err(ReplyError::UnknownSegment(a.segment));
            };
            if !(a.confidence.is_finite() && (0.0..=1.0).contains(&a.confidence)) {
                return Err(ReplyError::ConfidenceOutOfRange { segment: a.segment, value: a.confidence });
            }
            if segments.iter().any(|(s, _)| *s == segment) {
                return Err(ReplyError::Duplicate(a.segment));
            }
            segments.push((segment, a.confidence as f32));
        }
        segments.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.index().cmp(&b.0.index())));
        Ok(Verdict { segments, reason: one_line(&raw.reason, MAX_REASON_CHARS) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sound_reply_is_accepted_and_sorted() {
        let v = Verdict::parse(
            r#" {"segments": [{"segment": "WARM_LEAD", "confidence": 0.55}, {"segment": "NIGHT_OWL", "confidence": 0.8}],
                "reason": "answers some;\nactive at night"} "#,
        )
        .unwrap();
        assert_eq!(v.segments, vec![(Segment::NightOwl, 0.8), (Segment::WarmLead, 0.55)]);
        assert_eq!(v.reason, "answers some; active at night");
    }

    #[test]
    fn everything_else_is_rejected_with_its_reason() {
        let cases = [
            ("Sure! Here is the JSON: {}", "malformed_json"),
            ("```json\n{\"segments\": [], \"reason\": \"\"}\n```", "malformed_json"),
            (r#"{"segments": [{"segment": "HOT_LEAD", "confidence": 0.9}]}"#, "malformed_json"),
            (
                r#"{"segments": [{"segment": "HOT_LEAD", "confidence": 0.9}], "reason": "x", "daily_limit": 50}"#,
                "malformed_json",
            ),
            (r#"{"segments": [{"segment": "VIP", "confidence": 0.9}], "reason": "x"}"#, "unknown_segment"),
            (r#"{"segments": [{"segment": "hot_lead", "confidence": 0.9}], "reason": "x"}"#, "unknown_segment"),
            (r#"{"segments": [{"segment": "HOT_LEAD", "confidence": 1.5}], "reason": "x"}"#, "confidence_out_of_range"),
            (
                r#"{"segments": [{"segment": "HOT_LEAD", "confidence": -0.1}], "reason": "x"}"#,
                "confidence_out_of_range",
            ),
            (r#"{"segments": [{"segment": "HOT_LEAD", "confidence": "high"}], "reason": "x"}"#, "malformed_json"),
            (
                r#"{"segments": [{"segment": "HOT_LEAD", "confidence": 0.9}, {"segment": "HOT_LEAD", "confidence": 0.8}], "reason": "x"}"#,
                "duplicate_segment",
            ),
            (r#"{"segments": [], "reason": "x"}"#, "no_segment"),
        ];
        for (text, label) in cases {
            assert_eq!(Verdict::parse(text).unwrap_err().label(), label, "{text}");
        }
        let long = format!(
            r#"{{"segments": [{{"segment": "HOT_LEAD", "confidence": 0.9}}], "reason": "{}"}}"#,
            "x".repeat(301)
        );
        assert_eq!(Verdict::parse(&long).unwrap_err(), ReplyError::ReasonTooLong);
    }
}
