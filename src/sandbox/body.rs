//! Request bodies: reading them under the size limit, parsing JSON, and reading fields with a
//! validation problem that points at the offending field.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{Map, Value};

use super::problem::{ApiError, Problem, ProblemType};

/// Maximum bytes the sandbox reads and drops from a body it does not use, past the size
/// limit or before an early error. Reading them lets a client that is still sending receive
/// the response instead of a reset connection.
const MAX_DISCARDED_BYTES: usize = 64 * 1024 * 1024;

/// Reads the whole body, or returns 413 once it exceeds `max_bytes`.
pub(crate) async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let mut buffer = BytesMut::with_capacity(declared_length.unwrap_or(0).min(max_bytes));
    let mut received = 0usize;
    let mut chunks = body.into_data_stream();

    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(
                Problem::validation("invalid", "The request body could not be read")
                    .with_detail(error.to_string()),
            )
        })?;
        received += chunk.len();
        if received <= max_bytes {
            buffer.extend_from_slice(&chunk);
        } else if received > max_bytes + MAX_DISCARDED_BYTES {
            break;
        }
    }

    if received > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Problem::validation("payload-too-large", "The request body is too large").with_detail(
                format!("The body has {received} bytes or more; the limit is {max_bytes} bytes."),
            ),
        ));
    }
    Ok(buffer.freeze())
}

/// Reads and drops a body the sandbox responds to without using, so that a client that is
/// still sending receives the response rather than a reset connection. A read error ends the
/// drain.
pub(crate) async fn discard(body: Body) {
    let mut chunks = body.into_data_stream();
    let mut received = 0usize;
    while let Some(Ok(chunk)) = chunks.next().await {
        received += chunk.len();
        if received > MAX_DISCARDED_BYTES {
            break;
        }
    }
}

/// Checks that the `Content-Type` header names JSON, with or without parameters.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|media| media.eq_ignore_ascii_case("application/json"))
}

/// Returns the media type of the `Content-Type` header without its parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(
            Problem::validation("invalid", "The request body is not valid JSON")
                .with_detail(error.to_string()),
        )
    })
}

/// Returns the value as an object, or a validation error at `pointer`.
pub(crate) fn as_object<'a>(
    value: &'a Value,
    pointer: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(pointer, "an object"))
}

pub(crate) fn as_array<'a>(value: &'a Value, pointer: &str) -> Result<&'a Vec<Value>, ApiError> {
    value
        .as_array()
        .ok_or_else(|| wrong_type(pointer, "an array"))
}

pub(crate) fn as_str<'a>(value: &'a Value, pointer: &str) -> Result<&'a str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(pointer, "a string"))
}

/// Returns field `key` of `object`, treating `null` as missing.
pub(crate) fn required<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Value, ApiError> {
    match object.get(key) {
        Some(Value::Null) | None => Err(missing(&format!("{parent}/{key}"))),
        Some(value) => Ok(value),
    }
}

pub(crate) fn optional<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

pub(crate) fn required_str<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a str, ApiError> {
    as_str(required(object, parent, key)?, &format!("{parent}/{key}"))
}

pub(crate) fn optional_str<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    optional(object, key)
        .map(|value| as_str(value, &format!("{parent}/{key}")))
        .transpose()
}

/// Reads an optional array of strings, such as a search filter.
pub(crate) fn optional_str_list<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<Vec<&'a str>>, ApiError> {
    let Some(value) = optional(object, key) else {
        return Ok(None);
    };
    let pointer = format!("{parent}/{key}");
    let items = as_array(value, &pointer)?;
    let mut strings = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        strings.push(as_str(item, &format!("{pointer}/{index}"))?);
    }
    Ok(Some(strings))
}

/// Checks that an id is a decimal integer, as Criteo's string-typed ids are.
pub(crate) fn require_digits(value: &str, pointer: &str) -> Result<(), ApiError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        Problem::validation("invalid", "Invalid field")
            .with_detail(format!(
                "`{pointer}` must be a decimal integer, got `{value}`."
            ))
            .with_pointer(pointer),
    ))
}

pub(crate) fn missing(pointer: &str) -> ApiError {
    ApiError::bad_request(
        Problem::validation("required-field", "A required field is missing")
            .with_detail(format!("{} is required.", describe(pointer)))
            .with_pointer(pointer),
    )
}

pub(crate) fn wrong_type(pointer: &str, expected: &str) -> ApiError {
    ApiError::bad_request(
        Problem::new(ProblemType::Validation, "invalid", "Invalid field")
            .with_detail(format!("{} must be {expected}.", describe(pointer)))
            .with_pointer(pointer),
    )
}

/// Names a field by its JSON pointer, or the whole body for the empty pointer.
fn describe(pointer: &str) -> String {
    if pointer.is_empty() {
        "The request body".to_owned()
    } else {
        format!("`{pointer}`")
    }
}

/// Builds the validation error for a value outside an enumeration, listing the accepted
/// values.
pub(crate) fn not_one_of(pointer: &str, value: &str, accepted: &str) -> ApiError {
    ApiError::bad_request(
        Problem::validation("invalid", "Invalid field")
            .with_detail(format!(
                "`{pointer}` is `{value}`; expected one of {accepted}."
            ))
            .with_pointer(pointer),
    )
}
