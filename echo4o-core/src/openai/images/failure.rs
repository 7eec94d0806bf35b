//! Why an images request failed, classified the way a synthesis job must act on it.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Why a request failed, as a synthesis job must act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The safety system refused the prompt or a reference (`moderation_blocked`): permanent for
    /// this request; change the prompt or drop it.
    Refused,
    /// The account is out of credit or over its spend limit (`insufficient_quota`): stop the job.
    Quota,
    /// 401/403: a wrong or missing key, or a model the organisation may not use: stop the job.
    Unauthorized,
    /// Rate limits, overloads, connection errors or a timeout, still failing after the retries:
    /// worth trying again later (a timed-out request may have been billed).
    Retryable,
    /// Any other 4xx or an unreadable reply: this request will not succeed as it is.
    Permanent,
}

impl FailureKind {
    /// Whether the whole job should stop.
    pub fn stops_job(self) -> bool {
        matches!(self, FailureKind::Quota | FailureKind::Unauthorized)
    }
}

/// A failed images request: its class, and everything the server said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {kind:?}: {message}{}", body.as_deref().map(|b| format!(" (body: {})", b.chars().take(500).collect::<String>())).unwrap_or_default())]
pub struct ImagesError {
    /// The class.
    pub kind: FailureKind,
    /// The URL requested.
    pub url: String,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
    /// The raw response body.
    pub body: Option<String>,
    /// `x-request-id`, when the server sent one.
    pub request_id: Option<String>,
    /// Requests sent, retries included.
    pub attempts: u32,
}

impl From<ImagesError> for Error {
    fn from(e: ImagesError) -> Self {
        Error::Http {
            url: e.url,
            status: e.status,
            message: format!("{:?}: {}", e.kind, e.message),
            body: e.body,
        }
    }
}

/// Classifies a non-success reply from its status and body.
///
/// ```
/// use echo4o_core::openai::images::{FailureKind, classify};
///
/// let refusal = r#"{"error":{"code":"moderation_blocked","message":"rejected by the safety system"}}"#;
/// assert_eq!(classify(400, refusal), FailureKind::Refused);
/// assert_eq!(classify(429, r#"{"error":{"type":"insufficient_quota"}}"#), FailureKind::Quota);
/// assert_eq!(classify(429, r#"{"error":{"code":"rate_limit_exceeded"}}"#), FailureKind::Retryable);
/// assert_eq!(classify(400, r#"{"error":"bad size"}"#), FailureKind::Permanent);
/// ```
pub fn classify(status: u16, body: &str) -> FailureKind {
    let quota = [
        "insufficient_quota",
        "credit_balance_exhausted",
        "spend_limit_exceeded",
        "billing_hard_limit_reached",
    ];
    if quota.iter().any(|q| body.contains(q)) {
        return FailureKind::Quota;
    }
    let refusal = [
        "moderation_blocked",
        "content_policy_violation",
        "safety_violations",
        "rejected by the safety system",
    ];
    if refusal.iter().any(|r| body.contains(r)) {
        return FailureKind::Refused;
    }
    match status {
        401 | 403 => FailureKind::Unauthorized,
        408 | 409 | 429 | 500..=599 => FailureKind::Retryable,
        _ => FailureKind::Permanent,
    }
}

pub(crate) fn failure(
    url: &str,
    kind: FailureKind,
    status: Option<u16>,
    message: String,
    body: Option<String>,
) -> ImagesError {
    ImagesError {
        kind,
        url: url.to_string(),
        status,
        message,
        body,
        request_id: None,
        attempts: 0,
    }
}
