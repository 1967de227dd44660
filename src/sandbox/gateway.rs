//! The gateway every request outside `/_sandbox/` passes, and the dispatch to handlers.
//!
//! Checks run in this order, and the first failure decides the response:
//!
//! ```text
//! resolve route ── 404 unknown path, 405 wrong method
//!   └ armed fault ── status, 429, dropped connection (a delay fault delays the response,
//!      │             a create fault goes with the request to the create handler)
//!      ├ token route ─────────────────────────────── token handler
//!      └ API version ── 410 decommissioned, 404 unknown
//!         └ bearer token ── 401 missing / invalid / expired
//!            └ rate limit ── 429
//!               └ content type ── 415 (routes with a JSON body)
//!                  └ body size ── 413
//!                     └ handler
//! ```
//!
//! Every response after the rate-limit step carries the `x-ratelimit-*` headers, and every
//! response of a deprecated version carries `Deprecation` and `Sunset`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::app::App;
use super::config::{SandboxClient, SandboxConfig};
use super::connection::ConnectionHandle;
use super::contact_list::{self, SegmentTarget};
use super::fault::{CreateFault, FaultAction};
use super::log::{AmendmentRecord, RecordedRequest};
use super::problem::{ApiError, Problem, ProblemType};
use super::rate_limit::{RateLimitDecision, epoch_secs_rounded_up};
use super::routes::{self, Endpoint, Route, RouteError};
use super::token::TokenStatus;
use super::{body, marketing, retail, token};

/// Request data an API handler needs besides the shared state.
#[derive(Debug)]
pub(crate) struct ApiContext<'a> {
    /// Client that the bearer token belongs to.
    pub(crate) client: &'a SandboxClient,
    /// Request path, sent as `instance` in problems.
    pub(crate) instance: &'a str,
    pub(crate) query: Option<&'a str>,
    /// Armed change to a segment create, taken from the fault queue for this request.
    pub(crate) create_fault: Option<CreateFault>,
}

/// A response with what the request log needs to know about it.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) response: Response,
    pub(crate) amendment: Option<AmendmentRecord>,
    /// Whether the connection was cut without a response.
    pub(crate) dropped: bool,
}

impl Outcome {
    pub(crate) fn from_result(result: Result<Response, ApiError>, instance: &str) -> Self {
        Outcome::from(result.unwrap_or_else(|error| error.render(instance)))
    }
}

impl From<Response> for Outcome {
    fn from(response: Response) -> Self {
        Outcome {
            response,
            amendment: None,
            dropped: false,
        }
    }
}

/// Handles a request to the token endpoint or the API and records it in the request log.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(connection): ConnectInfo<ConnectionHandle>,
    request: Request,
) -> Response {
    let sequence = app.log.next_sequence();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let route = routes::resolve(request.method(), &path);
    let route_kind = route.as_ref().ok().map(Route::kind);

    let outcome = process(&app, &connection, route, request).await;

    let status = if outcome.dropped {
        0
    } else {
        outcome.response.status().as_u16()
    };
    let amendment = outcome.amendment.unwrap_or_default();
    tracing::debug!(
        %method,
        %path,
        status,
        identifier_count = amendment.identifier_count,
        "sandbox handled a request"
    );
    app.log.record(
        sequence,
        RecordedRequest {
            method,
            path,
            query,
            route: route_kind,
            status,
            operation: amendment.operation,
            identifier_type: amendment.identifier_type,
            identifier_count: amendment.identifier_count,
            identifiers: amendment.identifiers,
        },
    );
    outcome.response
}

async fn process(
    app: &App,
    connection: &ConnectionHandle,
    route: Result<Route, RouteError>,
    request: Request,
) -> Outcome {
    let (parts, body) = request.into_parts();
    let instance = parts.uri.path();
    let route = match route {
        Ok(route) => route,
        Err(error) => {
            body::discard(body).await;
            return route_error(error).render(instance).into();
        }
    };

    let fault = app.faults().take(route.kind());
    let mut create_fault = None;
    let delay = match fault {
        Some(FaultAction::Status(status)) => {
            body::discard(body).await;
            return fault_error(status).render(instance).into();
        }
        Some(FaultAction::RateLimit { reset_after }) => {
            body::discard(body).await;
            return injected_rate_limit(app, reset_after, instance).into();
        }
        Some(FaultAction::DropConnection) => {
            connection.drop_connection();
            return Outcome {
                response: StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                amendment: None,
                dropped: true,
            };
        }
        Some(FaultAction::Delay(delay)) => Some(delay),
        Some(FaultAction::Create(fault)) => {
            create_fault = Some(fault);
            None
        }
        None => None,
    };

    let outcome = match route {
        Route::Token => token_request(app, &parts, body).await,
        Route::Api { version, endpoint } => {
            api_request(app, &version, endpoint, &parts, body, create_fault).await
        }
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    outcome
}

async fn token_request(app: &App, parts: &Parts, body: Body) -> Outcome {
    match body::read_limited(body, &parts.headers, app.config.max_body_bytes).await {
        Ok(body) => token::issue_token(app, &parts.headers, &body).into(),
        Err(error) => error.render(parts.uri.path()).into(),
    }
}

/// Runs the API checks and the handler. Every early response first reads the rest of the
/// body: closing a connection with unread data makes the kernel send a reset, and a client
/// still sending a large amendment would then see a broken connection instead of the 401 or
/// 429 it has to act on.
async fn api_request(
    app: &App,
    version: &str,
    endpoint: Endpoint,
    parts: &Parts,
    body: Body,
    create_fault: Option<CreateFault>,
) -> Outcome {
    let instance = parts.uri.path();
    let admitted =
        check_version(&app.config, version).and_then(|()| authenticate(app, &parts.headers));
    let client = match admitted {
        Ok(client) => client,
        Err(error) => {
            body::discard(body).await;
            return error.render(instance).into();
        }
    };

    let decision = app
        .rate_limiter()
        .acquire(&client.client_id, Instant::now(), SystemTime::now());
    let mut outcome = if decision.is_some_and(|decision| !decision.allowed) {
        body::discard(body).await;
        rate_limit_error().render(instance).into()
    } else {
        let context = ApiContext {
            client,
            instance,
            query: parts.uri.query(),
            create_fault,
        };
        dispatch(app, &context, endpoint, &parts.headers, body).await
    };

    let headers = outcome.response.headers_mut();
    if let Some(decision) = decision {
        decision.write_headers(headers);
    }
    let deprecated = app
        .config
        .deprecated_versions
        .iter()
        .find(|deprecated| deprecated.version == version);
    if let Some(deprecated) = deprecated {
        headers.insert("deprecation", HeaderValue::from_static("true"));
        if let Ok(sunset) = HeaderValue::from_str(&deprecated.sunset) {
            headers.insert("sunset", sunset);
        }
    }
    outcome
}

async fn dispatch(
    app: &App,
    context: &ApiContext<'_>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
) -> Outcome {
    let instance = context.instance;
    let body = if endpoint.takes_json_body() {
        if !body::is_json(headers) {
            body::discard(body).await;
            return unsupported_media_type(headers).render(instance).into();
        }
        match body::read_limited(body, headers, app.config.max_body_bytes).await {
            Ok(body) => body,
            Err(error) => return error.render(instance).into(),
        }
    } else {
        body::discard(body).await;
        Bytes::new()
    };

    let result = match endpoint {
        Endpoint::MarketingCreate => marketing::create(app, context, &body),
        Endpoint::MarketingUpdate => marketing::update(app, context, &body),
        Endpoint::MarketingSearch => marketing::search(app, context, &body),
        Endpoint::MarketingDelete => marketing::delete(app, context, &body),
        Endpoint::MarketingAmend { segment_id } => {
            let target = SegmentTarget::Marketing(&segment_id);
            return contact_list::amend(app, context, target, &body);
        }
        Endpoint::MarketingWipe { segment_id } => {
            contact_list::wipe(app, context, SegmentTarget::Marketing(&segment_id))
        }
        Endpoint::MarketingStatistics { segment_id } => {
            contact_list::statistics(app, context, SegmentTarget::Marketing(&segment_id))
        }
        Endpoint::RetailCreate { account_id } => retail::create(app, context, &account_id, &body),
        Endpoint::RetailUpdate { account_id } => retail::update(app, context, &account_id, &body),
        Endpoint::RetailSearch { account_id } => retail::search(app, context, &account_id, &body),
        Endpoint::RetailDelete { account_id } => retail::delete(app, context, &account_id, &body),
        Endpoint::RetailStatistics {
            account_id,
            segment_id,
        } => {
            let target = SegmentTarget::Retail {
                segment_id: &segment_id,
                account_id: Some(&account_id),
            };
            contact_list::statistics(app, context, target)
        }
        Endpoint::RetailAddRemove { segment_id } => {
            let target = SegmentTarget::Retail {
                segment_id: &segment_id,
                account_id: None,
            };
            return contact_list::amend(app, context, target, &body);
        }
        Endpoint::RetailClear { segment_id } => {
            let target = SegmentTarget::Retail {
                segment_id: &segment_id,
                account_id: None,
            };
            contact_list::wipe(app, context, target)
        }
    };
    Outcome::from_result(result, instance)
}

fn check_version(config: &SandboxConfig, version: &str) -> Result<(), ApiError> {
    if config
        .accepted_versions
        .iter()
        .any(|accepted| accepted == version)
    {
        return Ok(());
    }
    let accepted = config.accepted_versions.join(", ");
    if config
        .decommissioned_versions
        .iter()
        .any(|gone| gone == version)
    {
        return Err(ApiError::new(
            StatusCode::GONE,
            Problem::new(
                ProblemType::Deprecation,
                "version-decommissioned",
                "The API version is decommissioned",
            )
            .with_detail(format!(
                "Version {version} is no longer served; use one of {accepted}."
            )),
        ));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        Problem::validation("version-not-found", "The API version does not exist").with_detail(
            format!("Version `{version}` is unknown; use one of {accepted}."),
        ),
    ))
}

/// Finds the client of the bearer token in the `Authorization` header.
fn authenticate<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a SandboxClient, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(authorization_error(
            "authorization-token-missing",
            "The authorization header is missing",
        ));
    };
    let invalid = || {
        authorization_error(
            "authorization-token-invalid",
            "The authorization header is invalid",
        )
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(invalid)?;

    let client_id = match app.tokens().check(token, Instant::now()) {
        TokenStatus::Valid { client_id } => client_id.to_owned(),
        TokenStatus::Expired => {
            return Err(authorization_error(
                "authorization-token-expired",
                "The authorization token has expired",
            ));
        }
        TokenStatus::Unknown => return Err(invalid()),
    };
    app.clients.get(&client_id).ok_or_else(invalid)
}

fn authorization_error(code: &'static str, title: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        Problem::new(ProblemType::Authorization, code, title),
    )
}

fn rate_limit_error() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        Problem::new(
            ProblemType::Quota,
            "too-many-requests",
            "The rate limit is exceeded",
        )
        .with_detail("Wait until the time in x-ratelimit-reset before the next call."),
    )
}

/// Builds the response to a rate-limit fault: 429 with headers as if the client's bucket
/// were empty.
fn injected_rate_limit(app: &App, reset_after: Duration, instance: &str) -> Response {
    let mut response = rate_limit_error().render(instance);
    let decision = RateLimitDecision {
        allowed: false,
        limit: app.config.rate_limit_per_minute,
        remaining: 0,
        reset_epoch_secs: epoch_secs_rounded_up(SystemTime::now() + reset_after),
    };
    decision.write_headers(response.headers_mut());
    response
}

fn fault_error(status: u16) -> ApiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (problem_type, code) = match status.as_u16() {
        502 => (ProblemType::Availability, "bad-gateway"),
        503 => (ProblemType::Availability, "service-unavailable"),
        504 => (ProblemType::Availability, "gateway-timeout"),
        500.. => (ProblemType::Availability, "internal-error"),
        _ => (ProblemType::Unknown, "injected-fault"),
    };
    let title = status.canonical_reason().unwrap_or("Injected fault");
    ApiError::new(
        status,
        Problem::new(problem_type, code, title)
            .with_detail("This response comes from an injected sandbox fault."),
    )
}

fn unsupported_media_type(headers: &HeaderMap) -> ApiError {
    let received = body::media_type(headers).unwrap_or("no Content-Type");
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Problem::validation(
            "unsupported-media-type",
            "The content type is not supported",
        )
        .with_detail(format!("Expected application/json, got {received}.")),
    )
}

fn route_error(error: RouteError) -> ApiError {
    match error {
        RouteError::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            Problem::validation("not-found", "No route matches the path"),
        ),
        RouteError::MethodNotAllowed => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Problem::validation(
                "method-not-allowed",
                "The route does not accept this method",
            ),
        ),
    }
}
