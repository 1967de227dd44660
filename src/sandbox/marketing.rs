//! Marketing Solutions segment routes: create, update, search and delete contact-list
//! audience segments of the client's advertisers.
//!
//! Only contact-list segments exist in the sandbox; a create without `contactList` gets 400.
//! A request that names an advertiser outside the client's portfolio gets 403
//! `insufficient-advertiser-permissions` and changes nothing.

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
use super::problem::{ApiError, Problem};
use super::segments::{self, Filters, Paging};
use super::store::{MarketingSegment, Owner, format_timestamp, parse_marketing_id};

/// Largest `limit` of a Marketing Solutions search.
const MAX_SEARCH_LIMIT: usize = 100;
/// Values of `audienceSegmentTypes` in a search.
const SEGMENT_TYPES: [&str; 8] = [
    "Unknown",
    "InMarket",
    "Prospecting",
    "ContactList",
    "Location",
    "Behavioral",
    "Retargeting",
    "Lookalike",
];

/// A validated item of a create request.
struct NewSegment<'a> {
    index: usize,
    advertiser_id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
}

pub(crate) fn create(
    app: &App,
    context: &ApiContext<'_>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let value = body::parse_json(body)?;
    let mut drafts = Vec::new();
    for (index, item) in segments::data_items(&value)?.iter().enumerate() {
        drafts.push(parse_new_segment(index, item)?);
    }
    if let Some(foreign) = drafts
        .iter()
        .find(|draft| !context.client.may_use_advertiser(draft.advertiser_id))
    {
        return Err(forbidden_owner(&Owner::Advertiser(
            foreign.advertiser_id.to_owned(),
        )));
    }

    let mut store = app.store();
    if context.create_fault == Some(CreateFault::ConcurrentCreate) {
        for draft in &drafts {
            if !store.marketing_name_taken(draft.advertiser_id, draft.name, None) {
                store.insert_marketing(draft.advertiser_id, draft.name, draft.description);
            }
        }
    }
    let mut duplicates = Vec::new();
    let mut accepted = Vec::new();
    let mut names_in_request = HashSet::new();
    for draft in drafts {
        let first_in_request = names_in_request.insert((draft.advertiser_id, draft.name));
        if !first_in_request || store.marketing_name_taken(draft.advertiser_id, draft.name, None) {
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
            entity(store.insert_marketing(draft.advertiser_id, draft.name, draft.description))
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

    let advertiser_id = body::required_str(attributes, &attributes_pointer, "advertiserId")?;
    body::require_digits(advertiser_id, &format!("{attributes_pointer}/advertiserId"))?;
    let name = body::required_str(attributes, &attributes_pointer, "name")?;
    segments::check_name(name, &format!("{attributes_pointer}/name"))?;
    let description = body::optional_str(attributes, &attributes_pointer, "description")?;

    let contact_list_pointer = format!("{attributes_pointer}/contactList");
    let Some(contact_list) = body::optional(attributes, "contactList") else {
        return Err(ApiError::bad_request(
            Problem::validation("required-field", "A required field is missing")
                .with_detail(format!(
                    "`{contact_list_pointer}` is required: the sandbox serves contact-list segments only."
                ))
                .with_pointer(contact_list_pointer),
        ));
    };
    body::as_object(contact_list, &contact_list_pointer)?;

    Ok(NewSegment {
        index,
        advertiser_id,
        name,
        description,
    })
}

/// Renames segments or changes their descriptions.
pub(crate) fn update(
    app: &App,
    context: &ApiContext<'_>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let value = body::parse_json(body)?;
    let items = segments::parse_update_items(&value)?;
    let mut store = app.store();

    let mut not_found = Vec::new();
    let mut duplicates = Vec::new();
    let mut found = Vec::new();
    for item in items {
        let segment = parse_marketing_id(&item.id).and_then(|id| store.marketing.get(&id));
        let Some(segment) = segment else {
            not_found.push(segments::segment_not_found(
                &item.id,
                &format!("/data/{}/id", item.index),
            ));
            continue;
        };
        if !context.client.may_use_advertiser(&segment.advertiser_id) {
            return Err(forbidden_owner(&Owner::Advertiser(
                segment.advertiser_id.clone(),
            )));
        }
        let renamed_to_taken = item.name.as_deref().is_some_and(|name| {
            store.marketing_name_taken(&segment.advertiser_id, name, Some(segment.id))
        });
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
        let Some(segment) = store.marketing.get_mut(&id) else {
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

/// Lists the client's segments that pass the filters, in id order.
pub(crate) fn search(
    app: &App,
    context: &ApiContext<'_>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let paging = Paging::from_query(context.query, MAX_SEARCH_LIMIT)?;
    let value = body::parse_json(body)?;
    let filters = Filters::parse(&value, "advertiserIds", &SEGMENT_TYPES)?;
    if let Some(foreign) = filters
        .owner_ids
        .iter()
        .flatten()
        .find(|id| !context.client.may_use_advertiser(id))
    {
        return Err(forbidden_owner(&Owner::Advertiser((*foreign).to_owned())));
    }

    let store = app.store();
    let matches = store
        .marketing
        .values()
        .filter(|segment| context.client.may_use_advertiser(&segment.advertiser_id))
        .filter(|segment| filters.matches(&segment.advertiser_id, &segment.id.to_string()))
        .map(entity)
        .collect();
    Ok(paging.respond(matches))
}

/// Deletes segments with their contact lists.
pub(crate) fn delete(
    app: &App,
    context: &ApiContext<'_>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let value = body::parse_json(body)?;
    let ids = segments::parse_delete_ids(&value)?;
    let mut store = app.store();

    let mut existing = Vec::new();
    let mut warnings = Vec::new();
    for (index, id) in ids {
        match parse_marketing_id(id).and_then(|id| store.marketing.get(&id)) {
            None => warnings.push(segments::segment_not_found(
                id,
                &format!("/data/{index}/id"),
            )),
            Some(segment) if !context.client.may_use_advertiser(&segment.advertiser_id) => {
                return Err(forbidden_owner(&Owner::Advertiser(
                    segment.advertiser_id.clone(),
                )));
            }
            Some(segment) => existing.push(segment.id),
        }
    }

    let data = existing
        .into_iter()
        .filter(|id| store.marketing.remove(id).is_some())
        .map(|id| json!({ "id": id.to_string(), "type": "AudienceSegment", "attributes": {} }))
        .collect();
    Ok(segments::list_response(data, &warnings, context.instance))
}

/// Renders a segment as Criteo's `AudienceSegmentEntityV1Resource`.
fn entity(segment: &MarketingSegment) -> Value {
    json!({
        "id": segment.id.to_string(),
        "type": "AudienceSegment",
        "attributes": {
            "advertiserId": segment.advertiser_id,
            "name": segment.name,
            "description": segment.description,
            "type": "ContactList",
            "createdAt": format_timestamp(segment.created_at),
            "updatedAt": format_timestamp(segment.updated_at),
            "contactList": { "isReadOnly": false },
        }
    })
}
