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

/// Writes a Parquet file with an Int64 `customer_id` key and nullable text columns, one
/// value per key in each column.
pub fn write_text_table(path: &Path, keys: &[i64], columns: &[(&str, Vec<Option<&str>>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut fields = vec![Field::new("customer_id", DataType::Int64, false)];
    let mut arrays: Vec<datafusion::arrow::array::ArrayRef> =
        vec![Arc::new(Int64Array::from(keys.to_vec()))];
    for (name, values) in columns {
        assert_eq!(
            values.len(),
            keys.len(),
            "column `{name}` needs one value per key"
        );
        fields.push(Field::new(*name, DataType::Utf8, true));
        arrays.push(Arc::new(StringArray::from(values.clone())));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

impl Project {
    /// Writes the activation file from `text`, with `{api_url}` replaced by the sandbox's URL.
    pub fn write_activation_text(&self, text: &str) {
        let text = text.replace("{api_url}", &self.sandbox.base_url());
        std::fs::write(self.activation(), text).unwrap();
    }

    pub fn write_segment(&self, sql: &str) {
        std::fs::write(self.path("segment.sql"), sql).unwrap();
    }

    /// `audience-sync SUBCOMMAND... vip.toml ARGS...`
    pub async fn activation_command(&self, subcommand: &[&str], args: &[&str]) -> RunResult {
        let activation = self.activation();
        let mut all = subcommand.to_vec();
        all.push(activation.to_str().unwrap());
        all.extend_from_slice(args);
        self.cli(&all).await
    }

    /// Recorded requests of one route kind.
    pub fn requests_to(
        &self,
        route: audience_sync::sandbox::RouteKind,
    ) -> Vec<audience_sync::sandbox::RecordedRequest> {
        self.sandbox
            .requests()
            .into_iter()
            .filter(|request| request.route == Some(route))
            .collect()
    }
}

/// A moto S3 server on a free port of 127.0.0.1, started for one test and killed on drop.
///
/// moto 5.2.5 enforces `If-None-Match: *`, so create-only puts behave as on AWS. It accepts
/// any access key; object requests must be signed, bucket creation need not be.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

pub const MOTO_REGION: &str = "us-east-1";

impl Moto {
    /// Starts moto and waits until it responds. Panics with the install command when moto
    /// is not installed, so a machine without it fails the S3 tests instead of skipping them.
    pub async fn start() -> Moto {
        let installed = std::process::Command::new("python3")
            .args(["-c", "import moto.server"])
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            installed,
            "moto[server] is not installed, and the S3 tests need it as a real S3 server on \
             127.0.0.1; install it with `python3 -m pip install -r tests/requirements.txt`"
        );
        for _ in 0..3 {
            let port = free_port();
            let child = std::process::Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("failed to start python3 -m moto.server");
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
            };
            if moto.wait_until_ready().await {
                return moto;
            }
        }
        panic!("moto did not start on 127.0.0.1 after 3 attempts");
    }

    /// Polls moto for up to 30 seconds; false if the process exited first (port taken).
    async fn wait_until_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if client.get(format!("{}/moto-api/", self.endpoint)).send().await.is_ok() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "create bucket {bucket}: {}", response.status());
    }

    /// Returns the `[storage."s3://BUCKET"]` table that points audience-sync at this server.
    pub fn storage_table(&self, bucket: &str) -> String {
        format!(
            "[storage.\"s3://{bucket}\"]\nendpoint = \"{}\"\nallow_http = \"true\"\nregion = \"{MOTO_REGION}\"\n\
             access_key_id = \"testing\"\nsecret_access_key = \"testing\"\nmax_retries = \"1\"\n",
            self.endpoint
        )
    }

    /// Builds an object_store client for one bucket, to upload sources and inspect state.
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region(MOTO_REGION)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Keys of the objects under `prefix`, sorted.
pub async fn object_keys(store: &dyn object_store::ObjectStore, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = object_store::path::Path::from(prefix);
    let mut keys: Vec<String> = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Sends a signal to a process with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Polls `condition` every 10 ms for up to `timeout`; panics with `what` when it stays false.
pub async fn wait_until(what: &str, timeout: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(started.elapsed() < timeout, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

impl Project {
    /// Starts `audience-sync run vip.toml ARGS...` with the sandbox's credentials and
    /// returns at once; [`finish`] collects its output.
    pub fn spawn_run(&self, args: &[&str]) -> tokio::process::Child {
        let activation = self.activation();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_audience-sync"))
            .arg("run")
            .arg(&activation)
            .args(args)
            .env("CRITEO_CLIENT_ID", CLIENT_ID)
            .env("CRITEO_CLIENT_SECRET", CLIENT_SECRET)
            .env_remove("CRITEO_CLIENT_ID_FILE")
            .env_remove("CRITEO_CLIENT_SECRET_FILE")
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Successful amendments, as (operation, identifier) pairs, one per identifier sent.
    pub fn acknowledged_identifiers(&self) -> Vec<(String, String)> {
        self.amendments()
            .into_iter()
            .filter(|request| request.status == 200)
            .flat_map(|request| {
                let operation = request.operation.clone().unwrap_or_default();
                request.identifiers.into_iter().map(move |identifier| (operation.clone(), identifier))
            })
            .collect()
    }
}

/// Waits for a process started by [`Project::spawn_run`] and collects its output.
pub async fn finish(child: tokio::process::Child) -> RunResult {
    RunResult::from(child.wait_with_output().await.unwrap())
}
