//! Reliability guarantees, end to end: signals, crashes, timeouts, pacing, locks, guards and
//! damaged inputs, with the binary as a separate process against the sandbox.

mod campaign;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use audience_sync::sandbox::{Fault, RouteKind, SandboxConfig};
use common::*;

fn numbered(range: std::ops::RangeInclusive<i64>) -> Vec<Customer> {
    range.map(|id| customer(id, &format!("r{id}@example.com"))).collect()
}

fn expected(customers: &[Customer]) -> BTreeSet<String> {
    customers.iter().map(|c| sha256_hex(c.email.as_deref().unwrap())).collect()
}

/// Adds `lines` to the activation's `[state]` table.
fn set_state_options(project: &Project, lines: &str) {
    let text = std::fs::read_to_string(project.activation())
        .unwrap()
        .replace("[state]\nurl = \"state\"\n", &format!("[state]\nurl = \"state\"\n{lines}\n"));
    std::fs::write(project.activation(), text).unwrap();
}

/// Puts `lines` at the top of the activation file, where top-level keys go.
fn set_top_level(project: &Project, lines: &str) {
    let text = std::fs::read_to_string(project.activation()).unwrap();
    std::fs::write(project.activation(), format!("{lines}\n{text}")).unwrap();
}

async fn state_show(project: &Project) -> serde_json::Value {
    let result = project.activation_command(&["state", "show"], &[]).await;
    result.expect_code(0);
    serde_json::from_str(result.stdout.lines().last().unwrap()).unwrap()
}

fn token_fetched(project: &Project) -> bool {
    project.requests_to(RouteKind::Token).iter().any(|request| request.status == 200)
}

fn acknowledged_amendments(project: &Project) -> usize {
    project.requests_to(RouteKind::Amend).iter().filter(|request| request.status == 200).count()
}

/// Panics when one identifier was acknowledged twice for the same operation.
fn assert_no_identifier_sent_twice(project: &Project) {
    let sent = project.acknowledged_identifiers();
    let distinct: BTreeSet<_> = sent.iter().collect();
    assert_eq!(distinct.len(), sent.len(), "an identifier was acknowledged twice in one run");
}

#[tokio::test]
async fn sigterm_commits_acknowledged_and_exits_75() {
    let project = Project::start().await;
    project.write_activation("max_batch_identifiers = 2\nmax_concurrent_requests = 1");
    let customers = numbered(1..=6);
    project.write_source(&customers);
    project.sandbox.inject(Fault::Delay { delay_ms: 2000, count: 1, route: Some(RouteKind::Amend) });

    let child = project.spawn_run(&[]);
    let pid = child.id().unwrap();
    wait_until("the run fetched a token", Duration::from_secs(30), || token_fetched(&project)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_signal(pid, "TERM");
    let result = finish(child).await;

    result.expect_code(75);
    assert_eq!(result.report["status"], "partial");
    assert_eq!(result.count("added"), 2);
    assert_eq!(result.count("planned_added"), 6);
    assert_eq!(project.audience().len(), 2);
    let shown = state_show(&project).await;
    assert_eq!(shown["manifest"]["version"], 1);
    assert_eq!(shown["manifest"]["counts"]["email"], 2);
    assert!(shown["lock"].is_null(), "the stopped run kept its lock: {shown}");

    let first_batch: BTreeSet<String> = project.audience();
    project.sandbox.clear_requests();
    let result = project.run(&[]).await;
    result.expect_code(0);
    assert_eq!(result.count("added"), 4);
    let resent: BTreeSet<String> = project.acknowledged_identifiers().into_iter().map(|(_, id)| id).collect();
    assert!(resent.is_disjoint(&first_batch), "the resumed run sent acknowledged identifiers again");
    assert_no_identifier_sent_twice(&project);
    assert_eq!(project.audience(), expected(&customers));
}

#[tokio::test]
async fn killed_run_settled_by_next_run() {
    let project = Project::start().await;
    project.write_activation("max_batch_identifiers = 2\nmax_concurrent_requests = 1");
    set_state_options(&project, "lock_ttl_secs = 3600");
    project.write_source(&numbered(1..=2));
    project.run(&[]).await.expect_code(0);

    // The killed run gets its first batch acknowledged and the second applied by the
    // sandbox, but commits neither.
    project.write_source(&numbered(1..=6));
    project.sandbox.clear_requests();
    project.sandbox.inject(Fault::Delay { delay_ms: 10, count: 1, route: Some(RouteKind::Amend) });
    project.sandbox.inject(Fault::Delay { delay_ms: 5000, count: 1, route: Some(RouteKind::Amend) });
    let child = project.spawn_run(&[]);
    let pid = child.id().unwrap();
    wait_until("the first batch was acknowledged", Duration::from_secs(30), || acknowledged_amendments(&project) == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_signal(pid, "KILL");
    let killed = finish(child).await;
    assert_eq!(killed.code, -1, "the run was not killed: {}", killed.stderr);
    assert_eq!(project.audience().len(), 6, "the sandbox did not apply both batches");

    let shown = state_show(&project).await;
    assert_eq!(shown["manifest"]["version"], 1, "the killed run changed the committed state");
    assert!(!shown["lock"].is_null(), "a killed run cannot release its lock");
    let busy = project.run(&[]).await;
    busy.expect_code(75);
    project.activation_command(&["state", "unlock"], &[]).await.expect_code(0);

    // Two members the killed run added leave the segment before anyone committed them.
    let day3: Vec<Customer> = numbered(1..=6).into_iter().filter(|c| c.id != 4 && c.id != 6).collect();
    project.write_source(&day3);
    project.sandbox.clear_requests();
    let result = project.run(&[]).await;
    result.expect_code(0);
    assert_eq!(project.audience(), expected(&day3));
    assert_no_identifier_sent_twice(&project);
    let shown = state_show(&project).await;
    assert_eq!(shown["manifest"]["counts"]["email"], 4);
    assert!(shown["manifest"]["in_doubt"].is_null(), "doubt left after a clean run: {shown}");
}

#[tokio::test]
async fn timed_out_batch_is_settled_by_next_run() {
    let project = Project::start().await;
    project.write_activation("max_batch_identifiers = 2\nmax_concurrent_requests = 1\nrequest_timeout_secs = 1\nmax_attempts = 1");
    let customers = numbered(1..=4);
    project.write_source(&customers);
    project.sandbox.inject(Fault::Delay { delay_ms: 10, count: 1, route: Some(RouteKind::Amend) });
    project.sandbox.inject(Fault::Delay { delay_ms: 2500, count: 1, route: Some(RouteKind::Amend) });

    let result = project.run(&[]).await;
    result.expect_code(6);
    assert_eq!(project.audience(), expected(&customers), "the sandbox applies a delayed batch");
    let shown = state_show(&project).await;
    assert_eq!(shown["manifest"]["counts"]["email"], 2);
    assert_eq!(shown["manifest"]["in_doubt"]["counts"]["email"], 2);

    // One member of the timed-out batch leaves. The audience contains it, the snapshot does not.
    let acknowledged: BTreeSet<String> = project.acknowledged_identifiers().into_iter().map(|(_, id)| id).collect();
    let timed_out: BTreeSet<String> = project.audience().difference(&acknowledged).cloned().collect();
    assert_eq!(timed_out.len(), 2);
    let leaving = customers
        .iter()
        .find(|c| timed_out.contains(&sha256_hex(c.email.as_deref().unwrap())))
        .unwrap()
        .id;
    let remaining: Vec<Customer> = customers.iter().filter(|c| c.id != leaving).cloned().collect();
    project.write_source(&remaining);
    project.run(&[]).await.expect_code(0);

    assert_eq!(project.audience(), expected(&remaining));
    assert!(state_show(&project).await["manifest"]["in_doubt"].is_null());
}

#[tokio::test]
async fn request_timeout_is_retried() {
    let project = Project::start().await;
    project.write_activation("request_timeout_secs = 1");
    let customers = numbered(1..=3);
    project.write_source(&customers);
    project.sandbox.inject(Fault::Delay { delay_ms: 2000, count: 1, route: Some(RouteKind::Amend) });

    let result = project.run(&[]).await;

    result.expect_code(0);
    assert_eq!(result.count("added"), 3);
    assert!(result.stderr.contains("timed out"), "no timeout was logged: {}", result.stderr);
    assert_eq!(project.audience(), expected(&customers));
}

/// Configures a sandbox that responds 429 after 20 requests a minute, refilling one every
/// 3 seconds.
fn rate_limited_sandbox() -> SandboxConfig {
    SandboxConfig {
        rate_limit_per_minute: 20,
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn pacing_stays_under_sandbox_rate_limit() {
    // 23 requests under a limit of 20 a minute: the pacer delays the last 3 by a minute,
    // so this test takes about 62 seconds.
    let project = Project::start_with(rate_limited_sandbox()).await;
    project.write_activation("max_batch_identifiers = 1\nmax_concurrent_requests = 4\nrequests_per_minute = 20");
    let customers = numbered(1..=23);
    project.write_source(&customers);

    let started = Instant::now();
    let result = project.run(&[]).await;

    result.expect_code(0);
    let limited = project.sandbox.requests().iter().filter(|request| request.status == 429).count();
    assert_eq!(limited, 0, "the paced client met the rate limit");
    assert!(started.elapsed() >= Duration::from_secs(60), "23 requests passed in {:?}", started.elapsed());
    assert_eq!(project.audience(), expected(&customers));
}

#[tokio::test]
async fn unpaced_client_meets_rate_limit_and_recovers() {
    // The control for the pacing test: the same load without pacing gets 429 responses,
    // and the client waits for `x-ratelimit-reset` until every batch passes.
    let project = Project::start_with(rate_limited_sandbox()).await;
    project.write_activation("max_batch_identifiers = 1\nmax_concurrent_requests = 4\nrequests_per_minute = 1000\nmax_attempts = 10");
    let customers = numbered(1..=23);
    project.write_source(&customers);

    let result = project.run(&[]).await;

    result.expect_code(0);
    let limited = project.sandbox.requests().iter().filter(|request| request.status == 429).count();
    assert!(limited > 0, "the sandbox's rate limit never answered 429");
    assert_eq!(project.audience(), expected(&customers));
}

#[tokio::test]
async fn rate_limit_waits_until_reset() {
    let project = Project::start().await;
    let customers = numbered(1..=3);
    project.write_source(&customers);
    project.sandbox.inject(Fault::RateLimit { reset_after_secs: 2, count: 1, route: Some(RouteKind::Amend) });

    let started = Instant::now();
    let result = project.run(&[]).await;

    result.expect_code(0);
    // The reset is a whole epoch second at least 2 seconds ahead; the retry base delay of
    // 20 ms alone would retry at once.
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
    assert!(result.stderr.contains("HTTP 429"), "{}", result.stderr);
    assert_eq!(project.audience(), expected(&customers));
}

#[tokio::test]
async fn add_only_never_removes() {
    let project = Project::start().await;
    set_top_level(&project, "mode = \"add-only\"");
    let day1 = numbered(1..=10);
    project.write_source(&day1);
    project.run(&[]).await.expect_code(0);

    let mut day2 = numbered(1..=5);
    day2.extend(numbered(20..=21));
    project.write_source(&day2);
    project.sandbox.clear_requests();
    let result = project.run(&[]).await;

    result.expect_code(0);
    assert_eq!(result.count("planned_removed"), 0);
    assert_eq!(result.count("added"), 2);
    let operations: BTreeSet<String> = project.amendments().iter().filter_map(|r| r.operation.clone()).collect();
    assert_eq!(operations, BTreeSet::from(["add".to_string()]));
    let mut everyone = day1.clone();
    everyone.extend(numbered(20..=21));
    assert_eq!(project.audience(), expected(&everyone));
}

#[tokio::test]
async fn permanent_error_reports_criteo_problem() {
    let project = Project::start().await;
    let customers = numbered(1..=3);
    project.write_source(&customers);
    project.sandbox.inject(Fault::Status { status: 403, count: 10, route: Some(RouteKind::Amend) });

    let result = project.run(&[]).await;

    result.expect_code(5);
    let problem = &result.report["errors"][0];
    assert_eq!(problem["status"], 403, "{}", result.stdout);
    assert!(problem["code"].is_string(), "{problem}");
    assert!(problem["title"].is_string(), "{problem}");
    assert!(problem["detail"].is_string(), "{problem}");
    assert!(problem["trace_id"].is_string(), "{problem}");
    assert_eq!(project.requests_to(RouteKind::Amend).len(), 1, "a permanent error was retried");
    for hash in expected(&customers) {
        assert!(!result.stdout.contains(&hash), "the report names an identifier");
        assert!(!result.stderr.contains(&hash), "the logs name an identifier");
    }
}

#[tokio::test]
async fn truncated_parquet_source_exits_3_sending_nothing() {
    let project = Project::start().await;
    project.write_source(&numbered(1..=5));
    project.run(&[]).await.expect_code(0);
    let source = project.path("data/customers.parquet");
    let bytes = std::fs::read(&source).unwrap();
    std::fs::write(&source, &bytes[..bytes.len() * 2 / 3]).unwrap();
    project.sandbox.clear_requests();

    let result = project.run(&[]).await;

    result.expect_code(3);
    assert!(result.stderr.contains("customers"), "{}", result.stderr);
    assert!(project.sandbox.requests().is_empty(), "a run over a damaged source sent requests");
    assert_eq!(project.audience(), expected(&numbered(1..=5)));
}

#[tokio::test]
async fn truncated_manifest_is_corrupt_with_reset_hint() {
    let project = Project::start().await;
    project.write_source(&numbered(1..=5));
    project.run(&[]).await.expect_code(0);
    let manifest = project.path("state/vip/manifests/00000000000000000001.json");
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    project.sandbox.clear_requests();

    let result = project.run(&[]).await;

    result.expect_code(2);
    assert!(result.stderr.contains("state reset"), "{}", result.stderr);
    assert!(result.stderr.contains("manifests/00000000000000000001.json"), "{}", result.stderr);
    assert!(project.amendments().is_empty());
}

#[tokio::test]
async fn expired_lock_of_dead_run_is_replaced() {
    let project = Project::start().await;
    set_state_options(&project, "lock_ttl_secs = 1");
    let customers = numbered(1..=3);
    project.write_source(&customers);
    project.sandbox.inject(Fault::Delay { delay_ms: 5000, count: 1, route: Some(RouteKind::Amend) });
    let child = project.spawn_run(&[]);
    let pid = child.id().unwrap();
    let lock = project.path("state/vip/lock.json");
    wait_until("the run took the lock", Duration::from_secs(30), || lock.is_file()).await;
    send_signal(pid, "KILL");
    finish(child).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let result = project.run(&[]).await;

    result.expect_code(0);
    assert!(result.stderr.contains("replacing an expired lock"), "{}", result.stderr);
    assert_eq!(project.audience(), expected(&customers));
    assert!(!lock.exists(), "the run left its lock behind");
}

#[tokio::test]
async fn concurrent_run_exits_75_naming_holder() {
    let project = Project::start().await;
    let customers = numbered(1..=4);
    project.write_source(&customers);
    project.sandbox.inject(Fault::Delay { delay_ms: 3000, count: 1, route: Some(RouteKind::Amend) });

    let first = project.spawn_run(&[]);
    let lock = project.path("state/vip/lock.json");
    wait_until("the first run took the lock", Duration::from_secs(30), || lock.is_file()).await;
    let holder: serde_json::Value = serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    let second = project.run(&[]).await;
    let first = finish(first).await;

    second.expect_code(75);
    assert_eq!(second.report["status"], "failed");
    let holder_run = holder["run_id"].as_str().unwrap();
    assert!(second.stderr.contains(holder_run), "{}", second.stderr);
    first.expect_code(0);
    assert_eq!(project.audience(), expected(&customers));
    assert_no_identifier_sent_twice(&project);
}

#[tokio::test]
async fn seeded_fault_scenarios_converge() {
    // One scenario of each kind from the fault campaign (`examples/fault_campaign.rs`),
    // which runs hundreds of them.
    let options = campaign::CampaignOptions {
        binary: env!("CARGO_BIN_EXE_audience-sync").into(),
        seed: 20_261_204,
        scenarios: campaign::Kind::ALL.len(),
        kinds: campaign::Kind::ALL.to_vec(),
        verbose: false,
    };

    let summary = campaign::run_campaign(&options).await;

    let failures: Vec<String> = summary
        .failures()
        .iter()
        .map(|outcome| format!("{} (seed {}): {}", outcome.kind.name(), outcome.seed, outcome.failure.as_deref().unwrap_or_default()))
        .collect();
    assert!(failures.is_empty(), "{}\n{}", summary.table(), failures.join("\n"));
}
