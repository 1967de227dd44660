//! Activation settings: parse, merge defaults and overrides, resolve paths, validate.
//!
//! An activation file is TOML. A project file (`audience-sync.toml`) next to it may hold
//! `[defaults.<destination kind>]` tables of the same shape that every activation of that
//! kind inherits. The activation overrides them key by key, and `--set dotted.key=value`
//! overrides both for one run. Everything is resolved and validated here, before any I/O
//! that writes, so a bad setting never leaves half a run behind.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::identifiers::{IdentifierType, NormalizeOptions};

/// Name of the project file searched next to the activation file.
pub const PROJECT_FILE_NAME: &str = "audience-sync.toml";

/// Criteo's newest stable API version.
pub const DEFAULT_API_VERSION: &str = "2026-07";

/// Criteo's production API host.
pub const DEFAULT_API_URL: &str = "https://api.criteo.com";

/// Criteo caps a contact-list amendment at 50,000 identifiers.
pub const MAX_BATCH_IDENTIFIERS: usize = 50_000;

/// Errors in settings, found before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid TOML in `{path}`: {message}")]
    Parse { path: PathBuf, message: String },

    #[error("invalid setting in `{path}`: {message}")]
    Invalid { path: PathBuf, message: String },

    #[error("invalid override `{assignment}`: {message}")]
    Override { assignment: String, message: String },

    #[error(
        "missing Criteo credentials: set {variable} in the environment \
         (or {variable}_FILE to a file holding it)"
    )]
    MissingCredential { variable: &'static str },
}

/// A secret that never shows up in Debug or Display output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Returns the clear value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// OAuth client credentials for the Criteo API.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: Secret,
}

impl Credentials {
    /// Reads `CRITEO_CLIENT_ID` and `CRITEO_CLIENT_SECRET`, each either from the variable
    /// itself or from the file named by the variable with a `_FILE` suffix.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Credentials {
            client_id: read_secret_variable("CRITEO_CLIENT_ID")?,
            client_secret: Secret::new(read_secret_variable("CRITEO_CLIENT_SECRET")?),
        })
    }
}

fn read_secret_variable(variable: &'static str) -> Result<String, ConfigError> {
    if let Ok(value) = std::env::var(variable)
        && !value.trim().is_empty()
    {
        return Ok(value.trim().to_string());
    }
    let file_variable = format!("{variable}_FILE");
    if let Ok(path) = std::env::var(&file_variable) {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: PathBuf::from(&path),
            source,
        })?;
        if !text.trim().is_empty() {
            return Ok(text.trim().to_string());
        }
    }
    Err(ConfigError::MissingCredential { variable })
}

/// Whether a run may remove identifiers from the audience.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// The audience mirrors the segment: members who leave are removed.
    #[default]
    Mirror,
    /// Members are only ever added and never removed.
    AddOnly,
}

/// Criteo product that receives the audience.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationKind {
    /// Marketing Solutions contact-list audience segments.
    #[default]
    Criteo,
    /// Retail Media customer lists.
    CriteoRetailMedia,
}

impl DestinationKind {
    pub fn name(self) -> &'static str {
        match self {
            DestinationKind::Criteo => "criteo",
            DestinationKind::CriteoRetailMedia => "criteo-retail-media",
        }
    }
}

/// The `[destination]` table.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSettings {
    /// Destination kind: `criteo` or `criteo-retail-media`.
    #[serde(default)]
    pub kind: DestinationKind,
    /// Marketing Solutions advertiser that owns the audience.
    #[serde(default, deserialize_with = "optional_id")]
    pub advertiser_id: Option<String>,
    /// Retail Media account that owns the customer list.
    #[serde(default, deserialize_with = "optional_id")]
    pub account_id: Option<String>,
    /// Retail Media retailer, needed only to create a customer list.
    #[serde(default, deserialize_with = "optional_id")]
    pub retailer_id: Option<String>,
    /// Audience segment id; when absent the audience is found by name or created.
    #[serde(default, deserialize_with = "optional_id")]
    pub audience_id: Option<String>,
    /// Base URL of the Criteo API.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// OAuth token URL; defaults to `{api_url}/oauth2/token`.
    #[serde(default)]
    pub token_url: Option<String>,
    /// API version, the first path segment of every call.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Identifiers per amendment request, at most 50,000.
    #[serde(default = "default_max_batch", deserialize_with = "lenient")]
    pub max_batch_identifiers: usize,
    /// Caller id that Criteo's account team gives for `gum` identifiers.
    #[serde(default, deserialize_with = "lenient_option")]
    pub gum_caller_id: Option<i64>,
    /// Requests per minute that this run stays under (Criteo allows 250 per app).
    #[serde(default = "default_requests_per_minute", deserialize_with = "lenient")]
    pub requests_per_minute: u32,
    /// Amendment requests in flight at once.
    #[serde(default = "default_max_concurrent_requests", deserialize_with = "lenient")]
    pub max_concurrent_requests: usize,
    /// Timeout of one HTTP request, in seconds.
    #[serde(default = "default_request_timeout_secs", deserialize_with = "lenient")]
    pub request_timeout_secs: u64,
    /// Attempts per request, the first included, before a batch counts as failed.
    #[serde(default = "default_max_attempts", deserialize_with = "lenient")]
    pub max_attempts: u32,
    /// Time budget for retrying one request, in seconds.
    #[serde(default = "default_max_retry_secs", deserialize_with = "lenient")]
    pub max_retry_secs: u64,
    /// First retry delay in milliseconds; later ones double, with jitter, up to a minute.
    #[serde(default = "default_retry_base_delay_ms", deserialize_with = "lenient")]
    pub retry_base_delay_ms: u64,
}

/// The `[state]` table.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Location of the snapshots: a local path (relative to the activation file) or a URL
    /// (`file://`, `s3://`, `gs://`, `az://`, `http(s)://`).
    #[serde(default = "default_state_url")]
    pub url: String,
    /// Sub-folder of `url` for this activation; defaults to the activation file's stem.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Seconds after which the lock of a run that died is considered stale.
    #[serde(default = "default_lock_ttl_secs", deserialize_with = "lenient")]
    pub lock_ttl_secs: u64,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            url: default_state_url(),
            prefix: None,
            lock_ttl_secs: default_lock_ttl_secs(),
        }
    }
}

/// The `[guards]` table: checks that stop a run before anything is sent.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSettings {
    /// Largest share of the audience (removals of all types over the identifiers in the
    /// committed snapshot) that one run may remove.
    #[serde(default = "default_max_removal_ratio", deserialize_with = "lenient")]
    pub max_removal_ratio: f64,
    /// Whether a segment with no members may empty a non-empty audience.
    #[serde(default, deserialize_with = "lenient")]
    pub allow_empty_segment: bool,
    /// Share of members with a duplicated key above which the run fails; below it the run
    /// only warns.
    #[serde(default = "default_max_duplicate_key_ratio", deserialize_with = "lenient")]
    pub max_duplicate_key_ratio: f64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            max_removal_ratio: default_max_removal_ratio(),
            allow_empty_segment: false,
            max_duplicate_key_ratio: default_max_duplicate_key_ratio(),
        }
    }
}

/// The `[engine]` table: DataFusion resources.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Memory DataFusion may reserve, in MiB; above it operators spill to disk. The
    /// process uses more than this (identifier sets, HTTP buffers).
    #[serde(default, deserialize_with = "lenient_option")]
    pub memory_limit_mib: Option<u64>,
    /// Parallelism of the query; defaults to the number of CPU cores.
    #[serde(default, deserialize_with = "lenient_option")]
    pub target_partitions: Option<usize>,
    /// Folder for spill files; defaults to the system temporary folder.
    #[serde(default)]
    pub spill_dir: Option<String>,
}

/// The `[normalize]` table.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeSettings {
    /// ISO 3166-1 alpha-2 country for phone numbers written without a country code.
    #[serde(default)]
    pub default_country: Option<String>,
}

/// An activation file as written, before paths and defaults are resolved.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationFile {
    /// Audience name; defaults to the segment file's `-- name:` line.
    #[serde(default)]
    pub name: Option<String>,
    /// Audience description; defaults to the segment file's `-- description:` line.
    #[serde(default)]
    pub description: Option<String>,
    /// Path of the segment's SQL file, relative to the activation file.
    pub segment: String,
    /// Column of the segment that identifies a member.
    pub key: String,
    /// `mirror` (default) or `add-only`.
    #[serde(default)]
    pub mode: SyncMode,
    /// Table name used in the SQL mapped to a file, folder, glob or URL.
    pub sources: BTreeMap<String, String>,
    /// Criteo identifier type mapped to the segment column that contains it.
    pub identifiers: BTreeMap<String, String>,
    #[serde(default)]
    pub normalize: NormalizeSettings,
    pub destination: DestinationSettings,
    #[serde(default)]
    pub state: StateSettings,
    #[serde(default)]
    pub guards: GuardSettings,
    #[serde(default)]
    pub engine: EngineSettings,
    /// Options per object store, keyed by the store's URL (`s3://bucket`), such as
    /// `endpoint`, `region` or `allow_http`.
    #[serde(default)]
    pub storage: BTreeMap<String, BTreeMap<String, String>>,
}

/// A file, folder or glob on the local file system, or an object-store URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Url(url::Url),
}

impl Location {
    /// Parses `text`, resolving a relative local path against `base`.
    pub fn resolve(text: &str, base: &Path) -> Result<Location, String> {
        if let Some((scheme, _)) = text.split_once("://") {
            let url = url::Url::parse(text).map_err(|error| format!("invalid URL `{text}`: {error}"))?;
            if scheme == "file" {
                let path = url
                    .to_file_path()
                    .map_err(|()| format!("invalid file URL `{text}`"))?;
                return Ok(Location::Local(path));
            }
            return match scheme {
                "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" | "http" | "https" => {
                    Ok(Location::Url(url))
                }
                _ => Err(format!(
                    "unsupported URL scheme `{scheme}` in `{text}`; use a local path or \
                     file://, s3://, gs://, az://, abfs://, http:// or https://"
                )),
            };
        }
        let path = Path::new(text);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        };
        Ok(Location::Local(normalize_path(&path)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Url(url) => write!(f, "{}", redact_url(url)),
        }
    }
}

/// Drops a password or token from a URL before it is shown.
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("****"));
    }
    if shown.query().is_some() {
        shown.set_query(Some("****"));
    }
    shown.to_string()
}

/// Removes `.` and `..` components without touching the file system, so error messages
/// show the path the user meant.
fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// One table the segment SQL can read.
#[derive(Clone, Debug)]
pub struct SourceTable {
    pub name: String,
    pub location: Location,
}

/// An identifier type and the segment column that contains it.
#[derive(Clone, Debug)]
pub struct IdentifierMapping {
    pub identifier_type: IdentifierType,
    pub column: String,
}

/// A fully resolved and validated activation.
#[derive(Clone, Debug)]
pub struct Activation {
    /// The activation file.
    pub file: PathBuf,
    /// The project file whose defaults were applied, if any.
    pub project_file: Option<PathBuf>,
    /// Stable identifier: the activation file's stem.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub segment_file: PathBuf,
    pub segment_sql: String,
    pub key: String,
    pub mode: SyncMode,
    pub sources: Vec<SourceTable>,
    pub identifiers: Vec<IdentifierMapping>,
    pub normalize: NormalizeOptions,
    pub destination: DestinationSettings,
    pub state_location: Location,
    pub state_prefix: String,
    pub state: StateSettings,
    pub guards: GuardSettings,
    pub engine: EngineSettings,
    pub storage: BTreeMap<String, BTreeMap<String, String>>,
    /// The merged settings as written, for `check` to print.
    pub effective: ActivationFile,
}

/// How to load an activation.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Project file to take defaults from; when `None`, `audience-sync.toml` next to the
    /// activation file is used if it exists.
    pub project_file: Option<PathBuf>,
    /// `dotted.key=value` overrides, applied last.
    pub overrides: Vec<String>,
}

impl Activation {
    /// Reads, merges, resolves and validates an activation file.
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Activation, ConfigError> {
        let path = normalize_path(&absolute(path));
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut table = read_toml(&path)?;

        let kind = destination_kind_of(&table, &options.overrides);
        let project_file = options
            .project_file
            .clone()
            .map(|file| normalize_path(&absolute(&file)))
            .or_else(|| Some(base.join(PROJECT_FILE_NAME)).filter(|file| file.is_file()));
        if let Some(project_file) = &project_file {
            let defaults = read_project_defaults(project_file, kind)?;
            table = merge_tables(defaults, table);
        }
        for assignment in &options.overrides {
            apply_override(&mut table, assignment)?;
        }

        let file: ActivationFile = toml::Value::Table(table)
            .try_into()
            .map_err(|error: toml::de::Error| ConfigError::Invalid {
                path: path.clone(),
                message: error.message().trim().to_string(),
            })?;
        resolve(path, project_file, file)
    }
}

impl Activation {
    /// Renders the merged settings (defaults, activation file and overrides) as JSON for
    /// `check`, with the resolved name and description.
    ///
    /// Storage option values are masked unless their key is known to hold no secret
    /// (endpoint, region and the like), and URLs lose their password and query string.
    /// Credentials never reach this value: they come from the environment.
    pub fn effective_settings(&self) -> serde_json::Value {
        let mut settings =
            serde_json::to_value(&self.effective).expect("the activation settings serialize");
        settings["name"] = serde_json::json!(self.name);
        settings["description"] = serde_json::json!(self.description);

        let redact_field = |value: &mut serde_json::Value| {
            if let Some(text) = value.as_str() {
                *value = serde_json::Value::String(redact_location(text));
            }
        };
        if let Some(sources) = settings["sources"].as_object_mut() {
            sources.values_mut().for_each(redact_field);
        }
        redact_field(&mut settings["state"]["url"]);
        redact_field(&mut settings["destination"]["api_url"]);
        redact_field(&mut settings["destination"]["token_url"]);
        if let Some(stores) = settings["storage"].as_object_mut() {
            for options in stores.values_mut().filter_map(|options| options.as_object_mut()) {
                for (key, value) in options.iter_mut() {
                    if !is_public_storage_option(key) {
                        *value = serde_json::Value::String("****".into());
                    }
                }
            }
        }
        settings
    }
}

/// Storage option keys whose values are shown by `check`; any other value is masked,
/// because object stores take keys, tokens and passwords under many names.
const PUBLIC_STORAGE_OPTION_PARTS: &[&str] = &[
    "endpoint",
    "region",
    "allow_http",
    "allow_invalid_certificates",
    "virtual_hosted_style_request",
    "bucket",
    "container_name",
    "account_name",
    "use_emulator",
    "skip_signature",
    "timeout",
];

fn is_public_storage_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    PUBLIC_STORAGE_OPTION_PARTS
        .iter()
        .any(|part| key.contains(part))
}

/// Returns the location as written, with the password and query string masked when a URL
/// has either.
fn redact_location(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(url) if url.password().is_some() || url.query().is_some() => redact_url(&url),
        _ => text.to_string(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    }
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: describe_toml_error(&text, &error),
    })
}

fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_string(),
    }
}

/// Reads the destination kind early, because it decides which defaults apply.
fn destination_kind_of(table: &toml::Table, overrides: &[String]) -> DestinationKind {
    let from_override = overrides.iter().rev().find_map(|assignment| {
        assignment
            .strip_prefix("destination.kind=")
            .map(str::to_string)
    });
    let from_file = table
        .get("destination")
        .and_then(|destination| destination.get("kind"))
        .and_then(|kind| kind.as_str())
        .map(str::to_string);
    match from_override.or(from_file).as_deref() {
        Some("criteo-retail-media") => DestinationKind::CriteoRetailMedia,
        _ => DestinationKind::Criteo,
    }
}

/// Keys of the project file's defaults whose values are paths, resolved against the
/// project file's folder before merging so they keep meaning what they meant there.
const DEFAULT_PATH_KEYS: &[(&str, &str)] = &[("state", "url"), ("engine", "spill_dir")];

fn read_project_defaults(path: &Path, kind: DestinationKind) -> Result<toml::Table, ConfigError> {
    let mut project = read_toml(path)?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    for key in project.keys() {
        if key != "defaults" {
            return Err(invalid(format!(
                "unknown key `{key}`; a project file holds only `[defaults.criteo]` and \
                 `[defaults.criteo-retail-media]`"
            )));
        }
    }
    let Some(defaults) = project.remove("defaults") else {
        return Ok(toml::Table::new());
    };
    let toml::Value::Table(mut defaults) = defaults else {
        return Err(invalid("`defaults` must be a table".into()));
    };
    for key in defaults.keys() {
        if key != "criteo" && key != "criteo-retail-media" {
            return Err(invalid(format!(
                "unknown destination kind `defaults.{key}`; valid kinds: criteo, \
                 criteo-retail-media"
            )));
        }
    }
    let mut table = match defaults.remove(kind.name()) {
        Some(toml::Value::Table(table)) => table,
        Some(_) => return Err(invalid(format!("`defaults.{}` must be a table", kind.name()))),
        None => toml::Table::new(),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    for (section, key) in DEFAULT_PATH_KEYS {
        if let Some(toml::Value::Table(inner)) = table.get_mut(*section)
            && let Some(toml::Value::String(value)) = inner.get_mut(*key)
            && !value.contains("://")
            && Path::new(value.as_str()).is_relative()
        {
            *value = normalize_path(&base.join(value.as_str())).display().to_string();
        }
    }
    Ok(table)
}

/// Deep-merges `overlay` onto `base`: tables merge key by key, other values replace.
fn merge_tables(mut base: toml::Table, overlay: toml::Table) -> toml::Table {
    for (key, value) in overlay {
        match (base.remove(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(overlay_inner)) => {
                base.insert(key, toml::Value::Table(merge_tables(inner, overlay_inner)));
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    base
}

/// Applies one `dotted.key=value` override. The value is inserted as a string, and fields
/// of other types parse it when the settings are deserialized. So a string field keeps
/// `2026-12-01` as written and a number field still gets a number.
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let error = |message: &str| ConfigError::Override {
        assignment: assignment.to_string(),
        message: message.to_string(),
    };
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| error("expected `dotted.key=value`"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|part| part.is_empty()) {
        return Err(error("the key has an empty part"));
    }
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => return Err(error(&format!("`{part}` is not a table"))),
        };
    }
    current.insert(last.to_string(), toml::Value::String(value.to_string()));
    Ok(())
}

fn resolve(
    path: PathBuf,
    project_file: Option<PathBuf>,
    file: ActivationFile,
) -> Result<Activation, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.clone(),
        message,
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let id = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "activation".into());

    let segment_file = normalize_path(&base.join(&file.segment));
    let segment_sql = std::fs::read_to_string(&segment_file).map_err(|source| {
        invalid(format!(
            "failed to read segment file `{}`: {source}",
            segment_file.display()
        ))
    })?;
    let header = SegmentHeader::parse(&segment_sql);
    let name = file
        .name
        .clone()
        .or(header.name)
        .unwrap_or_else(|| id.clone());
    if name.trim().is_empty() {
        return Err(invalid("`name` must not be empty".into()));
    }
    let description = file.description.clone().or(header.description);

    if file.key.trim().is_empty() {
        return Err(invalid("`key` must name the member key column".into()));
    }
    if file.sources.is_empty() {
        return Err(invalid(
            "`[sources]` is empty; map each table the SQL reads to a file, folder, glob or URL"
                .into(),
        ));
    }
    let mut sources = Vec::new();
    for (name, location) in &file.sources {
        let location = Location::resolve(location, &base)
            .map_err(|message| invalid(format!("source `{name}`: {message}")))?;
        sources.push(SourceTable {
            name: name.clone(),
            location,
        });
    }

    let identifiers = resolve_identifiers(&file, &invalid)?;
    validate_destination(&file.destination, &identifiers, &invalid)?;
    validate_guards(&file.guards, &invalid)?;

    let state_location = Location::resolve(&file.state.url, &base)
        .map_err(|message| invalid(format!("`state.url`: {message}")))?;
    let state_prefix = file.state.prefix.clone().unwrap_or_else(|| id.clone());
    if state_prefix.trim_matches('/').is_empty() || state_prefix.contains("..") {
        return Err(invalid(format!(
            "`state.prefix` `{state_prefix}` must be a non-empty relative folder name"
        )));
    }

    Ok(Activation {
        file: path.clone(),
        project_file,
        id,
        name,
        description,
        segment_file,
        segment_sql,
        key: file.key.clone(),
        mode: file.mode,
        sources,
        identifiers,
        normalize: NormalizeOptions {
            default_country: file.normalize.default_country.clone(),
        },
        destination: file.destination.clone(),
        state_location,
        state_prefix: state_prefix.trim_matches('/').to_string(),
        state: file.state.clone(),
        guards: file.guards.clone(),
        engine: file.engine.clone(),
        storage: file.storage.clone(),
        effective: file,
    })
}

fn resolve_identifiers(
    file: &ActivationFile,
    invalid: &dyn Fn(String) -> ConfigError,
) -> Result<Vec<IdentifierMapping>, ConfigError> {
    if file.identifiers.is_empty() {
        return Err(invalid(format!(
            "`[identifiers]` is empty; map at least one identifier type to a column \
             (valid types: {})",
            valid_identifier_types()
        )));
    }
    let mut mappings = Vec::new();
    for (name, column) in &file.identifiers {
        let identifier_type = IdentifierType::parse(name).ok_or_else(|| {
            invalid(format!(
                "unknown identifier type `{name}` in `[identifiers]`; valid types: {}",
                valid_identifier_types()
            ))
        })?;
        if column.trim().is_empty() {
            return Err(invalid(format!("identifier `{name}` maps to an empty column name")));
        }
        mappings.push(IdentifierMapping {
            identifier_type,
            column: column.clone(),
        });
    }
    Ok(mappings)
}

fn valid_identifier_types() -> String {
    IdentifierType::ALL
        .iter()
        .map(|t| t.config_name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_destination(
    destination: &DestinationSettings,
    identifiers: &[IdentifierMapping],
    invalid: &dyn Fn(String) -> ConfigError,
) -> Result<(), ConfigError> {
    if destination.max_batch_identifiers == 0
        || destination.max_batch_identifiers > MAX_BATCH_IDENTIFIERS
    {
        return Err(invalid(format!(
            "`destination.max_batch_identifiers` is {}; it must be between 1 and {} \
             (Criteo's maximum per request)",
            destination.max_batch_identifiers, MAX_BATCH_IDENTIFIERS
        )));
    }
    for (field, value) in [
        ("requests_per_minute", destination.requests_per_minute as u64),
        ("max_concurrent_requests", destination.max_concurrent_requests as u64),
        ("request_timeout_secs", destination.request_timeout_secs),
        ("max_attempts", destination.max_attempts as u64),
    ] {
        if value == 0 {
            return Err(invalid(format!("`destination.{field}` must be at least 1")));
        }
    }
    url::Url::parse(&destination.api_url).map_err(|error| {
        invalid(format!(
            "`destination.api_url` `{}` is not a URL: {error}",
            destination.api_url
        ))
    })?;
    if !is_api_version(&destination.api_version) {
        return Err(invalid(format!(
            "`destination.api_version` `{}` is not a Criteo API version such as `{}`",
            destination.api_version, DEFAULT_API_VERSION
        )));
    }
    match destination.kind {
        DestinationKind::Criteo => {
            if destination.advertiser_id.is_none() && destination.audience_id.is_none() {
                return Err(invalid(
                    "`destination.advertiser_id` is required to find or create the audience \
                     when `destination.audience_id` is not set"
                        .into(),
                ));
            }
            for mapping in identifiers {
                if mapping.identifier_type == IdentifierType::CustomerId {
                    return Err(invalid(
                        "identifier type `customerid` is only accepted by Retail Media customer \
                         lists; use `destination.kind = \"criteo-retail-media\"`"
                            .into(),
                    ));
                }
            }
        }
        DestinationKind::CriteoRetailMedia => {
            // TODO: find or create Retail Media customer lists by name, as for Marketing
            // Solutions; until then the list must exist and be named by id.
            if destination.audience_id.is_none() {
                return Err(invalid(
                    "`destination.audience_id` is required for `criteo-retail-media`: give the \
                     id of an existing customer list"
                        .into(),
                ));
            }
            for mapping in identifiers {
                if mapping.identifier_type == IdentifierType::Gum {
                    return Err(invalid(
                        "identifier type `gum` is not accepted by Retail Media customer lists".into(),
                    ));
                }
            }
        }
    }
    let uses_gum = identifiers
        .iter()
        .any(|mapping| mapping.identifier_type == IdentifierType::Gum);
    if uses_gum && destination.gum_caller_id.is_none() {
        return Err(invalid(
            "identifier type `gum` needs `destination.gum_caller_id`, the integer caller id \
             that Criteo gives with GUM access"
                .into(),
        ));
    }
    Ok(())
}

fn is_api_version(version: &str) -> bool {
    let bytes = version.as_bytes();
    let dated = bytes.len() == 7
        && bytes[4] == b'-'
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[5..].iter().all(u8::is_ascii_digit);
    dated || version == "preview"
}

fn validate_guards(
    guards: &GuardSettings,
    invalid: &dyn Fn(String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (field, value) in [
        ("max_removal_ratio", guards.max_removal_ratio),
        ("max_duplicate_key_ratio", guards.max_duplicate_key_ratio),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(invalid(format!(
                "`guards.{field}` is {value}; it must be a share between 0 and 1"
            )));
        }
    }
    Ok(())
}

/// Name and description carried by a segment file's leading `--` comments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SegmentHeader {
    pub name: Option<String>,
    pub description: Option<String>,
}

impl SegmentHeader {
    /// Reads `-- name:` and `-- description:` from the comment lines before the query.
    pub fn parse(sql: &str) -> SegmentHeader {
        let mut header = SegmentHeader::default();
        for line in sql.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some(comment) = line.strip_prefix("--") else {
                break;
            };
            let comment = comment.trim();
            if let Some(value) = comment.strip_prefix("name:") {
                header.name = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            } else if let Some(value) = comment.strip_prefix("description:") {
                header.description = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            }
        }
        header
    }
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}
fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_string()
}
fn default_max_batch() -> usize {
    MAX_BATCH_IDENTIFIERS
}
fn default_requests_per_minute() -> u32 {
    250
}
fn default_max_concurrent_requests() -> usize {
    4
}
fn default_request_timeout_secs() -> u64 {
    120
}
fn default_max_attempts() -> u32 {
    6
}
fn default_max_retry_secs() -> u64 {
    600
}
fn default_retry_base_delay_ms() -> u64 {
    1000
}
fn default_state_url() -> String {
    ".audience-sync/state".to_string()
}
fn default_lock_ttl_secs() -> u64 {
    6 * 3600
}
fn default_max_removal_ratio() -> f64 {
    0.2
}
fn default_max_duplicate_key_ratio() -> f64 {
    0.05
}

/// A TOML value of the field's own type, or a string that parses as one (from `--set`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NativeOrText<T> {
    Native(T),
    Text(String),
}

fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + FromStr,
    T::Err: fmt::Display,
{
    match NativeOrText::<T>::deserialize(deserializer)? {
        NativeOrText::Native(value) => Ok(value),
        NativeOrText::Text(text) => text.trim().parse().map_err(|error| {
            serde::de::Error::custom(format!("invalid value `{text}`: {error}"))
        }),
    }
}

fn lenient_option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + FromStr,
    T::Err: fmt::Display,
{
    lenient(deserializer).map(Some)
}

/// Reads an id written either as a TOML string or as an integer.
fn optional_id<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => Some(text.trim().to_string()).filter(|text| !text.is_empty()),
        Id::Number(number) => Some(number.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const MINIMAL: &str = r#"
segment = "segment.sql"
key = "customer_id"
[sources]
customers = "data/customers.parquet"
[identifiers]
email = "email"
[destination]
advertiser_id = "12345"
audience_id = 987654
"#;

    fn setup(activation: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "segment.sql",
            "-- name: VIP customers\n-- description: Spent over 100\nSELECT 1",
        );
        let path = write(dir.path(), "vip.toml", activation);
        (dir, path)
    }

    #[test]
    fn minimal_activation_resolves() {
        let (dir, path) = setup(MINIMAL);
        let activation = Activation::load(&path, &LoadOptions::default()).unwrap();
        assert_eq!(activation.name, "VIP customers");
        assert_eq!(activation.description.as_deref(), Some("Spent over 100"));
        assert_eq!(activation.destination.audience_id.as_deref(), Some("987654"));
        assert_eq!(activation.destination.max_batch_identifiers, 50_000);
        assert_eq!(activation.state_prefix, "vip");
        assert_eq!(
            activation.sources[0].location,
            Location::Local(dir.path().join("data/customers.parquet"))
        );
        assert_eq!(
            activation.state_location,
            Location::Local(dir.path().join(".audience-sync/state"))
        );
    }

    #[test]
    fn unknown_key_lists_valid_keys() {
        let (_dir, path) = setup(&MINIMAL.replace("key = ", "colour = \"red\"\nkey = "));
        let error = Activation::load(&path, &LoadOptions::default()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("unknown field `colour`"), "{message}");
        assert!(message.contains("segment"), "{message}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let (_dir, path) = setup("segment = \"a.sql\"\nkey = \n");
        let message = Activation::load(&path, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn unknown_identifier_type_lists_types() {
        let (_dir, path) = setup(&MINIMAL.replace("email = \"email\"", "fax = \"fax\""));
        let message = Activation::load(&path, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("unknown identifier type `fax`"), "{message}");
        assert!(message.contains("phoneNumber"), "{message}");
    }

    #[test]
    fn overrides_follow_field_types() {
        let (_dir, path) = setup(MINIMAL);
        let options = LoadOptions {
            overrides: vec![
                "destination.max_batch_identifiers=1000".into(),
                "destination.audience_id=2026-12-01".into(),
                "guards.allow_empty_segment=true".into(),
                "name=2026-12-01".into(),
            ],
            ..LoadOptions::default()
        };
        let activation = Activation::load(&path, &options).unwrap();
        assert_eq!(activation.destination.max_batch_identifiers, 1000);
        assert_eq!(activation.destination.audience_id.as_deref(), Some("2026-12-01"));
        assert!(activation.guards.allow_empty_segment);
        assert_eq!(activation.name, "2026-12-01");
    }

    #[test]
    fn override_with_wrong_type_is_rejected() {
        let (_dir, path) = setup(MINIMAL);
        let options = LoadOptions {
            overrides: vec!["destination.max_batch_identifiers=lots".into()],
            ..LoadOptions::default()
        };
        let message = Activation::load(&path, &options).unwrap_err().to_string();
        assert!(message.contains("lots"), "{message}");
    }

    #[test]
    fn batch_size_above_criteo_cap_is_rejected() {
        let (_dir, path) = setup(MINIMAL);
        let options = LoadOptions {
            overrides: vec!["destination.max_batch_identifiers=50001".into()],
            ..LoadOptions::default()
        };
        let message = Activation::load(&path, &options).unwrap_err().to_string();
        assert!(message.contains("between 1 and 50000"), "{message}");
    }

    #[test]
    fn project_defaults_are_inherited_and_overridden() {
        let activation_text = MINIMAL.replace("advertiser_id = \"12345\"\n", "");
        let (dir, path) = setup(&activation_text);
        write(
            dir.path(),
            PROJECT_FILE_NAME,
            "[defaults.criteo.destination]\nadvertiser_id = \"555\"\napi_version = \"2026-01\"\n\
             max_batch_identifiers = 20000\n[defaults.criteo.state]\nurl = \"shared-state\"\n",
        );
        let options = LoadOptions {
            overrides: vec!["destination.max_batch_identifiers=100".into()],
            ..LoadOptions::default()
        };
        let activation = Activation::load(&path, &options).unwrap();
        assert_eq!(activation.destination.advertiser_id.as_deref(), Some("555"));
        assert_eq!(activation.destination.api_version, "2026-01");
        assert_eq!(activation.destination.max_batch_identifiers, 100);
        assert_eq!(
            activation.state_location,
            Location::Local(dir.path().join("shared-state"))
        );
        assert_eq!(activation.project_file, Some(dir.path().join(PROJECT_FILE_NAME)));
    }

    #[test]
    fn secret_is_masked_in_debug() {
        let credentials = Credentials {
            client_id: "id".into(),
            client_secret: Secret::new("hunter2"),
        };
        let shown = format!("{credentials:?} {}", credentials.client_secret);
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn effective_settings_mask_storage_secrets() {
        let text = MINIMAL.replace(
            "customers = \"data/customers.parquet\"",
            "customers = \"https://user:pw@files.example/customers.parquet?sig=abc\"",
        ) + "[storage.\"s3://bucket\"]\nsecret_access_key = \"hunter2\"\nregion = \"eu-west-1\"\n";
        let (_dir, path) = setup(&text);
        let activation = Activation::load(&path, &LoadOptions::default()).unwrap();

        let settings = activation.effective_settings();

        let shown = settings.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("pw@"), "{shown}");
        assert!(!shown.contains("sig=abc"), "{shown}");
        assert_eq!(settings["storage"]["s3://bucket"]["region"], "eu-west-1");
        assert_eq!(settings["storage"]["s3://bucket"]["secret_access_key"], "****");
        assert_eq!(settings["name"], "VIP customers");
        assert_eq!(settings["description"], "Spent over 100");
        assert_eq!(settings["destination"]["max_batch_identifiers"], 50_000);
    }

    #[test]
    fn url_password_is_redacted() {
        let url = url::Url::parse("https://user:pw@host/path?sig=abc").unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
    }

    #[test]
    fn segment_header_reads_leading_comments() {
        let header = SegmentHeader::parse("\n-- name: A\n--description: B\nSELECT 1\n-- name: C");
        assert_eq!(header.name.as_deref(), Some("A"));
        assert_eq!(header.description.as_deref(), Some("B"));
    }
}
