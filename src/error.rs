//! The error of a run, and the one place that maps it to a process exit code.

use crate::config::ConfigError;
use crate::destination::DestinationError;
use crate::report::Status;
use crate::snapshot::StateError;
use crate::source::SourceError;

/// Exit codes of the command line, as Airflow and cron see them.
///
/// 99 (Airflow's "skip") and 127 (shell "command not found") are never used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// The run succeeded, possibly with warnings.
    Success = 0,
    /// Usage or configuration error: malformed or unknown settings, missing credentials,
    /// corrupt state.
    Config = 2,
    /// Source or SQL error: missing file, bad SQL, a column the segment does not return.
    Source = 3,
    /// A guard blocked the run before anything was sent.
    Blocked = 4,
    /// The destination rejected the run before anything was acknowledged.
    Rejected = 5,
    /// Some batches were acknowledged and committed, others failed after retries.
    Partial = 6,
    /// Temporary failure (network, 5xx or rate limit exhausted, lock held): retry later.
    Temporary = 75,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Everything that can stop a run before it completes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    Source(#[from] SourceError),

    #[error(transparent)]
    State(#[from] StateError),

    #[error(transparent)]
    Destination(#[from] DestinationError),

    /// A guard stopped the run before anything was sent.
    #[error("{0}")]
    Blocked(String),
}

impl Error {
    /// Maps the error to the exit code the caller should see.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::Config,
            Error::Source(_) => ExitCode::Source,
            Error::State(error) if error.is_temporary() => ExitCode::Temporary,
            Error::State(_) => ExitCode::Config,
            Error::Destination(error) if error.is_temporary() => ExitCode::Temporary,
            Error::Destination(_) => ExitCode::Rejected,
            Error::Blocked(_) => ExitCode::Blocked,
        }
    }

    /// Returns the run report status that goes with this error.
    pub fn status(&self) -> Status {
        match self {
            Error::Blocked(_) => Status::Blocked,
            _ => Status::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::ApiProblem;

    #[test]
    fn exit_code_table() {
        let cases: Vec<(Error, i32)> = vec![
            (ConfigError::MissingCredential { variable: "CRITEO_CLIENT_ID" }.into(), 2),
            (SourceError::NotFound { table: "t".into(), location: "l".into() }.into(), 3),
            (StateError::Corrupt { location: "l".into(), reason: "r".into() }.into(), 2),
            (StateError::LockHeld { holder: "h".into(), expires_at: "e".into() }.into(), 75),
            (DestinationError::Interrupted.into(), 75),
            (DestinationError::InvalidCredentials { problem: ApiProblem::default() }.into(), 5),
            (Error::Blocked("too many removals".into()), 4),
        ];
        for (error, expected) in cases {
            assert_eq!(error.exit_code().code(), expected, "{error}");
        }
    }
}
