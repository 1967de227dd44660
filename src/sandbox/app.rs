//! Shared state of a running sandbox and the HTTP router in front of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;

use super::config::{
    AudienceInfo, InvalidSandboxConfig, RetailMediaSegmentInfo, SandboxClient, SandboxConfig,
};
use super::fault::{Fault, FaultQueue, InvalidFault};
use super::log::RequestLog;
use super::rate_limit::RateLimiter;
use super::store::Store;
use super::token::TokenStore;
use super::{admin, gateway};

/// State shared by all connections. Each part has its own lock, and no lock is held across
/// an `.await`.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: SandboxConfig,
    /// Clients by client id.
    pub(crate) clients: HashMap<String, SandboxClient>,
    pub(crate) log: RequestLog,
    store: Mutex<Store>,
    tokens: Mutex<TokenStore>,
    rate_limiter: Mutex<RateLimiter>,
    faults: Mutex<FaultQueue>,
}

impl App {
    pub(crate) fn new(config: SandboxConfig) -> Result<App, InvalidSandboxConfig> {
        if !(0.0..=1.0).contains(&config.simulated_match_rate) {
            return Err(InvalidSandboxConfig::MatchRate(config.simulated_match_rate));
        }
        let mut clients = HashMap::new();
        for client in &config.clients {
            if clients
                .insert(client.client_id.clone(), client.clone())
                .is_some()
            {
                return Err(InvalidSandboxConfig::DuplicateClientId(
                    client.client_id.clone(),
                ));
            }
        }

        Ok(App {
            clients,
            log: RequestLog::default(),
            store: Mutex::new(Store::from_config(&config)?),
            tokens: Mutex::new(TokenStore::new(Duration::from_secs(config.token_ttl_secs))),
            rate_limiter: Mutex::new(RateLimiter::new(config.rate_limit_per_minute)),
            faults: Mutex::new(FaultQueue::default()),
            config,
        })
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        lock(&self.tokens)
    }

    pub(crate) fn rate_limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.rate_limiter)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultQueue> {
        lock(&self.faults)
    }
}

impl App {
    /// Arms a fault, or for [`Fault::ExpireTokens`] expires every token at once.
    pub(crate) fn inject(&self, fault: Fault) -> Result<(), InvalidFault> {
        fault.validate()?;
        tracing::info!(?fault, "sandbox armed a fault");
        match fault {
            Fault::ExpireTokens => self.expire_tokens(),
            fault => self.faults().push(fault),
        }
        Ok(())
    }

    pub(crate) fn expire_tokens(&self) {
        self.tokens().expire_all(Instant::now());
    }

    pub(crate) fn audiences(&self) -> Vec<AudienceInfo> {
        self.store()
            .marketing
            .values()
            .map(|segment| AudienceInfo {
                id: segment.id.to_string(),
                advertiser_id: segment.advertiser_id.clone(),
                name: segment.name.clone(),
                description: segment.description.clone(),
            })
            .collect()
    }

    pub(crate) fn retail_media_segments(&self) -> Vec<RetailMediaSegmentInfo> {
        self.store()
            .retail
            .values()
            .map(|segment| RetailMediaSegmentInfo {
                id: segment.id,
                account_id: segment.account_id.clone(),
                retailer_id: segment.retailer_id.clone(),
                name: segment.name.clone(),
                description: segment.description.clone(),
                identifier_type: segment
                    .identifier_type
                    .map(|kind| kind.retail_name().to_owned()),
            })
            .collect()
    }
}

/// Locks a mutex even if a handler panicked while holding it. The sandbox's state stays
/// usable for the assertions of the test that caused the panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds the router: admin routes under `/_sandbox/`, and every other path through the
/// API gateway, which resolves routes itself.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .nest("/_sandbox", admin::router())
        .fallback(gateway::handle)
        .with_state(app)
}
