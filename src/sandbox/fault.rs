//! Faults a test arms to make the sandbox fail on purpose, and the queue that applies them.
//!
//! Armed faults apply in the order they were injected: a request takes the first fault
//! whose route filter matches it, and that fault's count drops by one. A status, 429 or
//! dropped-connection fault acts before any other check, as a failing gateway would, so the
//! request is neither authenticated nor counted against the rate limit, and its body is not
//! read. A delay fault lets the request through and delays its response. The two create
//! faults only apply to segment creates and change what the create handler does once the
//! request passed every other check.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Kind of route a request addresses, used to aim faults and to read the request log.
/// Marketing Solutions and Retail Media routes of the same purpose share a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// `POST /oauth2/token`.
    Token,
    /// Segment creation.
    Create,
    /// Segment rename or description change.
    Update,
    /// Segment search.
    Search,
    /// Segment deletion.
    Delete,
    /// Contact-list amendment: Marketing Solutions PATCH (current and legacy route) or
    /// Retail Media add-remove.
    Amend,
    /// Removal of all members: Marketing Solutions DELETE or Retail Media clear.
    Wipe,
    /// Contact-list statistics.
    Statistics,
}

fn one() -> u32 {
    1
}

/// A failure to apply to the next matching requests.
///
/// In JSON (admin route `POST /_sandbox/faults`) the variant is the `kind` field, in
/// snake_case; `count` defaults to 1 and `route` to every route, for example
/// `{"kind": "status", "status": 503, "route": "amend"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Responds to `count` requests with `status` (400 to 599) and a Criteo-style error body,
    /// such as `availability`/`internal-error` for 500.
    Status {
        status: u16,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        route: Option<RouteKind>,
    },
    /// Responds to `count` requests with 429, `x-ratelimit-remaining: 0` and an
    /// `x-ratelimit-reset` of now plus `reset_after_secs`.
    RateLimit {
        reset_after_secs: u64,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        route: Option<RouteKind>,
    },
    /// Closes the TCP connection of `count` requests with a reset, after their headers
    /// arrive and before any response byte is sent.
    DropConnection {
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        route: Option<RouteKind>,
    },
    /// Handles `count` requests normally and then delays each response by `delay_ms`
    /// milliseconds, so a client that times out leaves the change applied.
    Delay {
        delay_ms: u64,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        route: Option<RouteKind>,
    },
    /// Marks every token issued so far as expired when injected, so the next API call with
    /// one of them gets 401 `authorization-token-expired`. It does not wait in the queue.
    ExpireTokens,
    /// Before each of the next `count` segment creates, creates a segment of every requested
    /// name as another client would, so the create meets a duplicate name.
    ConcurrentCreate {
        #[serde(default = "one")]
        count: u32,
    },
    /// Applies the next `count` segment creates but leaves `id` out of every created item in
    /// the response.
    CreateWithoutId {
        #[serde(default = "one")]
        count: u32,
    },
}

/// A fault rejected before it is armed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidFault {
    #[error("fault status {0} is invalid: expected a status from 400 to 599")]
    Status(u16),
}

impl Fault {
    /// Checks the fault before it is armed.
    pub fn validate(&self) -> Result<(), InvalidFault> {
        match self {
            Fault::Status { status, .. } if !(400..=599).contains(status) => {
                Err(InvalidFault::Status(*status))
            }
            _ => Ok(()),
        }
    }

    fn count_and_route(&self) -> Option<(u32, Option<RouteKind>)> {
        match self {
            Fault::Status { count, route, .. }
            | Fault::RateLimit { count, route, .. }
            | Fault::DropConnection { count, route }
            | Fault::Delay { count, route, .. } => Some((*count, *route)),
            Fault::ConcurrentCreate { count } | Fault::CreateWithoutId { count } => {
                Some((*count, Some(RouteKind::Create)))
            }
            Fault::ExpireTokens => None,
        }
    }
}

/// Action the sandbox takes on one faulted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultAction {
    Status(u16),
    RateLimit { reset_after: Duration },
    DropConnection,
    Delay(Duration),
    /// Changes what a segment create does; see [`CreateFault`].
    Create(CreateFault),
}

/// A change to how a segment create is handled, once it passed every gateway check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CreateFault {
    /// Another client creates the requested names first.
    ConcurrentCreate,
    /// The response leaves out the ids of the created segments.
    WithoutId,
}

/// An armed fault and the number of requests it still applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArmedFault {
    /// The fault as injected.
    pub fault: Fault,
    /// Requests it still applies to.
    pub remaining: u32,
}

/// Faults waiting for requests, in injection order.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    armed: Vec<ArmedFault>,
}

impl FaultQueue {
    /// Arms a queued fault. `ExpireTokens` and faults with a count of 0 arm nothing.
    pub(crate) fn push(&mut self, fault: Fault) {
        if let Some((count, _)) = fault.count_and_route().filter(|(count, _)| *count > 0) {
            self.armed.push(ArmedFault {
                fault,
                remaining: count,
            });
        }
    }

    /// Takes the action of the first fault that applies to a request of `kind`.
    pub(crate) fn take(&mut self, kind: RouteKind) -> Option<FaultAction> {
        let index = self.armed.iter().position(|armed| {
            let route = armed.fault.count_and_route().and_then(|(_, route)| route);
            route.is_none_or(|route| route == kind)
        })?;

        let armed = &mut self.armed[index];
        let action = match armed.fault {
            Fault::Status { status, .. } => FaultAction::Status(status),
            Fault::RateLimit {
                reset_after_secs, ..
            } => FaultAction::RateLimit {
                reset_after: Duration::from_secs(reset_after_secs),
            },
            Fault::DropConnection { .. } => FaultAction::DropConnection,
            Fault::Delay { delay_ms, .. } => FaultAction::Delay(Duration::from_millis(delay_ms)),
            Fault::ConcurrentCreate { .. } => FaultAction::Create(CreateFault::ConcurrentCreate),
            Fault::CreateWithoutId { .. } => FaultAction::Create(CreateFault::WithoutId),
            Fault::ExpireTokens => unreachable!("ExpireTokens is never queued"),
        };
        armed.remaining -= 1;
        if armed.remaining == 0 {
            self.armed.remove(index);
        }
        Some(action)
    }

    pub(crate) fn armed(&self) -> Vec<ArmedFault> {
        self.armed.clone()
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_applies_faults_in_order_and_counts_down() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::Status {
            status: 503,
            count: 2,
            route: None,
        });
        queue.push(Fault::DropConnection {
            count: 1,
            route: None,
        });

        let actions: Vec<_> = (0..4).map(|_| queue.take(RouteKind::Amend)).collect();

        assert_eq!(
            actions,
            [
                Some(FaultAction::Status(503)),
                Some(FaultAction::Status(503)),
                Some(FaultAction::DropConnection),
                None
            ]
        );
    }

    #[test]
    fn route_filter_skips_other_routes() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::Status {
            status: 500,
            count: 1,
            route: Some(RouteKind::Amend),
        });

        assert_eq!(queue.take(RouteKind::Token), None);
        assert_eq!(queue.take(RouteKind::Amend), Some(FaultAction::Status(500)));
        assert!(queue.armed().is_empty());
    }

    #[test]
    fn json_defaults_count_and_route() {
        let fault: Fault = serde_json::from_str(r#"{"kind": "status", "status": 503}"#).unwrap();

        assert_eq!(
            fault,
            Fault::Status {
                status: 503,
                count: 1,
                route: None
            }
        );
    }

    #[test]
    fn create_faults_apply_to_creates_only() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::ConcurrentCreate { count: 1 });
        queue.push(Fault::CreateWithoutId { count: 1 });

        assert_eq!(queue.take(RouteKind::Search), None);
        assert_eq!(
            queue.take(RouteKind::Create),
            Some(FaultAction::Create(CreateFault::ConcurrentCreate))
        );
        assert_eq!(
            queue.take(RouteKind::Create),
            Some(FaultAction::Create(CreateFault::WithoutId))
        );
        assert!(queue.armed().is_empty());
    }

    #[test]
    fn json_rejects_unknown_fields() {
        let parsed = serde_json::from_str::<Fault>(r#"{"kind": "delay", "delay": 5}"#);

        assert!(parsed.is_err());
    }

    #[test]
    fn status_outside_error_range_is_invalid() {
        let fault = Fault::Status {
            status: 200,
            count: 1,
            route: None,
        };

        assert_eq!(fault.validate(), Err(InvalidFault::Status(200)));
    }
}
