//! The `audience-sync sandbox` command: run the fake Criteo server until interrupted.

use std::io;
use std::net::SocketAddr;

use clap::ArgAction;

use super::Sandbox;
use super::config::{
    AudienceSeed, DEFAULT_ACCEPTED_VERSIONS, DEFAULT_ACCOUNT_ID, DEFAULT_ADVERTISER_ID,
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IDENTIFIERS_PER_REQUEST, DEFAULT_RATE_LIMIT_PER_MINUTE, DEFAULT_TOKEN_TTL_SECS,
    RetailMediaSegmentSeed, SandboxClient, SandboxConfig,
};

/// Options of `audience-sync sandbox`.
#[derive(Clone, Debug, clap::Args)]
pub struct SandboxArgs {
    /// Address and port to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Client id that the token endpoint accepts.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,

    /// Client secret that the token endpoint accepts.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,

    /// Marketing Solutions advertiser id the client may use; repeat for several. The first
    /// one owns the audience that exists at start.
    #[arg(long = "advertiser", value_name = "ID", default_value = DEFAULT_ADVERTISER_ID)]
    pub advertisers: Vec<String>,

    /// Retail Media account id the client may use; repeat for several. The first one owns
    /// the segment that exists at start.
    #[arg(long = "account", value_name = "ID", default_value = DEFAULT_ACCOUNT_ID)]
    pub accounts: Vec<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = DEFAULT_TOKEN_TTL_SECS)]
    pub token_ttl_secs: u64,

    /// Requests per minute before 429, per client; 0 disables the limit.
    #[arg(long, default_value_t = DEFAULT_RATE_LIMIT_PER_MINUTE)]
    pub rate_limit_per_minute: u32,

    /// Maximum identifiers in one amendment before 400 `too-many-identifiers`.
    #[arg(long, default_value_t = DEFAULT_MAX_IDENTIFIERS_PER_REQUEST)]
    pub max_identifiers_per_request: usize,

    /// Maximum request body in bytes before 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// API versions served, comma-separated.
    #[arg(long = "accepted-versions", value_delimiter = ',', default_values = DEFAULT_ACCEPTED_VERSIONS)]
    pub accepted_versions: Vec<String>,

    /// API versions that get 410 Gone, comma-separated.
    #[arg(long = "decommissioned-versions", value_delimiter = ',')]
    pub decommissioned_versions: Vec<String>,

    /// Whether the request log keeps every identifier sent, not only counts. Turn it off for
    /// long runs, because the log keeps every identifier in memory.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub record_identifiers: bool,
}

impl SandboxArgs {
    /// Builds the configuration: the defaults, with the client, owners and limits replaced.
    pub fn to_config(&self) -> SandboxConfig {
        let defaults = SandboxConfig::default();
        let advertiser = self.advertisers.first().cloned().unwrap_or_default();
        let account = self.accounts.first().cloned().unwrap_or_default();

        SandboxConfig {
            clients: vec![SandboxClient {
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
                advertiser_ids: self.advertisers.clone(),
                account_ids: self.accounts.clone(),
            }],
            token_ttl_secs: self.token_ttl_secs,
            rate_limit_per_minute: self.rate_limit_per_minute,
            max_identifiers_per_request: self.max_identifiers_per_request,
            max_body_bytes: self.max_body_bytes,
            accepted_versions: self.accepted_versions.clone(),
            decommissioned_versions: self.decommissioned_versions.clone(),
            record_identifiers: self.record_identifiers,
            audiences: defaults
                .audiences
                .iter()
                .map(|seed| AudienceSeed {
                    advertiser_id: advertiser.clone(),
                    ..seed.clone()
                })
                .collect(),
            retail_media_segments: defaults
                .retail_media_segments
                .iter()
                .map(|seed| RetailMediaSegmentSeed {
                    account_id: account.clone(),
                    ..seed.clone()
                })
                .collect(),
            ..defaults
        }
    }
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// Returns the error of binding the address or of an invalid configuration.
pub async fn serve(args: SandboxArgs) -> io::Result<()> {
    let config = args.to_config();
    let audience_ids: Vec<String> = config
        .audiences
        .iter()
        .map(|seed| seed.id.clone())
        .collect();
    let retail_media_segment_ids: Vec<i64> = config
        .retail_media_segments
        .iter()
        .map(|seed| seed.id)
        .collect();
    let sandbox = Sandbox::start(config, args.listen).await?;

    // The secret is logged on purpose: it is the sandbox's own, and the user needs it to
    // configure a client.
    tracing::info!(
        url = %sandbox.base_url(),
        token_url = %format!("{}/oauth2/token", sandbox.base_url()),
        client_id = %args.client_id,
        client_secret = %args.client_secret,
        advertisers = ?args.advertisers,
        accounts = ?args.accounts,
        audiences = ?audience_ids,
        retail_media_segments = ?retail_media_segment_ids,
        "sandbox listening; admin routes are under /_sandbox/"
    );

    wait_for_stop_signal().await?;
    tracing::info!("sandbox stopping");
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop_signal() -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() -> io::Result<()> {
    tokio::signal::ctrl_c().await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: SandboxArgs,
    }

    #[test]
    fn defaults_match_sandbox_config() {
        let args = Command::parse_from(["sandbox"]).args;

        let config = args.to_config();
        let defaults = SandboxConfig::default();

        assert_eq!(config.clients, defaults.clients);
        assert_eq!(config.accepted_versions, defaults.accepted_versions);
        assert_eq!(config.audiences, defaults.audiences);
        assert_eq!(config.retail_media_segments, defaults.retail_media_segments);
        assert!(config.record_identifiers);
    }

    #[test]
    fn first_advertiser_owns_seed_audience() {
        let args =
            Command::parse_from(["sandbox", "--advertiser", "555", "--advertiser", "556"]).args;

        let config = args.to_config();

        assert_eq!(config.clients[0].advertiser_ids, ["555", "556"]);
        assert_eq!(config.audiences[0].advertiser_id, "555");
    }

    #[test]
    fn record_identifiers_can_be_turned_off() {
        let args = Command::parse_from(["sandbox", "--record-identifiers", "false"]).args;

        assert!(!args.to_config().record_identifiers);
    }
}
