//! The state store: snapshots of what Criteo acknowledged, committed atomically.
//!
//! Layout under the activation's prefix:
//!
//! ```text
//! {prefix}/lock.json                          held while a run works; created only if absent
//! {prefix}/snapshots/{version}-{run_id}.parquet   sorted (identifier_type, identifier)
//! {prefix}/manifests/{version:020}.json       names the snapshot file; created only if absent
//! ```
//!
//! A commit writes the snapshot under a name no other run can use, then creates the next
//! numbered manifest with a create-only put. Readers take the highest manifest, so they see
//! the old snapshot or the new one, never a mix; a crash before the manifest exists leaves
//! only an unreferenced data file. Two writers cannot both create manifest `n + 1`: the
//! second gets `AlreadyExists` and fails without touching the first one's commit. Both
//! primitives work on every object store, the local file system included.
//!
//! What is safe: deleting `lock.json` of a run that is known to be dead (`state unlock`).
//! What is not: editing or deleting manifests or snapshot files by hand while runs go on.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, BinaryArray, BinaryBuilder, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::config::Activation;
use crate::identifiers::{IdentifierSet, IdentifierType, sha256};
use crate::storage::{self, StorageError};

/// Version of the manifest format this build writes and reads.
const MANIFEST_FORMAT: u32 = 1;

/// Rows per record batch in snapshot files.
const SNAPSHOT_BATCH_ROWS: usize = 65_536;

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Storage(#[from] StorageError),

    #[error("failed to {action} `{location}` in the state store")]
    Unreadable {
        action: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },

    #[error(
        "the state at `{location}` is corrupt: {reason}. Nothing was sent. If the state cannot \
         be restored, run `audience-sync state reset ACTIVATION --yes`; the next run then \
         re-adds every current identifier"
    )]
    Corrupt { location: String, reason: String },

    #[error(
        "another run holds the lock of this activation: {holder}. Retry later; if that run is \
         dead, the lock expires at {expires_at} or can be removed with \
         `audience-sync state unlock ACTIVATION`"
    )]
    LockHeld { holder: String, expires_at: String },

    #[error(
        "another run committed version {version} of this activation's state first; this run's \
         changes were sent but not recorded, and the next run reconciles them"
    )]
    ConcurrentCommit { version: u64 },
}

impl StateError {
    /// Whether retrying later may succeed without a change by the user.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            StateError::Unreadable { .. } | StateError::LockHeld { .. } | StateError::ConcurrentCommit { .. }
        )
    }
}

/// The manifest of one committed snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub version: u64,
    pub run_id: String,
    pub activation: String,
    pub committed_at: DateTime<Utc>,
    /// Audience the snapshot was delivered to.
    pub audience_id: Option<String>,
    /// Audience name and description as last sent, to notice a rename.
    pub audience_name: Option<String>,
    pub audience_description: Option<String>,
    /// Snapshot file, relative to the activation's prefix.
    pub snapshot_file: String,
    /// SHA-256 of the snapshot file, lower-case hex.
    pub snapshot_sha256: String,
    pub snapshot_bytes: u64,
    /// Identifiers per type (config names).
    pub counts: BTreeMap<String, u64>,
}

/// The acknowledged identifiers of an activation, per type.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub manifest: Option<Manifest>,
    pub sets: BTreeMap<IdentifierType, IdentifierSet>,
}

impl Snapshot {
    /// Identifiers of one type, or an empty set.
    pub fn set(&self, identifier_type: IdentifierType) -> IdentifierSet {
        self.sets
            .get(&identifier_type)
            .cloned()
            .unwrap_or_else(|| IdentifierSet::empty_for(identifier_type))
    }

    /// Identifiers of all types.
    pub fn total(&self) -> u64 {
        self.sets.values().map(|set| set.len() as u64).sum()
    }
}

/// What `commit` records beside the identifiers.
#[derive(Clone, Debug)]
pub struct CommitInfo {
    pub run_id: String,
    pub audience_id: Option<String>,
    pub audience_name: Option<String>,
    pub audience_description: Option<String>,
}

/// The lock file's content.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LockInfo {
    fn describe(&self) -> String {
        format!(
            "run {} on host {} (pid {}), started {}",
            self.run_id,
            self.host,
            self.pid,
            self.started_at.to_rfc3339()
        )
    }
}

/// The state of one activation in an object store.
#[derive(Clone, Debug)]
pub struct StateStore {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    shown: String,
}

impl StateStore {
    /// Opens the activation's state location; a local folder is created if missing.
    pub fn open(activation: &Activation) -> Result<StateStore, StateError> {
        storage::ensure_local_folder(&activation.state_location)?;
        let resolved = storage::open_store(&activation.state_location, &activation.storage)?;
        let mut prefix = resolved.path;
        for part in activation.state_prefix.split('/').filter(|part| !part.is_empty()) {
            prefix = prefix.join(part);
        }
        let shown = format!(
            "{}/{}",
            activation.state_location.to_string().trim_end_matches('/'),
            activation.state_prefix
        );
        Ok(StateStore {
            store: resolved.store,
            prefix,
            shown,
        })
    }

    /// The state location, for messages.
    pub fn location(&self) -> &str {
        &self.shown
    }

    fn shown_path(&self, path: &StorePath) -> String {
        let relative = path
            .as_ref()
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(path.as_ref())
            .trim_start_matches('/');
        format!("{}/{}", self.shown, relative)
    }

    fn unreadable(&self, action: &'static str, path: &StorePath, source: object_store::Error) -> StateError {
        StateError::Unreadable {
            action,
            location: self.shown_path(path),
            source,
        }
    }

    fn corrupt(&self, path: &StorePath, reason: impl Into<String>) -> StateError {
        StateError::Corrupt {
            location: self.shown_path(path),
            reason: reason.into(),
        }
    }

    fn manifest_path(&self, version: u64) -> StorePath {
        self.prefix.clone().join("manifests").join(format!("{version:020}.json"))
    }

    fn lock_path(&self) -> StorePath {
        self.prefix.clone().join("lock.json")
    }

    /// Returns the versions of all manifests, ascending.
    async fn manifest_versions(&self) -> Result<Vec<u64>, StateError> {
        let folder = self.prefix.clone().join("manifests");
        let objects: Vec<_> = self
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|source| self.unreadable("list", &folder, source))?;
        let mut versions = Vec::new();
        for object in objects {
            let name = object.location.filename().unwrap_or_default();
            let Some(number) = name.strip_suffix(".json") else {
                continue;
            };
            match number.parse::<u64>() {
                Ok(version) => versions.push(version),
                Err(_) => return Err(self.corrupt(&object.location, "unexpected file among the manifests")),
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// Reads the latest manifest, if any run committed one.
    pub async fn latest_manifest(&self) -> Result<Option<Manifest>, StateError> {
        let Some(version) = self.manifest_versions().await?.last().copied() else {
            return Ok(None);
        };
        let path = self.manifest_path(version);
        let bytes = self.read(&path).await?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|error| self.corrupt(&path, format!("the manifest is not valid JSON ({error})")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(self.corrupt(
                &path,
                format!(
                    "manifest format {} is not the format {} this build reads",
                    manifest.format, MANIFEST_FORMAT
                ),
            ));
        }
        if manifest.version != version {
            return Err(self.corrupt(&path, "the manifest's version does not match its file name"));
        }
        Ok(Some(manifest))
    }

    async fn read(&self, path: &StorePath) -> Result<Bytes, StateError> {
        let result = self
            .store
            .get(path)
            .await
            .map_err(|source| self.unreadable("read", path, source))?;
        result
            .bytes()
            .await
            .map_err(|source| self.unreadable("read", path, source))
    }

    /// Loads the latest committed snapshot, verifying its checksum, order and counts.
    pub async fn load(&self) -> Result<Snapshot, StateError> {
        let Some(manifest) = self.latest_manifest().await? else {
            return Ok(Snapshot::default());
        };
        let path = self.prefix.clone().join("snapshots").join(manifest.snapshot_file.as_str());
        let bytes = match self.store.get(&path).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(|source| self.unreadable("read", &path, source))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(self.corrupt(&path, "the snapshot file named by the manifest is missing"));
            }
            Err(source) => return Err(self.unreadable("read", &path, source)),
        };
        if bytes.len() as u64 != manifest.snapshot_bytes
            || hex_digest(&sha256(&bytes)) != manifest.snapshot_sha256
        {
            return Err(self.corrupt(
                &path,
                "the snapshot file does not match the checksum in its manifest (truncated or changed)",
            ));
        }
        let sets = decode_snapshot(bytes).map_err(|reason| self.corrupt(&path, reason))?;
        for identifier_type in IdentifierType::ALL {
            let found = sets.get(&identifier_type).map_or(0, |set| set.len() as u64);
            let expected = manifest.counts.get(identifier_type.config_name()).copied().unwrap_or(0);
            if found != expected {
                return Err(self.corrupt(
                    &path,
                    format!(
                        "the snapshot holds {found} {} identifiers but the manifest says {expected}",
                        identifier_type.config_name()
                    ),
                ));
            }
        }
        Ok(Snapshot {
            manifest: Some(manifest),
            sets,
        })
    }

    /// Commits a new snapshot as the version after `previous`.
    pub async fn commit(
        &self,
        previous: Option<&Manifest>,
        info: CommitInfo,
        sets: &BTreeMap<IdentifierType, IdentifierSet>,
    ) -> Result<Manifest, StateError> {
        let version = previous.map_or(1, |manifest| manifest.version + 1);
        let file_name = format!("{version:020}-{}.parquet", info.run_id);
        let data_path = self.prefix.clone().join("snapshots").join(file_name.as_str());
        let bytes = encode_snapshot(sets).map_err(|reason| self.corrupt(&data_path, reason))?;
        let snapshot_sha256 = hex_digest(&sha256(&bytes));
        let snapshot_bytes = bytes.len() as u64;
        self.put_new(&data_path, Bytes::from(bytes))
            .await
            .map_err(|source| self.unreadable("write", &data_path, source))?;

        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            version,
            run_id: info.run_id,
            activation: self.prefix.filename().unwrap_or_default().to_string(),
            committed_at: Utc::now(),
            audience_id: info.audience_id,
            audience_name: info.audience_name,
            audience_description: info.audience_description,
            snapshot_file: file_name,
            snapshot_sha256,
            snapshot_bytes,
            counts: sets
                .iter()
                .map(|(identifier_type, set)| (identifier_type.config_name().to_string(), set.len() as u64))
                .collect(),
        };
        let manifest_path = self.manifest_path(version);
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        match self.put_new(&manifest_path, Bytes::from(body)).await {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let _ = self.store.delete(&data_path).await;
                return Err(StateError::ConcurrentCommit { version });
            }
            Err(source) => return Err(self.unreadable("write", &manifest_path, source)),
        }
        self.remove_old_snapshots(version).await;
        Ok(manifest)
    }

    async fn put_new(&self, path: &StorePath, bytes: Bytes) -> Result<(), object_store::Error> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.store
            .put_opts(path, PutPayload::from(bytes), options)
            .await
            .map(|_| ())
    }

    /// Deletes snapshot files older than the previous version. Best effort: a file left
    /// behind only costs space.
    async fn remove_old_snapshots(&self, current_version: u64) {
        let folder = self.prefix.clone().join("snapshots");
        let Ok(objects) = self.store.list(Some(&folder)).try_collect::<Vec<_>>().await else {
            return;
        };
        for object in objects {
            let name = object.location.filename().unwrap_or_default();
            let version = name.split('-').next().and_then(|number| number.parse::<u64>().ok());
            if version.is_some_and(|version| version + 1 < current_version)
                && let Err(error) = self.store.delete(&object.location).await
            {
                tracing::warn!(file = %self.shown_path(&object.location), %error, "failed to delete an old snapshot file");
            }
        }
    }

    /// Takes the activation's lock, replacing a lock that expired.
    pub async fn acquire_lock(&self, run_id: &str, ttl_secs: u64) -> Result<LockInfo, StateError> {
        let path = self.lock_path();
        let now = Utc::now();
        let info = LockInfo {
            run_id: run_id.to_string(),
            host: hostname(),
            pid: std::process::id(),
            started_at: now,
            expires_at: now + chrono::Duration::seconds(ttl_secs.min(i64::MAX as u64) as i64),
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&info).expect("lock serializes"));
        for _ in 0..2 {
            match self.put_new(&path, body.clone()).await {
                Ok(()) => return Ok(info),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(source) => return Err(self.unreadable("create lock", &path, source)),
            }
            let holder = self.read_lock().await?;
            match holder {
                Some(holder) if holder.expires_at > now => {
                    return Err(StateError::LockHeld {
                        holder: holder.describe(),
                        expires_at: holder.expires_at.to_rfc3339(),
                    });
                }
                Some(holder) => {
                    // NOTE: two runs that both find the same expired lock may both delete it;
                    // the create-only put below then lets only one of them in.
                    tracing::warn!(holder = %holder.describe(), "replacing an expired lock");
                    self.remove_lock().await?;
                }
                None => {}
            }
        }
        Err(StateError::LockHeld {
            holder: "a run that took the lock while this one replaced an expired lock".into(),
            expires_at: "unknown".into(),
        })
    }

    /// Reads the current lock; an unreadable lock file counts as expired.
    pub async fn read_lock(&self) -> Result<Option<LockInfo>, StateError> {
        let path = self.lock_path();
        match self.store.get(&path).await {
            Ok(result) => {
                let bytes = result
                    .bytes()
                    .await
                    .map_err(|source| self.unreadable("read lock", &path, source))?;
                Ok(Some(serde_json::from_slice(&bytes).unwrap_or(LockInfo {
                    run_id: "unknown (unreadable lock file)".into(),
                    host: "unknown".into(),
                    pid: 0,
                    started_at: DateTime::<Utc>::MIN_UTC,
                    expires_at: DateTime::<Utc>::MIN_UTC,
                })))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.unreadable("read lock", &path, source)),
        }
    }

    /// Deletes the lock file, whoever holds it.
    pub async fn remove_lock(&self) -> Result<(), StateError> {
        let path = self.lock_path();
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.unreadable("delete lock", &path, source)),
        }
    }

    /// Releases a lock this run holds, unless another run replaced it.
    pub async fn release_lock(&self, lock: &LockInfo) -> Result<(), StateError> {
        match self.read_lock().await? {
            Some(current) if current.run_id == lock.run_id => self.remove_lock().await,
            _ => Ok(()),
        }
    }

    /// Deletes every object of the activation's state.
    pub async fn reset(&self) -> Result<u64, StateError> {
        let objects: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|source| self.unreadable("list", &self.prefix, source))?;
        let mut deleted = 0;
        for object in objects {
            self.store
                .delete(&object.location)
                .await
                .map_err(|source| self.unreadable("delete", &object.location, source))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Lower-case hex of a digest.
pub fn hex_digest(digest: &[u8; 32]) -> String {
    let mut out = Vec::with_capacity(64);
    crate::identifiers::write_hex(digest, &mut out);
    String::from_utf8(out).expect("hex is ASCII")
}

fn snapshot_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("identifier_type", DataType::Utf8, false),
        Field::new("identifier", DataType::Binary, false),
    ]))
}

/// Writes the sets as Parquet sorted by (type, identifier). Types are written in the order
/// of their config names, so the file is sorted as a whole.
fn encode_snapshot(sets: &BTreeMap<IdentifierType, IdentifierSet>) -> Result<Vec<u8>, String> {
    let schema = snapshot_schema();
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
        .build();
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(properties))
        .map_err(|error| format!("failed to start the snapshot file: {error}"))?;
    let mut ordered: Vec<_> = sets.iter().collect();
    ordered.sort_by_key(|(identifier_type, _)| identifier_type.config_name());
    for (identifier_type, set) in ordered {
        let name = identifier_type.config_name();
        let mut start = 0;
        while start < set.len() {
            let end = (start + SNAPSHOT_BATCH_ROWS).min(set.len());
            let mut types = StringBuilder::with_capacity(end - start, (end - start) * name.len());
            let mut values = BinaryBuilder::new();
            for index in start..end {
                types.append_value(name);
                match set {
                    IdentifierSet::Hashed(digests) => values.append_value(digests[index]),
                    IdentifierSet::Clear(texts) => values.append_value(texts[index].as_bytes()),
                }
            }
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(types.finish()), Arc::new(values.finish())],
            )
            .map_err(|error| format!("failed to build a snapshot batch: {error}"))?;
            writer
                .write(&batch)
                .map_err(|error| format!("failed to write the snapshot file: {error}"))?;
            start = end;
        }
    }
    writer
        .close()
        .map_err(|error| format!("failed to finish the snapshot file: {error}"))?;
    Ok(buffer)
}

/// Reads a snapshot file back into sets, checking types, digest sizes and strict order.
fn decode_snapshot(bytes: Bytes) -> Result<BTreeMap<IdentifierType, IdentifierSet>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|error| format!("the snapshot is not a readable Parquet file ({error})"))?
        .with_batch_size(SNAPSHOT_BATCH_ROWS)
        .build()
        .map_err(|error| format!("the snapshot is not a readable Parquet file ({error})"))?;
    let mut hashed: BTreeMap<IdentifierType, Vec<[u8; 32]>> = BTreeMap::new();
    let mut clear: BTreeMap<IdentifierType, Vec<Box<str>>> = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|error| format!("failed to read snapshot rows ({error})"))?;
        let types = batch
            .column_by_name("identifier_type")
            .and_then(|column| column.as_any().downcast_ref::<StringArray>())
            .ok_or("the snapshot has no `identifier_type` text column")?;
        let values = batch
            .column_by_name("identifier")
            .and_then(|column| column.as_any().downcast_ref::<BinaryArray>())
            .ok_or("the snapshot has no `identifier` binary column")?;
        if types.null_count() > 0 || values.null_count() > 0 {
            return Err("the snapshot contains null values".into());
        }
        for row in 0..batch.num_rows() {
            let name = types.value(row);
            let identifier_type = IdentifierType::parse(name)
                .ok_or_else(|| format!("unknown identifier type `{name}` in the snapshot"))?;
            let value = values.value(row);
            if identifier_type.is_hashed() {
                let digest: [u8; 32] = value
                    .try_into()
                    .map_err(|_| format!("a {name} identifier is not a 32-byte SHA-256"))?;
                hashed.entry(identifier_type).or_default().push(digest);
            } else {
                let text = std::str::from_utf8(value)
                    .map_err(|_| format!("a {name} identifier is not valid UTF-8"))?;
                clear.entry(identifier_type).or_default().push(text.into());
            }
        }
    }
    let mut sets = BTreeMap::new();
    for (identifier_type, digests) in hashed {
        if !digests.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(format!("the {} identifiers are not sorted and unique", identifier_type.config_name()));
        }
        sets.insert(identifier_type, IdentifierSet::Hashed(digests));
    }
    for (identifier_type, texts) in clear {
        if !texts.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(format!("the {} identifiers are not sorted and unique", identifier_type.config_name()));
        }
        sets.insert(identifier_type, IdentifierSet::Clear(texts));
    }
    Ok(sets)
}
