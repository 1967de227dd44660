//! A seeded fault-injection campaign against the `audience-sync sandbox` subprocess.
//!
//! Each scenario gets its own folder, audience and random segment. It usually runs the
//! binary once cleanly, then changes the segment and runs it under one kind of fault. It
//! may change the segment once more, recovers the way an operator would (`state unlock`,
//! restoring a file, `state reset`), and runs the binary one last time without faults.
//! Then:
//!
//! - the sandbox's audience equals the segment's valid identifiers, type by type;
//! - the committed manifest counts the same identifiers, with nothing in doubt and no lock;
//! - no run that succeeded had one identifier acknowledged twice, except runs whose
//!   requests timed out (a timed-out batch is applied by the sandbox and sent again);
//! - every run exited with a code its fault allows.
//!
//! The same code serves the `fault_campaign` example (hundreds of scenarios) and a few
//! seeded scenarios in `tests/reliability.rs`. The sandbox runs without its own rate limit,
//! so one scenario's requests never slow down the next; 429 responses come from faults.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "sandbox-client";
const CLIENT_SECRET: &str = "sandbox-secret";
const ADVERTISER: &str = "12345";

/// What goes wrong in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `kill -9` at a random point of a run slowed down by delays.
    Kill9,
    /// SIGTERM at a random point of a run slowed down by delays.
    Sigterm,
    /// Random 5xx, 429, dropped connections and an occasional 400 on the API.
    HttpFaults,
    /// Every token expires while the run works.
    TokenExpiry,
    /// Responses slower than `request_timeout_secs`.
    Timeout,
    /// A second run of the same activation while the first one works.
    Concurrent,
    /// A truncated, altered or missing manifest or snapshot file.
    CorruptState,
    /// A truncated Parquet source.
    TruncatedSource,
    /// A state store that cannot be reached.
    UnreadableState,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Kill9,
        Kind::Sigterm,
        Kind::HttpFaults,
        Kind::TokenExpiry,
        Kind::Timeout,
        Kind::Concurrent,
        Kind::CorruptState,
        Kind::TruncatedSource,
        Kind::UnreadableState,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill9 => "kill-9",
            Kind::Sigterm => "sigterm",
            Kind::HttpFaults => "http-faults",
            Kind::TokenExpiry => "token-expiry",
            Kind::Timeout => "timeout",
            Kind::Concurrent => "concurrent",
            Kind::CorruptState => "corrupt-state",
            Kind::TruncatedSource => "truncated-source",
            Kind::UnreadableState => "unreadable-state",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct CampaignOptions {
    /// The `audience-sync` binary under test.
    pub binary: PathBuf,
    pub seed: u64,
    pub scenarios: usize,
    /// Kinds to draw from, in turn.
    pub kinds: Vec<Kind>,
    /// Print one line per scenario as it finishes.
    pub verbose: bool,
}

/// The result of one scenario.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub index: usize,
    pub kind: Kind,
    /// Seed that replays this scenario alone (`--scenario-seed`).
    pub seed: u64,
    pub failure: Option<String>,
    pub exit_codes: Vec<i32>,
    /// Runs whose duplicate check was skipped because a request timed out.
    pub duplicate_checks_skipped: usize,
    pub duplicate_checks: usize,
    pub drifted: bool,
    pub duration: Duration,
}

/// Every scenario's outcome.
#[derive(Debug, Default)]
pub struct Summary {
    pub outcomes: Vec<Outcome>,
}

impl Summary {
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|outcome| outcome.failure.is_some()).collect()
    }

    /// Formats one Markdown row per kind: scenarios, passed, failed, runs, exit codes seen
    /// and duplicate checks.
    pub fn table(&self) -> String {
        let mut rows: BTreeMap<Kind, Vec<&Outcome>> = BTreeMap::new();
        for outcome in &self.outcomes {
            rows.entry(outcome.kind).or_default().push(outcome);
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| kind | scenarios | passed | failed | runs | exit codes (code×runs) | duplicate checks | segment drift | mean s |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|---:|");
        let mut all: Vec<&Outcome> = Vec::new();
        for (kind, outcomes) in &rows {
            let _ = writeln!(out, "{}", row(kind.name(), outcomes));
            all.extend(outcomes.iter().copied());
        }
        let _ = writeln!(out, "{}", row("all", &all));
        out
    }
}

fn row(name: &str, outcomes: &[&Outcome]) -> String {
    let failed = outcomes.iter().filter(|outcome| outcome.failure.is_some()).count();
    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
    for outcome in outcomes {
        for code in &outcome.exit_codes {
            *codes.entry(*code).or_default() += 1;
        }
    }
    let runs: usize = codes.values().sum();
    let codes_text = codes
        .iter()
        .map(|(code, count)| if *code < 0 { format!("killed×{count}") } else { format!("{code}×{count}") })
        .collect::<Vec<_>>()
        .join(" ");
    let checks: usize = outcomes.iter().map(|outcome| outcome.duplicate_checks).sum();
    let skipped: usize = outcomes.iter().map(|outcome| outcome.duplicate_checks_skipped).sum();
    let drifted = outcomes.iter().filter(|outcome| outcome.drifted).count();
    let seconds: f64 = outcomes.iter().map(|outcome| outcome.duration.as_secs_f64()).sum::<f64>() / outcomes.len().max(1) as f64;
    format!(
        "| {name} | {} | {} | {failed} | {runs} | {codes_text} | {checks} (+{skipped} skipped) | {drifted} | {seconds:.1} |",
        outcomes.len(),
        outcomes.len() - failed,
    )
}

/// Runs the campaign: starts the sandbox, runs every scenario in turn, stops the sandbox.
pub async fn run_campaign(options: &CampaignOptions) -> Summary {
    let sandbox = SandboxProcess::start(&options.binary).await;
    let mut summary = Summary::default();
    for index in 0..options.scenarios {
        let kind = options.kinds[index % options.kinds.len()];
        let seed = scenario_seed(options.seed, index);
        let outcome = run_scenario(&options.binary, &sandbox, index, kind, seed).await;
        if options.verbose {
            eprintln!(
                "scenario {index:>4} {:<17} seed {seed:>20} {:>5.1}s exits {:?} {}",
                kind.name(),
                outcome.duration.as_secs_f64(),
                outcome.exit_codes,
                outcome.failure.as_deref().map_or("ok".to_string(), |failure| format!("FAILED: {failure}"))
            );
        }
        summary.outcomes.push(outcome);
    }
    summary
}

/// Derives the seed of scenario `index` with a SplitMix64 step, so neighbouring scenarios
/// differ.
pub fn scenario_seed(campaign_seed: u64, index: usize) -> u64 {
    let mut z = campaign_seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs one scenario; a panic-free failure is reported in the outcome.
pub async fn run_scenario(binary: &Path, sandbox: &SandboxProcess, index: usize, kind: Kind, seed: u64) -> Outcome {
    let started = Instant::now();
    let mut scenario = match Scenario::new(binary, sandbox, index, kind, seed).await {
        Ok(scenario) => scenario,
        Err(failure) => {
            return Outcome {
                index,
                kind,
                seed,
                failure: Some(format!("setup: {failure}")),
                exit_codes: Vec::new(),
                duplicate_checks_skipped: 0,
                duplicate_checks: 0,
                drifted: false,
                duration: started.elapsed(),
            };
        }
    };
    let result = scenario.play().await;
    sandbox.clear_faults().await;
    Outcome {
        index,
        kind,
        seed,
        failure: result.err(),
        exit_codes: scenario.exit_codes.clone(),
        duplicate_checks_skipped: scenario.duplicate_checks_skipped,
        duplicate_checks: scenario.duplicate_checks,
        drifted: scenario.drifted,
        duration: started.elapsed(),
    }
}

/// One member of the customer table. Members outside the segment are opted out.
#[derive(Clone, Debug)]
struct Member {
    id: i64,
    /// As written in the source; may need trimming and lower-casing, or be invalid.
    email: Option<String>,
    /// The normalized email, when valid.
    email_normalized: Option<String>,
    madid: Option<String>,
    madid_normalized: Option<String>,
}

/// The sandbox started as `audience-sync sandbox` on a free port, killed on drop.
pub struct SandboxProcess {
    child: std::process::Child,
    pub url: String,
    http: reqwest::Client,
}

impl SandboxProcess {
    pub async fn start(binary: &Path) -> SandboxProcess {
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new(binary)
                .args(["sandbox", "--listen", &format!("127.0.0.1:{port}"), "--rate-limit-per-minute", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("failed to start `audience-sync sandbox`");
            let mut sandbox = SandboxProcess {
                child,
                url: format!("http://127.0.0.1:{port}"),
                http: reqwest::Client::new(),
            };
            for _ in 0..300 {
                if sandbox.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if sandbox.http.get(sandbox.admin("faults")).send().await.is_ok() {
                    return sandbox;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("`audience-sync sandbox` did not start on 127.0.0.1");
    }

    fn admin(&self, path: &str) -> String {
        format!("{}/_sandbox/{path}", self.url)
    }

    async fn create_audience(&self, name: &str) -> Result<String, String> {
        let response = self
            .http
            .post(self.admin("audiences"))
            .json(&json!({ "advertiser_id": ADVERTISER, "name": name, "description": null }))
            .send()
            .await
            .map_err(|error| format!("create audience: {error}"))?;
        let body: Value = response.json().await.map_err(|error| format!("create audience: {error}"))?;
        body["id"].as_str().map(str::to_string).ok_or_else(|| format!("create audience returned {body}"))
    }

    /// Members per type name (`email`, `madid`); types without members are absent.
    async fn members(&self, audience_id: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
        let body: Value = self
            .http
            .get(self.admin(&format!("audiences/{audience_id}/members")))
            .send()
            .await
            .map_err(|error| format!("list members: {error}"))?
            .json()
            .await
            .map_err(|error| format!("list members: {error}"))?;
        let mut out = BTreeMap::new();
        for (name, values) in body["members"].as_object().cloned().unwrap_or_default() {
            let values: BTreeSet<String> = values
                .as_array()
                .map(|values| values.iter().filter_map(|value| value.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if !values.is_empty() {
                out.insert(name, values);
            }
        }
        Ok(out)
    }

    async fn requests(&self) -> Vec<Value> {
        let response = self.http.get(format!("{}?include_identifiers=true", self.admin("requests"))).send().await;
        match response {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    async fn clear_requests(&self) {
        let _ = self.http.delete(self.admin("requests")).send().await;
    }

    async fn inject(&self, fault: Value) {
        let response = self.http.post(self.admin("faults")).json(&fault).send().await.expect("inject fault");
        assert!(response.status().is_success(), "the sandbox rejected fault {fault}");
    }

    async fn clear_faults(&self) {
        let _ = self.http.delete(self.admin("faults")).send().await;
    }

    async fn expire_tokens(&self) {
        let _ = self.http.post(self.admin("expire-tokens")).send().await;
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exit code, report and logs of one run.
struct RunOutput {
    code: i32,
    stdout: String,
    stderr: String,
}

impl RunOutput {
    fn from_output(output: std::process::Output) -> RunOutput {
        RunOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn describe(&self) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("exit {}; stderr tail:\n    {}", self.code, tail.join("\n    "))
    }
}

/// Knobs drawn for one scenario.
#[derive(Clone, Debug)]
struct Settings {
    max_batch_identifiers: usize,
    max_concurrent_requests: usize,
    max_attempts: u32,
    request_timeout_secs: u64,
    lock_ttl_secs: u64,
}

struct Scenario<'a> {
    binary: &'a Path,
    sandbox: &'a SandboxProcess,
    kind: Kind,
    rng: StdRng,
    dir: tempfile::TempDir,
    audience_id: String,
    settings: Settings,
    population: Vec<Member>,
    segment: BTreeSet<i64>,
    exit_codes: Vec<i32>,
    duplicate_checks: usize,
    duplicate_checks_skipped: usize,
    drifted: bool,
    /// Maximum response delay armed. A killed or timed-out client leaves such a request
    /// running in the sandbox that long.
    max_delay_ms: u64,
}

impl<'a> Scenario<'a> {
    async fn new(binary: &'a Path, sandbox: &'a SandboxProcess, index: usize, kind: Kind, seed: u64) -> Result<Scenario<'a>, String> {
        let mut rng = StdRng::seed_from_u64(seed);
        let audience_id = sandbox.create_audience(&format!("campaign {index} seed {seed}")).await?;
        let settings = Settings {
            max_batch_identifiers: *[1, 2, 3, 5, 8, 50].choose(&mut rng).unwrap(),
            max_concurrent_requests: *[1, 2, 4].choose(&mut rng).unwrap(),
            // Few attempts make timed-out batches fail for good, leaving them in doubt.
            max_attempts: if kind == Kind::Timeout { rng.random_range(1..=3) } else { rng.random_range(3..=6) },
            request_timeout_secs: if kind == Kind::Timeout { 1 } else { 10 },
            lock_ttl_secs: if matches!(kind, Kind::Kill9) { 2 } else { 3600 },
        };
        let population = population(&mut rng);
        let segment = population
            .iter()
            .filter(|_| rng.random_bool(0.8))
            .map(|member| member.id)
            .collect();
        let scenario = Scenario {
            binary,
            sandbox,
            kind,
            rng,
            dir: tempfile::tempdir().map_err(|error| error.to_string())?,
            audience_id,
            settings,
            population,
            segment,
            exit_codes: Vec::new(),
            duplicate_checks: 0,
            duplicate_checks_skipped: 0,
            drifted: false,
            max_delay_ms: 0,
        };
        scenario.write_files("state", "")?;
        Ok(scenario)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the segment SQL, the source and `vip.toml` with the state at `state_url`.
    fn write_files(&self, state_url: &str, storage: &str) -> Result<(), String> {
        let io = |error: std::io::Error| error.to_string();
        std::fs::write(
            self.path("segment.sql"),
            "-- name: Campaign segment\nSELECT customer_id, email, madid FROM customers WHERE NOT opted_out\n",
        )
        .map_err(io)?;
        self.write_source()?;
        let settings = &self.settings;
        let activation = format!(
            r#"segment = "segment.sql"
key = "customer_id"

[sources]
customers = "data/customers.parquet"

[identifiers]
email = "email"
madid = "madid"

[destination]
advertiser_id = "{ADVERTISER}"
audience_id = "{audience}"
api_url = "{url}"
retry_base_delay_ms = 10
max_retry_secs = 20
max_batch_identifiers = {batch}
max_concurrent_requests = {concurrent}
max_attempts = {attempts}
request_timeout_secs = {timeout}

[state]
url = "{state_url}"
lock_ttl_secs = {ttl}
{storage}"#,
            audience = self.audience_id,
            url = self.sandbox.url,
            batch = settings.max_batch_identifiers,
            concurrent = settings.max_concurrent_requests,
            attempts = settings.max_attempts,
            timeout = settings.request_timeout_secs,
            ttl = settings.lock_ttl_secs,
        );
        std::fs::write(self.path("vip.toml"), activation).map_err(io)
    }

    /// Writes every member; those outside the segment are opted out.
    fn write_source(&self) -> Result<(), String> {
        let members: Vec<&Member> = self.population.iter().collect();
        write_members(&self.path("data/customers.parquet"), &members, &self.segment)
    }

    /// The identifiers the audience must hold for the current segment, per type.
    fn expected(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for member in self.population.iter().filter(|member| self.segment.contains(&member.id)) {
            if let Some(email) = &member.email_normalized {
                out.entry("email".into()).or_default().insert(sha256_hex(email));
            }
            if let Some(madid) = &member.madid_normalized {
                out.entry("madid".into()).or_default().insert(madid.clone());
            }
        }
        out
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.binary);
        command
            .args(args)
            .env("CRITEO_CLIENT_ID", CLIENT_ID)
            .env("CRITEO_CLIENT_SECRET", CLIENT_SECRET)
            .env_remove("AUDIENCE_SYNC_LOG")
            .env_remove("AUDIENCE_SYNC_LOG_FORMAT")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn cli(&mut self, args: &[&str]) -> Result<RunOutput, String> {
        let output = self.command(args).output().await.map_err(|error| error.to_string())?;
        Ok(RunOutput::from_output(output))
    }

    async fn run(&mut self, extra: &[&str]) -> Result<RunOutput, String> {
        let mut args = vec!["run", "vip.toml"];
        args.extend_from_slice(extra);
        let output = self.cli(&args).await?;
        self.exit_codes.push(output.code);
        Ok(output)
    }

    fn spawn_run(&self) -> Result<tokio::process::Child, String> {
        self.command(&["run", "vip.toml", "--allow-removals"])
            .spawn()
            .map_err(|error| error.to_string())
    }

    /// Adds a member with a new valid email to the segment, so the next run has a batch to
    /// send.
    fn add_member(&mut self) -> Result<(), String> {
        let id = self.population.iter().map(|member| member.id).max().unwrap_or(0) + 1;
        let email = format!("joined{id}@example.com");
        self.population.push(Member {
            id,
            email: Some(email.clone()),
            email_normalized: Some(email),
            madid: None,
            madid_normalized: None,
        });
        self.segment.insert(id);
        self.write_source()
    }

    /// Waits until the run fetched its access token, which it does right before sending,
    /// or exited, for up to 20 seconds.
    async fn wait_for_token(&self, child: &mut tokio::process::Child) {
        let started = Instant::now();
        loop {
            let fetched = self.sandbox.requests().await.iter().any(|request| request["route"] == "token" && request["status"] == 200);
            let exited = child.try_wait().ok().flatten().is_some();
            if fetched || exited || started.elapsed() > Duration::from_secs(20) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn inject_delay(&mut self, delay_ms: u64) {
        self.max_delay_ms = self.max_delay_ms.max(delay_ms);
        self.sandbox.inject(json!({ "kind": "delay", "delay_ms": delay_ms, "count": 1, "route": "amend" })).await;
    }

    async fn finish(&mut self, child: tokio::process::Child) -> Result<RunOutput, String> {
        let output = child.wait_with_output().await.map_err(|error| error.to_string())?;
        let output = RunOutput::from_output(output);
        self.exit_codes.push(output.code);
        Ok(output)
    }

    /// A clean run must exit 0 and leave the audience equal to the segment.
    async fn clean_run(&mut self, what: &str) -> Result<(), String> {
        self.sandbox.clear_faults().await;
        self.sandbox.clear_requests().await;
        let output = self.run(&["--allow-removals"]).await?;
        if output.code != 0 {
            return Err(format!("{what}: {}", output.describe()));
        }
        self.check_no_duplicates(what, false).await?;
        self.check_audience(what).await
    }

    async fn check_audience(&self, what: &str) -> Result<(), String> {
        let audience = self.sandbox.members(&self.audience_id).await?;
        let expected = self.expected();
        if audience != expected {
            let mut text = String::new();
            for name in ["email", "madid"] {
                let members = audience.get(name).cloned().unwrap_or_default();
                let in_segment = expected.get(name).cloned().unwrap_or_default();
                let _ = write!(
                    text,
                    "{name}: {} in the audience but not in the segment, {} in the segment but not in the audience; ",
                    members.difference(&in_segment).count(),
                    in_segment.difference(&members).count()
                );
            }
            return Err(format!("{what}: the audience differs from the segment: {text}"));
        }
        Ok(())
    }

    /// Checks the requests logged since the last clear: no (operation, identifier) pair
    /// acknowledged twice. Skipped when a request may have timed out.
    async fn check_no_duplicates(&mut self, what: &str, timeouts_possible: bool) -> Result<(), String> {
        if timeouts_possible {
            self.duplicate_checks_skipped += 1;
            return Ok(());
        }
        self.duplicate_checks += 1;
        let mut seen = BTreeSet::new();
        for request in self.sandbox.requests().await {
            if request["status"] != 200 {
                continue;
            }
            let Some(operation) = request["operation"].as_str() else {
                continue;
            };
            let kind = request["identifier_type"].as_str().unwrap_or_default().to_string();
            for identifier in request["identifiers"].as_array().into_iter().flatten() {
                let key = (operation.to_string(), kind.clone(), identifier.as_str().unwrap_or_default().to_string());
                if !seen.insert(key) {
                    return Err(format!("{what}: an identifier was acknowledged twice for `{operation}`"));
                }
            }
        }
        Ok(())
    }

    /// After the final clean run: the manifest counts the audience, nothing is in doubt and
    /// no lock is left.
    async fn check_state(&mut self) -> Result<(), String> {
        let output = self.cli(&["state", "show", "vip.toml"]).await?;
        if output.code != 0 {
            return Err(format!("state show: {}", output.describe()));
        }
        let shown: Value = serde_json::from_str(output.stdout.lines().last().unwrap_or_default())
            .map_err(|error| format!("state show printed no JSON: {error}"))?;
        if !shown["lock"].is_null() {
            return Err(format!("a lock is left after the clean run: {}", shown["lock"]));
        }
        if !shown["manifest"]["in_doubt"].is_null() {
            return Err(format!("identifiers are in doubt after the clean run: {}", shown["manifest"]["in_doubt"]));
        }
        let expected = self.expected();
        for name in ["email", "madid"] {
            let counted = shown["manifest"]["counts"][name].as_u64().unwrap_or(0);
            let in_segment = expected.get(name).map_or(0, |values| values.len() as u64);
            if counted != in_segment {
                return Err(format!("the manifest counts {counted} {name} identifiers, the segment has {in_segment}"));
            }
        }
        Ok(())
    }

    /// Moves one to four members into or out of the segment.
    fn drift(&mut self) {
        let ids: Vec<i64> = self.population.iter().map(|member| member.id).collect();
        let changes = self.rng.random_range(1..=4);
        for _ in 0..changes {
            let id = *ids.choose(&mut self.rng).unwrap();
            if !self.segment.remove(&id) {
                self.segment.insert(id);
            }
        }
    }

    async fn play(&mut self) -> Result<(), String> {
        let needs_history = matches!(self.kind, Kind::CorruptState);
        if needs_history || self.rng.random_bool(0.75) {
            self.clean_run("first run").await?;
        }
        let keep_segment = self.kind == Kind::CorruptState && self.rng.random_bool(0.3);
        if !keep_segment {
            self.drift();
            self.write_source()?;
        }

        if matches!(self.kind, Kind::Kill9 | Kind::Sigterm | Kind::TokenExpiry | Kind::Concurrent) {
            self.add_member()?;
        }
        self.sandbox.clear_requests().await;
        match self.kind {
            Kind::Kill9 | Kind::Sigterm => self.interrupted_run().await?,
            Kind::HttpFaults => self.faulty_run().await?,
            Kind::TokenExpiry => self.token_expiry_run().await?,
            Kind::Timeout => self.timeout_run().await?,
            Kind::Concurrent => self.concurrent_runs().await?,
            Kind::CorruptState => return self.corrupt_state_runs(keep_segment).await,
            Kind::TruncatedSource => self.truncated_source_run().await?,
            Kind::UnreadableState => self.unreadable_state_run().await?,
        }

        // Requests the client gave up on finish in the sandbox before the next run.
        tokio::time::sleep(Duration::from_millis(self.max_delay_ms)).await;
        if self.rng.random_bool(0.5) {
            self.drifted = true;
            self.drift();
            self.write_source()?;
        }
        self.clean_run("clean run after the fault").await?;
        self.check_state().await
    }

    /// Random transient faults on any API route, weighted toward amendments.
    async fn inject_transient_faults(&mut self, max_faults: usize) {
        let faults = self.rng.random_range(0..=max_faults);
        for _ in 0..faults {
            let route = if self.rng.random_bool(0.8) { json!("amend") } else { Value::Null };
            let count = self.rng.random_range(1..=2);
            let fault = match self.rng.random_range(0..4) {
                0 => json!({ "kind": "status", "status": *[500, 502, 503, 504].choose(&mut self.rng).unwrap(), "count": count, "route": route }),
                1 => json!({ "kind": "rate_limit", "reset_after_secs": 1, "count": count, "route": route }),
                2 => json!({ "kind": "drop_connection", "count": count, "route": route }),
                _ => {
                    let delay_ms = self.rng.random_range(50..400);
                    self.max_delay_ms = self.max_delay_ms.max(delay_ms);
                    json!({ "kind": "delay", "delay_ms": delay_ms, "count": count, "route": "amend" })
                }
            };
            self.sandbox.inject(fault).await;
        }
    }

    async fn interrupted_run(&mut self) -> Result<(), String> {
        self.inject_transient_faults(2).await;
        let delays = self.rng.random_range(1..=4);
        let mut total_delay_ms = 0;
        for _ in 0..delays {
            let delay_ms = self.rng.random_range(200..1500);
            total_delay_ms += delay_ms;
            self.inject_delay(delay_ms).await;
        }
        let mut child = self.spawn_run()?;
        let pid = child.id().ok_or("the run exited at once")?;
        // Usually while batches are in flight, sometimes while the segment is read. Not
        // sooner than 150 ms: SIGTERM before the handler is installed ends the process.
        tokio::time::sleep(Duration::from_millis(150)).await;
        if self.rng.random_bool(0.8) {
            self.wait_for_token(&mut child).await;
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(0..total_delay_ms + 100))).await;
        }
        let signal = if self.kind == Kind::Kill9 { "KILL" } else { "TERM" };
        let _ = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status();
        let output = self.finish(child).await?;
        let stopped = output.code == 75 || output.code == 0;
        match self.kind {
            Kind::Kill9 if output.code != -1 && !stopped && output.code != 6 => {
                return Err(format!("killed run: unexpected {}", output.describe()));
            }
            Kind::Sigterm if !stopped && output.code != 6 => {
                return Err(format!("run stopped by SIGTERM: expected exit 0, 6 or 75, got {}", output.describe()));
            }
            _ => {}
        }

        let shown = self.cli(&["state", "show", "vip.toml"]).await?;
        if shown.code != 0 {
            return Err(format!("state show after the interrupted run: {}", shown.describe()));
        }
        let state: Value = serde_json::from_str(shown.stdout.lines().last().unwrap_or_default()).unwrap_or(Value::Null);
        if self.kind == Kind::Sigterm && !state["lock"].is_null() {
            return Err(format!("the run stopped by SIGTERM (exit {}) kept its lock", output.code));
        }
        if self.kind == Kind::Kill9 && output.code == -1 {
            // The operator removes the lock, or the next run waits until it expires.
            if self.rng.random_bool(0.5) {
                let unlock = self.cli(&["state", "unlock", "vip.toml"]).await?;
                if unlock.code != 0 {
                    return Err(format!("state unlock: {}", unlock.describe()));
                }
            } else {
                tokio::time::sleep(Duration::from_millis(self.settings.lock_ttl_secs * 1000 + 200)).await;
            }
        }
        Ok(())
    }

    async fn faulty_run(&mut self) -> Result<(), String> {
        self.inject_transient_faults(5).await;
        let permanent = self.rng.random_bool(0.25);
        if permanent {
            self.sandbox.inject(json!({ "kind": "status", "status": 400, "count": 1, "route": "amend" })).await;
        }
        let output = self.run(&["--allow-removals"]).await?;
        if ![0, 5, 6, 75].contains(&output.code) {
            return Err(format!("run under HTTP faults: {}", output.describe()));
        }
        if output.code == 0 {
            self.check_no_duplicates("run under HTTP faults", false).await?;
            self.check_audience("run under HTTP faults").await?;
        }
        Ok(())
    }

    async fn token_expiry_run(&mut self) -> Result<(), String> {
        self.inject_delay(300).await;
        let mut child = self.spawn_run()?;
        self.wait_for_token(&mut child).await;
        self.sandbox.expire_tokens().await;
        let output = self.finish(child).await?;
        if output.code != 0 {
            return Err(format!("run with tokens expiring: {}", output.describe()));
        }
        self.check_no_duplicates("run with tokens expiring", false).await?;
        self.check_audience("run with tokens expiring").await
    }

    async fn timeout_run(&mut self) -> Result<(), String> {
        let slow = self.rng.random_range(1..=3);
        for _ in 0..slow {
            let delay_ms = self.rng.random_range(1200..2500);
            self.inject_delay(delay_ms).await;
        }
        let output = self.run(&["--allow-removals"]).await?;
        if ![0, 6, 75].contains(&output.code) {
            return Err(format!("run with slow responses: {}", output.describe()));
        }
        self.check_no_duplicates("run with slow responses", true).await
    }

    async fn concurrent_runs(&mut self) -> Result<(), String> {
        self.inject_delay(1500).await;
        let first = self.spawn_run()?;
        let lock = self.path("state/vip/lock.json");
        let started = Instant::now();
        while !lock.is_file() && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let holder: Value = std::fs::read(&lock)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null);
        let second = self.run(&["--allow-removals"]).await?;
        let first = self.finish(first).await?;
        let Some(holder_run) = holder["run_id"].as_str() else {
            // The first run finished before the lock could be read; nothing ran at once.
            return Ok(());
        };
        if first.code != 0 {
            return Err(format!("first of two concurrent runs: {}", first.describe()));
        }
        if second.code != 75 || !second.stderr.contains(holder_run) {
            return Err(format!("second of two concurrent runs: expected exit 75 naming {holder_run}, got {}", second.describe()));
        }
        self.check_no_duplicates("concurrent runs", false).await?;
        self.check_audience("concurrent runs").await
    }

    async fn corrupt_state_runs(&mut self, keep_segment: bool) -> Result<(), String> {
        let state = self.path("state/vip");
        let manifest = latest_file(&state.join("manifests"), ".json").ok_or("no manifest after the first run")?;
        let snapshot = latest_file(&state.join("snapshots"), ".parquet").ok_or("no snapshot after the first run")?;
        let (target, damage) = match self.rng.random_range(0..6) {
            0 => (snapshot.clone(), Damage::Truncate),
            1 => (snapshot.clone(), Damage::FlipByte),
            2 => (snapshot.clone(), Damage::Delete),
            3 => (manifest.clone(), Damage::Truncate),
            4 => (manifest.clone(), Damage::Replace(b"{\"format\": 1, \"version\": \"two\"}".to_vec())),
            _ => (state.join("manifests/notes.json"), Damage::Replace(b"{}".to_vec())),
        };
        let backup = std::fs::read(&target).ok();
        damage.apply(&target, &mut self.rng)?;

        self.sandbox.clear_requests().await;
        let output = self.run(&["--allow-removals"]).await?;
        if output.code != 2 || !output.stderr.contains("state reset") {
            return Err(format!("run over damaged state ({damage:?} {}): expected exit 2 with the `state reset` hint, got {}", target.display(), output.describe()));
        }
        let sent = self.sandbox.requests().await.iter().filter(|request| request["route"] == "amend").count();
        if sent > 0 {
            return Err(format!("run over damaged state sent {sent} amendments"));
        }

        // The operator restores the file from a backup, or resets the state, which the
        // next run rebuilds only when the segment did not change.
        if keep_segment && self.rng.random_bool(0.5) {
            let reset = self.cli(&["state", "reset", "vip.toml", "--yes"]).await?;
            if reset.code != 0 {
                return Err(format!("state reset: {}", reset.describe()));
            }
        } else {
            match backup {
                Some(bytes) => std::fs::write(&target, bytes).map_err(|error| error.to_string())?,
                None => std::fs::remove_file(&target).map_err(|error| error.to_string())?,
            }
        }
        if !keep_segment && self.rng.random_bool(0.5) {
            self.drifted = true;
            self.drift();
            self.write_source()?;
        }
        self.clean_run("clean run after repairing the state").await?;
        self.check_state().await
    }

    async fn truncated_source_run(&mut self) -> Result<(), String> {
        let source = self.path("data/customers.parquet");
        let bytes = std::fs::read(&source).map_err(|error| error.to_string())?;
        let cut = self.rng.random_range(0..bytes.len());
        std::fs::write(&source, &bytes[..cut]).map_err(|error| error.to_string())?;
        let output = self.run(&["--allow-removals"]).await?;
        let sent = self.sandbox.requests().await.iter().filter(|request| request["route"] == "amend").count();
        if output.code != 3 || sent > 0 {
            return Err(format!("run over a source cut at byte {cut} of {}: expected exit 3 and nothing sent, sent {sent}, {}", bytes.len(), output.describe()));
        }
        self.write_source()
    }

    async fn unreadable_state_run(&mut self) -> Result<(), String> {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let storage = format!(
            "\n[storage.\"s3://state-bucket\"]\nendpoint = \"http://127.0.0.1:{closed}\"\nallow_http = \"true\"\n\
             region = \"us-east-1\"\naccess_key_id = \"campaign\"\nsecret_access_key = \"campaign\"\nmax_retries = \"0\"\n"
        );
        self.write_files("s3://state-bucket/state", &storage)?;
        let output = self.run(&["--allow-removals"]).await?;
        self.write_files("state", "")?;
        let sent = self.sandbox.requests().await.len();
        if output.code != 75 || sent > 0 {
            return Err(format!("run with an unreachable state store: expected exit 75 and no request, sent {sent}, {}", output.describe()));
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Damage {
    Truncate,
    FlipByte,
    Delete,
    Replace(Vec<u8>),
}

impl Damage {
    fn apply(&self, path: &Path, rng: &mut StdRng) -> Result<(), String> {
        let io = |error: std::io::Error| format!("{}: {error}", path.display());
        match self {
            Damage::Truncate => {
                let bytes = std::fs::read(path).map_err(io)?;
                let cut = rng.random_range(0..bytes.len());
                std::fs::write(path, &bytes[..cut]).map_err(io)
            }
            Damage::FlipByte => {
                let mut bytes = std::fs::read(path).map_err(io)?;
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 0x5A;
                std::fs::write(path, bytes).map_err(io)
            }
            Damage::Delete => std::fs::remove_file(path).map_err(io),
            Damage::Replace(bytes) => std::fs::write(path, bytes).map_err(io),
        }
    }
}

/// Returns the last file of a folder, by name, with the given suffix.
fn latest_file(folder: &Path, suffix: &str) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(suffix) && !name.contains("in-doubt")
        })
        .collect();
    files.sort();
    files.pop()
}

/// Draws 8 to 60 members with valid, messy and invalid emails and mobile ad ids; a few
/// share an email.
fn population(rng: &mut StdRng) -> Vec<Member> {
    let size = rng.random_range(8..=60);
    let mut members = Vec::with_capacity(size);
    for id in 1..=size as i64 {
        let (email, email_normalized) = match rng.random_range(0..10) {
            0 => (None, None),
            1 => (Some(format!("not-an-email-{id}")), None),
            2 => {
                let shared = rng.random_range(1..=id);
                (Some(format!("shared{shared}@example.com")), Some(format!("shared{shared}@example.com")))
            }
            3 => (Some(format!("  Person{id}@Example.COM ")), Some(format!("person{id}@example.com"))),
            _ => (Some(format!("person{id}@example.com")), Some(format!("person{id}@example.com"))),
        };
        let (madid, madid_normalized) = match rng.random_range(0..4) {
            0 => (None, None),
            1 => (Some(format!("bad-madid-{id}")), None),
            _ => {
                let value: u128 = rng.random::<u128>() | 1;
                let text = format!(
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    (value >> 96) as u32,
                    (value >> 80) as u16,
                    (value >> 64) as u16,
                    (value >> 48) as u16,
                    value & 0xffff_ffff_ffff
                );
                let written = if rng.random_bool(0.3) { text.to_uppercase() } else { text.clone() };
                (Some(written), Some(text))
            }
        };
        members.push(Member {
            id,
            email,
            email_normalized,
            madid,
            madid_normalized,
        });
    }
    members
}

fn write_members(path: &Path, members: &[&Member], segment: &BTreeSet<i64>) -> Result<(), String> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("madid", DataType::Utf8, true),
        Field::new("opted_out", DataType::Boolean, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(members.iter().map(|member| member.id))),
            Arc::new(StringArray::from_iter(members.iter().map(|member| member.email.clone()))),
            Arc::new(StringArray::from_iter(members.iter().map(|member| member.madid.clone()))),
            Arc::new(BooleanArray::from_iter(members.iter().map(|member| Some(!segment.contains(&member.id))))),
        ],
    )
    .map_err(|error| error.to_string())?;
    std::fs::create_dir_all(path.parent().unwrap()).map_err(|error| error.to_string())?;
    // Written aside and renamed, so a run never reads a half-written source.
    let staging = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&staging).map_err(|error| error.to_string())?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|error| error.to_string())?;
    writer.write(&batch).map_err(|error| error.to_string())?;
    writer.close().map_err(|error| error.to_string())?;
    std::fs::rename(&staging, path).map_err(|error| error.to_string())
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}
