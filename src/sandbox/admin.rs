//! Admin routes under `/_sandbox/` for tests and people driving the sandbox over HTTP. They
//! need no token, are not rate limited, faulted or recorded, and use snake_case JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::app::App;
use super::fault::Fault;
use super::identifiers::{ALL_IDENTIFIER_TYPES, IdentifierType};
use super::store::{MemberSet, SegmentKey};

pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/audiences", get(list_audiences).post(create_audience))
        .route("/audiences/{id}/members", get(list_members))
        .route("/requests", get(list_requests).delete(clear_requests))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/expire-tokens", post(expire_tokens))
}

fn admin_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[derive(Serialize)]
struct AudienceView {
    id: String,
    advertiser_id: String,
    name: String,
    description: Option<String>,
}

#[derive(Serialize)]
struct RetailMediaSegmentView {
    id: String,
    account_id: String,
    retailer_id: String,
    name: String,
    description: Option<String>,
    identifier_type: Option<String>,
}

async fn list_audiences(State(app): State<Arc<App>>) -> Response {
    let audiences: Vec<AudienceView> = app
        .audiences()
        .into_iter()
        .map(|info| AudienceView {
            id: info.id,
            advertiser_id: info.advertiser_id,
            name: info.name,
            description: info.description,
        })
        .collect();
    let retail_media_segments: Vec<RetailMediaSegmentView> = app
        .retail_media_segments()
        .into_iter()
        .map(|info| RetailMediaSegmentView {
            id: info.id.to_string(),
            account_id: info.account_id,
            retailer_id: info.retailer_id,
            name: info.name,
            description: info.description,
            identifier_type: info.identifier_type,
        })
        .collect();
    Json(json!({ "audiences": audiences, "retail_media_segments": retail_media_segments }))
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAudience {
    advertiser_id: String,
    name: String,
    description: Option<String>,
}

/// Creates a Marketing Solutions audience without the API's name checks.
async fn create_audience(
    State(app): State<Arc<App>>,
    body: Result<Json<NewAudience>, JsonRejection>,
) -> Response {
    let Json(audience) = match body {
        Ok(body) => body,
        Err(rejection) => return admin_error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let id = app
        .store()
        .insert_marketing(
            &audience.advertiser_id,
            &audience.name,
            audience.description.as_deref(),
        )
        .id;
    (StatusCode::CREATED, Json(json!({ "id": id.to_string() }))).into_response()
}

#[derive(Deserialize)]
struct MembersQuery {
    identifier_type: Option<String>,
}

/// Lists members by identifier type, sorted; `?identifier_type=` takes a name of either API.
async fn list_members(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Response {
    let requested = match query.identifier_type.as_deref() {
        None => None,
        Some(name) => match IdentifierType::from_any_name(name) {
            Some(kind) => Some(kind),
            None => {
                let message = format!(
                    "identifier type `{name}` is unknown; expected a Marketing Solutions name \
                     (email, madid, identityLink, gum, phoneNumber) or a Retail Media name \
                     (Email, UserIdentifier, IdentityLink, Gum, CustomerId, PhoneNumber)"
                );
                return admin_error(StatusCode::BAD_REQUEST, message);
            }
        },
    };

    let store = app.store();
    let found = store
        .find(&id)
        .and_then(|key| Some((key, store.contact_list(key)?)));
    let Some((key, list)) = found else {
        return admin_error(
            StatusCode::NOT_FOUND,
            format!("segment {id} does not exist"),
        );
    };

    // Without a filter, only types with members are listed.
    let mut members = BTreeMap::new();
    for kind in ALL_IDENTIFIER_TYPES {
        let values = list.members(kind);
        let wanted = match requested {
            Some(requested) => requested == kind,
            None => values.is_some_and(|values| !values.is_empty()),
        };
        if !wanted {
            continue;
        }
        let mut values = values.map(MemberSet::to_strings).unwrap_or_default();
        values.sort_unstable();
        let name = match key {
            SegmentKey::Marketing(_) => kind.marketing_name().unwrap_or(kind.retail_name()),
            SegmentKey::Retail(_) => kind.retail_name(),
        };
        members.insert(name, values);
    }
    Json(json!({ "audience_id": id, "members": members })).into_response()
}

#[derive(Deserialize)]
struct RequestsQuery {
    #[serde(default)]
    include_identifiers: bool,
}

/// Lists recorded requests; identifiers only with `?include_identifiers=true`, since they can
/// run to millions.
async fn list_requests(
    State(app): State<Arc<App>>,
    Query(query): Query<RequestsQuery>,
) -> Response {
    let mut requests = app.log.snapshot();
    if !query.include_identifiers {
        for request in &mut requests {
            request.identifiers = Vec::new();
        }
    }
    Json(requests).into_response()
}

async fn clear_requests(State(app): State<Arc<App>>) -> StatusCode {
    app.log.clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(app): State<Arc<App>>) -> Response {
    Json(app.faults().armed()).into_response()
}

/// Arms a fault given as JSON, such as `{"kind": "status", "status": 503, "route": "amend"}`.
async fn add_fault(
    State(app): State<Arc<App>>,
    body: Result<Json<Fault>, JsonRejection>,
) -> Response {
    let Json(fault) = match body {
        Ok(body) => body,
        Err(rejection) => return admin_error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    match app.inject(fault) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => admin_error(StatusCode::BAD_REQUEST, error.to_string()),
    }
}

async fn clear_faults(State(app): State<Arc<App>>) -> StatusCode {
    app.faults().clear();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(app): State<Arc<App>>) -> StatusCode {
    app.expire_tokens();
    StatusCode::NO_CONTENT
}
