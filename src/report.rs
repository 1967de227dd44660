//! The run report: one JSON line on stdout (and optionally a file) that Airflow and
//! scripts read. It contains counts, ids and error descriptions, never an identifier value.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::destination::ApiProblem;
use crate::destination::audience::AudienceSource;

/// Errors listed in a report beyond this count are only counted, to keep the line bounded.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// Outcome of a run, as reported to Airflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Success,
    Warning,
    Blocked,
    Partial,
    Failed,
}

/// Counts for one identifier type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeReport {
    /// Column the identifiers come from.
    pub column: String,
    /// Members with a non-null value.
    pub values: u64,
    /// Distinct valid identifiers in the segment.
    pub identifiers: u64,
    /// Invalid values by reason.
    pub invalid: BTreeMap<String, u64>,
    pub planned_added: u64,
    pub planned_removed: u64,
    pub added: u64,
    pub removed: u64,
    pub unchanged: u64,
    pub criteo_valid: u64,
    pub criteo_invalid: u64,
}

/// Batch counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BatchReport {
    pub planned: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub not_sent: u64,
}

/// An error of one batch or of the run, as Criteo or we reported it.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    pub message: String,
    #[serde(flatten)]
    pub problem: ApiProblem,
}

/// The report of one `run`, `plan` or `check`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub activation: String,
    pub run_id: String,
    pub command: String,
    pub status: Status,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience_source: Option<AudienceSource>,
    pub members: u64,
    /// Members whose key appears more than once in the segment.
    pub duplicate_keys: u64,
    /// Identifiers Criteo acknowledged as added.
    pub added: u64,
    /// Identifiers Criteo acknowledged as removed.
    pub removed: u64,
    pub planned_added: u64,
    pub planned_removed: u64,
    pub unchanged: u64,
    /// Invalid values by reason, all identifier types together.
    pub invalid: BTreeMap<String, u64>,
    pub batches: BatchReport,
    pub criteo_valid: u64,
    pub criteo_invalid: u64,
    pub identifiers: BTreeMap<String, TypeReport>,
    /// Effective settings of the activation with secrets masked; only `check` sets them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// Version of the committed snapshot after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_version: Option<u64>,
    pub warnings: Vec<String>,
    pub errors: Vec<ErrorReport>,
    /// Errors beyond the listed ones.
    pub errors_not_listed: u64,
    pub duration_ms: u64,
    /// Wall time per phase, in milliseconds: `load_snapshot`, `read_segment`, `plan`,
    /// `deliver` and `commit`.
    pub phases_ms: BTreeMap<String, u64>,
}

impl RunReport {
    /// Adds an error, keeping at most `MAX_REPORTED_ERRORS` listed.
    pub fn push_error(&mut self, message: impl Into<String>, problem: ApiProblem) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            let mut message: String = message.into();
            truncate(&mut message, 600);
            self.errors.push(ErrorReport { message, problem });
        } else {
            self.errors_not_listed += 1;
        }
    }

    pub fn push_warning(&mut self, warning: impl Into<String>) {
        if self.warnings.len() < MAX_REPORTED_ERRORS {
            let mut warning: String = warning.into();
            truncate(&mut warning, 600);
            self.warnings.push(warning);
        }
    }

    /// Serializes the report as one JSON line, without the trailing newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("the report serializes")
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}
