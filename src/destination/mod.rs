//! The Criteo destination: an HTTP client with token caching, retries and pacing; the
//! audience lifecycle; and delivery of a plan in batches.

pub mod audience;
pub mod body;
pub mod client;
pub mod delivery;
pub mod pacing;
pub mod retry;

use std::fmt;

pub use client::CriteoClient;

/// A Criteo error as the API reported it. Never carries identifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApiProblem {
    /// HTTP status, absent for network failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Our own description when there was no API error body (network, timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl fmt::Display for ApiProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(status) = self.status {
            parts.push(format!("HTTP {status}"));
        }
        if let Some(code) = &self.code {
            parts.push(format!("code `{code}`"));
        }
        if let Some(title) = &self.title {
            parts.push(title.clone());
        }
        if let Some(detail) = &self.detail {
            parts.push(detail.clone());
        }
        if let Some(message) = &self.message {
            parts.push(message.clone());
        }
        if let Some(trace_id) = &self.trace_id {
            parts.push(format!("trace id {trace_id}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A request that failed after the retry policy ran out or on a permanent error.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{action} failed: {problem}")]
pub struct RequestFailure {
    /// Action that failed, e.g. "add 50000 email identifiers to audience 987654".
    pub action: String,
    pub problem: ApiProblem,
    /// Whether a later run may succeed without any change (network, 5xx, rate limit).
    pub temporary: bool,
    pub attempts: u32,
}

/// A failure of the destination that stops the run before any delivery.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error(
        "Criteo rejected the client credentials ({problem}); check CRITEO_CLIENT_ID and \
         CRITEO_CLIENT_SECRET"
    )]
    InvalidCredentials { problem: ApiProblem },

    #[error(
        "the Criteo app cannot use advertiser {advertiser_id} ({problem}); in Criteo's partner \
         portal, give the app access to this advertiser and have the advertiser consent"
    )]
    NoAdvertiserAccess { advertiser_id: String, problem: ApiProblem },

    #[error("audience {audience_id} was not found or is not visible to this app ({problem}); check `destination.audience_id`")]
    AudienceNotFound { audience_id: String, problem: ApiProblem },

    #[error("Criteo created audience `{name}` but returned no id; check the advertiser's audiences in Criteo before the next run")]
    CreatedWithoutId { name: String },

    #[error("unexpected response from Criteo while trying to {action}: {message}")]
    InvalidResponse { action: String, message: String },

    #[error(transparent)]
    Request(#[from] RequestFailure),

    #[error("failed to set up the HTTP client: {message}")]
    Client { message: String },

    #[error("the run was interrupted before delivery finished")]
    Interrupted,
}

impl DestinationError {
    /// Returns whether retrying later may succeed without a change by the user.
    pub fn is_temporary(&self) -> bool {
        match self {
            DestinationError::Request(failure) => failure.temporary,
            DestinationError::Interrupted => true,
            _ => false,
        }
    }
}

/// Add or remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Add,
    Remove,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::Remove => "remove",
        }
    }
}

/// Criteo's counts for one acknowledged amendment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acknowledgement {
    pub valid: u64,
    pub invalid: u64,
}
