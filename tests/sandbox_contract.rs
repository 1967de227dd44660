//! Contract tests of the fake Criteo server, over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use audience_sync::sandbox::{
    DeprecatedVersion, DuplicateNamePolicy, Fault, RouteKind, Sandbox, SandboxClient, SandboxConfig,
};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const VERSION: &str = "2026-07";
const AUDIENCE: &str = "987654";
const RETAIL_SEGMENT: &str = "568708742535471104";

async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sandbox starts")
}

async fn request_token(http: &Client, sandbox: &Sandbox, id: &str, secret: &str) -> Response {
    http.post(format!("{}/oauth2/token", sandbox.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap()
}

async fn token(http: &Client, sandbox: &Sandbox) -> String {
    let response = request_token(http, sandbox, "sandbox-client", "sandbox-secret").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Returns a valid SHA-256-shaped email identifier, distinct for each `i`.
fn hash(i: usize) -> String {
    format!("{i:064x}")
}

fn hashes(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(hash).collect()
}

fn api_url(sandbox: &Sandbox, path: &str) -> String {
    format!("{}/{VERSION}/{path}", sandbox.base_url())
}

fn contact_list_url(sandbox: &Sandbox, audience: &str) -> String {
    api_url(
        sandbox,
        &format!("marketing-solutions/audience-segments/{audience}/contact-list"),
    )
}

fn amendment(operation: &str, identifier_type: &str, identifiers: &[String]) -> Value {
    json!({
        "data": {
            "type": "ContactlistAmendment",
            "attributes": {
                "operation": operation,
                "identifierType": identifier_type,
                "identifiers": identifiers,
            }
        }
    })
}

async fn amend(
    http: &Client,
    sandbox: &Sandbox,
    token: &str,
    audience: &str,
    body: &Value,
) -> Response {
    http.patch(contact_list_url(sandbox, audience))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post_json(http: &Client, url: String, token: &str, body: &Value) -> Response {
    http.post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Returns the status and the first error code of a Criteo-style error response.
async fn error_code(response: Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let code = body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

fn epoch_secs_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn token_flow_returns_bearer_token() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();

    let response = request_token(&http, &sandbox, "sandbox-client", "sandbox-secret").await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|token| !token.is_empty())
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_token"], Value::Null);
}

#[tokio::test]
async fn token_errors_follow_oauth() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let url = format!("{}/oauth2/token", sandbox.base_url());

    let wrong_secret = request_token(&http, &sandbox, "sandbox-client", "wrong").await;
    let unknown_client = request_token(&http, &sandbox, "someone", "sandbox-secret").await;
    let wrong_grant = http
        .post(&url)
        .form(&[("grant_type", "password"), ("client_id", "sandbox-client")])
        .send()
        .await
        .unwrap();
    let json_body = http
        .post(&url)
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();

    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_secret.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    assert_eq!(unknown_client.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_grant.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong_grant.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    assert_eq!(json_body.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn missing_token_is_401_with_trace_id() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();

    let response = http
        .get(format!(
            "{}/statistics",
            contact_list_url(&sandbox, AUDIENCE)
        ))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    let error = &body["errors"][0];
    assert_eq!(error["code"], "authorization-token-missing");
    assert_eq!(error["type"], "authorization");
    assert!(error["traceId"].as_str().is_some_and(|id| id.len() == 32));
    assert_eq!(
        error["instance"],
        format!(
            "/{VERSION}/marketing-solutions/audience-segments/{AUDIENCE}/contact-list/statistics"
        )
    );
}

#[tokio::test]
async fn unknown_token_is_401_invalid() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let url = format!("{}/statistics", contact_list_url(&sandbox, AUDIENCE));

    let unknown = http.get(&url).bearer_auth("forged").send().await.unwrap();
    let not_bearer = http
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();

    assert_eq!(
        error_code(unknown).await,
        (
            StatusCode::UNAUTHORIZED,
            "authorization-token-invalid".to_owned()
        )
    );
    assert_eq!(
        error_code(not_bearer).await,
        (
            StatusCode::UNAUTHORIZED,
            "authorization-token-invalid".to_owned()
        )
    );
}

#[tokio::test]
async fn expired_token_is_401_expired() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = format!("{}/statistics", contact_list_url(&sandbox, AUDIENCE));

    let before = http.get(&url).bearer_auth(&token).send().await.unwrap();
    sandbox.expire_tokens();
    let after = http.get(&url).bearer_auth(&token).send().await.unwrap();
    let fresh_token = self::token(&http, &sandbox).await;
    let renewed = http
        .get(&url)
        .bearer_auth(&fresh_token)
        .send()
        .await
        .unwrap();

    assert_eq!(before.status(), StatusCode::OK);
    assert_eq!(
        error_code(after).await,
        (
            StatusCode::UNAUTHORIZED,
            "authorization-token-expired".to_owned()
        )
    );
    assert_eq!(renewed.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_expires_after_ttl() {
    let config = SandboxConfig {
        token_ttl_secs: 1,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = http
        .get(format!(
            "{}/statistics",
            contact_list_url(&sandbox, AUDIENCE)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(
        error_code(response).await,
        (
            StatusCode::UNAUTHORIZED,
            "authorization-token-expired".to_owned()
        )
    );
}

#[tokio::test]
async fn decommissioned_version_is_410() {
    let config = SandboxConfig {
        decommissioned_versions: vec!["2025-10".to_owned()],
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let path = format!("marketing-solutions/audience-segments/{AUDIENCE}/contact-list/statistics");

    let gone = http
        .get(format!("{}/2025-10/{path}", sandbox.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let unknown = http
        .get(format!("{}/2024-13/{path}", sandbox.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let release_candidate = http
        .get(format!("{}/2027-01/{path}", sandbox.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(gone.status(), StatusCode::GONE);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(release_candidate.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let body = amendment("add", "email", &hashes(0..1)).to_string();

    let response = http
        .patch(contact_list_url(&sandbox, AUDIENCE))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(sandbox.members(AUDIENCE, "email").is_empty());
}

#[tokio::test]
async fn amend_add_remove_round_trip() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let mut sent = hashes(0..3);
    sent.push("jkl@gmail".to_owned());

    let added = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &sent),
    )
    .await;
    let added_status = added.status();
    let added: Value = added.json().await.unwrap();
    let removed = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("remove", "email", &hashes(0..1)),
    )
    .await;
    let removed_status = removed.status();
    let removed: Value = removed.json().await.unwrap();

    assert_eq!(added_status, StatusCode::OK);
    let attributes = &added["data"]["attributes"];
    assert_eq!(added["data"]["type"], "ContactlistAmendment");
    assert_eq!(attributes["contactListId"], json!(987_654));
    assert_eq!(attributes["operation"], "add");
    assert_eq!(attributes["identifierType"], "email");
    assert_eq!(attributes["nbValidIdentifiers"], 3);
    assert_eq!(attributes["nbInvalidIdentifiers"], 1);
    assert_eq!(attributes["sampleInvalidIdentifiers"], json!(["jkl@gmail"]));
    assert!(
        attributes["requestDate"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    assert_eq!(removed_status, StatusCode::OK);
    assert_eq!(removed["data"]["attributes"]["nbValidIdentifiers"], 1);
    assert_eq!(
        sandbox.members(AUDIENCE, "email"),
        hashes(1..3).into_iter().collect()
    );
}

#[tokio::test]
async fn amend_validation_cases_are_400() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let ids = hashes(0..1);
    let gum = |caller: Value| {
        json!({ "data": { "type": "ContactlistAmendment", "attributes": {
            "operation": "add", "identifierType": "gum", "identifiers": ["g1"], "gumCallerId": caller } } })
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("body not JSON", "{not json".to_owned(), "invalid"),
        ("data missing", json!({}).to_string(), "required-field"),
        (
            "data.type missing",
            json!({ "data": { "attributes": { "operation": "add", "identifierType": "email", "identifiers": ids } } }).to_string(),
            "required-field",
        ),
        ("operation unknown", amendment("upsert", "email", &ids).to_string(), "invalid"),
        (
            "identifiers missing",
            json!({ "data": { "type": "ContactlistAmendment", "attributes": { "operation": "add", "identifierType": "email" } } }).to_string(),
            "required-field",
        ),
        (
            "identifiers not strings",
            json!({ "data": { "type": "ContactlistAmendment", "attributes": { "operation": "add", "identifierType": "email", "identifiers": [1, 2] } } }).to_string(),
            "invalid",
        ),
        ("identifierType unknown", amendment("add", "Email", &ids).to_string(), "invalid"),
        ("identifierType customerid", amendment("add", "customerid", &ids).to_string(), "invalid"),
        ("gum without caller id", gum(Value::Null).to_string(), "required-field"),
        ("gum with string caller id", gum(json!("329739")).to_string(), "invalid"),
    ];

    for (case, body, expected_code) in cases {
        let response = http
            .patch(contact_list_url(&sandbox, AUDIENCE))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, code) = error_code(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}");
        assert_eq!(code, expected_code, "{case}");
    }
    assert!(sandbox.members(AUDIENCE, "email").is_empty());
}

#[tokio::test]
async fn gum_with_integer_caller_id_is_accepted() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let body = json!({ "data": { "type": "ContactlistAmendment", "attributes": {
        "operation": "add", "identifierType": "gum", "identifiers": ["g1"],
        "gumCallerId": 329_739, "internalIdentifiers": false } } });

    let response = amend(&http, &sandbox, &token, AUDIENCE, &body).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sandbox.members(AUDIENCE, "gum").len(), 1);
}

#[tokio::test]
async fn amend_accepts_50000_rejects_50001() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;

    let at_limit = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..50_000)),
    )
    .await;
    let above_limit = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..50_001)),
    )
    .await;

    assert_eq!(at_limit.status(), StatusCode::OK);
    assert_eq!(
        error_code(above_limit).await,
        (StatusCode::BAD_REQUEST, "too-many-identifiers".to_owned())
    );
    assert_eq!(sandbox.members(AUDIENCE, "email").len(), 50_000);
    let counts: Vec<(u16, usize)> = sandbox
        .requests()
        .iter()
        .filter(|request| request.route == Some(RouteKind::Amend))
        .map(|request| (request.status, request.identifier_count))
        .collect();
    assert_eq!(counts, [(200, 50_000), (400, 50_001)]);
}

#[tokio::test]
async fn body_above_size_limit_is_413() {
    let config = SandboxConfig {
        max_body_bytes: 4096,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;

    let response = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..100)),
    )
    .await;

    assert_eq!(
        error_code(response).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large".to_owned()
        )
    );
}

#[tokio::test]
async fn unknown_segment_is_404_audience_invalid() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;

    let response = amend(
        &http,
        &sandbox,
        &token,
        "1",
        &amendment("add", "email", &hashes(0..1)),
    )
    .await;

    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "audience-invalid".to_owned())
    );
}

#[tokio::test]
async fn foreign_advertiser_segment_is_403() {
    let sandbox = start(SandboxConfig::default()).await;
    let foreign = sandbox.create_audience("99999", "Someone else's", None);
    let http = Client::new();
    let token = token(&http, &sandbox).await;

    let response = amend(
        &http,
        &sandbox,
        &token,
        &foreign,
        &amendment("add", "email", &hashes(0..1)),
    )
    .await;

    assert_eq!(
        error_code(response).await,
        (
            StatusCode::FORBIDDEN,
            "insufficient-advertiser-permissions".to_owned()
        )
    );
    assert!(sandbox.members(&foreign, "email").is_empty());
}

#[tokio::test]
async fn wipe_and_statistics_follow_members() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..8)),
    )
    .await;
    let statistics_url = format!("{}/statistics", contact_list_url(&sandbox, AUDIENCE));

    let before: Value = http
        .get(&statistics_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wiped = http
        .delete(contact_list_url(&sandbox, AUDIENCE))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let wiped_status = wiped.status();
    let wiped: Value = wiped.json().await.unwrap();
    let after: Value = http
        .get(&statistics_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(before["data"]["attributes"]["numberOfIdentifiers"], 8);
    assert_eq!(before["data"]["attributes"]["numberOfMatches"], 6);
    assert_eq!(wiped_status, StatusCode::OK);
    assert_eq!(
        wiped["data"],
        json!({ "id": AUDIENCE, "type": "AudienceContactlist" })
    );
    assert_eq!(after["data"]["attributes"]["numberOfIdentifiers"], 0);
    assert!(sandbox.members(AUDIENCE, "email").is_empty());
}

#[tokio::test]
async fn legacy_contactlist_route_is_alias() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let legacy_url = api_url(&sandbox, &format!("audiences/{AUDIENCE}/contactlist"));

    let added = http
        .patch(&legacy_url)
        .bearer_auth(&token)
        .json(&amendment(
            "add",
            "madid",
            &["3f097372-f01e-4b64-984c-395ae5828ee6".to_owned()],
        ))
        .send()
        .await
        .unwrap();
    let members_after_add = sandbox.members(AUDIENCE, "madid").len();
    let wiped = http
        .delete(&legacy_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(added.status(), StatusCode::OK);
    assert_eq!(members_after_add, 1);
    assert_eq!(wiped.status(), StatusCode::OK);
    assert!(sandbox.members(AUDIENCE, "madid").is_empty());
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let config = SandboxConfig {
        rate_limit_per_minute: 3,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = format!("{}/statistics", contact_list_url(&sandbox, AUDIENCE));

    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        remaining.push(
            header(&response, "x-ratelimit-remaining")
                .unwrap()
                .to_owned(),
        );
    }
    let limited = http.get(&url).bearer_auth(&token).send().await.unwrap();

    assert_eq!(remaining, ["2", "1", "0"]);
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&limited, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&limited, "retry-after"), None);
    // Three requests per minute refill one token every 20 seconds.
    let reset: u64 = header(&limited, "x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    let now = epoch_secs_now();
    assert!(
        (now + 15..=now + 21).contains(&reset),
        "reset {reset}, now {now}"
    );
}

#[tokio::test]
async fn status_fault_applies_once_to_its_route() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    sandbox.inject(Fault::Status {
        status: 503,
        count: 1,
        route: Some(RouteKind::Amend),
    });
    let body = amendment("add", "email", &hashes(0..2));

    let statistics = http
        .get(format!(
            "{}/statistics",
            contact_list_url(&sandbox, AUDIENCE)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let first = amend(&http, &sandbox, &token, AUDIENCE, &body).await;
    let first_status = first.status();
    let first: Value = first.json().await.unwrap();
    let second = amend(&http, &sandbox, &token, AUDIENCE, &body).await;

    assert_eq!(statistics.status(), StatusCode::OK);
    assert_eq!(first_status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first["errors"][0]["type"], "availability");
    assert_eq!(first["errors"][0]["code"], "service-unavailable");
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(sandbox.members(AUDIENCE, "email").len(), 2);
}

#[tokio::test]
async fn rate_limit_fault_sends_reset_time() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    sandbox.inject(Fault::RateLimit {
        reset_after_secs: 30,
        count: 2,
        route: Some(RouteKind::Token),
    });

    let first = request_token(&http, &sandbox, "sandbox-client", "sandbox-secret").await;
    let second = request_token(&http, &sandbox, "sandbox-client", "sandbox-secret").await;
    let third = request_token(&http, &sandbox, "sandbox-client", "sandbox-secret").await;

    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&first, "retry-after"), None);
    let reset: u64 = header(&first, "x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    let now = epoch_secs_now();
    assert!(
        (now + 28..=now + 31).contains(&reset),
        "reset {reset}, now {now}"
    );
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.status(), StatusCode::OK);
}

#[tokio::test]
async fn dropped_connection_is_transport_error() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    sandbox.inject(Fault::DropConnection {
        count: 1,
        route: Some(RouteKind::Amend),
    });
    let body = amendment("add", "email", &hashes(0..10));

    let dropped = http
        .patch(contact_list_url(&sandbox, AUDIENCE))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await;
    let retried = amend(&http, &sandbox, &token, AUDIENCE, &body).await;

    let error = dropped.expect_err("the connection is dropped");
    assert!(error.status().is_none(), "{error:?}");
    assert!(error.is_request() || error.is_connect(), "{error:?}");
    assert_eq!(retried.status(), StatusCode::OK);
    let statuses: Vec<u16> = sandbox
        .requests()
        .iter()
        .filter(|request| request.route == Some(RouteKind::Amend))
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [0, 200]);
}

#[tokio::test]
async fn delay_fault_holds_applied_response() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    sandbox.inject(Fault::Delay {
        delay_ms: 1500,
        count: 1,
        route: Some(RouteKind::Amend),
    });

    let started = Instant::now();
    let timed_out = http
        .patch(contact_list_url(&sandbox, AUDIENCE))
        .bearer_auth(&token)
        .timeout(Duration::from_millis(300))
        .json(&amendment("add", "email", &hashes(0..1)))
        .send()
        .await;

    let error = timed_out.expect_err("the client times out");
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(sandbox.members(AUDIENCE, "email").len(), 1);
}

#[tokio::test]
async fn delay_fault_delays_response() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    sandbox.inject(Fault::Delay {
        delay_ms: 300,
        count: 1,
        route: None,
    });

    let started = Instant::now();
    let response = request_token(&http, &sandbox, "sandbox-client", "sandbox-secret").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn expire_tokens_fault_expires_current_tokens() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;

    sandbox.inject(Fault::ExpireTokens);
    let response = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..1)),
    )
    .await;

    assert_eq!(
        error_code(response).await,
        (
            StatusCode::UNAUTHORIZED,
            "authorization-token-expired".to_owned()
        )
    );
    assert!(sandbox.armed_faults().is_empty());
}

#[tokio::test]
async fn admin_routes_inject_and_inspect() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let admin = format!("{}/_sandbox", sandbox.base_url());
    let token = token(&http, &sandbox).await;

    let injected = http
        .post(format!("{admin}/faults"))
        .json(&json!({ "kind": "status", "status": 500, "route": "amend" }))
        .send()
        .await
        .unwrap();
    let invalid = http
        .post(format!("{admin}/faults"))
        .json(&json!({ "kind": "status", "status": 200 }))
        .send()
        .await
        .unwrap();
    let faulted = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..2)),
    )
    .await;
    amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..2)),
    )
    .await;
    let members: Value = http
        .get(format!(
            "{admin}/audiences/{AUDIENCE}/members?identifier_type=email"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests: Value = http
        .get(format!("{admin}/requests?include_identifiers=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expired = http
        .post(format!("{admin}/expire-tokens"))
        .send()
        .await
        .unwrap();
    let after_expiry = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..1)),
    )
    .await;

    assert_eq!(injected.status(), StatusCode::NO_CONTENT);
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert_eq!(faulted.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(members["members"]["email"], json!(hashes(0..2)));
    let last = requests.as_array().unwrap().last().unwrap();
    assert_eq!(last["status"], 200);
    assert_eq!(last["identifiers"], json!(hashes(0..2)));
    assert_eq!(expired.status(), StatusCode::NO_CONTENT);
    assert_eq!(after_expiry.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn request_log_records_amendments() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let sent = vec![hash(2), hash(1), "bad".to_owned()];

    amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("remove", "email", &sent),
    )
    .await;

    let requests = sandbox.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].route, Some(RouteKind::Token));
    let amendment = &requests[1];
    assert_eq!(amendment.method, "PATCH");
    assert_eq!(
        amendment.path,
        format!("/{VERSION}/marketing-solutions/audience-segments/{AUDIENCE}/contact-list")
    );
    assert_eq!(amendment.status, 200);
    assert_eq!(amendment.operation.as_deref(), Some("remove"));
    assert_eq!(amendment.identifier_type.as_deref(), Some("email"));
    assert_eq!(amendment.identifier_count, 3);
    assert_eq!(amendment.identifiers, sent);

    sandbox.clear_requests();
    assert!(sandbox.requests().is_empty());
}

#[tokio::test]
async fn request_log_can_skip_identifiers() {
    let config = SandboxConfig {
        record_identifiers: false,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;

    amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..5)),
    )
    .await;

    let amendment = sandbox.requests().pop().unwrap();
    assert_eq!(amendment.identifier_count, 5);
    assert!(amendment.identifiers.is_empty());
}

#[tokio::test]
async fn retail_media_add_remove_keeps_int64_id() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(
        &sandbox,
        &format!("retail-media/audience-segments/{RETAIL_SEGMENT}/contact-list/add-remove"),
    );
    let body = json!({ "data": { "type": "AddRemoveContactlist", "attributes": {
        "operation": "add", "identifierType": "Email", "identifiers": hashes(0..2) } } });

    let response = post_json(&http, url, &token, &body).await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#""contactListId":568708742535471104"#),
        "{text}"
    );
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["type"], "AddRemoveContactlistResult");
    assert_eq!(
        parsed["data"]["contactListId"].as_i64(),
        Some(568_708_742_535_471_104)
    );
    assert_eq!(parsed["data"]["identifierType"], "Email");
    assert_eq!(parsed["data"]["nbValidIdentifiers"], 2);
    assert!(parsed["data"].get("attributes").is_none());
    assert_eq!(sandbox.members(RETAIL_SEGMENT, "Email").len(), 2);
}

#[tokio::test]
async fn retail_media_create_amend_clear() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let create = json!({ "data": [ { "type": "AudienceSegment", "attributes": {
        "retailerId": "299", "name": "loyalty-gold", "contactList": { "identifierType": "CustomerId" } } } ] });

    let created: Value = post_json(
        &http,
        api_url(
            &sandbox,
            "retail-media/accounts/777/audience-segments/create",
        ),
        &token,
        &create,
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["data"][0]["id"].as_str().unwrap().to_owned();
    let amend_url = api_url(
        &sandbox,
        &format!("retail-media/audience-segments/{id}/contact-list/add-remove"),
    );
    // Without identifierType the segment's own type applies.
    let body = json!({ "data": { "attributes": { "operation": "add", "identifiers": ["C-100234", "C-100871"] } } });
    let amended: Value = post_json(&http, amend_url, &token, &body)
        .await
        .json()
        .await
        .unwrap();
    let members = sandbox.members(&id, "CustomerId");
    let cleared = http
        .post(api_url(
            &sandbox,
            &format!("retail-media/audience-segments/{id}/contact-list/clear"),
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(id, "568708742535471105");
    assert_eq!(
        created["data"][0]["attributes"]["contactList"]["identifierType"],
        "CustomerId"
    );
    assert_eq!(
        amended["data"]["contactListId"].as_i64(),
        Some(568_708_742_535_471_105)
    );
    assert_eq!(amended["data"]["identifierType"], "CustomerId");
    assert_eq!(members.len(), 2);
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert!(sandbox.members(&id, "CustomerId").is_empty());
}

#[tokio::test]
async fn retail_media_foreign_account_is_403() {
    let config = SandboxConfig {
        clients: vec![
            SandboxConfig::default().clients.remove(0),
            SandboxClient {
                client_id: "other".to_owned(),
                client_secret: "other-secret".to_owned(),
                advertiser_ids: vec![],
                account_ids: vec!["888".to_owned()],
            },
        ],
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let response = request_token(&http, &sandbox, "other", "other-secret").await;
    let token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = api_url(
        &sandbox,
        &format!("retail-media/audience-segments/{RETAIL_SEGMENT}/contact-list/add-remove"),
    );
    let body = json!({ "data": { "attributes": { "operation": "add", "identifierType": "Email", "identifiers": hashes(0..1) } } });

    let response = post_json(&http, url, &token, &body).await;

    assert_eq!(
        error_code(response).await,
        (
            StatusCode::FORBIDDEN,
            "insufficient-account-permissions".to_owned()
        )
    );
}

fn create_body(names: &[&str]) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({ "type": "AudienceSegment", "attributes": {
            "advertiserId": "12345", "name": name, "description": "Synced", "contactList": {} } })
        })
        .collect();
    json!({ "data": items })
}

#[tokio::test]
async fn create_returns_contact_list_segment() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments/create");

    let response = post_json(&http, url, &token, &create_body(&["vip"])).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let segment = &body["data"][0];
    assert_eq!(segment["id"], "987655");
    assert_eq!(segment["attributes"]["type"], "ContactList");
    assert_eq!(segment["attributes"]["advertiserId"], "12345");
    assert_eq!(segment["attributes"]["contactList"]["isReadOnly"], false);
    assert_eq!(body["errors"], json!([]));
    assert!(
        sandbox
            .audiences()
            .iter()
            .any(|audience| audience.name == "vip")
    );
}

#[tokio::test]
async fn duplicate_name_create_is_400() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments/create");

    let response = post_json(&http, url, &token, &create_body(&["Sandbox audience"])).await;

    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "name-must-be-unique".to_owned())
    );
    assert_eq!(sandbox.audiences().len(), 1);
}

#[tokio::test]
async fn duplicate_name_create_can_warn() {
    let config = SandboxConfig {
        duplicate_name_policy: DuplicateNamePolicy::Warn,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments/create");

    let response = post_json(
        &http,
        url,
        &token,
        &create_body(&["Sandbox audience", "new"]),
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["attributes"]["name"], "new");
    assert_eq!(body["warnings"][0]["code"], "name-must-be-unique");
}

#[tokio::test]
async fn create_validation_and_permissions() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments/create");
    let with = |attributes: Value| json!({ "data": [ { "attributes": attributes } ] });

    let empty_name = post_json(
        &http,
        url.clone(),
        &token,
        &with(json!({ "advertiserId": "12345", "name": " ", "contactList": {} })),
    )
    .await;
    let no_contact_list = post_json(
        &http,
        url.clone(),
        &token,
        &with(json!({ "advertiserId": "12345", "name": "x" })),
    )
    .await;
    let foreign = post_json(
        &http,
        url,
        &token,
        &with(json!({ "advertiserId": "99999", "name": "x", "contactList": {} })),
    )
    .await;

    assert_eq!(
        error_code(empty_name).await,
        (StatusCode::BAD_REQUEST, "name-must-not-be-empty".to_owned())
    );
    assert_eq!(
        error_code(no_contact_list).await,
        (StatusCode::BAD_REQUEST, "required-field".to_owned())
    );
    assert_eq!(
        error_code(foreign).await,
        (
            StatusCode::FORBIDDEN,
            "insufficient-advertiser-permissions".to_owned()
        )
    );
}

#[tokio::test]
async fn update_requires_description_wrapper() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments");
    let update = |description: Value| {
        json!({ "data": [ { "id": AUDIENCE, "type": "AudienceSegment",
            "attributes": { "name": "renamed", "description": description } } ] })
    };

    let bare = http
        .patch(&url)
        .bearer_auth(&token)
        .json(&update(json!("text")))
        .send()
        .await
        .unwrap();
    let wrapped = http
        .patch(&url)
        .bearer_auth(&token)
        .json(&update(json!({ "value": "text" })))
        .send()
        .await
        .unwrap();
    let wrapped_status = wrapped.status();
    let wrapped: Value = wrapped.json().await.unwrap();

    assert_eq!(
        error_code(bare).await,
        (StatusCode::BAD_REQUEST, "invalid".to_owned())
    );
    assert_eq!(wrapped_status, StatusCode::OK);
    assert_eq!(wrapped["data"][0]["attributes"]["name"], "renamed");
    assert_eq!(wrapped["data"][0]["attributes"]["description"], "text");
    assert_eq!(sandbox.audiences()[0].description.as_deref(), Some("text"));
}

#[tokio::test]
async fn update_unknown_id_is_item_warning() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let body = json!({ "data": [ { "id": "1", "attributes": { "name": "x" } } ] });

    let response = http
        .patch(api_url(&sandbox, "marketing-solutions/audience-segments"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["warnings"][0]["code"], "segment-not-found");
}

#[tokio::test]
async fn search_pages_with_meta() {
    let sandbox = start(SandboxConfig::default()).await;
    for name in ["a", "b", "c", "d"] {
        sandbox.create_audience("12345", name, None);
    }
    sandbox.create_audience("99999", "foreign", None);
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments/search");
    let filter = json!({ "data": { "attributes": { "advertiserIds": ["12345"], "audienceSegmentTypes": ["ContactList"] } } });

    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let page: Value = post_json(
            &http,
            format!("{url}?limit=2&offset={offset}"),
            &token,
            &filter,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            page["meta"],
            json!({ "totalItems": 5, "limit": 2, "offset": offset })
        );
        for item in page["data"].as_array().unwrap() {
            names.push(item["attributes"]["name"].as_str().unwrap().to_owned());
        }
        offset += 2;
        if offset >= 5 {
            break;
        }
    }
    let too_large = post_json(&http, format!("{url}?limit=101"), &token, &filter).await;

    assert_eq!(names, ["Sandbox audience", "a", "b", "c", "d"]);
    assert_eq!(
        error_code(too_large).await,
        (StatusCode::BAD_REQUEST, "invalid-range".to_owned())
    );
}

#[tokio::test]
async fn delete_removes_segment() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let body = json!({ "data": [ { "id": AUDIENCE, "type": "AudienceSegment", "attributes": {} }, { "id": "1" } ] });

    let response = post_json(
        &http,
        api_url(&sandbox, "marketing-solutions/audience-segments/delete"),
        &token,
        &body,
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"][0]["id"], AUDIENCE);
    assert_eq!(body["warnings"][0]["code"], "segment-not-found");
    assert!(sandbox.audiences().is_empty());
}

#[tokio::test]
async fn early_errors_on_large_body_are_readable() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let body = amendment("add", "email", &hashes(0..50_000));

    sandbox.inject(Fault::Status {
        status: 500,
        count: 1,
        route: Some(RouteKind::Amend),
    });
    let faulted = amend(&http, &sandbox, &token, AUDIENCE, &body).await;
    sandbox.expire_tokens();
    let expired = amend(&http, &sandbox, &token, AUDIENCE, &body).await;

    assert_eq!(faulted.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        error_code(expired).await,
        (
            StatusCode::UNAUTHORIZED,
            "authorization-token-expired".to_owned()
        )
    );
}

#[tokio::test]
async fn deprecated_version_sends_sunset() {
    let config = SandboxConfig {
        deprecated_versions: vec![DeprecatedVersion {
            version: "2026-01".to_owned(),
            sunset: "Wed, 27 Jan 2027 00:00:00 GMT".to_owned(),
        }],
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let path = format!("marketing-solutions/audience-segments/{AUDIENCE}/contact-list/statistics");

    let deprecated = http
        .get(format!("{}/2026-01/{path}", sandbox.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let current = http
        .get(format!("{}/2026-07/{path}", sandbox.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(deprecated.status(), StatusCode::OK);
    assert_eq!(header(&deprecated, "deprecation"), Some("true"));
    assert_eq!(
        header(&deprecated, "sunset"),
        Some("Wed, 27 Jan 2027 00:00:00 GMT")
    );
    assert_eq!(header(&current, "deprecation"), None);
}

#[tokio::test]
async fn amend_rejects_mixed_identifier_types() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let marketing = json!({ "data": { "type": "ContactlistAmendment", "attributes": {
        "operation": "add", "identifierType": ["email", "madid"], "identifiers": hashes(0..1) } } });
    let retail = json!({ "data": { "type": "AddRemoveContactlist", "attributes": {
        "operation": "add", "identifierType": ["Email", "CustomerId"], "identifiers": hashes(0..1) } } });
    let retail_url = api_url(
        &sandbox,
        &format!("retail-media/audience-segments/{RETAIL_SEGMENT}/contact-list/add-remove"),
    );

    let marketing_response = amend(&http, &sandbox, &token, AUDIENCE, &marketing).await;
    let retail_response = post_json(&http, retail_url, &token, &retail).await;

    assert_eq!(
        error_code(marketing_response).await,
        (StatusCode::BAD_REQUEST, "invalid".to_owned())
    );
    assert_eq!(
        error_code(retail_response).await,
        (StatusCode::BAD_REQUEST, "invalid".to_owned())
    );
    assert!(sandbox.members(AUDIENCE, "email").is_empty());
    assert!(sandbox.members(RETAIL_SEGMENT, "Email").is_empty());
}

#[tokio::test]
async fn identifiers_of_another_type_are_invalid() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let identifiers = vec![hash(1), "3f097372-f01e-4b64-984c-395ae5828ee6".to_owned()];

    let response = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &identifiers),
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["attributes"]["nbValidIdentifiers"], 1);
    assert_eq!(body["data"]["attributes"]["nbInvalidIdentifiers"], 1);
    assert_eq!(sandbox.members(AUDIENCE, "email").len(), 1);
    assert!(sandbox.members(AUDIENCE, "madid").is_empty());
}

#[tokio::test]
async fn configured_limit_applies_to_both_apis() {
    let config = SandboxConfig {
        max_identifiers_per_request: 3,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let retail = |count: usize| {
        json!({ "data": { "type": "AddRemoveContactlist", "attributes": {
            "operation": "add", "identifierType": "Email", "identifiers": hashes(0..count) } } })
    };
    let retail_url = api_url(
        &sandbox,
        &format!("retail-media/audience-segments/{RETAIL_SEGMENT}/contact-list/add-remove"),
    );

    let marketing_at_limit = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..3)),
    )
    .await;
    let marketing_above = amend(
        &http,
        &sandbox,
        &token,
        AUDIENCE,
        &amendment("add", "email", &hashes(0..4)),
    )
    .await;
    let retail_at_limit = post_json(&http, retail_url.clone(), &token, &retail(3)).await;
    let retail_above = post_json(&http, retail_url, &token, &retail(4)).await;

    assert_eq!(marketing_at_limit.status(), StatusCode::OK);
    assert_eq!(retail_at_limit.status(), StatusCode::OK);
    for response in [marketing_above, retail_above] {
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "too-many-identifiers".to_owned())
        );
    }
    assert_eq!(sandbox.members(AUDIENCE, "email").len(), 3);
    assert_eq!(sandbox.members(RETAIL_SEGMENT, "Email").len(), 3);
}

#[tokio::test]
async fn concurrent_create_fault_takes_name() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments/create");
    sandbox.inject(Fault::ConcurrentCreate { count: 1 });

    let raced = post_json(&http, url.clone(), &token, &create_body(&["vip"])).await;
    let later = post_json(&http, url, &token, &create_body(&["other"])).await;

    assert_eq!(
        error_code(raced).await,
        (StatusCode::BAD_REQUEST, "name-must-be-unique".to_owned())
    );
    assert_eq!(later.status(), StatusCode::OK);
    let names: Vec<String> = sandbox
        .audiences()
        .into_iter()
        .map(|audience| audience.name)
        .collect();
    assert_eq!(names, ["Sandbox audience", "vip", "other"]);
}

#[tokio::test]
async fn create_without_id_fault_omits_id() {
    let sandbox = start(SandboxConfig::default()).await;
    let http = Client::new();
    let token = token(&http, &sandbox).await;
    let url = api_url(&sandbox, "marketing-solutions/audience-segments/create");
    sandbox.inject(Fault::CreateWithoutId { count: 1 });

    let response = post_json(&http, url, &token, &create_body(&["vip"])).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["data"][0].get("id").is_none(), "{body}");
    assert_eq!(body["data"][0]["attributes"]["name"], "vip");
    assert!(
        sandbox
            .audiences()
            .iter()
            .any(|audience| audience.name == "vip")
    );
    assert!(sandbox.armed_faults().is_empty());
}
