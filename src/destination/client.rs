//! HTTP client for the Criteo API: OAuth client credentials, pacing and retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::config::{Credentials, DestinationSettings, Secret};

use super::pacing::Pacer;
use super::retry::{self, Action, RetryPolicy};
use super::{ApiProblem, DestinationError, RequestFailure};

/// Tokens are refreshed this long before the expiry that Criteo returns.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

/// A Criteo API client shared by all requests of a run.
pub struct CriteoClient {
    http: reqwest::Client,
    api_url: String,
    token_url: String,
    version: String,
    credentials: Credentials,
    token: Mutex<Option<CachedToken>>,
    pacer: Pacer,
    policy: RetryPolicy,
    deprecation_logged: AtomicBool,
}

impl std::fmt::Debug for CriteoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriteoClient")
            .field("api_url", &self.api_url)
            .field("version", &self.version)
            .field("client_id", &self.credentials.client_id)
            .finish_non_exhaustive()
    }
}

impl CriteoClient {
    pub fn new(settings: &DestinationSettings, credentials: Credentials) -> Result<Self, DestinationError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.request_timeout_secs))
            .connect_timeout(Duration::from_secs(settings.request_timeout_secs.min(30)))
            .user_agent(concat!("audience-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| DestinationError::Client {
                message: error.to_string(),
            })?;
        let api_url = settings.api_url.trim_end_matches('/').to_string();
        let token_url = settings
            .token_url
            .clone()
            .unwrap_or_else(|| format!("{api_url}/oauth2/token"));
        Ok(CriteoClient {
            http,
            api_url,
            token_url,
            version: settings.api_version.clone(),
            credentials,
            token: Mutex::new(None),
            pacer: Pacer::new(settings.requests_per_minute),
            policy: RetryPolicy {
                max_attempts: settings.max_attempts,
                max_elapsed: Duration::from_secs(settings.max_retry_secs),
                base_delay: Duration::from_millis(settings.retry_base_delay_ms),
                max_delay: Duration::from_secs(60),
            },
            deprecation_logged: AtomicBool::new(false),
        })
    }

    /// The URL of an API path under the configured version.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.api_url, self.version, path.trim_start_matches('/'))
    }

    /// Sends one API request with a JSON body (or none), retrying as the policy sets out,
    /// and returns the successful response's body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        action: &str,
    ) -> Result<Bytes, RequestFailure> {
        self.send_until_stopped(method, url, body, action, None).await
    }

    /// Sends like [`send`](Self::send), but gives up instead of waiting for pacing or a retry
    /// once `stop` turns true. A request already on the wire is never cut off, so its outcome
    /// is known. The failure of a stopped request is temporary.
    pub async fn send_until_stopped(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        action: &str,
        mut stop: Option<watch::Receiver<bool>>,
    ) -> Result<Bytes, RequestFailure> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = self.token(action).await?;
            if !wait_unless_stopped(self.pacer.acquire(), stop.as_mut()).await {
                return Err(self.stopped(action, attempt - 1));
            }
            let (problem, action_after) = match self.attempt(&method, url, body.as_ref(), &token).await {
                Ok(bytes) => return Ok(bytes),
                Err(failed) => failed,
            };

            let delay = match action_after {
                Action::RefreshToken if !refreshed => {
                    refreshed = true;
                    attempt -= 1;
                    self.invalidate(&token).await;
                    tracing::info!(action, code = problem.code.as_deref().unwrap_or(""), "access token rejected; refreshing it and retrying once");
                    continue;
                }
                Action::RefreshToken | Action::Fail => {
                    return Err(self.failure(action, problem, false, attempt));
                }
                Action::WaitForRateLimit(until_reset) => self.policy.rate_limit_delay(attempt, until_reset),
                Action::Backoff => self.policy.backoff(attempt),
            };
            if attempt >= self.policy.max_attempts || started.elapsed() + delay > self.policy.max_elapsed {
                return Err(self.failure(action, problem, true, attempt));
            }
            tracing::warn!(
                action,
                attempt,
                delay_ms = delay.as_millis() as u64,
                problem = %problem,
                "request failed; retrying"
            );
            if !wait_unless_stopped(tokio::time::sleep(delay), stop.as_mut()).await {
                return Err(self.stopped(action, attempt));
            }
        }
    }

    /// Sends one attempt. On failure, returns the problem and the retry table's next action.
    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Bytes>,
        token: &Secret,
    ) -> Result<Bytes, (ApiProblem, Action)> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token.expose())
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Err((network_problem(&error), Action::Backoff)),
        };
        self.note_deprecation(&response);
        let status = response.status();
        let reset = response
            .headers()
            .get("x-ratelimit-reset")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let bytes = response.bytes().await;
        match (status.is_success(), bytes) {
            (true, Ok(bytes)) => Ok(bytes),
            (true, Err(error)) => Err((network_problem(&error), Action::Backoff)),
            (false, bytes) => {
                let problem = parse_problem(status, bytes.as_deref().unwrap_or_default());
                let action_after = match retry::classify(status.as_u16(), problem.code.as_deref()) {
                    Action::WaitForRateLimit(_) => Action::WaitForRateLimit(retry::until_reset(reset.as_deref(), epoch_secs())),
                    other => other,
                };
                Err((problem, action_after))
            }
        }
    }

    fn stopped(&self, action: &str, attempts: u32) -> RequestFailure {
        let problem = ApiProblem {
            message: Some("stopped by a signal before the request could be sent or retried".into()),
            ..ApiProblem::default()
        };
        self.failure(action, problem, true, attempts)
    }

    fn failure(&self, action: &str, problem: ApiProblem, temporary: bool, attempts: u32) -> RequestFailure {
        RequestFailure {
            action: action.to_string(),
            problem,
            temporary,
            attempts,
        }
    }

    fn note_deprecation(&self, response: &reqwest::Response) {
        let deprecated = response
            .headers()
            .get("deprecation")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        if deprecated && !self.deprecation_logged.swap(true, Ordering::Relaxed) {
            let sunset = response
                .headers()
                .get("sunset")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("unknown");
            tracing::warn!(version = %self.version, sunset, "Criteo marks this API version as deprecated; set `destination.api_version` to a newer version");
        }
    }

    /// Returns a valid access token, fetching a new one when none is cached or the cached
    /// one is within a minute of expiring.
    async fn token(&self, action: &str) -> Result<Secret, RequestFailure> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch_token(action).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn invalidate(&self, used: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|token| &token.value == used) {
            *cached = None;
        }
    }

    async fn fetch_token(&self, action: &str) -> Result<CachedToken, RequestFailure> {
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.client_secret.expose()),
        ];
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .http
                .post(&self.token_url)
                .header("Accept", "application/json")
                .form(&form)
                .send()
                .await;
            let (problem, retryable) = match result {
                Ok(response) => {
                    let status = response.status();
                    let bytes = response.bytes().await.unwrap_or_default();
                    if status.is_success() {
                        return match serde_json::from_slice::<TokenResponse>(&bytes) {
                            Ok(token) => {
                                let lifetime = Duration::from_secs(token.expires_in.unwrap_or(900));
                                Ok(CachedToken {
                                    value: Secret::new(token.access_token),
                                    refresh_at: Instant::now() + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN),
                                })
                            }
                            Err(error) => Err(self.failure(
                                "get an access token",
                                ApiProblem {
                                    status: Some(status.as_u16()),
                                    message: Some(format!("the token response is not valid JSON: {error}")),
                                    ..ApiProblem::default()
                                },
                                false,
                                attempt,
                            )),
                        };
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    (parse_problem(status, &bytes), retryable)
                }
                Err(error) => (network_problem(&error), true),
            };
            let delay = self.policy.backoff(attempt);
            if !retryable || attempt >= self.policy.max_attempts || started.elapsed() + delay > self.policy.max_elapsed {
                let action = format!("get an access token (for: {action})");
                return Err(self.failure(&action, problem, retryable, attempt));
            }
            tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, problem = %problem, "token request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Awaits `future` unless `stop` turns true first; returns whether `future` completed.
async fn wait_unless_stopped(future: impl Future<Output = ()>, stop: Option<&mut watch::Receiver<bool>>) -> bool {
    let Some(stop) = stop else {
        future.await;
        return true;
    };
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = future => true,
        () = stop_requested(stop) => false,
    }
}

/// Resolves once `stop` turns true; never, if its sender is gone without stopping.
pub(crate) async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

fn network_problem(error: &reqwest::Error) -> ApiProblem {
    let kind = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "connection error"
    };
    // The error's own text may carry the URL, which contains no secret here.
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    ApiProblem {
        message: Some(message),
        ..ApiProblem::default()
    }
}

/// Reads a Criteo error body (`errors[0]`) or an OAuth error body (`error`).
pub fn parse_problem(status: StatusCode, body: &[u8]) -> ApiProblem {
    #[derive(Deserialize, Default)]
    struct Item {
        code: Option<String>,
        title: Option<String>,
        detail: Option<String>,
        #[serde(rename = "traceId")]
        trace_id: Option<String>,
        #[serde(rename = "traceIdentifier")]
        trace_identifier: Option<String>,
    }
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let parsed: Body = serde_json::from_slice(body).unwrap_or_default();
    let mut problem = ApiProblem {
        status: Some(status.as_u16()),
        ..ApiProblem::default()
    };
    if let Some(item) = parsed.errors.into_iter().next() {
        problem.code = item.code;
        problem.title = item.title;
        problem.detail = item.detail;
        problem.trace_id = item.trace_id.or(item.trace_identifier);
    } else if let Some(error) = parsed.error {
        problem.code = Some(error);
        problem.detail = parsed.error_description;
    } else {
        problem.title = status.canonical_reason().map(str::to_string);
    }
    problem
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use axum::Router;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{patch, post};

    use super::*;

    /// One scripted response of the fake API.
    #[derive(Clone, Debug)]
    enum Scripted {
        Status(u16, &'static str),
        RateLimited { reset_in_secs: Option<u64> },
        Slow { delay_ms: u64 },
    }

    fn expired_token() -> Scripted {
        Scripted::Status(401, r#"{"errors":[{"code":"authorization-token-expired","title":"Token expired"}]}"#)
    }

    #[derive(Default)]
    struct Script {
        responses: std::sync::Mutex<VecDeque<Scripted>>,
        api_calls: AtomicUsize,
        token_calls: AtomicUsize,
    }

    async fn token(State(script): State<Arc<Script>>) -> Response {
        let issued = script.token_calls.fetch_add(1, Ordering::SeqCst);
        axum::Json(serde_json::json!({ "access_token": format!("token-{issued}"), "expires_in": 900 })).into_response()
    }

    /// Plays the next scripted response; `200 {}` once the script is done.
    async fn api(State(script): State<Arc<Script>>) -> Response {
        script.api_calls.fetch_add(1, Ordering::SeqCst);
        let next = script.responses.lock().unwrap().pop_front();
        let status = |code: u16| StatusCode::from_u16(code).unwrap();
        match next {
            None => (StatusCode::OK, "{}").into_response(),
            Some(Scripted::Status(code, body)) => (status(code), body.to_string()).into_response(),
            Some(Scripted::RateLimited { reset_in_secs }) => {
                let mut headers = HeaderMap::new();
                if let Some(secs) = reset_in_secs {
                    headers.insert("x-ratelimit-reset", (epoch_secs() + secs).to_string().parse().unwrap());
                }
                (StatusCode::TOO_MANY_REQUESTS, headers, "{}").into_response()
            }
            Some(Scripted::Slow { delay_ms }) => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                (StatusCode::OK, "{}").into_response()
            }
        }
    }

    /// Serves the script on a free port and returns a client with `extra` settings.
    async fn serve(responses: Vec<Scripted>, extra: &str) -> (CriteoClient, Arc<Script>) {
        let script = Arc::new(Script {
            responses: std::sync::Mutex::new(responses.into()),
            ..Script::default()
        });
        let app = Router::new()
            .route("/oauth2/token", post(token))
            .route("/2026-07/thing", patch(api))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut text = format!("api_url = \"http://{address}\"\n{extra}\n");
        for default in ["retry_base_delay_ms = 1", "max_attempts = 3"] {
            let key = default.split(' ').next().unwrap();
            if !extra.contains(key) {
                text.push_str(default);
                text.push('\n');
            }
        }
        let settings: DestinationSettings = toml::from_str(&text).unwrap();
        let credentials = Credentials {
            client_id: "client".into(),
            client_secret: Secret::new("secret"),
        };
        (CriteoClient::new(&settings, credentials).unwrap(), script)
    }

    async fn send(client: &CriteoClient) -> Result<Bytes, RequestFailure> {
        client.send(Method::PATCH, &client.url("thing"), Some(Bytes::from_static(b"{}")), "amend a thing").await
    }

    #[tokio::test]
    async fn retry_table_end_to_end() {
        // (case, script, extra settings, succeeds, temporary failure, API calls, token calls)
        let cases: Vec<(&str, Vec<Scripted>, &str, bool, bool, usize, usize)> = vec![
            ("success", vec![], "", true, false, 1, 1),
            ("5xx then success", vec![Scripted::Status(503, "{}"), Scripted::Status(502, "{}")], "", true, false, 3, 1),
            ("5xx exhausts attempts", vec![Scripted::Status(500, "{}"); 5], "", false, true, 3, 1),
            ("5xx beyond time budget", vec![Scripted::Status(503, "{}"); 5], "max_retry_secs = 0\nretry_base_delay_ms = 50", false, true, 1, 1),
            ("429 without reset backs off", vec![Scripted::RateLimited { reset_in_secs: None }], "", true, false, 2, 1),
            ("429 with reset waits", vec![Scripted::RateLimited { reset_in_secs: Some(0) }], "", true, false, 2, 1),
            ("expired token refreshed once", vec![expired_token()], "", true, false, 2, 2),
            ("token rejected twice", vec![expired_token(), expired_token()], "", false, false, 2, 2),
            ("other 401 is permanent", vec![Scripted::Status(401, r#"{"errors":[{"code":"authorization-issuer-invalid"}]}"#)], "", false, false, 1, 1),
            ("400 is permanent", vec![Scripted::Status(400, "{}")], "", false, false, 1, 1),
            ("404 is permanent", vec![Scripted::Status(404, "{}")], "", false, false, 1, 1),
            ("501 is permanent", vec![Scripted::Status(501, "{}")], "", false, false, 1, 1),
            ("timeout is retried", vec![Scripted::Slow { delay_ms: 1500 }], "request_timeout_secs = 1", true, false, 2, 1),
        ];
        for (case, script, extra, succeeds, temporary, api_calls, token_calls) in cases {
            let (client, served) = serve(script, extra).await;

            let result = send(&client).await;

            assert_eq!(result.is_ok(), succeeds, "{case}: {result:?}");
            if let Err(failure) = &result {
                assert_eq!(failure.temporary, temporary, "{case}: {failure:?}");
            }
            assert_eq!(served.api_calls.load(Ordering::SeqCst), api_calls, "{case}: API calls");
            assert_eq!(served.token_calls.load(Ordering::SeqCst), token_calls, "{case}: token calls");
        }
    }

    #[tokio::test]
    async fn permanent_failure_carries_criteo_problem() {
        let body = r#"{"errors":[{"traceId":"abc123","type":"validation","code":"invalid-identifier-type","title":"Invalid type","detail":"The type is not supported."}]}"#;
        let (client, _) = serve(vec![Scripted::Status(400, body)], "").await;

        let failure = send(&client).await.unwrap_err();

        assert_eq!(failure.problem.status, Some(400));
        assert_eq!(failure.problem.code.as_deref(), Some("invalid-identifier-type"));
        assert_eq!(failure.problem.title.as_deref(), Some("Invalid type"));
        assert_eq!(failure.problem.detail.as_deref(), Some("The type is not supported."));
        assert_eq!(failure.problem.trace_id.as_deref(), Some("abc123"));
        assert_eq!(failure.attempts, 1);
    }

    #[tokio::test]
    async fn stop_ends_retry_wait() {
        let (client, served) = serve(vec![Scripted::Status(503, "{}"); 5], "retry_base_delay_ms = 30000").await;
        let (stop_sender, stop) = watch::channel(false);
        let url = client.url("thing");
        let sending = client.send_until_stopped(Method::PATCH, &url, None, "amend a thing", Some(stop));
        let stopping = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop_sender.send(true).unwrap();
        };

        let started = Instant::now();
        let (result, ()) = tokio::join!(sending, stopping);

        let failure = result.unwrap_err();
        assert!(failure.temporary, "{failure:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "the retry wait was not cut short");
        assert_eq!(served.api_calls.load(Ordering::SeqCst), 1);
    }
}
