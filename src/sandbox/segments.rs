//! Parts of segment create, update, search and delete that both APIs share: paging, bulk
//! item parsing, name checks and the list response.
//!
//! Bulk routes follow Criteo's partial approval: an item that names an unknown segment is
//! skipped and reported in `warnings` with code `segment-not-found`, while the other items
//! apply and the status stays 200. A malformed body fails the whole request with 400.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::body;
use super::problem::{ApiError, Problem, warnings_json};

/// Page size when the request sets no `limit`.
const DEFAULT_LIMIT: usize = 50;

/// Window of a search, from the `limit` and `offset` query parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Paging {
    pub(crate) limit: usize,
    pub(crate) offset: usize,
}

impl Paging {
    /// Parses `limit` (0 to `max_limit`, default 50) and `offset` (0 or more, default 0).
    pub(crate) fn from_query(query: Option<&str>, max_limit: usize) -> Result<Paging, ApiError> {
        let mut paging = Paging {
            limit: DEFAULT_LIMIT,
            offset: 0,
        };
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "limit" => {
                    paging.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| *limit <= max_limit)
                        .ok_or_else(|| {
                            invalid_range(format!(
                                "limit must be an integer from 0 to {max_limit}, got `{value}`."
                            ))
                        })?;
                }
                "offset" => {
                    paging.offset =
                        value
                            .parse::<u32>()
                            .map(|offset| offset as usize)
                            .map_err(|_| {
                                invalid_range(format!(
                                    "offset must be an integer of 0 or more, got `{value}`."
                                ))
                            })?;
                }
                _ => {}
            }
        }
        Ok(paging)
    }

    /// Builds the search response for all matching entities, in id order.
    pub(crate) fn respond(&self, matches: Vec<Value>) -> Response {
        let total = matches.len();
        let page: Vec<Value> = matches
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        let body = json!({
            "data": page,
            "meta": { "totalItems": total, "limit": self.limit, "offset": self.offset },
            "errors": [],
            "warnings": [],
        });
        Json(body).into_response()
    }
}

fn invalid_range(detail: String) -> ApiError {
    ApiError::bad_request(
        Problem::validation("invalid-range", "Value out of range").with_detail(detail),
    )
}

/// Search filters present in `data.attributes`; an absent filter matches everything.
#[derive(Debug, Default)]
pub(crate) struct Filters<'a> {
    /// Advertiser ids (Marketing Solutions) or retailer ids (Retail Media).
    pub(crate) owner_ids: Option<Vec<&'a str>>,
    pub(crate) segment_ids: Option<Vec<&'a str>>,
    pub(crate) segment_types: Option<Vec<&'a str>>,
}

impl Filters<'_> {
    /// Reads the filters; `owner_key` is `advertiserIds` or `retailerIds`, and
    /// `segment_types` the accepted values of `audienceSegmentTypes`.
    pub(crate) fn parse<'a>(
        value: &'a Value,
        owner_key: &str,
        segment_types: &[&str],
    ) -> Result<Filters<'a>, ApiError> {
        let root = body::as_object(value, "")?;
        let Some(data) = body::optional(root, "data") else {
            return Ok(Filters::default());
        };
        let data = body::as_object(data, "/data")?;
        let Some(attributes) = body::optional(data, "attributes") else {
            return Ok(Filters::default());
        };
        let pointer = "/data/attributes";
        let attributes = body::as_object(attributes, pointer)?;

        let filters = Filters {
            owner_ids: body::optional_str_list(attributes, pointer, owner_key)?,
            segment_ids: body::optional_str_list(attributes, pointer, "audienceSegmentIds")?,
            segment_types: body::optional_str_list(attributes, pointer, "audienceSegmentTypes")?,
        };
        for (index, kind) in filters.segment_types.iter().flatten().enumerate() {
            if !segment_types.contains(kind) {
                let pointer = format!("{pointer}/audienceSegmentTypes/{index}");
                return Err(body::not_one_of(&pointer, kind, &segment_types.join(", ")));
            }
        }
        Ok(filters)
    }

    /// Checks whether a contact-list segment with this owner and id passes the filters.
    pub(crate) fn matches(&self, owner_id: &str, segment_id: &str) -> bool {
        let passes = |filter: &Option<Vec<&str>>, value: &str| {
            filter.as_ref().is_none_or(|values| values.contains(&value))
        };
        passes(&self.owner_ids, owner_id)
            && passes(&self.segment_ids, segment_id)
            && passes(&self.segment_types, "ContactList")
    }
}

/// Returns the non-empty `data` array of a bulk request.
pub(crate) fn data_items(value: &Value) -> Result<&Vec<Value>, ApiError> {
    let root = body::as_object(value, "")?;
    let items = body::as_array(body::required(root, "", "data")?, "/data")?;
    if items.is_empty() {
        return Err(ApiError::bad_request(
            Problem::validation("required-field", "A required field is missing")
                .with_detail("`/data` must contain at least one item.")
                .with_pointer("/data"),
        ));
    }
    Ok(items)
}

/// Checks a segment name, which Criteo requires to be non-empty.
pub(crate) fn check_name(name: &str, pointer: &str) -> Result<(), ApiError> {
    if !name.trim().is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(
        Problem::validation("name-must-not-be-empty", "The name must not be empty")
            .with_pointer(pointer),
    ))
}

pub(crate) fn duplicate_name(name: &str, pointer: &str) -> Problem {
    Problem::validation("name-must-be-unique", "The name must be unique")
        .with_detail(format!(
            "Another segment of the same owner is already named `{name}`."
        ))
        .with_pointer(pointer)
}

pub(crate) fn segment_not_found(id: &str, pointer: &str) -> Problem {
    Problem::validation("segment-not-found", "Segment not found")
        .with_detail(format!("Segment {id} does not exist."))
        .with_pointer(pointer)
}

/// One item of a bulk update.
#[derive(Debug)]
pub(crate) struct UpdateItem {
    pub(crate) index: usize,
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    /// `Some(None)` clears the description.
    pub(crate) description: Option<Option<String>>,
}

impl UpdateItem {
    pub(crate) fn name_pointer(&self) -> String {
        format!("/data/{}/attributes/name", self.index)
    }
}

/// Parses the items of a bulk update. `description` must be Criteo's `NillableString`
/// wrapper `{"value": ...}`; a bare string is rejected, as the specification types it as an
/// object.
pub(crate) fn parse_update_items(value: &Value) -> Result<Vec<UpdateItem>, ApiError> {
    let mut updates = Vec::new();
    for (index, item) in data_items(value)?.iter().enumerate() {
        let pointer = format!("/data/{index}");
        let item = body::as_object(item, &pointer)?;
        let id = body::required_str(item, &pointer, "id")?;
        body::require_digits(id, &format!("{pointer}/id"))?;

        let attributes_pointer = format!("{pointer}/attributes");
        let attributes = body::as_object(
            body::required(item, &pointer, "attributes")?,
            &attributes_pointer,
        )?;
        let name = body::optional_str(attributes, &attributes_pointer, "name")?;
        if let Some(name) = name {
            check_name(name, &format!("{attributes_pointer}/name"))?;
        }
        let description = match body::optional(attributes, "description") {
            None => None,
            Some(wrapper) => Some(parse_nillable_string(
                wrapper,
                &format!("{attributes_pointer}/description"),
            )?),
        };

        updates.push(UpdateItem {
            index,
            id: id.to_owned(),
            name: name.map(str::to_owned),
            description,
        });
    }
    Ok(updates)
}

fn parse_nillable_string(wrapper: &Value, pointer: &str) -> Result<Option<String>, ApiError> {
    let wrapper = wrapper
        .as_object()
        .ok_or_else(|| body::wrong_type(pointer, r#"an object such as {"value": "text"}"#))?;
    let value = body::optional_str(wrapper, pointer, "value")?;
    Ok(value.map(str::to_owned))
}

/// Parses the ids of a bulk delete.
pub(crate) fn parse_delete_ids(value: &Value) -> Result<Vec<(usize, &str)>, ApiError> {
    let mut ids = Vec::new();
    for (index, item) in data_items(value)?.iter().enumerate() {
        let pointer = format!("/data/{index}");
        let item = body::as_object(item, &pointer)?;
        let id = body::required_str(item, &pointer, "id")?;
        body::require_digits(id, &format!("{pointer}/id"))?;
        ids.push((index, id));
    }
    Ok(ids)
}

/// Removes `id` from every entity, for the create fault that returns segments without ids.
pub(crate) fn remove_ids(entities: &mut [Value]) {
    for entity in entities {
        if let Some(fields) = entity.as_object_mut() {
            fields.remove("id");
        }
    }
}

/// Builds the 200 response of a bulk route.
pub(crate) fn list_response(data: Vec<Value>, warnings: &[Problem], instance: &str) -> Response {
    let body = json!({
        "data": data,
        "errors": [],
        "warnings": warnings_json(warnings, instance),
    });
    Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_bounds() {
        assert_eq!(
            Paging::from_query(None, 100).unwrap(),
            Paging {
                limit: 50,
                offset: 0
            }
        );
        assert_eq!(
            Paging::from_query(Some("limit=0&offset=7"), 100).unwrap(),
            Paging {
                limit: 0,
                offset: 7
            }
        );
        assert!(Paging::from_query(Some("limit=101"), 100).is_err());
        assert!(Paging::from_query(Some("limit=-1"), 100).is_err());
        assert!(Paging::from_query(Some("offset=-1"), 100).is_err());
        assert!(Paging::from_query(Some("limit=500"), 500).is_ok());
    }

    #[test]
    fn update_rejects_bare_string_description() {
        let value = json!({ "data": [ { "id": "1", "attributes": { "description": "text" } } ] });

        let error = parse_update_items(&value).unwrap_err();

        assert_eq!(error.problems[0].code, "invalid");
        assert_eq!(
            error.problems[0].pointer.as_deref(),
            Some("/data/0/attributes/description")
        );
    }

    #[test]
    fn update_reads_nillable_description() {
        let value = json!({ "data": [
            { "id": "1", "attributes": { "description": { "value": "text" } } },
            { "id": "2", "attributes": { "description": { "value": null } } },
        ] });

        let items = parse_update_items(&value).unwrap();

        assert_eq!(items[0].description, Some(Some("text".to_owned())));
        assert_eq!(items[1].description, Some(None));
    }
}
