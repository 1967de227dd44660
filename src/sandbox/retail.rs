//! Retail Media segment routes: create, update, search and delete contact-list segments of
//! one account (`/retail-media/accounts/{account-id}/audience-segments...`).
//!
//! Retail Media ids are 64-bit integers, sent as strings in entities and as JSON numbers in
//! `contactListId`. A request for an account outside the client's portfolio gets 403
//! `insufficient-account-permissions`; a segment of another account counts as not found.

use std::collections::HashSet;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::app::App;
use super::body;
use super::config::DuplicateNamePolicy;
use super::contact_list::forbidden_owner;
use super::fault::CreateFault;
use super::gateway::ApiContext;
use super::identifiers::{IdentifierType, RETAIL_LIST_TYPE_NAMES};
use super::problem::{ApiError, Problem};
use super::segments::{self, Filters, Paging};
use super::store::{Owner, RetailSegment, format_timestamp, parse_retail_id};

/// Largest `limit` of a Retail Media search.
const MAX_SEARCH_LIMIT: usize = 500;
/// Values of `audienceSegmentTypes` in a search.
const SEGMENT_TYPES: [&str; 3] = ["Unknown", "ContactList", "Events"];

/// A validated item of a create request.
struct NewSegment<'a> {
    index: usize,
    retailer_id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    identifier_type: Option<IdentifierType>,
}

fn check_account(context: &ApiContext<'_>, account_id: &str) -> Result<(), ApiError> {
    if context.client.may_use_account(account_id) {
        Ok(())
    } else {
        Err(forbidden_owner(&Owner::Account(account_id.to_owned())))
    }
}

pub(crate) fn create(
    app: &App,
    context: &ApiContext<'_>,
    account_id: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    check_account(context, account_id)?;
    let value = body::parse_json(body)?;
    let mut drafts = Vec::new();
    for (index, item) in segments::data_items(&value)?.iter().enumerate() {
        drafts.push(parse_new_segment(index, item)?);
    }

    let mut store = app.store();
    if context.create_fault == Some(CreateFault::ConcurrentCreate) {
        for draft in &drafts {
            if !store.retail_name_taken(account_id, draft.name, None) {
                store.insert_retail(
                    account_id,
                    draft.retailer_id,
                    draft.name,
                    draft.description,
                    draft.identifier_type,
                );
            }
        }
    }
    let mut duplicates = Vec::new();
    let mut accepted = Vec::new();
    let mut names_in_request = HashSet::new();
    for draft in drafts {
        let first_in_request = names_in_request.insert(draft.name);
        if !first_in_request || store.retail_name_taken(account_id, draft.name, None) {
            let pointer = format!("/data/{}/attributes/name", draft.index);
            duplicates.push(segments::duplicate_name(draft.name, &pointer));
        } else {
            accepted.push(draft);
        }
    }
    if !duplicates.is_empty() && app.config.duplicate_name_policy == DuplicateNamePolicy::Reject {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            problems: duplicates,
        });
    }

    let mut data: Vec<Value> = accepted
        .iter()
        .map(|draft| {
            entity(store.insert_retail(
                account_id,
                draft.retailer_id,
                draft.name,
                draft.description,
                draft.identifier_type,
            ))
        })
        .collect();
    if context.create_fault == Some(CreateFault::WithoutId) {
        segments::remove_ids(&mut data);
    }
    Ok(segments::list_response(data, &duplicates, context.instance))
}

fn parse_new_segment(index: usize, item: &Value) -> Result<NewSegment<'_>, ApiError> {
    let pointer = format!("/data/{index}");
    let item = body::as_object(item, &pointer)?;
    let attributes_pointer = format!("{pointer}/attributes");
    let attributes = body::as_object(
        body::required(item, &pointer, "attributes")?,
        &attributes_pointer,
    )?;

    let retailer_id = body::required_str(attributes, &attributes_pointer, "retailerId")?;
    body::require_digits(retailer_id, &format!("{attributes_pointer}/retailerId"))?;
    let name = body::required_str(attributes, &attributes_pointer, "name")?;
    segments::check_name(name, &format!("{attributes_pointer}/name"))?;
    let description = body::optional_str(attributes, &attributes_pointer, "description")?;

    let contact_list_pointer = format!("{attributes_pointer}/contactList");
    if body::optional(attributes, "events").is_some() {
        let pointer = format!("{attributes_pointer}/events");
        return Err(ApiError::bad_request(
            Problem::validation("invalid", "Invalid field")
                .with_detail(format!(
                    "`{pointer}` is not supported: the sandbox serves contact-list segments only."
                ))
                .with_pointer(pointer),
        ));
    }
    let Some(contact_list) = body::optional(attributes, "contactList") else {
        return Err(ApiError::bad_request(
            Problem::validation("required-field", "A required field is missing")
                .with_detail(format!(
                    "`{contact_list_pointer}` is required: the sandbox serves contact-list segments only."
                ))
                .with_pointer(contact_list_pointer),
        ));
    };
    let contact_list = body::as_object(contact_list, &contact_list_pointer)?;
    let identifier_type =
        match body::optional_str(contact_list, &contact_list_pointer, "identifierType")? {
            None => None,
            Some(name) => Some(
                IdentifierType::from_retail_name(name)
                    .filter(|kind| kind.is_retail_list_type())
                    .ok_or_else(|| {
                        let pointer = format!("{contact_list_pointer}/identifierType");
                        body::not_one_of(&pointer, name, RETAIL_LIST_TYPE_NAMES)
                    })?,
            ),
        };

    Ok(NewSegment {
        index,
        retailer_id,
        name,
        description,
        identifier_type,
    })
}

/// Renames segments of the account or changes their descriptions.
pub(crate) fn update(
    app: &App,
    context: &ApiContext<'_>,
    account_id: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    check_account(context, account_id)?;
    let value = body::parse_json(body)?;
    let items = segments::parse_update_items(&value)?;
    let mut store = app.store();

    let mut not_found = Vec::new();
    let mut duplicates = Vec::new();
    let mut found = Vec::new();
    for item in items {
        let segment = parse_retail_id(&item.id)
            .and_then(|id| store.retail.get(&id))
            .filter(|segment| segment.account_id == account_id);
        let Some(segment) = segment else {
            not_found.push(segments::segment_not_found(
                &item.id,
                &format!("/data/{}/id", item.index),
            ));
            continue;
        };
        let renamed_to_taken = item
            .name
            .as_deref()
            .is_some_and(|name| store.retail_name_taken(account_id, name, Some(segment.id)));
        if renamed_to_taken {
            duplicates.push(segments::duplicate_name(
                item.name.as_deref().unwrap_or_default(),
                &item.name_pointer(),
            ));
        } else {
            found.push((segment.id, item));
        }
    }
    if !duplicates.is_empty() && app.config.duplicate_name_policy == DuplicateNamePolicy::Reject {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            problems: duplicates,
        });
    }

    let now = Utc::now();
    let mut data = Vec::with_capacity(found.len());
    for (id, item) in found {
        let Some(segment) = store.retail.get_mut(&id) else {
            continue;
        };
        if let Some(name) = item.name {
            segment.name = name;
        }
        if let Some(description) = item.description {
            segment.description = description;
        }
        segment.updated_at = now;
        data.push(entity(segment));
    }
    let warnings: Vec<Problem> = not_found.into_iter().chain(duplicates).collect();
    Ok(segments::list_response(data, &warnings, context.instance))
}

/// Lists the account's segments that pass the filters, in id order.
pub(crate) fn search(
    app: &App,
    context: &ApiContext<'_>,
    account_id: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    check_account(context, account_id)?;
    let paging = Paging::from_query(context.query, MAX_SEARCH_LIMIT)?;
    let value = body::parse_json(body)?;
    let filters = Filters::parse(&value, "retailerIds", &SEGMENT_TYPES)?;

    let store = app.store();
    let matches = store
        .retail
        .values()
        .filter(|segment| segment.account_id == account_id)
        .filter(|segment| filters.matches(&segment.retailer_id, &segment.id.to_string()))
        .map(entity)
        .collect();
    Ok(paging.respond(matches))
}

/// Deletes segments of the account with their contact lists.
pub(crate) fn delete(
    app: &App,
    context: &ApiContext<'_>,
    account_id: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    check_account(context, account_id)?;
    let value = body::parse_json(body)?;
    let ids = segments::parse_delete_ids(&value)?;
    let mut store = app.store();

    let mut data = Vec::new();
    let mut warnings = Vec::new();
    for (index, id) in ids {
        let in_account = parse_retail_id(id).filter(|id| {
            store
                .retail
                .get(id)
                .is_some_and(|segment| segment.account_id == account_id)
        });
        match in_account.and_then(|id| store.retail.remove(&id)) {
            Some(segment) => data.push(json!({
                "id": segment.id.to_string(),
                "type": "RetailMediaAudienceSegment",
                "attributes": {},
            })),
            None => warnings.push(segments::segment_not_found(
                id,
                &format!("/data/{index}/id"),
            )),
        }
    }
    Ok(segments::list_response(data, &warnings, context.instance))
}

/// Renders a segment as Criteo's `RmAudienceSegmentEntityV1Resource`.
fn entity(segment: &RetailSegment) -> Value {
    let identifier_type = segment
        .identifier_type
        .map_or("Unknown", IdentifierType::retail_name);
    json!({
        "id": segment.id.to_string(),
        "type": "RetailMediaAudienceSegment",
        "attributes": {
            "accountId": segment.account_id,
            "retailerId": segment.retailer_id,
            "name": segment.name,
            "description": segment.description,
            "type": "ContactList",
            "createdAt": format_timestamp(segment.created_at),
            "updatedAt": format_timestamp(segment.updated_at),
            "contactList": {
                "identifierType": identifier_type,
                "isReadOnly": false,
                "sharingStatus": "NotShared",
            },
        }
    })
}
