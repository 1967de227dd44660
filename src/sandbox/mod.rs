//! A strict, stateful fake of Criteo's audience API over real HTTP, for tests and for trying
//! audience-sync without Criteo credentials (`audience-sync sandbox`).
//!
//! # What it serves
//!
//! - `POST /oauth2/token`: OAuth2 client credentials in a form-urlencoded body.
//! - Marketing Solutions, under `/{version}/marketing-solutions/audience-segments`: `create`,
//!   `PATCH` (update), `search`, `delete`, and per segment `contact-list` (`PATCH` to add or
//!   remove identifiers, `DELETE` to remove all) and `contact-list/statistics`. The legacy
//!   `/{version}/audiences/{id}/contactlist` `PATCH`/`DELETE` is an alias of the
//!   contact-list route.
//! - Retail Media: `/{version}/retail-media/accounts/{account-id}/audience-segments` with
//!   `create`, `PATCH`, `search`, `delete` and `{id}/contact-list` (statistics), and
//!   `/{version}/retail-media/audience-segments/{id}/contact-list/add-remove` and `clear`.
//!
//! Each API request passes, in order: version (410 decommissioned, 404 unknown), bearer token
//! (401 `authorization-token-missing`, `-invalid` or `-expired`), the client's token bucket
//! (429 with `x-ratelimit-*` headers), content type (415) and body size (413), and then the
//! route's own validation. Errors use Criteo's `{"errors": [{"traceId", "type", "code",
//! "instance", "title", "detail"}]}` shape.
//!
//! Where Criteo's behaviour is undocumented, the sandbox makes a choice and states it where
//! the code makes it. The choices include the `too-many-identifiers` code, 404
//! `audience-invalid` for an unknown segment, the identifier format rules, the 0-1
//! `matchRate` and the 400 for a duplicate name. Where Criteo's sources disagree, the choice
//! is a [`SandboxConfig`] setting.
//!
//! # Admin routes
//!
//! The admin routes need no token and are neither faulted nor recorded.
//!
//! | Method and path | Effect |
//! |---|---|
//! | `GET /_sandbox/audiences` | Lists Marketing Solutions audiences and Retail Media segments. |
//! | `POST /_sandbox/audiences` | Creates an audience from `{"advertiser_id", "name", "description"}` and returns `{"id"}`. |
//! | `GET /_sandbox/audiences/{id}/members[?identifier_type=email]` | Lists members by identifier type, sorted. |
//! | `GET /_sandbox/requests[?include_identifiers=true]` | Lists recorded requests, oldest first. |
//! | `DELETE /_sandbox/requests` | Clears the request log. |
//! | `GET /_sandbox/faults` | Lists armed faults with their remaining counts. |
//! | `POST /_sandbox/faults` | Arms a [`Fault`] given as JSON, such as `{"kind": "drop_connection", "route": "amend"}`. |
//! | `DELETE /_sandbox/faults` | Disarms all faults. |
//! | `POST /_sandbox/expire-tokens` | Expires every token issued so far. |
//!
//! # Example
//!
//! ```no_run
//! use audience_sync::sandbox::{Fault, RouteKind, Sandbox, SandboxConfig};
//!
//! # async fn example() -> std::io::Result<()> {
//! let sandbox = Sandbox::start(SandboxConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! sandbox.inject(Fault::Status { status: 503, count: 1, route: Some(RouteKind::Amend) });
//!
//! // Point the client at `sandbox.base_url()` with client id `sandbox-client` and secret
//! // `sandbox-secret`, run it, then compare what Criteo would hold with the segment.
//! let members = sandbox.members("987654", "email");
//! let amendments = sandbox
//!     .requests()
//!     .into_iter()
//!     .filter(|request| request.route == Some(RouteKind::Amend) && request.status == 200)
//!     .count();
//! # let _ = (members, amendments);
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admin;
mod app;
mod body;
mod cli;
mod config;
mod connection;
mod contact_list;
mod fault;
mod gateway;
mod identifiers;
mod log;
mod marketing;
mod problem;
mod rate_limit;
mod retail;
mod routes;
mod segments;
mod store;
mod token;

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cli::{SandboxArgs, serve};
pub use config::{
    AudienceInfo, AudienceSeed, DEFAULT_ACCEPTED_VERSIONS, DEFAULT_ACCOUNT_ID,
    DEFAULT_ADVERTISER_ID, DEFAULT_AUDIENCE_ID, DEFAULT_AUDIENCE_NAME, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IDENTIFIERS_PER_REQUEST,
    DEFAULT_RATE_LIMIT_PER_MINUTE, DEFAULT_RETAIL_MEDIA_SEGMENT_ID, DEFAULT_RETAILER_ID,
    DEFAULT_SIMULATED_MATCH_RATE, DEFAULT_TOKEN_TTL_SECS, DeprecatedVersion, DuplicateNamePolicy,
    InvalidSandboxConfig, RetailMediaSegmentInfo, RetailMediaSegmentSeed, SandboxClient,
    SandboxConfig, UnknownSegmentResponse,
};
pub use fault::{ArmedFault, Fault, InvalidFault, RouteKind};
pub use log::RecordedRequest;

use app::App;
use connection::{ConnectionHandle, SandboxListener};
use identifiers::IdentifierType;
use store::MemberSet;

/// Time [`Sandbox::shutdown`] waits for requests in flight, such as delayed ones, before it
/// aborts the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running fake Criteo server.
///
/// Dropping it stops accepting connections; [`Sandbox::shutdown`] also waits for requests in
/// flight.
#[derive(Debug)]
pub struct Sandbox {
    app: Arc<App>,
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl Sandbox {
    /// Starts serving on `listen`; port 0 picks a free port, which [`Sandbox::base_url`]
    /// reports.
    ///
    /// # Errors
    ///
    /// Returns `InvalidInput` for a configuration the sandbox cannot run (duplicate ids, a
    /// malformed seed), and the bind error if the address is taken.
    pub async fn start(config: SandboxConfig, listen: SocketAddr) -> io::Result<Sandbox> {
        let app = Arc::new(App::new(config)?);
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;

        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let service =
            app::router(Arc::clone(&app)).into_make_service_with_connect_info::<ConnectionHandle>();
        let server = tokio::spawn(async move {
            axum::serve(SandboxListener::new(listener), service)
                .with_graceful_shutdown(async {
                    let _ = shutdown_signal.await;
                })
                .await
        });

        Ok(Sandbox {
            app,
            address,
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    /// Returns the URL to send requests to, such as `http://127.0.0.1:41234`, without a
    /// trailing slash. The token URL is this plus `/oauth2/token`. A sandbox listening on
    /// all interfaces reports the loopback address.
    pub fn base_url(&self) -> String {
        let ip = match self.address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.address.port()))
    }

    /// Returns the address the sandbox listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Returns the members of a segment for one identifier type.
    ///
    /// `audience_id` is a Marketing Solutions or Retail Media segment id. `identifier_type`
    /// may be a name of either API: `email` and `Email` are the same type, as are `madid`
    /// and `UserIdentifier`.
    ///
    /// # Panics
    ///
    /// Panics if the segment does not exist or the type name is unknown, so that a typo in a
    /// test fails instead of comparing against an empty set.
    pub fn members(&self, audience_id: &str, identifier_type: &str) -> BTreeSet<String> {
        let Some(kind) = IdentifierType::from_any_name(identifier_type) else {
            panic!(
                "identifier type `{identifier_type}` is unknown; expected email, madid, \
                 identityLink, gum, phoneNumber, or a Retail Media name such as CustomerId"
            );
        };
        let store = self.app.store();
        let Some(list) = store
            .find(audience_id)
            .and_then(|key| store.contact_list(key))
        else {
            panic!("segment {audience_id} does not exist in the sandbox");
        };
        list.members(kind)
            .map(MemberSet::to_strings)
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// Returns the recorded requests in arrival order. A request appears once its response
    /// is ready.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.app.log.snapshot()
    }

    pub fn clear_requests(&self) {
        self.app.log.clear();
    }

    /// Arms a fault; see [`Fault`] for what each variant does.
    ///
    /// # Panics
    ///
    /// Panics if the fault is invalid, such as a status outside 400 to 599.
    pub fn inject(&self, fault: Fault) {
        if let Err(error) = self.app.inject(fault) {
            panic!("invalid sandbox fault: {error}");
        }
    }

    /// Returns the armed faults with their remaining counts.
    pub fn armed_faults(&self) -> Vec<ArmedFault> {
        self.app.faults().armed()
    }

    /// Disarms all faults.
    pub fn clear_faults(&self) {
        self.app.faults().clear();
    }

    /// Expires every token issued so far; the next API call with one gets 401
    /// `authorization-token-expired`.
    pub fn expire_tokens(&self) {
        self.app.expire_tokens();
    }

    /// Creates a Marketing Solutions contact-list audience and returns its id. Unlike the
    /// API, it checks neither the name nor the advertiser, so tests can set up conflicts.
    pub fn create_audience(
        &self,
        advertiser_id: &str,
        name: &str,
        description: Option<&str>,
    ) -> String {
        self.app
            .store()
            .insert_marketing(advertiser_id, name, description)
            .id
            .to_string()
    }

    /// Returns the Marketing Solutions audiences in id order.
    pub fn audiences(&self) -> Vec<AudienceInfo> {
        self.app.audiences()
    }

    /// Returns the Retail Media segments in id order.
    pub fn retail_media_segments(&self) -> Vec<RetailMediaSegmentInfo> {
        self.app.retail_media_segments()
    }

    /// Stops accepting connections and waits up to 5 seconds for requests in flight.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let Some(mut server) = self.server.take() else {
            return;
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "sandbox server stopped with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "sandbox server task failed"),
            Err(_) => {
                tracing::warn!(
                    grace_secs = SHUTDOWN_GRACE.as_secs(),
                    "sandbox requests still in flight after the grace period; aborting them"
                );
                server.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
