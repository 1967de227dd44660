//! Settings of the fake Criteo server: the credentials it accepts, the limits it enforces and
//! the segments it starts with.

use std::fmt;

/// Client id of the default sandbox client.
pub const DEFAULT_CLIENT_ID: &str = "sandbox-client";
/// Client secret of the default sandbox client. It protects nothing but the fake server.
pub const DEFAULT_CLIENT_SECRET: &str = "sandbox-secret";
/// Marketing Solutions advertiser of the default client.
pub const DEFAULT_ADVERTISER_ID: &str = "12345";
/// Retail Media account of the default client.
pub const DEFAULT_ACCOUNT_ID: &str = "777";
/// Id of the Marketing Solutions contact-list audience that exists at start.
pub const DEFAULT_AUDIENCE_ID: &str = "987654";
/// Name of the audience that exists at start.
pub const DEFAULT_AUDIENCE_NAME: &str = "Sandbox audience";
/// Id of the Retail Media contact-list segment that exists at start, the example id of
/// Criteo's specification. It is above 2^53, where `f64` no longer represents every integer.
/// This id happens to be exact in `f64`, but the next ids the sandbox creates (`…105`) are not.
pub const DEFAULT_RETAIL_MEDIA_SEGMENT_ID: i64 = 568_708_742_535_471_104;
/// Retailer of the Retail Media segment that exists at start.
pub const DEFAULT_RETAILER_ID: &str = "299";
/// Criteo access tokens live 15 minutes.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 900;
/// Criteo allows 250 calls per minute per client-credentials application.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 250;
/// Criteo's audience guide caps an amendment at 50,000 identifiers, as integrators cite it.
pub const DEFAULT_MAX_IDENTIFIERS_PER_REQUEST: usize = 50_000;
/// Criteo publishes no body limit. 10 MiB leaves room for 50,000 SHA-256 hex identifiers,
/// which take about 3.4 MB of JSON.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Versions Criteo serves on 2026-12-04: stable 2026-01 and 2026-07, and release
/// candidate 2027-01.
pub const DEFAULT_ACCEPTED_VERSIONS: [&str; 3] = ["2026-01", "2026-07", "2027-01"];
/// Share of members that statistics report as matched.
pub const DEFAULT_SIMULATED_MATCH_RATE: f64 = 0.75;

/// Settings of a [`Sandbox`](super::Sandbox).
///
/// [`SandboxConfig::default`] describes one client that owns advertiser `12345` and Retail
/// Media account `777`, with one contact-list segment in each.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// API clients that may request tokens, with the advertisers and accounts each may use.
    pub clients: Vec<SandboxClient>,
    /// Lifetime of an access token, in seconds.
    pub token_ttl_secs: u64,
    /// Requests per minute and client before the sandbox responds 429, or 0 for no limit.
    /// The token endpoint is not limited.
    pub rate_limit_per_minute: u32,
    /// Maximum number of identifiers in one amendment. A larger amendment gets 400
    /// `too-many-identifiers`, a code the sandbox invented because Criteo documents none.
    pub max_identifiers_per_request: usize,
    /// Maximum request body, in bytes. A larger body gets 413.
    pub max_body_bytes: usize,
    /// API versions served, as the first path segment (`2026-07`).
    pub accepted_versions: Vec<String>,
    /// Versions that get 410 Gone.
    pub decommissioned_versions: Vec<String>,
    /// Accepted versions whose responses carry `Deprecation: true` and a `Sunset` header.
    pub deprecated_versions: Vec<DeprecatedVersion>,
    /// Whether the request log keeps the identifiers of each amendment, not only their count.
    pub record_identifiers: bool,
    /// Response to a create or rename that reuses a segment name of the same advertiser or
    /// account.
    pub duplicate_name_policy: DuplicateNamePolicy,
    /// Response to a contact-list call on a segment id that does not exist.
    pub unknown_segment_response: UnknownSegmentResponse,
    /// Share of members, from 0.0 to 1.0, that statistics report as matched.
    pub simulated_match_rate: f64,
    /// Marketing Solutions contact-list audiences present at start.
    pub audiences: Vec<AudienceSeed>,
    /// Retail Media contact-list segments present at start.
    pub retail_media_segments: Vec<RetailMediaSegmentSeed>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            clients: vec![SandboxClient {
                client_id: DEFAULT_CLIENT_ID.to_owned(),
                client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
                advertiser_ids: vec![DEFAULT_ADVERTISER_ID.to_owned()],
                account_ids: vec![DEFAULT_ACCOUNT_ID.to_owned()],
            }],
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            max_identifiers_per_request: DEFAULT_MAX_IDENTIFIERS_PER_REQUEST,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            accepted_versions: DEFAULT_ACCEPTED_VERSIONS.map(str::to_owned).to_vec(),
            decommissioned_versions: Vec::new(),
            deprecated_versions: Vec::new(),
            record_identifiers: true,
            duplicate_name_policy: DuplicateNamePolicy::default(),
            unknown_segment_response: UnknownSegmentResponse::default(),
            simulated_match_rate: DEFAULT_SIMULATED_MATCH_RATE,
            audiences: vec![AudienceSeed {
                id: DEFAULT_AUDIENCE_ID.to_owned(),
                advertiser_id: DEFAULT_ADVERTISER_ID.to_owned(),
                name: DEFAULT_AUDIENCE_NAME.to_owned(),
                description: None,
            }],
            retail_media_segments: vec![RetailMediaSegmentSeed {
                id: DEFAULT_RETAIL_MEDIA_SEGMENT_ID,
                account_id: DEFAULT_ACCOUNT_ID.to_owned(),
                retailer_id: DEFAULT_RETAILER_ID.to_owned(),
                name: DEFAULT_AUDIENCE_NAME.to_owned(),
                identifier_type: "Email".to_owned(),
            }],
        }
    }
}

/// An API client: OAuth credentials and the advertisers and accounts it may act for.
#[derive(Clone, PartialEq, Eq)]
pub struct SandboxClient {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret, masked in `Debug` output.
    pub client_secret: String,
    /// Marketing Solutions advertiser ids the client may use.
    pub advertiser_ids: Vec<String>,
    /// Retail Media account ids the client may use.
    pub account_ids: Vec<String>,
}

impl SandboxClient {
    pub(crate) fn may_use_advertiser(&self, advertiser_id: &str) -> bool {
        self.advertiser_ids.iter().any(|id| id == advertiser_id)
    }

    pub(crate) fn may_use_account(&self, account_id: &str) -> bool {
        self.account_ids.iter().any(|id| id == account_id)
    }
}

impl fmt::Debug for SandboxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("advertiser_ids", &self.advertiser_ids)
            .field("account_ids", &self.account_ids)
            .finish()
    }
}

/// An accepted API version in its deprecation window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeprecatedVersion {
    /// Version name, such as `2026-01`.
    pub version: String,
    /// Value of the `Sunset` header, an HTTP date such as `Wed, 27 Jan 2027 00:00:00 GMT`.
    pub sunset: String,
}

/// Response to a create or rename that reuses the name of a segment of the same advertiser
/// (Marketing Solutions) or account (Retail Media).
///
/// Criteo's documentation and integrators disagree: Segment's integration receives a non-200
/// response for a duplicate name on create, while the Retail Media docs describe partial
/// approval with the item reported in `warnings`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DuplicateNamePolicy {
    /// 400 with `errors[].code` = `name-must-be-unique`; no item of the request is applied.
    #[default]
    Reject,
    /// 200; the other items are applied and the duplicate is reported in `warnings`.
    Warn,
}

/// Response to a contact-list call (amend, wipe, statistics) on an unknown segment id.
/// Criteo does not publish the status or code for its current routes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownSegmentResponse {
    /// 404 with code `audience-invalid`, as on Criteo's legacy contact-list route.
    #[default]
    NotFoundAudienceInvalid,
    /// 403 with code `audience-invalid`, which the legacy route also documents.
    ForbiddenAudienceInvalid,
    /// 404 with code `segment-not-found`, the code of Criteo's bulk segment routes.
    NotFoundSegmentNotFound,
}

/// A Marketing Solutions contact-list audience present at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceSeed {
    /// Segment id: a positive 32-bit integer in decimal.
    pub id: String,
    /// Owning advertiser.
    pub advertiser_id: String,
    /// Segment name.
    pub name: String,
    /// Segment description.
    pub description: Option<String>,
}

/// A Retail Media contact-list segment present at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetailMediaSegmentSeed {
    /// Segment id (Criteo's "external id").
    pub id: i64,
    /// Owning account.
    pub account_id: String,
    /// Retailer the segment belongs to.
    pub retailer_id: String,
    /// Segment name.
    pub name: String,
    /// Identifier type of the list: `Email`, `UserIdentifier`, `IdentityLink`, `CustomerId` or
    /// `PhoneNumber`.
    pub identifier_type: String,
}

/// A Marketing Solutions audience as the sandbox stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceInfo {
    /// Segment id.
    pub id: String,
    /// Owning advertiser.
    pub advertiser_id: String,
    /// Segment name.
    pub name: String,
    /// Segment description.
    pub description: Option<String>,
}

/// A Retail Media segment as the sandbox stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetailMediaSegmentInfo {
    /// Segment id.
    pub id: i64,
    /// Owning account.
    pub account_id: String,
    /// Retailer the segment belongs to.
    pub retailer_id: String,
    /// Segment name.
    pub name: String,
    /// Segment description.
    pub description: Option<String>,
    /// PascalCase identifier type of the list, if the segment declares one.
    pub identifier_type: Option<String>,
}

/// A [`SandboxConfig`] the sandbox cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum InvalidSandboxConfig {
    #[error("audience id `{0}` is invalid: expected a positive 32-bit integer")]
    AudienceId(String),

    #[error("Retail Media segment id {0} is invalid: expected a positive integer")]
    RetailMediaSegmentId(i64),

    #[error("segment id `{0}` appears twice in the sandbox configuration")]
    DuplicateSegmentId(String),

    #[error(
        "identifier type `{0}` is invalid for a Retail Media segment: expected one of Email, \
         UserIdentifier, IdentityLink, CustomerId, PhoneNumber"
    )]
    RetailMediaIdentifierType(String),

    #[error("client id `{0}` appears twice in the sandbox configuration")]
    DuplicateClientId(String),

    #[error("simulated match rate {0} is invalid: expected a number from 0.0 to 1.0")]
    MatchRate(f64),
}

impl From<InvalidSandboxConfig> for std::io::Error {
    fn from(error: InvalidSandboxConfig) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_client_secret() {
        let config = SandboxConfig::default();

        let printed = format!("{config:?}");

        assert!(!printed.contains(DEFAULT_CLIENT_SECRET), "{printed}");
        assert!(printed.contains(DEFAULT_CLIENT_ID));
    }

    #[test]
    fn default_retail_media_segment_exceeds_f64_precision() {
        let id = DEFAULT_RETAIL_MEDIA_SEGMENT_ID;

        assert!(id > 1 << 53);
        assert_ne!((id + 1) as f64 as i64, id + 1);
    }
}
