//! The state store: snapshots of what Criteo acknowledged, committed atomically.
//!
//! Layout under the activation's prefix:
//!
//! ```text
//! {prefix}/lock.json                                   held while a run works (see `lock`)
//! {prefix}/intents/{version:020}-{run_id}.parquet      what a run is about to send
//! {prefix}/snapshots/{version:020}-{run_id}.parquet    acknowledged identifiers
//! {prefix}/snapshots/{version:020}-{run_id}.in-doubt.parquet   identifiers in doubt
//! {prefix}/manifests/{version:020}.json                names the files; created only if absent
//! ```
//!
//! Every data file is sorted by (identifier_type, identifier). A commit writes its data
//! files under names no other run can use, then creates the next numbered manifest with a
//! create-only put. Readers take the highest manifest, so they see the old snapshot or the
//! new one, never a mix. A crash before the manifest exists leaves only unreferenced data
//! files. Two writers cannot both create manifest `n + 1`: the second gets `AlreadyExists`
//! and fails without touching the first one's commit. Both primitives work on every object
//! store, the local file system included.
//!
//! # Identifiers in doubt
//!
//! A batch that was sent but not acknowledged (a timeout, a dropped connection, a crash)
//! may or may not have changed the audience. Leaving it out of the snapshot is not enough:
//! an add that Criteo applied would never be removed once its member leaves the segment,
//! and a removal that Criteo applied would never be undone once the member comes back.
//! Such identifiers are kept "in doubt" until a later run gets an acknowledgement for them.
//! The next diff adds them again while they are in the segment and removes them again once
//! they are not. Both are harmless when the audience already agrees.
//!
//! Before sending, a run records its plan as an intent file named after the version it
//! will commit. A run that dies before committing leaves its intent behind, and the next
//! run counts those identifiers as in doubt. Intents of versions up to the latest manifest
//! are stale, because the run that committed that version loaded them, and later commits
//! delete them. A run that loses the race to commit a version renames its intent after the
//! next version, so what it sent stays in doubt.
//!
//! What is safe: removing the lock of a run that is known to be dead (`state unlock`).
//! What is not: editing or deleting manifests, intents or snapshot files by hand while runs
//! go on.

mod file;
mod lock;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

pub use lock::LockInfo;

use crate::config::Activation;
use crate::diff::{self, TypeDiff};
use crate::identifiers::{IdentifierSet, IdentifierType, sha256};
use crate::storage::{self, StorageError};

use file::{decode_snapshot, encode_snapshot};

/// Version of the manifest format this build writes and reads.
const MANIFEST_FORMAT: u32 = 1;

/// Lock lifetime of `state reset`, which only lists and deletes objects.
const RESET_LOCK_TTL_SECS: u64 = 600;

/// Times `load` starts over when a commit removed the snapshot it was reading.
const MAX_LOAD_ATTEMPTS: usize = 3;

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
    /// Returns whether retrying later may succeed without a change by the user.
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
    /// Snapshot file, relative to the activation's `snapshots` folder.
    pub snapshot_file: String,
    /// SHA-256 of the snapshot file, lower-case hex.
    pub snapshot_sha256: String,
    pub snapshot_bytes: u64,
    /// Identifiers per type (config names).
    pub counts: BTreeMap<String, u64>,
    /// Identifiers whose state at the destination is unknown; absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_doubt: Option<DataFile>,
}

/// A data file named by a manifest, with what is needed to verify it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataFile {
    /// File name, relative to the activation's `snapshots` folder.
    pub file: String,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    pub bytes: u64,
    /// Identifiers per type (config names).
    pub counts: BTreeMap<String, u64>,
}

/// Identifiers per type.
pub type IdentifierSets = BTreeMap<IdentifierType, IdentifierSet>;

/// The state of an activation: the identifiers Criteo acknowledged, and those in doubt.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub manifest: Option<Manifest>,
    /// Identifiers that Criteo acknowledged and that no later acknowledgement removed.
    pub sets: IdentifierSets,
    /// Identifiers sent without an acknowledgement, whose state at Criteo is unknown. They
    /// come from the committed manifest and from intents that no run committed.
    pub in_doubt: IdentifierSets,
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

    /// Identifiers in doubt, of all types.
    pub fn total_in_doubt(&self) -> u64 {
        self.in_doubt.values().map(|set| set.len() as u64).sum()
    }

    /// Counts the identifiers of `set` that the snapshot records as acknowledged.
    pub fn count_acknowledged(&self, identifier_type: IdentifierType, set: &IdentifierSet) -> u64 {
        match self.sets.get(&identifier_type) {
            Some(acknowledged) => diff::diff(identifier_type, set, acknowledged).unchanged,
            None => 0,
        }
    }

    /// Diffs the current identifiers of one type against the snapshot. Identifiers in
    /// doubt are added again when current and removed again when not.
    pub fn diff(&self, identifier_type: IdentifierType, current: &IdentifierSet) -> TypeDiff {
        let acknowledged = self.set(identifier_type);
        let Some(doubt) = self.in_doubt.get(&identifier_type).filter(|set| !set.is_empty()) else {
            return diff::diff(identifier_type, current, &acknowledged);
        };
        let empty = IdentifierSet::empty_for(identifier_type);
        let settled = diff::apply(&acknowledged, &empty, doubt);
        let reachable = diff::apply(&acknowledged, doubt, &empty);
        let against_settled = diff::diff(identifier_type, current, &settled);
        let against_reachable = diff::diff(identifier_type, current, &reachable);
        TypeDiff {
            identifier_type,
            adds: against_settled.adds,
            removes: against_reachable.removes,
            unchanged: against_settled.unchanged,
        }
    }

    /// Computes the state after a delivery: the snapshot plus acknowledged adds minus
    /// acknowledged removes, and the identifiers in doubt plus those of unacknowledged
    /// batches minus every acknowledged one.
    pub fn next(
        &self,
        added: &IdentifierSets,
        removed: &IdentifierSets,
        unacknowledged: &IdentifierSets,
    ) -> (IdentifierSets, IdentifierSets) {
        let sets = apply_per_type(&self.sets, added, removed);
        let resolved = apply_per_type(added, removed, &IdentifierSets::new());
        let grown = apply_per_type(&self.in_doubt, unacknowledged, &IdentifierSets::new());
        let in_doubt = apply_per_type(&grown, &IdentifierSets::new(), &resolved);
        (sets, in_doubt)
    }
}

/// Merges sets given per type, such as the batches of a delivery, into one set per type.
pub fn union<'a>(parts: impl IntoIterator<Item = (IdentifierType, &'a IdentifierSet)>) -> IdentifierSets {
    let mut out = IdentifierSets::new();
    for (identifier_type, part) in parts {
        let empty = IdentifierSet::empty_for(identifier_type);
        let merged = diff::apply(out.get(&identifier_type).unwrap_or(&empty), part, &empty);
        if !merged.is_empty() {
            out.insert(identifier_type, merged);
        }
    }
    out
}

/// `(base ∪ added) − removed` for every type that occurs in `base` or `added`; empty sets
/// are left out.
fn apply_per_type(base: &IdentifierSets, added: &IdentifierSets, removed: &IdentifierSets) -> IdentifierSets {
    let mut types: Vec<IdentifierType> = base.keys().chain(added.keys()).copied().collect();
    types.sort();
    types.dedup();
    let mut out = IdentifierSets::new();
    for identifier_type in types {
        let empty = IdentifierSet::empty_for(identifier_type);
        let before = base.get(&identifier_type).unwrap_or(&empty);
        let plus = added.get(&identifier_type).unwrap_or(&empty);
        let minus = removed.get(&identifier_type).unwrap_or(&empty);
        let after = diff::apply(before, plus, minus);
        if !after.is_empty() {
            out.insert(identifier_type, after);
        }
    }
    out
}

/// Metadata that `commit` records beside the identifiers.
#[derive(Clone, Debug)]
pub struct CommitInfo {
    pub run_id: String,
    pub audience_id: Option<String>,
    pub audience_name: Option<String>,
    pub audience_description: Option<String>,
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

    /// Returns the state location, for messages.
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

    fn data_path(&self, file_name: &str) -> StorePath {
        self.prefix.clone().join("snapshots").join(file_name)
    }

    fn intents_folder(&self) -> StorePath {
        self.prefix.clone().join("intents")
    }

    async fn list(&self, folder: &StorePath) -> Result<Vec<object_store::ObjectMeta>, StateError> {
        self.store
            .list(Some(folder))
            .try_collect()
            .await
            .map_err(|source| self.unreadable("list", folder, source))
    }

    /// Returns the versions of all manifests, ascending.
    async fn manifest_versions(&self) -> Result<Vec<u64>, StateError> {
        let folder = self.prefix.clone().join("manifests");
        let mut versions = Vec::new();
        for object in self.list(&folder).await? {
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
        self.read_manifest(version).await
    }

    async fn read_manifest(&self, version: u64) -> Result<Option<Manifest>, StateError> {
        let path = self.manifest_path(version);
        let Some(bytes) = self.read_if_present(&path).await? else {
            return Ok(None);
        };
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

    async fn read_if_present(&self, path: &StorePath) -> Result<Option<Bytes>, StateError> {
        let result = match self.store.get(path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.unreadable("read", path, source)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|source| self.unreadable("read", path, source))?;
        Ok(Some(bytes))
    }

    /// Loads the latest committed snapshot, verifying checksums, order and counts, and
    /// adds the identifiers of uncommitted intents to those in doubt.
    pub async fn load(&self) -> Result<Snapshot, StateError> {
        let mut attempt = 1;
        loop {
            let latest = self.manifest_versions().await?.last().copied();
            match self.load_version(latest).await {
                // A commit that finished while this load ran may have deleted the files of
                // the version it read; the newer version is then complete.
                Err(StateError::Corrupt { .. })
                    if attempt < MAX_LOAD_ATTEMPTS && self.manifest_versions().await?.last().copied() > latest =>
                {
                    tracing::debug!(attempt, "the snapshot changed while it was read; reading it again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn load_version(&self, version: Option<u64>) -> Result<Snapshot, StateError> {
        let Some(version) = version else {
            return Ok(Snapshot {
                in_doubt: self.read_intents(0).await?,
                ..Snapshot::default()
            });
        };
        let manifest = self
            .read_manifest(version)
            .await?
            .ok_or_else(|| self.corrupt(&self.manifest_path(version), "the latest manifest disappeared while it was read"))?;
        let main = DataFile {
            file: manifest.snapshot_file.clone(),
            sha256: manifest.snapshot_sha256.clone(),
            bytes: manifest.snapshot_bytes,
            counts: manifest.counts.clone(),
        };
        let sets = self.read_data_file(&main).await?;
        let recorded = match &manifest.in_doubt {
            Some(data_file) => self.read_data_file(data_file).await?,
            None => IdentifierSets::new(),
        };
        let pending = self.read_intents(version).await?;
        Ok(Snapshot {
            manifest: Some(manifest),
            sets,
            in_doubt: apply_per_type(&recorded, &pending, &IdentifierSets::new()),
        })
    }

    /// Reads and verifies one data file named by a manifest.
    async fn read_data_file(&self, data_file: &DataFile) -> Result<IdentifierSets, StateError> {
        let path = self.data_path(&data_file.file);
        let bytes = self
            .read_if_present(&path)
            .await?
            .ok_or_else(|| self.corrupt(&path, "the snapshot file named by the manifest is missing"))?;
        if bytes.len() as u64 != data_file.bytes || hex_digest(&sha256(&bytes)) != data_file.sha256 {
            return Err(self.corrupt(
                &path,
                "the snapshot file does not match the checksum in its manifest (truncated or changed)",
            ));
        }
        let sets = decode_snapshot(bytes).map_err(|reason| self.corrupt(&path, reason))?;
        for identifier_type in IdentifierType::ALL {
            let found = sets.get(&identifier_type).map_or(0, |set| set.len() as u64);
            let expected = data_file.counts.get(identifier_type.config_name()).copied().unwrap_or(0);
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
        Ok(sets)
    }

    /// Returns the union of the intents of versions after `committed`: runs that sent
    /// without committing.
    async fn read_intents(&self, committed: u64) -> Result<IdentifierSets, StateError> {
        let mut union = IdentifierSets::new();
        for object in self.list(&self.intents_folder()).await? {
            if file_version(&object.location).is_none_or(|version| version <= committed) {
                continue;
            }
            let Some(bytes) = self.read_if_present(&object.location).await? else {
                continue;
            };
            let sets = decode_snapshot(bytes).map_err(|reason| self.corrupt(&object.location, reason))?;
            tracing::warn!(
                intent = %self.shown_path(&object.location),
                identifiers = sets.values().map(|set| set.len() as u64).sum::<u64>(),
                "a run sent changes without committing them; their identifiers are in doubt and sent again as needed"
            );
            union = apply_per_type(&union, &sets, &IdentifierSets::new());
        }
        Ok(union)
    }

    /// Records, before sending, the identifiers this run is about to add or remove, so a
    /// crash before the commit leaves them in doubt instead of forgotten.
    pub async fn record_intent(&self, previous: Option<&Manifest>, run_id: &str, sets: &IdentifierSets) -> Result<(), StateError> {
        let version = previous.map_or(1, |manifest| manifest.version + 1);
        let path = self.intents_folder().join(format!("{version:020}-{run_id}.parquet"));
        let bytes = encode_snapshot(sets).map_err(|reason| self.corrupt(&path, reason))?;
        match self.put_new(&path, Bytes::from(bytes)).await {
            // Only this run writes under its run id: a retried put of its own file.
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(source) => Err(self.unreadable("write", &path, source)),
        }
    }

    /// Commits a new snapshot as the version after `previous`, with the identifiers in
    /// doubt beside it.
    ///
    /// # Errors
    ///
    /// [`StateError::ConcurrentCommit`] when another run created that version first;
    /// [`StateError::Unreadable`] when the store fails.
    pub async fn commit(
        &self,
        previous: Option<&Manifest>,
        info: CommitInfo,
        sets: &IdentifierSets,
        in_doubt: &IdentifierSets,
    ) -> Result<Manifest, StateError> {
        let version = previous.map_or(1, |manifest| manifest.version + 1);
        let main = self
            .write_data_file(format!("{version:020}-{}.parquet", info.run_id), sets)
            .await?;
        let in_doubt = if in_doubt.is_empty() {
            None
        } else {
            Some(
                self.write_data_file(format!("{version:020}-{}.in-doubt.parquet", info.run_id), in_doubt)
                    .await?,
            )
        };

        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            version,
            run_id: info.run_id,
            activation: self.prefix.filename().unwrap_or_default().to_string(),
            committed_at: Utc::now(),
            audience_id: info.audience_id,
            audience_name: info.audience_name,
            audience_description: info.audience_description,
            snapshot_file: main.file,
            snapshot_sha256: main.sha256,
            snapshot_bytes: main.bytes,
            counts: main.counts,
            in_doubt,
        };
        let manifest_path = self.manifest_path(version);
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        match self.put_new(&manifest_path, Bytes::from(body)).await {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // The store client retries a put whose response was lost, and the retry
                // then finds this run's own manifest.
                let existing = self.read_manifest(version).await?;
                if existing.as_ref().is_some_and(|existing| existing.run_id == manifest.run_id) {
                    tracing::debug!(version, "the manifest was written by an earlier attempt of this put");
                } else {
                    self.delete_data_files(&manifest).await;
                    self.carry_intent_forward(version, &manifest.run_id).await;
                    return Err(StateError::ConcurrentCommit { version });
                }
            }
            Err(source) => return Err(self.unreadable("write", &manifest_path, source)),
        }
        self.remove_old_files(version, &manifest.run_id).await;
        Ok(manifest)
    }

    async fn write_data_file(&self, file_name: String, sets: &IdentifierSets) -> Result<DataFile, StateError> {
        let path = self.data_path(&file_name);
        let bytes = encode_snapshot(sets).map_err(|reason| self.corrupt(&path, reason))?;
        let data_file = DataFile {
            file: file_name,
            sha256: hex_digest(&sha256(&bytes)),
            bytes: bytes.len() as u64,
            counts: sets
                .iter()
                .map(|(identifier_type, set)| (identifier_type.config_name().to_string(), set.len() as u64))
                .collect(),
        };
        match self.put_new(&path, Bytes::from(bytes)).await {
            // The name contains this run's id, so only a retried put of this run finds it.
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(data_file),
            Err(source) => Err(self.unreadable("write", &path, source)),
        }
    }

    /// Copies this run's intent to the version after the one that another run just
    /// committed, because that commit made intents up to `version` stale. The next run then
    /// still counts what this run sent as in doubt. Best effort: without the copy, the next
    /// run resends only what its own diff finds.
    ///
    /// NOTE: a third run that loaded the state before the rename and commits next deletes the
    /// renamed intent. Only runs that outlive `state.lock_ttl_secs` overlap like this.
    async fn carry_intent_forward(&self, version: u64, run_id: &str) {
        let from = self.intents_folder().join(format!("{version:020}-{run_id}.parquet"));
        let to = self.intents_folder().join(format!("{:020}-{run_id}.parquet", version + 1));
        let carried = match self.read_if_present(&from).await {
            Ok(Some(bytes)) => self.put_new(&to, bytes).await.map_err(|source| self.unreadable("write", &to, source)),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = carried {
            tracing::warn!(intent = %self.shown_path(&from), %error, "failed to keep this run's changes in doubt after a concurrent commit");
        }
    }

    async fn delete_data_files(&self, manifest: &Manifest) {
        let mut files = vec![manifest.snapshot_file.as_str()];
        files.extend(manifest.in_doubt.as_ref().map(|data_file| data_file.file.as_str()));
        for file in files {
            let _ = self.store.delete(&self.data_path(file)).await;
        }
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

    /// Deletes snapshot files older than the previous version, which a reader that just
    /// listed the manifests may still open. Deletes this run's intent and older intents,
    /// but not other intents of the committed version: a run that lost the race to commit
    /// it still needs its own. Best effort: a file left behind costs only space, and loads
    /// ignore intents up to the committed version.
    async fn remove_old_files(&self, committed: u64, run_id: &str) {
        let own_intent = format!("{committed:020}-{run_id}.parquet");
        let snapshots = self.prefix.clone().join("snapshots");
        let mut stale = Vec::new();
        if let Ok(objects) = self.list(&snapshots).await {
            stale.extend(
                objects
                    .into_iter()
                    .filter(|object| file_version(&object.location).is_some_and(|version| version + 2 <= committed)),
            );
        }
        if let Ok(objects) = self.list(&self.intents_folder()).await {
            stale.extend(objects.into_iter().filter(|object| {
                file_version(&object.location).is_some_and(|version| version < committed)
                    || object.location.filename() == Some(own_intent.as_str())
            }));
        }
        for object in stale {
            if let Err(error) = self.store.delete(&object.location).await {
                tracing::warn!(file = %self.shown_path(&object.location), %error, "failed to delete an old state file");
            }
        }
    }

    /// Deletes every object of the activation's state, under its lock so that no run is
    /// working on it. Returns the number of objects deleted.
    pub async fn reset(&self) -> Result<u64, StateError> {
        let run_id = format!("state-reset-{}", uuid::Uuid::new_v4().simple());
        let lock = self.acquire_lock(&run_id, RESET_LOCK_TTL_SECS).await?;
        let lock_path = self.lock_path();
        let mut deleted = 0;
        for object in self.list(&self.prefix).await? {
            if object.location == lock_path {
                continue;
            }
            self.store
                .delete(&object.location)
                .await
                .map_err(|source| self.unreadable("delete", &object.location, source))?;
            deleted += 1;
        }
        self.release_lock(&lock).await?;
        Ok(deleted)
    }
}

/// The version a state file's name starts with (`{version:020}-…`).
fn file_version(path: &StorePath) -> Option<u64> {
    path.filename()?.split('-').next()?.parse().ok()
}

/// Lower-case hex of a digest.
pub fn hex_digest(digest: &[u8; 32]) -> String {
    let mut out = Vec::with_capacity(64);
    crate::identifiers::write_hex(digest, &mut out);
    String::from_utf8(out).expect("hex is ASCII")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    const EMAIL: IdentifierType = IdentifierType::Email;

    /// Distinct small numbers as sorted digests, so sets stay readable in failures.
    fn digests(values: &BTreeSet<u16>) -> IdentifierSet {
        IdentifierSet::Hashed(
            values
                .iter()
                .map(|value| {
                    let mut digest = [0u8; 32];
                    digest[..2].copy_from_slice(&value.to_be_bytes());
                    digest
                })
                .collect(),
        )
    }

    fn numbers(set: &IdentifierSet) -> BTreeSet<u16> {
        match set {
            IdentifierSet::Hashed(digests) => digests.iter().map(|digest| u16::from_be_bytes([digest[0], digest[1]])).collect(),
            IdentifierSet::Clear(_) => unreachable!("email sets are hashed"),
        }
    }

    fn sets(values: &BTreeSet<u16>) -> IdentifierSets {
        if values.is_empty() {
            IdentifierSets::new()
        } else {
            IdentifierSets::from([(EMAIL, digests(values))])
        }
    }

    fn numbers_of(sets: &IdentifierSets) -> BTreeSet<u16> {
        sets.get(&EMAIL).map(numbers).unwrap_or_default()
    }

    fn snapshot(acknowledged: &BTreeSet<u16>, in_doubt: &BTreeSet<u16>) -> Snapshot {
        Snapshot {
            manifest: None,
            sets: sets(acknowledged),
            in_doubt: sets(in_doubt),
        }
    }

    #[test]
    fn in_doubt_identifiers_are_sent_again_both_ways() {
        let state = snapshot(&BTreeSet::from([1, 2, 3]), &BTreeSet::from([3, 4]));
        let current = digests(&BTreeSet::from([2, 3, 4, 5]));

        let planned = state.diff(EMAIL, &current);

        assert_eq!(numbers(&planned.adds), BTreeSet::from([3, 4, 5]));
        assert_eq!(numbers(&planned.removes), BTreeSet::from([1]));
        assert_eq!(planned.unchanged, 1);
    }

    #[test]
    fn in_doubt_removal_of_departed_member_is_resent() {
        let state = snapshot(&BTreeSet::from([1]), &BTreeSet::from([9]));

        let planned = state.diff(EMAIL, &digests(&BTreeSet::from([1])));

        assert!(planned.adds.is_empty());
        assert_eq!(numbers(&planned.removes), BTreeSet::from([9]));
    }

    #[test]
    fn acknowledgement_resolves_doubt() {
        let state = snapshot(&BTreeSet::from([1, 2]), &BTreeSet::from([2, 3, 4]));

        let (next, in_doubt) = state.next(&sets(&BTreeSet::from([3])), &sets(&BTreeSet::from([2])), &sets(&BTreeSet::from([5])));

        assert_eq!(numbers_of(&next), BTreeSet::from([1, 3]));
        assert_eq!(numbers_of(&in_doubt), BTreeSet::from([4, 5]));
    }

    fn local_state(dir: &tempfile::TempDir) -> StateStore {
        StateStore {
            store: Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            prefix: StorePath::from("vip"),
            shown: dir.path().display().to_string(),
        }
    }

    fn info(run_id: &str) -> CommitInfo {
        CommitInfo {
            run_id: run_id.into(),
            audience_id: None,
            audience_name: None,
            audience_description: None,
        }
    }

    #[tokio::test]
    async fn uncommitted_intent_is_in_doubt() {
        let dir = tempfile::tempdir().unwrap();
        let state = local_state(&dir);
        state.record_intent(None, "killed-run", &sets(&BTreeSet::from([4, 5]))).await.unwrap();

        let loaded = state.load().await.unwrap();

        assert!(loaded.sets.is_empty());
        assert_eq!(numbers_of(&loaded.in_doubt), BTreeSet::from([4, 5]));
    }

    #[tokio::test]
    async fn commit_absorbs_intents() {
        let dir = tempfile::tempdir().unwrap();
        let state = local_state(&dir);
        state.record_intent(None, "run-a", &sets(&BTreeSet::from([1, 2]))).await.unwrap();

        state.commit(None, info("run-a"), &sets(&BTreeSet::from([1])), &sets(&BTreeSet::from([2]))).await.unwrap();
        let loaded = state.load().await.unwrap();

        assert_eq!(numbers_of(&loaded.sets), BTreeSet::from([1]));
        assert_eq!(numbers_of(&loaded.in_doubt), BTreeSet::from([2]));
        assert!(state.list(&state.intents_folder()).await.unwrap().is_empty(), "the committed intent is left");
    }

    #[tokio::test]
    async fn losing_commit_keeps_its_intent_in_doubt() {
        let dir = tempfile::tempdir().unwrap();
        let state = local_state(&dir);
        let empty = IdentifierSets::new();
        state.record_intent(None, "run-b", &sets(&BTreeSet::from([7, 8]))).await.unwrap();
        state.commit(None, info("run-a"), &sets(&BTreeSet::from([1])), &empty).await.unwrap();

        let lost = state.commit(None, info("run-b"), &sets(&BTreeSet::from([7])), &empty).await;
        let loaded = state.load().await.unwrap();

        assert!(matches!(lost, Err(StateError::ConcurrentCommit { version: 1 })), "{lost:?}");
        assert_eq!(numbers_of(&loaded.sets), BTreeSet::from([1]));
        assert_eq!(numbers_of(&loaded.in_doubt), BTreeSet::from([7, 8]));
    }

    fn small_set() -> impl Strategy<Value = BTreeSet<u16>> {
        proptest::collection::btree_set(0u16..60, 0..30)
    }

    proptest! {
        /// Models Criteo's real audience: whatever subset of the unacknowledged batches it
        /// applied, the state stays consistent with it, and one clean run converges it to
        /// the segment.
        #[test]
        fn failed_delivery_then_clean_run_converges(
            audience in small_set(),
            in_doubt in small_set(),
            segment in small_set(),
            next_segment in small_set(),
            acknowledged_mask in any::<u64>(),
            applied_mask in any::<u64>(),
        ) {
            // Outside the doubt, the snapshot matches the audience exactly.
            let known: BTreeSet<u16> = audience.difference(&in_doubt).copied().collect();
            let state = snapshot(&known, &in_doubt);
            let mut audience = audience;

            let planned = state.diff(EMAIL, &digests(&segment));
            let (mut added, mut removed, mut unacknowledged) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            for (operation, values) in [("add", numbers(&planned.adds)), ("remove", numbers(&planned.removes))] {
                for value in values {
                    let bit = 1u64 << (value % 64);
                    let acknowledged = acknowledged_mask & bit != 0;
                    if acknowledged || applied_mask & bit != 0 {
                        if operation == "add" { audience.insert(value); } else { audience.remove(&value); }
                    }
                    match (acknowledged, operation) {
                        (true, "add") => { added.insert(value); }
                        (true, _) => { removed.insert(value); }
                        (false, _) => { unacknowledged.insert(value); }
                    }
                }
            }
            let (next, next_doubt) = state.next(&sets(&added), &sets(&removed), &sets(&unacknowledged));
            let next_known = numbers_of(&next);
            let next_doubt = numbers_of(&next_doubt);
            let outside: BTreeSet<u16> = audience.difference(&next_doubt).copied().collect();
            let known_outside: BTreeSet<u16> = next_known.difference(&next_doubt).copied().collect();
            prop_assert_eq!(outside, known_outside, "the state no longer describes the audience");

            let clean = Snapshot { manifest: None, sets: next, in_doubt: sets(&next_doubt) };
            let planned = clean.diff(EMAIL, &digests(&next_segment));
            for value in numbers(&planned.adds) { audience.insert(value); }
            for value in numbers(&planned.removes) { audience.remove(&value); }
            let (last, last_doubt) = clean.next(&IdentifierSets::from([(EMAIL, planned.adds.clone())]), &IdentifierSets::from([(EMAIL, planned.removes.clone())]), &IdentifierSets::new());
            prop_assert_eq!(&audience, &next_segment);
            prop_assert_eq!(numbers_of(&last), next_segment);
            prop_assert!(last_doubt.is_empty());
        }
    }
}
