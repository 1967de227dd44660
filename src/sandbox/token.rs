//! OAuth2 client-credentials token endpoint and the store of issued access tokens.
//!
//! `POST /oauth2/token` takes a form-urlencoded body with `grant_type=client_credentials`,
//! `client_id` and `client_secret`, and returns `access_token`, `token_type: "Bearer"`,
//! `refresh_token: null` and `expires_in`. Errors use the OAuth shape
//! `{"error": ..., "error_description": ...}`: 415 `invalid_request` for a body that is not
//! form-urlencoded, 400 `invalid_request` without `grant_type`, 400
//! `unsupported_grant_type` for any other grant, and 401 `invalid_client` for unknown
//! credentials.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::app::App;
use super::body;

/// Expired tokens are forgotten after this long, so a long-running sandbox does not grow;
/// until then they are reported as expired rather than invalid.
const EXPIRED_TOKEN_RETENTION: Duration = Duration::from_secs(3600);

/// Outcome of looking up a bearer token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenStatus<'a> {
    Valid { client_id: &'a str },
    Expired,
    Unknown,
}

#[derive(Debug)]
struct IssuedToken {
    client_id: String,
    expires_at: Instant,
}

/// Access tokens issued so far, valid or expired.
#[derive(Debug)]
pub(crate) struct TokenStore {
    ttl: Duration,
    tokens: HashMap<String, IssuedToken>,
}

impl TokenStore {
    pub(crate) fn new(ttl: Duration) -> Self {
        TokenStore {
            ttl,
            tokens: HashMap::new(),
        }
    }

    /// Issues a token; several tokens of one client may be valid at once, as with Criteo.
    pub(crate) fn issue(&mut self, client_id: &str, now: Instant) -> String {
        self.tokens
            .retain(|_, token| token.expires_at + EXPIRED_TOKEN_RETENTION > now);

        let token = format!(
            "sandbox.{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                client_id: client_id.to_owned(),
                expires_at: now + self.ttl,
            },
        );
        token
    }

    pub(crate) fn check(&self, token: &str, now: Instant) -> TokenStatus<'_> {
        match self.tokens.get(token) {
            None => TokenStatus::Unknown,
            Some(issued) if now >= issued.expires_at => TokenStatus::Expired,
            Some(issued) => TokenStatus::Valid {
                client_id: &issued.client_id,
            },
        }
    }

    /// Marks every token issued so far as expired.
    pub(crate) fn expire_all(&mut self, now: Instant) {
        for token in self.tokens.values_mut() {
            token.expires_at = token.expires_at.min(now);
        }
    }
}

/// Handles `POST /oauth2/token`.
pub(crate) fn issue_token(app: &App, headers: &HeaderMap, body: &[u8]) -> Response {
    let is_form = body::media_type(headers)
        .is_some_and(|media| media.eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return oauth_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "The token request must be application/x-www-form-urlencoded.",
        );
    }

    let mut grant_type = None;
    let mut client_id = None;
    let mut client_secret = None;
    for (key, value) in url::form_urlencoded::parse(body) {
        let slot = match key.as_ref() {
            "grant_type" => &mut grant_type,
            "client_id" => &mut client_id,
            "client_secret" => &mut client_secret,
            _ => continue,
        };
        slot.get_or_insert(value.into_owned());
    }

    match grant_type.as_deref() {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The grant_type field is missing.",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported.",
            );
        }
    }

    let client = client_id.as_deref().and_then(|id| app.clients.get(id));
    let Some(client) =
        client.filter(|client| Some(&client.client_secret) == client_secret.as_ref())
    else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    };

    let access_token = app.tokens().issue(&client.client_id, Instant::now());
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "refresh_token": null,
        "expires_in": app.config.token_ttl_secs,
    });
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expires_after_ttl() {
        let mut store = TokenStore::new(Duration::from_secs(900));
        let start = Instant::now();
        let token = store.issue("client", start);

        assert_eq!(
            store.check(&token, start + Duration::from_secs(899)),
            TokenStatus::Valid {
                client_id: "client"
            }
        );
        assert_eq!(
            store.check(&token, start + Duration::from_secs(900)),
            TokenStatus::Expired
        );
        assert_eq!(store.check("other", start), TokenStatus::Unknown);
    }

    #[test]
    fn expire_all_keeps_tokens_known() {
        let mut store = TokenStore::new(Duration::from_secs(900));
        let start = Instant::now();
        let first = store.issue("client", start);
        let second = store.issue("client", start);

        store.expire_all(start);

        assert_eq!(store.check(&first, start), TokenStatus::Expired);
        assert_eq!(store.check(&second, start), TokenStatus::Expired);
    }
}
