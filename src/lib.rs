//! audience-sync keeps Criteo audiences in step with customer segments defined in SQL.
//!
//! A run resolves an activation file and evaluates its segment with DataFusion over the
//! source tables. It normalizes and hashes the members' identifiers and diffs them against
//! the snapshot of what Criteo acknowledged last time. It sends only the difference, then
//! commits a new snapshot that contains only what Criteo acknowledged, beside the
//! identifiers whose delivery is in doubt (sent, but never acknowledged).

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
