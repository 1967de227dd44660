//! Log of the requests the sandbox handled, for tests to assert what a client sent.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::app::lock;
use super::fault::RouteKind;

/// One request to the token endpoint or the API, recorded when its response is ready.
/// Admin routes under `/_sandbox/` are not recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    /// HTTP method, such as `PATCH`.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Query string without the `?`, if any.
    pub query: Option<String>,
    /// Kind of route the path addresses, or `None` for a path the sandbox does not serve.
    pub route: Option<RouteKind>,
    /// Status sent, or 0 when the sandbox closed the connection without a response.
    pub status: u16,
    /// Amendment operation (`add` or `remove`) as sent.
    pub operation: Option<String>,
    /// Identifier type as sent: camelCase for Marketing Solutions, PascalCase for Retail
    /// Media.
    pub identifier_type: Option<String>,
    /// Number of identifiers in the amendment body, valid or not.
    pub identifier_count: usize,
    /// Identifiers of the amendment in the order sent, kept only when
    /// `SandboxConfig::record_identifiers` is on.
    pub identifiers: Vec<String>,
}

/// Amendment fields read from the body, for the request log. Fields stay empty when the
/// body failed validation before reaching them. Requests stopped by a fault or by the
/// authentication, rate-limit, content-type or size check carry none of them.
#[derive(Debug, Default)]
pub(crate) struct AmendmentRecord {
    pub(crate) operation: Option<String>,
    pub(crate) identifier_type: Option<String>,
    pub(crate) identifier_count: usize,
    pub(crate) identifiers: Vec<String>,
}

/// Recorded requests in the order they arrived, even when responses finish out of order.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    next_sequence: AtomicU64,
    entries: Mutex<Vec<(u64, RecordedRequest)>>,
}

impl RequestLog {
    /// Numbers a request on arrival.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn record(&self, sequence: u64, request: RecordedRequest) {
        lock(&self.entries).push((sequence, request));
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        let mut entries = lock(&self.entries).clone();
        entries.sort_by_key(|(sequence, _)| *sequence);
        entries.into_iter().map(|(_, request)| request).collect()
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
    }
}
