//! Delivery of a plan: batches of at most `max_batch_identifiers` sorted identifiers, one
//! identifier type and one operation per request, a bounded number in flight.
//!
//! Each batch's outcome is kept, so the snapshot can record exactly what Criteo
//! acknowledged. A failure that concerns every batch (authentication, permission, unknown
//! audience, retries exhausted) stops scheduling new batches. A failure of one batch's
//! content (400, 413) does not.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::identifiers::{IdentifierSet, IdentifierType};

use super::audience::AudienceTarget;
use super::body::{Api, amendment_body};
use super::client::stop_requested;
use super::{Acknowledgement, ApiProblem, CriteoClient, Operation, RequestFailure};

/// One list of identifiers to add or remove.
#[derive(Clone, Debug)]
pub struct Work {
    pub identifier_type: IdentifierType,
    pub operation: Operation,
    pub set: Arc<IdentifierSet>,
}

/// How to send the batches.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    pub max_batch_identifiers: usize,
    pub max_concurrent_requests: usize,
    pub gum_caller_id: Option<i64>,
}

/// The outcome of one batch.
#[derive(Debug)]
pub struct BatchOutcome {
    pub identifier_type: IdentifierType,
    pub operation: Operation,
    /// Positions of the batch in its work's set.
    pub range: Range<usize>,
    pub result: Result<Acknowledgement, RequestFailure>,
}

/// Every batch's outcome; batches never started (after a stop) are absent.
#[derive(Debug, Default)]
pub struct DeliveryResult {
    pub outcomes: Vec<BatchOutcome>,
    /// Batches planned but not sent because delivery stopped early.
    pub not_sent: usize,
    pub interrupted: bool,
}

/// Splits `len` identifiers into consecutive ranges of at most `max` each.
pub fn batch_ranges(len: usize, max: usize) -> Vec<Range<usize>> {
    (0..len).step_by(max.max(1)).map(|start| start..(start + max).min(len)).collect()
}

/// Sends all work. `stop` turning true (SIGTERM) stops scheduling at a batch boundary:
/// requests on the wire finish, and batches waiting for pacing or a retry give up.
pub async fn deliver(
    client: Arc<CriteoClient>,
    target: &AudienceTarget,
    work: &[Work],
    options: &DeliveryOptions,
    mut stop: watch::Receiver<bool>,
) -> DeliveryResult {
    let mut queue = Vec::new();
    for item in work {
        for range in batch_ranges(item.set.len(), options.max_batch_identifiers) {
            queue.push((item.clone(), range));
        }
    }
    let total = queue.len();
    let permits = Arc::new(Semaphore::new(options.max_concurrent_requests.max(1)));
    let mut tasks = JoinSet::new();
    let mut result = DeliveryResult::default();
    let mut halted = false;
    let mut scheduled = 0;

    for (item, range) in queue {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            () = stop_requested(&mut stop) => {
                result.interrupted = true;
                break;
            }
        };
        while let Some(joined) = tasks.try_join_next() {
            halted |= record(&mut result, joined);
        }
        if halted || *stop.borrow() {
            result.interrupted |= *stop.borrow();
            break;
        }
        scheduled += 1;
        let client = client.clone();
        let target = target.clone();
        let gum_caller_id = options.gum_caller_id;
        let batch_stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let outcome = send_batch(&client, &target, &item, range.clone(), gum_caller_id, batch_stop).await;
            BatchOutcome {
                identifier_type: item.identifier_type,
                operation: item.operation,
                range,
                result: outcome,
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        record(&mut result, joined);
    }
    // Batches already scheduled give up their retries on a stop, too.
    result.interrupted |= *stop.borrow();
    result.not_sent = total - scheduled;
    result
        .outcomes
        .sort_by_key(|outcome| (outcome.identifier_type, outcome.operation == Operation::Remove, outcome.range.start));
    result
}

/// Stores one finished batch; returns whether its failure should stop further batches.
fn record(result: &mut DeliveryResult, joined: Result<BatchOutcome, tokio::task::JoinError>) -> bool {
    let outcome = match joined {
        Ok(outcome) => outcome,
        Err(error) => {
            // A panic in a batch task is a bug; the batch counts as not acknowledged.
            tracing::error!(%error, "a delivery task failed");
            return true;
        }
    };
    let stops = match &outcome.result {
        Ok(_) => false,
        Err(failure) => {
            tracing::error!(
                identifier_type = outcome.identifier_type.config_name(),
                operation = outcome.operation.as_str(),
                identifiers = outcome.range.len(),
                error = %failure,
                "batch not delivered"
            );
            failure.temporary || !matches!(failure.problem.status, Some(400) | Some(413))
        }
    };
    result.outcomes.push(outcome);
    stops
}

async fn send_batch(
    client: &CriteoClient,
    target: &AudienceTarget,
    item: &Work,
    range: Range<usize>,
    gum_caller_id: Option<i64>,
    stop: watch::Receiver<bool>,
) -> Result<Acknowledgement, RequestFailure> {
    let count = range.len();
    let body = amendment_body(target.api, item.operation, item.identifier_type, gum_caller_id, &item.set, range);
    let action = format!(
        "{} {count} {} identifiers {} audience {}",
        item.operation.as_str(),
        item.identifier_type.config_name(),
        if item.operation == Operation::Add { "to" } else { "from" },
        target.id
    );
    let url = client.url(&target.amend_path());
    let bytes = client
        .send_until_stopped(target.amend_method(), &url, Some(Bytes::from(body)), &action, Some(stop))
        .await?;
    parse_acknowledgement(target.api, &bytes).map_err(|message| RequestFailure {
        action,
        problem: ApiProblem {
            status: Some(200),
            message: Some(message),
            ..ApiProblem::default()
        },
        temporary: false,
        attempts: 1,
    })
}

/// Reads `nbValidIdentifiers` / `nbInvalidIdentifiers`; a 200 that carries `errors` is a
/// failure.
fn parse_acknowledgement(api: Api, bytes: &[u8]) -> Result<Acknowledgement, String> {
    #[derive(Deserialize)]
    struct Counts {
        #[serde(rename = "nbValidIdentifiers")]
        valid: Option<u64>,
        #[serde(rename = "nbInvalidIdentifiers")]
        invalid: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Problem {
        code: Option<String>,
        title: Option<String>,
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| format!("the response is not valid JSON: {error}"))?;
    if let Some(errors) = value.get("errors").and_then(|errors| errors.as_array())
        && let Some(first) = errors.first()
    {
        let problem: Problem = serde_json::from_value(first.clone()).unwrap_or(Problem { code: None, title: None });
        return Err(format!(
            "Criteo returned an error with the acknowledgement: {} {}",
            problem.code.unwrap_or_default(),
            problem.title.unwrap_or_default()
        ));
    }
    let counts = match api {
        Api::MarketingSolutions => value.pointer("/data/attributes"),
        Api::RetailMedia => value.pointer("/data"),
    }
    .ok_or("the response has no `data` with identifier counts")?;
    let counts: Counts =
        serde_json::from_value(counts.clone()).map_err(|error| format!("unexpected identifier counts: {error}"))?;
    Ok(Acknowledgement {
        valid: counts.valid.unwrap_or(0),
        invalid: counts.invalid.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_within_limit() {
        assert_eq!(batch_ranges(0, 3), Vec::<Range<usize>>::new());
        assert_eq!(batch_ranges(7, 3), vec![0..3, 3..6, 6..7]);
        assert_eq!(batch_ranges(6, 3), vec![0..3, 3..6]);
    }

    #[test]
    fn acknowledgement_reads_both_shapes() {
        let ms = br#"{"data":{"type":"ContactlistAmendment","attributes":{"contactListId":1,"nbValidIdentifiers":3,"nbInvalidIdentifiers":1}},"errors":[],"warnings":[]}"#;
        let rm = br#"{"type":"AddRemoveContactlistResult","data":{"contactListId":568708742535471104,"nbValidIdentifiers":2,"nbInvalidIdentifiers":0},"errors":[],"warnings":[]}"#;
        assert_eq!(
            parse_acknowledgement(Api::MarketingSolutions, ms).unwrap(),
            Acknowledgement { valid: 3, invalid: 1 }
        );
        assert_eq!(
            parse_acknowledgement(Api::RetailMedia, rm).unwrap(),
            Acknowledgement { valid: 2, invalid: 0 }
        );
    }

    #[test]
    fn acknowledgement_with_errors_is_failure() {
        let body = br#"{"data":{"contactListId":1},"errors":[{"type":"availability","code":"internal-error"}],"warnings":[]}"#;
        let error = parse_acknowledgement(Api::RetailMedia, body).unwrap_err();
        assert!(error.contains("internal-error"), "{error}");
    }
}
