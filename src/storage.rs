//! Object stores for source tables and state: local folders and cloud URLs.
//!
//! Cloud stores read their credentials from each cloud's standard environment variables
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`), and then the `[storage."scheme://bucket"]` options of the
//! activation, which win.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use url::Url;

use crate::config::{Location, redact_url};

/// A failure to set up access to an object store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unknown storage option `{key}` for `{store}`; see the object store's documentation for valid keys")]
    UnknownOption { store: String, key: String },

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
    let unknown = |key: &str| StorageError::UnknownOption {
        store: shown.clone(),
        key: key.to_string(),
    };
    let build_error = |source: object_store::Error| StorageError::Build {
        store: shown.clone(),
        source,
    };
    let root = store_root(url).to_string();
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(&root);
            for (key, value) in options {
                let config_key = key.to_ascii_lowercase().parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(config_key, value);
            }
            Arc::new(builder.build().map_err(build_error)?)
        }
        "gs" => {
            let mut builder =
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(&root);
            for (key, value) in options {
                let config_key = key.to_ascii_lowercase().parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(config_key, value);
            }
            Arc::new(builder.build().map_err(build_error)?)
        }
        "az" | "abfs" | "abfss" | "azure" => {
            let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(&root);
            for (key, value) in options {
                let config_key = key.to_ascii_lowercase().parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(config_key, value);
            }
            Arc::new(builder.build().map_err(build_error)?)
        }
        _ => {
            let mut builder = object_store::http::HttpBuilder::new().with_url(&root);
            for (key, value) in options {
                let config_key = key.to_ascii_lowercase().parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(config_key, value);
            }
            Arc::new(builder.build().map_err(build_error)?)
        }
    };
    Ok(store)
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
