//! audience-sync keeps Criteo audiences in step with customer segments defined in SQL.
//!
//! A run resolves an activation file, evaluates its segment with DataFusion over the source
//! tables, normalizes and hashes the members' identifiers, diffs them against the snapshot of
//! what Criteo acknowledged last time, sends only the difference, and commits a new snapshot
//! that holds only what Criteo acknowledged.

pub mod config;
pub mod destination;
pub mod diff;
pub mod error;
pub mod identifiers;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod snapshot;
pub mod source;
pub mod storage;
