//! Contact-list routes of both APIs: amend (add or remove identifiers), wipe, statistics.
//!
//! An amendment is validated in this order, and the first failure decides the response:
//!
//! 1. segment id: 400 if it is not a positive integer, the configured unknown-segment response
//!    if it does not exist, 403 if it belongs to an advertiser or account the client may not
//!    use.
//! 2. body: 400 if it is not JSON or lacks a required field (`data`, `data.type` for
//!    Marketing Solutions, `data.attributes`, `operation`, `identifiers`). It is also 400 if
//!    a field has the wrong JSON type, if `operation` is not `add` or `remove`, if
//!    `identifierType` is outside the API's names, or if a `gum` amendment lacks an integer
//!    `gumCallerId`.
//! 3. size: 400 `too-many-identifiers` above the configured maximum.
//!
//! A valid envelope always gets 200. Identifiers that do not fit their type are counted in
//! `nbInvalidIdentifiers`, echoed (up to 10) in `sampleInvalidIdentifiers` and not applied.
//! Adding a member twice and removing a non-member are not errors. Unknown attributes
//! (RudderStack sends `internalIdentifiers`) are ignored.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::app::App;
use super::body;
use super::config::UnknownSegmentResponse;
use super::gateway::{ApiContext, Outcome};
use super::identifiers::{IdentifierType, MARKETING_TYPE_NAMES, RETAIL_TYPE_NAMES};
use super::log::AmendmentRecord;
use super::problem::{ApiError, Problem, ProblemType};
use super::store::{
    ContactList, Owner, SegmentKey, format_request_date, parse_marketing_id, parse_retail_id,
};

/// Identifiers echoed in `sampleInvalidIdentifiers` at most. Criteo does not publish its
/// cap.
const MAX_SAMPLE_INVALID_IDENTIFIERS: usize = 10;

/// The segment a contact-list route addresses, with its id still unparsed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SegmentTarget<'a> {
    Marketing(&'a str),
    /// Retail Media add-remove and clear take only the segment id; statistics also name
    /// the account in the path.
    Retail {
        segment_id: &'a str,
        account_id: Option<&'a str>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Add,
    Remove,
}

/// A structurally valid amendment body.
#[derive(Debug)]
struct Amendment {
    operation: Operation,
    /// `None` only for Retail Media, where the field is optional and the segment's own type
    /// applies.
    identifier_type: Option<IdentifierType>,
    identifiers: Vec<String>,
}

/// Counts of one applied amendment.
#[derive(Debug, Default, PartialEq, Eq)]
struct AmendmentSummary {
    valid: usize,
    invalid: usize,
    sample_invalid: Vec<String>,
}

/// Handles an amendment and reports what it carried to the request log.
pub(crate) fn amend(
    app: &App,
    context: &ApiContext<'_>,
    target: SegmentTarget<'_>,
    body: &[u8],
) -> Outcome {
    let mut record = AmendmentRecord::default();
    let result = amend_segment(app, context, target, body, &mut record);
    Outcome {
        amendment: Some(record),
        ..Outcome::from_result(result, context.instance)
    }
}

fn amend_segment(
    app: &App,
    context: &ApiContext<'_>,
    target: SegmentTarget<'_>,
    body: &[u8],
    record: &mut AmendmentRecord,
) -> Result<Response, ApiError> {
    let key = find_segment(app, context, target)?;
    let parsed = parse_amendment(body, key, record);
    let amendment = match parsed {
        Ok(amendment) => amendment,
        Err((error, identifiers)) => {
            keep_identifiers(app, record, identifiers);
            return Err(error);
        }
    };

    let max = app.config.max_identifiers_per_request;
    if amendment.identifiers.len() > max {
        let count = amendment.identifiers.len();
        keep_identifiers(app, record, amendment.identifiers);
        return Err(ApiError::bad_request(
            Problem::validation(
                "too-many-identifiers",
                "Too many identifiers in one request",
            )
            .with_detail(format!(
                "The request has {count} identifiers; send at most {max} per request."
            ))
            .with_pointer("/data/attributes/identifiers"),
        ));
    }

    let (identifier_type, summary) = {
        let mut store = app.store();
        let segment_type = match key {
            SegmentKey::Retail(id) => store
                .retail
                .get(&id)
                .and_then(|segment| segment.identifier_type),
            SegmentKey::Marketing(_) => None,
        };
        let identifier_type = amendment
            .identifier_type
            .or(segment_type)
            .ok_or_else(|| body::missing("/data/attributes/identifierType"))?;
        let list = store
            .contact_list_mut(key)
            .ok_or_else(|| unknown_segment(app.config.unknown_segment_response, target))?;
        let summary = apply(
            list,
            identifier_type,
            amendment.operation,
            &amendment.identifiers,
        );
        (identifier_type, summary)
    };
    keep_identifiers(app, record, amendment.identifiers);

    let body = amendment_response(key, amendment.operation, identifier_type, summary);
    Ok(Json(body).into_response())
}

/// Builds the 200 body: Marketing Solutions nests the result under `data.attributes`,
/// Retail Media puts it directly under `data` and adds a top-level `type`.
fn amendment_response(
    key: SegmentKey,
    operation: Operation,
    identifier_type: IdentifierType,
    summary: AmendmentSummary,
) -> Value {
    let operation = match operation {
        Operation::Add => "add",
        Operation::Remove => "remove",
    };
    let request_date = format_request_date(Utc::now());
    match key {
        SegmentKey::Marketing(id) => json!({
            "data": {
                "type": "ContactlistAmendment",
                "attributes": {
                    "contactListId": id,
                    "operation": operation,
                    "requestDate": request_date,
                    "identifierType": identifier_type.marketing_name(),
                    "nbValidIdentifiers": summary.valid,
                    "nbInvalidIdentifiers": summary.invalid,
                    "sampleInvalidIdentifiers": summary.sample_invalid,
                }
            },
            "errors": [],
            "warnings": [],
        }),
        SegmentKey::Retail(id) => json!({
            "type": "AddRemoveContactlistResult",
            "data": {
                "contactListId": id,
                "operation": operation,
                "requestDate": request_date,
                "identifierType": identifier_type.retail_name(),
                "nbValidIdentifiers": summary.valid,
                "nbInvalidIdentifiers": summary.invalid,
                "sampleInvalidIdentifiers": summary.sample_invalid,
            },
            "errors": [],
            "warnings": [],
        }),
    }
}

fn keep_identifiers(app: &App, record: &mut AmendmentRecord, identifiers: Vec<String>) {
    if app.config.record_identifiers {
        record.identifiers = identifiers;
    }
}

/// Parses the amendment body, noting each field in `record` as soon as it is read. On
/// failure it returns the identifiers read so far, for the request log.
fn parse_amendment(
    body: &[u8],
    key: SegmentKey,
    record: &mut AmendmentRecord,
) -> Result<Amendment, (ApiError, Vec<String>)> {
    let no_identifiers = |error| (error, Vec::new());
    let retail = matches!(key, SegmentKey::Retail(_));

    let mut value = body::parse_json(body).map_err(no_identifiers)?;
    let root = value
        .as_object_mut()
        .ok_or_else(|| no_identifiers(body::wrong_type("", "an object")))?;
    let data = object_field(root, "", "data").map_err(no_identifiers)?;
    match body::optional_str(data, "/data", "type").map_err(no_identifiers)? {
        None if !retail => return Err(no_identifiers(body::missing("/data/type"))),
        _ => {}
    }
    let attributes = object_field(data, "/data", "attributes").map_err(no_identifiers)?;

    let pointer = "/data/attributes";
    let operation_name = body::required_str(attributes, pointer, "operation")
        .map_err(no_identifiers)?
        .to_owned();
    record.operation = Some(operation_name.clone());
    let type_name = body::optional_str(attributes, pointer, "identifierType")
        .map_err(no_identifiers)?
        .map(str::to_owned);
    record.identifier_type = type_name.clone();
    let gum_caller_id = body::optional(attributes, "gumCallerId").cloned();

    let identifiers = take_identifiers(attributes, record).map_err(no_identifiers)?;

    let operation = match operation_name.as_str() {
        "add" => Operation::Add,
        "remove" => Operation::Remove,
        other => {
            return Err((
                body::not_one_of("/data/attributes/operation", other, "add, remove"),
                identifiers,
            ));
        }
    };
    let identifier_type = match type_name.as_deref() {
        None if retail => None,
        None => {
            return Err((
                body::missing("/data/attributes/identifierType"),
                identifiers,
            ));
        }
        Some(name) => {
            let (parsed, accepted) = if retail {
                (IdentifierType::from_retail_name(name), RETAIL_TYPE_NAMES)
            } else {
                (
                    IdentifierType::from_marketing_name(name),
                    MARKETING_TYPE_NAMES,
                )
            };
            match parsed {
                Some(parsed) => Some(parsed),
                None => {
                    let error = body::not_one_of("/data/attributes/identifierType", name, accepted);
                    return Err((error, identifiers));
                }
            }
        }
    };

    let needs_gum_caller_id = !retail && identifier_type == Some(IdentifierType::Gum);
    let has_integer_caller_id = gum_caller_id
        .as_ref()
        .is_some_and(|id| id.is_i64() || id.is_u64());
    if needs_gum_caller_id && !has_integer_caller_id {
        let error = match gum_caller_id {
            None => body::missing("/data/attributes/gumCallerId"),
            Some(_) => body::wrong_type("/data/attributes/gumCallerId", "an integer"),
        };
        return Err((error, identifiers));
    }

    Ok(Amendment {
        operation,
        identifier_type,
        identifiers,
    })
}

/// Returns the object in field `key`, as a mutable reference so identifiers can be moved
/// out of the parsed body without copying them.
fn object_field<'a>(
    object: &'a mut Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a mut Map<String, Value>, ApiError> {
    let pointer = format!("{parent}/{key}");
    match object.get_mut(key) {
        None | Some(Value::Null) => Err(body::missing(&pointer)),
        Some(Value::Object(inner)) => Ok(inner),
        Some(_) => Err(body::wrong_type(&pointer, "an object")),
    }
}

/// Moves the `identifiers` array out of the attributes.
fn take_identifiers(
    attributes: &mut Map<String, Value>,
    record: &mut AmendmentRecord,
) -> Result<Vec<String>, ApiError> {
    let pointer = "/data/attributes/identifiers";
    let items = match attributes.get_mut("identifiers").map(Value::take) {
        None | Some(Value::Null) => return Err(body::missing(pointer)),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(body::wrong_type(pointer, "an array of strings")),
    };
    record.identifier_count = items.len();

    let mut identifiers = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Value::String(identifier) => identifiers.push(identifier),
            _ => return Err(body::wrong_type(&format!("{pointer}/{index}"), "a string")),
        }
    }
    Ok(identifiers)
}

fn apply(
    list: &mut ContactList,
    identifier_type: IdentifierType,
    operation: Operation,
    identifiers: &[String],
) -> AmendmentSummary {
    let members = list.members_mut(identifier_type);
    if operation == Operation::Add {
        members.reserve(identifiers.len());
    }

    let mut summary = AmendmentSummary::default();
    for identifier in identifiers {
        if !identifier_type.accepts(identifier) {
            summary.invalid += 1;
            if summary.sample_invalid.len() < MAX_SAMPLE_INVALID_IDENTIFIERS {
                summary.sample_invalid.push(identifier.clone());
            }
            continue;
        }
        summary.valid += 1;
        match operation {
            Operation::Add => members.insert(identifier),
            Operation::Remove => members.remove(identifier),
        }
    }
    summary
}

/// Removes every member of the segment.
pub(crate) fn wipe(
    app: &App,
    context: &ApiContext<'_>,
    target: SegmentTarget<'_>,
) -> Result<Response, ApiError> {
    let key = find_segment(app, context, target)?;
    app.store()
        .contact_list_mut(key)
        .ok_or_else(|| unknown_segment(app.config.unknown_segment_response, target))?
        .clear();

    match key {
        SegmentKey::Marketing(id) => {
            let body = json!({
                "data": { "id": id.to_string(), "type": "AudienceContactlist" },
                "errors": [],
                "warnings": [],
            });
            Ok(Json(body).into_response())
        }
        SegmentKey::Retail(_) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Reports the member count, with matches simulated as a fixed share of the members.
pub(crate) fn statistics(
    app: &App,
    context: &ApiContext<'_>,
    target: SegmentTarget<'_>,
) -> Result<Response, ApiError> {
    let key = find_segment(app, context, target)?;
    let identifiers = app
        .store()
        .contact_list(key)
        .map(ContactList::len)
        .ok_or_else(|| unknown_segment(app.config.unknown_segment_response, target))?;

    // NOTE: Criteo calls matchRate a percentage without saying whether it is 0-1 or 0-100;
    // the sandbox sends the 0-1 ratio of matches to identifiers.
    let matches = (identifiers as f64 * app.config.simulated_match_rate).floor() as usize;
    let match_rate = if identifiers == 0 {
        0.0
    } else {
        matches as f64 / identifiers as f64
    };
    let id = match key {
        SegmentKey::Marketing(id) => id.to_string(),
        SegmentKey::Retail(id) => id.to_string(),
    };
    let body = json!({
        "data": {
            "id": id,
            "type": "ContactListStatistics",
            "attributes": {
                "numberOfIdentifiers": identifiers,
                "numberOfMatches": matches,
                "matchRate": match_rate,
            }
        },
        "errors": [],
        "warnings": [],
    });
    Ok(Json(body).into_response())
}

/// Parses the segment id and checks that the segment exists and the client may use it.
fn find_segment(
    app: &App,
    context: &ApiContext<'_>,
    target: SegmentTarget<'_>,
) -> Result<SegmentKey, ApiError> {
    let key = match target {
        SegmentTarget::Marketing(id) => parse_marketing_id(id)
            .map(SegmentKey::Marketing)
            .ok_or_else(|| invalid_segment_id(id, "a positive 32-bit integer"))?,
        SegmentTarget::Retail { segment_id, .. } => parse_retail_id(segment_id)
            .map(SegmentKey::Retail)
            .ok_or_else(|| invalid_segment_id(segment_id, "a positive 64-bit integer"))?,
    };
    if let SegmentTarget::Retail {
        account_id: Some(account_id),
        ..
    } = target
        && !context.client.may_use_account(account_id)
    {
        return Err(forbidden_owner(&Owner::Account(account_id.to_owned())));
    }

    let owner = app
        .store()
        .owner(key)
        .ok_or_else(|| unknown_segment(app.config.unknown_segment_response, target))?;
    let in_named_account = match (&owner, target) {
        (
            Owner::Account(owner_account),
            SegmentTarget::Retail {
                account_id: Some(account_id),
                ..
            },
        ) => owner_account == account_id,
        _ => true,
    };
    if !in_named_account {
        return Err(unknown_segment(app.config.unknown_segment_response, target));
    }
    if !owner.is_visible_to(context.client) {
        return Err(forbidden_owner(&owner));
    }
    Ok(key)
}

fn invalid_segment_id(id: &str, expected: &str) -> ApiError {
    ApiError::bad_request(
        Problem::validation("invalid", "Invalid segment id")
            .with_detail(format!("The segment id `{id}` must be {expected}.")),
    )
}

/// Builds the 403 for a segment, advertiser or account outside the client's portfolio.
pub(crate) fn forbidden_owner(owner: &Owner) -> ApiError {
    let (code, detail) = match owner {
        Owner::Advertiser(id) => (
            "insufficient-advertiser-permissions",
            format!("The client may not act for advertiser {id}."),
        ),
        Owner::Account(id) => (
            "insufficient-account-permissions",
            format!("The client may not act for account {id}."),
        ),
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        Problem::new(ProblemType::AccessControl, code, "Insufficient permissions")
            .with_detail(detail),
    )
}

fn unknown_segment(response: UnknownSegmentResponse, target: SegmentTarget<'_>) -> ApiError {
    let id = match target {
        SegmentTarget::Marketing(id) => id,
        SegmentTarget::Retail { segment_id, .. } => segment_id,
    };
    let (status, code, title) = match response {
        UnknownSegmentResponse::NotFoundAudienceInvalid => (
            StatusCode::NOT_FOUND,
            "audience-invalid",
            "Audience is invalid",
        ),
        UnknownSegmentResponse::ForbiddenAudienceInvalid => (
            StatusCode::FORBIDDEN,
            "audience-invalid",
            "Audience is invalid",
        ),
        UnknownSegmentResponse::NotFoundSegmentNotFound => (
            StatusCode::NOT_FOUND,
            "segment-not-found",
            "Segment not found",
        ),
    };
    ApiError::new(
        status,
        Problem::validation(code, title).with_detail(format!("Segment {id} does not exist.")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef";
    const HASH_B: &str = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8";

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn apply_adds_valid_and_counts_invalid() {
        let mut list = ContactList::default();

        let summary = apply(
            &mut list,
            IdentifierType::Email,
            Operation::Add,
            &strings(&[HASH_A, "jkl@gmail", HASH_A]),
        );

        assert_eq!(summary.valid, 2);
        assert_eq!(summary.invalid, 1);
        assert_eq!(summary.sample_invalid, ["jkl@gmail"]);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn apply_remove_ignores_non_members() {
        let mut list = ContactList::default();
        apply(
            &mut list,
            IdentifierType::Email,
            Operation::Add,
            &strings(&[HASH_A]),
        );

        let summary = apply(
            &mut list,
            IdentifierType::Email,
            Operation::Remove,
            &strings(&[HASH_A, HASH_B]),
        );

        assert_eq!(summary.valid, 2);
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn sample_of_invalid_identifiers_is_capped() {
        let mut list = ContactList::default();
        let invalid: Vec<String> = (0..25).map(|i| format!("bad-{i}")).collect();

        let summary = apply(&mut list, IdentifierType::Madid, Operation::Add, &invalid);

        assert_eq!(summary.invalid, 25);
        assert_eq!(summary.sample_invalid.len(), MAX_SAMPLE_INVALID_IDENTIFIERS);
    }

    #[test]
    fn parse_records_fields_before_failing() {
        let body = br#"{"data": {"type": "ContactlistAmendment", "attributes":
            {"operation": "upsert", "identifierType": "email", "identifiers": ["a", "b"]}}}"#;
        let mut record = AmendmentRecord::default();

        let (error, identifiers) =
            parse_amendment(body, SegmentKey::Marketing(1), &mut record).unwrap_err();

        assert_eq!(error.problems[0].code, "invalid");
        assert_eq!(record.operation.as_deref(), Some("upsert"));
        assert_eq!(record.identifier_count, 2);
        assert_eq!(identifiers, ["a", "b"]);
    }
}
