//! Object stores for source tables and state: local folders and cloud URLs.
//!
//! Cloud stores read their credentials from each cloud's standard environment variables
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`), and then the `[storage."scheme://bucket"]` options of the
//! activation, which win. Besides the object store's own keys, two options set how the
//! store client retries a failed call: `max_retries` (default 10) and `retry_timeout_secs`
//! (default 180). Lowering them makes an unreachable store fail fast.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, RetryConfig};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use url::Url;

use crate::config::{Location, redact_url};

/// A failure to set up access to an object store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "unknown storage option `{key}` for `{store}`; use a key of this store, such as {examples}, \
         or `max_retries` or `retry_timeout_secs`"
    )]
    UnknownOption {
        store: String,
        key: String,
        examples: &'static str,
    },

    #[error("invalid storage option `{key}` = `{value}` for `{store}`: expected {expected}")]
    InvalidOption {
        store: String,
        key: String,
        value: String,
        expected: &'static str,
    },

    #[error("failed to set up object store for `{store}`")]
    Build {
        store: String,
        #[source]
        source: object_store::Error,
    },

    #[error("failed to create local folder `{path}`")]
    LocalFolder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The store that serves a location, the URL of the store's root (as DataFusion registers
/// it) and the path of the location inside the store.
pub struct ResolvedStore {
    pub store: Arc<dyn ObjectStore>,
    pub root: Url,
    pub path: StorePath,
}

/// Returns `scheme://host` of a URL: the key of its store.
pub fn store_root(url: &Url) -> Url {
    let mut root = url.clone();
    root.set_path("");
    root.set_query(None);
    root.set_fragment(None);
    root
}

/// Builds the store for a location. Local locations get a `LocalFileSystem` rooted at `/`.
pub fn open_store(
    location: &Location,
    options: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<ResolvedStore, StorageError> {
    match location {
        Location::Local(path) => {
            let path_text = path.display().to_string();
            let store_path = StorePath::from_absolute_path(path).map_err(|source| {
                StorageError::Build {
                    store: path_text.clone(),
                    source: source.into(),
                }
            })?;
            Ok(ResolvedStore {
                store: Arc::new(LocalFileSystem::new()),
                root: Url::parse("file:///").expect("static URL"),
                path: store_path,
            })
        }
        Location::Url(url) => {
            let root = store_root(url);
            let key = root.as_str().trim_end_matches('/').to_string();
            let store_options = options.get(&key).cloned().unwrap_or_default();
            let store = build_cloud_store(url, &store_options)?;
            let path = StorePath::from_url_path(url.path()).map_err(|source| StorageError::Build {
                store: redact_url(url),
                source: source.into(),
            })?;
            Ok(ResolvedStore { store, root, path })
        }
    }
}

fn build_cloud_store(
    url: &Url,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let shown = redact_url(url);
    let build_error = |source: object_store::Error| StorageError::Build {
        store: shown.clone(),
        source,
    };
    let (retry, options) = split_retry_options(&shown, options)?;
    let root = store_root(url).to_string();
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let builder = object_store::aws::AmazonS3Builder::from_env()
                .with_url(&root)
                .with_retry(retry);
            let builder = apply_options(builder, &options, &shown, S3_EXAMPLES, |builder, key, value| {
                builder.with_config(key, value)
            })?;
            Arc::new(builder.build().map_err(build_error)?)
        }
        "gs" => {
            let builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(&root)
                .with_retry(retry);
            let builder = apply_options(builder, &options, &shown, GCS_EXAMPLES, |builder, key, value| {
                builder.with_config(key, value)
            })?;
            Arc::new(builder.build().map_err(build_error)?)
        }
        "az" | "abfs" | "abfss" | "azure" => {
            let builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(&root)
                .with_retry(retry);
            let builder = apply_options(builder, &options, &shown, AZURE_EXAMPLES, |builder, key, value| {
                builder.with_config(key, value)
            })?;
            Arc::new(builder.build().map_err(build_error)?)
        }
        _ => {
            let builder = object_store::http::HttpBuilder::new().with_url(&root).with_retry(retry);
            let builder = apply_options(builder, &options, &shown, HTTP_EXAMPLES, |builder, key, value| {
                builder.with_config(key, value)
            })?;
            Arc::new(builder.build().map_err(build_error)?)
        }
    };
    Ok(store)
}

const S3_EXAMPLES: &str = "`endpoint`, `region`, `access_key_id`, `secret_access_key`, `allow_http`";
const GCS_EXAMPLES: &str = "`service_account_path`, `service_account_key`, `base_url`, `skip_signature`";
const AZURE_EXAMPLES: &str = "`account_name`, `access_key`, `sas_token`, `use_emulator`, `endpoint`";
const HTTP_EXAMPLES: &str = "`allow_http`, `timeout`, `connect_timeout`";

/// Takes `max_retries` and `retry_timeout_secs` out of the options; the rest belong to the
/// object store's builder.
fn split_retry_options(
    store: &str,
    options: &BTreeMap<String, String>,
) -> Result<(RetryConfig, BTreeMap<String, String>), StorageError> {
    let mut retry = RetryConfig::default();
    let mut rest = BTreeMap::new();
    for (key, value) in options {
        let invalid = |expected| StorageError::InvalidOption {
            store: store.to_string(),
            key: key.clone(),
            value: value.clone(),
            expected,
        };
        match key.to_ascii_lowercase().as_str() {
            "max_retries" => {
                retry.max_retries = value.trim().parse().map_err(|_| invalid("a whole number of retries"))?;
            }
            "retry_timeout_secs" => {
                let secs: u64 = value.trim().parse().map_err(|_| invalid("a whole number of seconds"))?;
                retry.retry_timeout = Duration::from_secs(secs);
            }
            _ => {
                rest.insert(key.clone(), value.clone());
            }
        }
    }
    Ok((retry, rest))
}

/// Passes every option to the builder as its config key.
fn apply_options<B, K: FromStr>(
    mut builder: B,
    options: &BTreeMap<String, String>,
    store: &str,
    examples: &'static str,
    set: impl Fn(B, K, &str) -> B,
) -> Result<B, StorageError> {
    for (key, value) in options {
        let config_key = key.to_ascii_lowercase().parse().map_err(|_| StorageError::UnknownOption {
            store: store.to_string(),
            key: key.clone(),
            examples,
        })?;
        builder = set(builder, config_key, value);
    }
    Ok(builder)
}

/// Creates a local folder (and its parents) so a `LocalFileSystem` can list it.
pub fn ensure_local_folder(location: &Location) -> Result<(), StorageError> {
    if let Location::Local(path) = location {
        std::fs::create_dir_all(path).map_err(|source| StorageError::LocalFolder {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn open(url: &str, store_options: &[(&str, &str)]) -> Result<ResolvedStore, StorageError> {
        let url = Url::parse(url).unwrap();
        let key = store_root(&url).as_str().trim_end_matches('/').to_string();
        let all = BTreeMap::from([(key, options(store_options))]);
        open_store(&Location::Url(url), &all)
    }

    #[test]
    fn every_cloud_scheme_builds_with_its_options() {
        let cases: [(&str, &[(&str, &str)]); 4] = [
            (
                "s3://audiences/state",
                &[("endpoint", "http://127.0.0.1:9000"), ("allow_http", "true"), ("region", "eu-west-1")],
            ),
            ("gs://audiences/state", &[("skip_signature", "true"), ("base_url", "http://127.0.0.1:4443")]),
            ("az://audiences/state", &[("account_name", "devstoreaccount1"), ("use_emulator", "true")]),
            ("https://files.example.com/state", &[("timeout", "30s")]),
        ];
        for (url, store_options) in cases {
            let resolved = open(url, store_options).unwrap_or_else(|error| panic!("{url}: {error}"));
            assert_eq!(resolved.path.as_ref(), "state", "{url}");
        }
    }

    #[test]
    fn unknown_option_names_store_and_examples() {
        let error = open("s3://audiences/state", &[("endpiont", "http://127.0.0.1:9000")])
            .err()
            .expect("a misspelt key is an error");
        let message = error.to_string();
        assert!(message.contains("`endpiont`"), "{message}");
        assert!(message.contains("s3://audiences"), "{message}");
        assert!(message.contains("`endpoint`"), "{message}");
        assert!(message.contains("`max_retries`"), "{message}");
    }

    #[test]
    fn retry_options_are_parsed_before_the_builder() {
        let (retry, rest) = split_retry_options(
            "s3://audiences",
            &options(&[("max_retries", "2"), ("retry_timeout_secs", "15"), ("region", "eu-west-1")]),
        )
        .unwrap();
        assert_eq!(retry.max_retries, 2);
        assert_eq!(retry.retry_timeout, Duration::from_secs(15));
        assert_eq!(rest, options(&[("region", "eu-west-1")]));
    }

    #[test]
    fn invalid_retry_option_says_what_is_expected() {
        let error = open("s3://audiences/state", &[("max_retries", "many")]).err().unwrap();
        let message = error.to_string();
        assert!(message.contains("`max_retries` = `many`"), "{message}");
        assert!(message.contains("whole number"), "{message}");
    }
}
