//! The audience lifecycle: use the configured audience, or find it by exact name under the
//! advertiser, or create it. A recorded audience is renamed when the activation's name or
//! description changes.
//!
//! A run that finds or creates the audience records its id in the state manifest when it
//! commits, so later runs neither search nor create. A configured `destination.audience_id` is used as it is and
//! never renamed, because its name in Criteo may differ from the activation's on purpose.

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::config::{Activation, DestinationKind};
use crate::snapshot::Manifest;

use super::body::Api;
use super::{CriteoClient, DestinationError, RequestFailure};

/// Criteo's maximum page size for Marketing Solutions segment searches.
const SEARCH_PAGE_SIZE: usize = 100;

/// The audience a run delivers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceTarget {
    pub api: Api,
    pub id: String,
}

impl AudienceTarget {
    /// URL path (after the version) of the amendment route.
    pub fn amend_path(&self) -> String {
        match self.api {
            Api::MarketingSolutions => {
                format!("marketing-solutions/audience-segments/{}/contact-list", self.id)
            }
            Api::RetailMedia => {
                format!("retail-media/audience-segments/{}/contact-list/add-remove", self.id)
            }
        }
    }

    /// HTTP method of the amendment route.
    pub fn amend_method(&self) -> Method {
        match self.api {
            Api::MarketingSolutions => Method::PATCH,
            Api::RetailMedia => Method::POST,
        }
    }
}

/// Origin of the audience id, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudienceSource {
    Configured,
    Recorded,
    Found,
    Created,
}

/// An audience segment as returned by a search.
#[derive(Clone, Debug, Deserialize)]
pub struct AudienceSummary {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub segment_type: Option<String>,
}

/// Returns the audience to deliver to, creating it if needed. `dry_run` finds but never
/// creates or renames.
pub async fn resolve_audience(
    client: &CriteoClient,
    activation: &Activation,
    recorded: Option<&Manifest>,
    dry_run: bool,
) -> Result<(Option<AudienceTarget>, AudienceSource), DestinationError> {
    let api = match activation.destination.kind {
        DestinationKind::Criteo => Api::MarketingSolutions,
        DestinationKind::CriteoRetailMedia => Api::RetailMedia,
    };
    let target = |id: String| Some(AudienceTarget { api, id });
    if let Some(id) = &activation.destination.audience_id {
        return Ok((target(id.clone()), AudienceSource::Configured));
    }
    if let Some(id) = recorded.and_then(|manifest| manifest.audience_id.clone()) {
        if !dry_run {
            update_if_renamed(client, activation, recorded, &id).await?;
        }
        return Ok((target(id), AudienceSource::Recorded));
    }
    let advertiser_id = activation
        .destination
        .advertiser_id
        .clone()
        .expect("validated: an advertiser is set when no audience id is");
    if let Some(found) = find_by_name(client, &advertiser_id, &activation.name).await? {
        let description_differs =
            activation.description.is_some() && found.description != activation.description;
        if description_differs && !dry_run {
            update_audience(client, activation, &found.id).await?;
        }
        return Ok((target(found.id), AudienceSource::Found));
    }
    if dry_run {
        return Ok((None, AudienceSource::Created));
    }
    let id = create(client, activation, &advertiser_id).await?;
    Ok((target(id), AudienceSource::Created))
}

fn advertiser_error(advertiser_id: &str, failure: RequestFailure) -> DestinationError {
    match failure.problem.status {
        Some(403) => DestinationError::NoAdvertiserAccess {
            advertiser_id: advertiser_id.to_string(),
            problem: failure.problem,
        },
        _ => DestinationError::Request(failure),
    }
}

/// Lists the contact-list audiences of an advertiser, following every page.
pub async fn list_audiences(
    client: &CriteoClient,
    advertiser_id: &str,
) -> Result<Vec<AudienceSummary>, DestinationError> {
    #[derive(Deserialize)]
    struct Attributes {
        name: Option<String>,
        description: Option<String>,
        #[serde(rename = "type")]
        segment_type: Option<String>,
    }
    #[derive(Deserialize)]
    struct Item {
        id: String,
        attributes: Option<Attributes>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "totalItems")]
        total_items: Option<usize>,
    }
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        data: Vec<Item>,
        meta: Option<Meta>,
    }

    let body = json!({ "data": { "attributes": {
        "advertiserIds": [advertiser_id],
        "audienceSegmentTypes": ["ContactList"],
    } } });
    let body = Bytes::from(serde_json::to_vec(&body).expect("static JSON"));
    let mut audiences = Vec::new();
    let mut offset = 0;
    loop {
        let url = client.url(&format!(
            "marketing-solutions/audience-segments/search?limit={SEARCH_PAGE_SIZE}&offset={offset}"
        ));
        let action = format!("search the audiences of advertiser {advertiser_id}");
        let bytes = client
            .send(Method::POST, &url, Some(body.clone()), &action)
            .await
            .map_err(|failure| advertiser_error(advertiser_id, failure))?;
        let page: Page = serde_json::from_slice(&bytes).map_err(|error| DestinationError::InvalidResponse {
            action: action.clone(),
            message: error.to_string(),
        })?;
        let received = page.data.len();
        for item in page.data {
            let attributes = item.attributes;
            audiences.push(AudienceSummary {
                id: item.id,
                name: attributes.as_ref().and_then(|a| a.name.clone()),
                description: attributes.as_ref().and_then(|a| a.description.clone()),
                segment_type: attributes.and_then(|a| a.segment_type),
            });
        }
        offset += received;
        let total = page.meta.and_then(|meta| meta.total_items).unwrap_or(offset);
        if received == 0 || offset >= total {
            return Ok(audiences);
        }
    }
}

async fn find_by_name(
    client: &CriteoClient,
    advertiser_id: &str,
    name: &str,
) -> Result<Option<AudienceSummary>, DestinationError> {
    let audiences = list_audiences(client, advertiser_id).await?;
    let mut matches = audiences
        .into_iter()
        .filter(|audience| audience.name.as_deref() == Some(name));
    let first = matches.next();
    if let Some(first) = &first
        && matches.next().is_some()
    {
        tracing::warn!(name, id = %first.id, "several audiences share this name; using the first one");
    }
    Ok(first)
}

/// Creates a contact-list audience; a concurrent create of the same name is resolved by
/// searching again.
pub async fn create(
    client: &CriteoClient,
    activation: &Activation,
    advertiser_id: &str,
) -> Result<String, DestinationError> {
    create_named(client, advertiser_id, &activation.name, activation.description.as_deref()).await
}

/// Creates a contact-list audience named `name` under the advertiser, or adopts the one
/// that a concurrent client created under that name.
pub async fn create_named(
    client: &CriteoClient,
    advertiser_id: &str,
    name: &str,
    description: Option<&str>,
) -> Result<String, DestinationError> {
    let mut attributes = json!({
        "advertiserId": advertiser_id,
        "name": name,
        "contactList": {},
    });
    if let Some(description) = description {
        attributes["description"] = json!(description);
    }
    let body = json!({ "data": [ { "type": "AudienceSegment", "attributes": attributes } ] });
    let body = Bytes::from(serde_json::to_vec(&body).expect("static JSON"));
    let url = client.url("marketing-solutions/audience-segments/create");
    let action = format!("create audience `{name}` under advertiser {advertiser_id}");

    let result = client.send(Method::POST, &url, Some(body), &action).await;
    let name_taken = match &result {
        Err(failure) => failure.problem.code.as_deref() == Some("name-must-be-unique"),
        Ok(bytes) => problem_codes(bytes).iter().any(|code| code == "name-must-be-unique"),
    };
    if name_taken {
        tracing::info!(name, "another client created this audience meanwhile; searching for it");
        return match find_by_name(client, advertiser_id, name).await? {
            Some(found) => Ok(found.id),
            None => Err(DestinationError::InvalidResponse {
                action,
                message: "Criteo reported the name as taken, but no audience of that name was found".into(),
            }),
        };
    }
    let bytes = result.map_err(|failure| advertiser_error(advertiser_id, failure))?;
    let codes = problem_codes(&bytes);
    if !codes.is_empty() {
        return Err(DestinationError::InvalidResponse {
            action,
            message: format!("Criteo reported: {}", codes.join(", ")),
        });
    }
    #[derive(Deserialize)]
    struct Created {
        #[serde(default)]
        data: Vec<CreatedItem>,
    }
    #[derive(Deserialize)]
    struct CreatedItem {
        id: Option<String>,
    }
    let created: Created = serde_json::from_slice(&bytes).map_err(|error| DestinationError::InvalidResponse {
        action: action.clone(),
        message: error.to_string(),
    })?;
    let id = created
        .data
        .into_iter()
        .next()
        .and_then(|item| item.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| DestinationError::CreatedWithoutId { name: name.to_string() })?;
    tracing::info!(name, id = %id, "created audience");
    Ok(id)
}

/// Codes of the `errors` (and item `warnings`) of a 200 response.
fn problem_codes(bytes: &[u8]) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    ["errors", "warnings"]
        .iter()
        .flat_map(|key| value.get(key).and_then(|v| v.as_array()).cloned().unwrap_or_default())
        .filter_map(|item| item.get("code").and_then(|code| code.as_str()).map(str::to_string))
        .filter(|code| code != "deprecated-field" && code != "endpoint-deprecated")
        .collect()
}

/// Renames or re-describes the audience when the activation's name or description differs
/// from what the last run recorded.
async fn update_if_renamed(
    client: &CriteoClient,
    activation: &Activation,
    recorded: Option<&Manifest>,
    id: &str,
) -> Result<(), DestinationError> {
    let Some(manifest) = recorded else {
        return Ok(());
    };
    let renamed = manifest.audience_name.as_deref() != Some(activation.name.as_str());
    let described = manifest.audience_description != activation.description;
    if !renamed && !described {
        return Ok(());
    }
    update_audience(client, activation, id).await
}

/// Sets the audience's name and description to the activation's; an absent description
/// clears Criteo's.
async fn update_audience(
    client: &CriteoClient,
    activation: &Activation,
    id: &str,
) -> Result<(), DestinationError> {
    let body = json!({ "data": [ {
        "id": id,
        "type": "AudienceSegment",
        "attributes": {
            "name": activation.name,
            "description": { "value": activation.description },
        },
    } ] });
    let body = Bytes::from(serde_json::to_vec(&body).expect("static JSON"));
    let url = client.url("marketing-solutions/audience-segments");
    let action = format!("update the name and description of audience {id}");
    let bytes = client.send(Method::PATCH, &url, Some(body), &action).await?;
    let codes = problem_codes(&bytes);
    if !codes.is_empty() {
        return Err(DestinationError::InvalidResponse {
            action,
            message: format!("Criteo reported: {}", codes.join(", ")),
        });
    }
    tracing::info!(id, name = %activation.name, "updated audience name and description");
    Ok(())
}

/// Checks, without changing anything, that the app can deliver to `target`.
///
/// A Marketing Solutions audience must be among its advertiser's audiences, which a found
/// audience already is. Without an advertiser, and for a Retail Media list, the audience's
/// statistics must be readable. Retail Media needs `destination.account_id` for that, so
/// without an account nothing is checked.
pub async fn verify_access(
    client: &CriteoClient,
    activation: &Activation,
    target: &AudienceTarget,
    source: AudienceSource,
) -> Result<(), DestinationError> {
    let destination = &activation.destination;
    let statistics_path = match (
        target.api,
        &destination.advertiser_id,
        &destination.account_id,
    ) {
        (Api::MarketingSolutions, _, _) if source == AudienceSource::Found => return Ok(()),
        (Api::MarketingSolutions, Some(advertiser_id), _) => {
            let audiences = list_audiences(client, advertiser_id).await?;
            if audiences.iter().any(|audience| audience.id == target.id) {
                return Ok(());
            }
            return Err(DestinationError::AudienceNotFound {
                audience_id: target.id.clone(),
                problem: Default::default(),
            });
        }
        (Api::MarketingSolutions, None, _) => format!(
            "marketing-solutions/audience-segments/{}/contact-list/statistics",
            target.id
        ),
        (Api::RetailMedia, _, Some(account_id)) => format!(
            "retail-media/accounts/{account_id}/audience-segments/{}/contact-list",
            target.id
        ),
        (Api::RetailMedia, _, None) => return Ok(()),
    };
    let url = client.url(&statistics_path);
    let action = format!("read the statistics of audience {}", target.id);
    match client.send(Method::GET, &url, None, &action).await {
        Ok(_) => Ok(()),
        Err(failure) if matches!(failure.problem.status, Some(403 | 404)) => {
            Err(DestinationError::AudienceNotFound {
                audience_id: target.id.clone(),
                problem: failure.problem,
            })
        }
        Err(failure) => Err(failure.into()),
    }
}
