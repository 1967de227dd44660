//! Test fixtures: customer extracts as real Parquet files, activation files, the sandbox
//! over real HTTP, and the `audience-sync` binary run as a separate process.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use audience_sync::sandbox::{Sandbox, SandboxConfig};
use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "sandbox-client";
pub const CLIENT_SECRET: &str = "sandbox-secret";
pub const ADVERTISER: &str = "12345";
pub const AUDIENCE: &str = "987654";

/// One row of a customer extract.
#[derive(Clone, Debug)]
pub struct Customer {
    pub id: i64,
    pub email: Option<String>,
    pub lifetime_value: f64,
    pub opted_out: bool,
}

pub fn customer(id: i64, email: &str) -> Customer {
    Customer {
        id,
        email: Some(email.to_string()),
        lifetime_value: 150.0,
        opted_out: false,
    }
}

/// Writes customers as a Parquet file.
pub fn write_customers(path: &Path, customers: &[Customer]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("lifetime_value", DataType::Float64, false),
        Field::new("opted_out", DataType::Boolean, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(customers.iter().map(|c| c.id))),
            Arc::new(StringArray::from_iter(customers.iter().map(|c| c.email.clone()))),
            Arc::new(Float64Array::from_iter_values(customers.iter().map(|c| c.lifetime_value))),
            Arc::new(BooleanArray::from_iter(customers.iter().map(|c| Some(c.opted_out)))),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// SHA-256 of `text`, lower-case hex: what Criteo should hold for a normalized email.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub fn hashes(emails: &[&str]) -> BTreeSet<String> {
    emails.iter().map(|email| sha256_hex(email)).collect()
}

/// A temporary project: a segment, an activation pointing at the sandbox, and its state.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
}

pub const SEGMENT_SQL: &str = "-- name: VIP customers\n-- description: Spent over 100\n\
SELECT customer_id, email FROM customers WHERE lifetime_value > 100 AND NOT opted_out\n";

impl Project {
    pub async fn start() -> Project {
        Self::start_with(SandboxConfig::default()).await
    }

    pub async fn start_with(config: SandboxConfig) -> Project {
        let sandbox = Sandbox::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("segment.sql"), SEGMENT_SQL).unwrap();
        let project = Project { dir, sandbox };
        project.write_activation("");
        project
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn activation(&self) -> PathBuf {
        self.path("vip.toml")
    }

    /// Writes the activation with `extra` lines appended to `[destination]`.
    pub fn write_activation(&self, extra_destination: &str) {
        let text = format!(
            r#"segment = "segment.sql"
key = "customer_id"

[sources]
customers = "data/customers.parquet"

[identifiers]
email = "email"

[destination]
advertiser_id = "{ADVERTISER}"
audience_id = "{AUDIENCE}"
api_url = "{url}"
retry_base_delay_ms = 20
{extra_destination}

[state]
url = "state"
"#,
            url = self.sandbox.base_url()
        );
        std::fs::write(self.activation(), text).unwrap();
    }

    pub fn write_source(&self, customers: &[Customer]) {
        write_customers(&self.path("data/customers.parquet"), customers);
    }

    /// Runs the binary with the sandbox's credentials.
    pub async fn cli(&self, args: &[&str]) -> RunResult {
        self.cli_with_env(args, &[("CRITEO_CLIENT_ID", CLIENT_ID), ("CRITEO_CLIENT_SECRET", CLIENT_SECRET)])
            .await
    }

    pub async fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> RunResult {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_audience-sync"));
        command
            .args(args)
            .env_remove("CRITEO_CLIENT_ID")
            .env_remove("CRITEO_CLIENT_SECRET")
            .env_remove("CRITEO_CLIENT_ID_FILE")
            .env_remove("CRITEO_CLIENT_SECRET_FILE")
            .current_dir(self.dir.path());
        for (key, value) in env {
            command.env(key, value);
        }
        RunResult::from(command.output().await.unwrap())
    }

    /// `audience-sync run vip.toml ARGS...`
    pub async fn run(&self, args: &[&str]) -> RunResult {
        let activation = self.activation();
        let mut all = vec!["run", activation.to_str().unwrap()];
        all.extend_from_slice(args);
        self.cli(&all).await
    }

    pub fn audience(&self) -> BTreeSet<String> {
        self.sandbox.members(AUDIENCE, "email")
    }

    pub fn amendments(&self) -> Vec<audience_sync::sandbox::RecordedRequest> {
        self.sandbox
            .requests()
            .into_iter()
            .filter(|request| request.operation.is_some())
            .collect()
    }
}

/// Exit code, parsed report and logs of one process.
pub struct RunResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: serde_json::Value,
}

impl From<Output> for RunResult {
    fn from(output: Output) -> Self {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let report = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or(serde_json::Value::Null);
        RunResult {
            code: output.status.code().unwrap_or(-1),
            stdout,
            stderr,
            report,
        }
    }
}

impl RunResult {
    pub fn count(&self, field: &str) -> u64 {
        self.report[field].as_u64().unwrap_or_else(|| panic!("report has no `{field}`: {}", self.stdout))
    }

    /// Panics with the logs unless the exit code is `expected`.
    pub fn expect_code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, expected, "exit code; stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}
