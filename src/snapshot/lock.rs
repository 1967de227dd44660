//! The single-writer lock of an activation, built on create-only puts.
//!
//! ```text
//! {prefix}/lock.json                      the holder; created only if absent
//! {prefix}/lock-takeover/{digest}.json    created only if absent by the one run that may
//!                                         replace the expired lock whose bytes hash to digest
//! ```
//!
//! A run takes the lock by creating `lock.json`. When the file exists, its holder's
//! `expires_at` decides: a live holder makes the run fail with [`StateError::LockHeld`]
//! (exit 75); an expired one may be replaced. Object stores offer no delete-if-unchanged, so
//! two runs that both found the same expired lock could otherwise both delete it, the second
//! deleting the lock the first had just created. Each replacement therefore first creates a
//! takeover marker named after the expired lock's content: only one run can create it, and
//! that run checks the lock is still the expired one before deleting it.
//!
//! The lock is not renewed while a run works: `state.lock_ttl_secs` must be longer than the
//! longest run. A run that outlives it can be joined by a second one; the create-only
//! manifest then still lets only one of them commit.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use serde::{Deserialize, Serialize};

use super::{StateError, StateStore, hex_digest};
use crate::identifiers::sha256;

/// Attempts to create the lock file before giving up on a lock that keeps changing hands.
const MAX_LOCK_ATTEMPTS: usize = 3;

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

    /// Returns the stand-in for a lock file that is not valid JSON: expired, so that it
    /// can be replaced.
    fn unreadable() -> LockInfo {
        LockInfo {
            run_id: "unknown (unreadable lock file)".into(),
            host: "unknown".into(),
            pid: 0,
            started_at: DateTime::<Utc>::MIN_UTC,
            expires_at: DateTime::<Utc>::MIN_UTC,
        }
    }
}

/// The lock file as stored: its bytes identify it for a takeover.
struct StoredLock {
    info: LockInfo,
    bytes: Bytes,
}

impl StateStore {
    pub(super) fn lock_path(&self) -> StorePath {
        self.prefix.clone().join("lock.json")
    }

    fn takeover_folder(&self) -> StorePath {
        self.prefix.clone().join("lock-takeover")
    }

    /// Takes the activation's lock for `run_id`, replacing a lock that expired.
    ///
    /// # Errors
    ///
    /// [`StateError::LockHeld`] when a live run holds the lock or another run is replacing
    /// the same expired lock; [`StateError::Unreadable`] when the store fails.
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

        for _ in 0..MAX_LOCK_ATTEMPTS {
            match self.put_new(&path, body.clone()).await {
                Ok(()) => return Ok(info),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(source) => return Err(self.unreadable("create lock", &path, source)),
            }
            let Some(holder) = self.read_stored_lock().await? else {
                continue;
            };
            // A create whose response was lost and that the store client retried reports
            // `AlreadyExists` for this run's own lock.
            if holder.info.run_id == run_id {
                return Ok(holder.info);
            }
            if holder.info.expires_at > now {
                return Err(StateError::LockHeld {
                    holder: holder.info.describe(),
                    expires_at: holder.info.expires_at.to_rfc3339(),
                });
            }
            self.break_expired_lock(&holder, run_id).await?;
        }
        Err(StateError::LockHeld {
            holder: "another run that took the lock while this one replaced an expired lock".into(),
            expires_at: "unknown".into(),
        })
    }

    /// Deletes the expired lock `expired` if this run is the one allowed to replace it.
    async fn break_expired_lock(&self, expired: &StoredLock, run_id: &str) -> Result<(), StateError> {
        let marker = self
            .takeover_folder()
            .join(format!("{}.json", &hex_digest(&sha256(&expired.bytes))[..32]));
        let claim = Bytes::from(format!("{{\"run_id\":{:?}}}", run_id));
        match self.put_new(&marker, claim).await {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(StateError::LockHeld {
                    holder: format!(
                        "another run that is replacing the expired lock of {}",
                        expired.info.describe()
                    ),
                    expires_at: "unknown".into(),
                });
            }
            Err(source) => return Err(self.unreadable("create lock takeover marker", &marker, source)),
        }

        let result = async {
            let current = self.read_stored_lock().await?;
            if current.is_some_and(|current| current.bytes == expired.bytes) {
                tracing::warn!(holder = %expired.info.describe(), "replacing an expired lock");
                self.delete_lock_file().await?;
            }
            Ok(())
        }
        .await;
        // NOTE: a run killed before this delete leaves the marker behind, and later runs
        // then report the expired lock as being replaced until `state unlock` removes both.
        if let Err(error) = self.store.delete(&marker).await {
            tracing::warn!(marker = %self.shown_path(&marker), %error, "failed to delete a lock takeover marker");
        }
        result
    }

    /// Reads the current lock; an unreadable lock file counts as expired.
    pub async fn read_lock(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.read_stored_lock().await?.map(|stored| stored.info))
    }

    async fn read_stored_lock(&self) -> Result<Option<StoredLock>, StateError> {
        let path = self.lock_path();
        let bytes = match self.store.get(&path).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(|source| self.unreadable("read lock", &path, source))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.unreadable("read lock", &path, source)),
        };
        let info = serde_json::from_slice(&bytes).unwrap_or_else(|_| LockInfo::unreadable());
        Ok(Some(StoredLock { info, bytes }))
    }

    async fn delete_lock_file(&self) -> Result<(), StateError> {
        let path = self.lock_path();
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.unreadable("delete lock", &path, source)),
        }
    }

    /// Deletes the lock file, whichever run created it, and any takeover marker left by a run that
    /// died while replacing an expired lock. Only for a lock whose run is known to be dead.
    pub async fn remove_lock(&self) -> Result<(), StateError> {
        self.delete_lock_file().await?;
        let folder = self.takeover_folder();
        let markers: Vec<_> = self
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|source| self.unreadable("list", &folder, source))?;
        for marker in markers {
            match self.store.delete(&marker.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(self.unreadable("delete", &marker.location, source)),
            }
        }
        Ok(())
    }

    /// Releases a lock this run holds, unless another run replaced it.
    ///
    /// NOTE: the check and the delete are two calls, so if this run's lock expired and
    /// another run replaced it in between, that run's lock is deleted. A lock TTL longer
    /// than any run keeps this from happening.
    pub async fn release_lock(&self, lock: &LockInfo) -> Result<(), StateError> {
        match self.read_lock().await? {
            Some(current) if current.run_id == lock.run_id => self.delete_lock_file().await,
            _ => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use object_store::local::LocalFileSystem;

    use super::*;

    fn local_state(dir: &tempfile::TempDir) -> StateStore {
        StateStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            prefix: StorePath::from("vip"),
            shown: dir.path().display().to_string(),
        }
    }

    async fn expired_lock(state: &StateStore) -> StoredLock {
        state.acquire_lock("dead-run", 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        state.read_stored_lock().await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn late_takeover_keeps_new_holder() {
        // Both runs read the same expired lock; the first replaces it before the second acts.
        let dir = tempfile::tempdir().unwrap();
        let state = local_state(&dir);
        let seen_by_late_run = expired_lock(&state).await;

        let first = state.acquire_lock("first-run", 3600).await.unwrap();
        state.break_expired_lock(&seen_by_late_run, "late-run").await.unwrap();

        let holder = state.read_lock().await.unwrap().expect("the first run's lock is gone");
        assert_eq!(holder.run_id, first.run_id);
        assert!(state.acquire_lock("late-run", 3600).await.is_err());
    }

    #[tokio::test]
    async fn takeover_in_progress_holds_others_off() {
        let dir = tempfile::tempdir().unwrap();
        let state = local_state(&dir);
        let expired = expired_lock(&state).await;
        let marker = state
            .takeover_folder()
            .join(format!("{}.json", &hex_digest(&sha256(&expired.bytes))[..32]));
        state.put_new(&marker, Bytes::from_static(b"{}")).await.unwrap();

        let refused = state.acquire_lock("other-run", 3600).await.unwrap_err();

        assert!(refused.to_string().contains("replacing the expired lock"), "{refused}");
        state.remove_lock().await.unwrap();
        assert!(state.acquire_lock("other-run", 3600).await.is_ok(), "unlock left the marker");
    }

    #[tokio::test]
    async fn unreadable_lock_counts_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let state = local_state(&dir);
        state.put_new(&state.lock_path(), Bytes::from_static(b"{\"run_id\": ")).await.unwrap();

        let lock = state.acquire_lock("next-run", 3600).await.unwrap();

        assert_eq!(state.read_lock().await.unwrap().unwrap().run_id, lock.run_id);
    }
}
