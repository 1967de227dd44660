//! End-to-end runs of the binary against the sandbox over real HTTP and real Parquet.

mod common;

use audience_sync::sandbox::{Fault, RouteKind};
use common::*;

fn day1() -> Vec<Customer> {
    vec![
        customer(1, "  Alice@Example.com "),
        customer(2, "bob@example.com"),
        customer(3, "\u{feff}carol@example.org\u{a0}"),
        customer(4, "not-an-email"),
        customer(5, "dave @example.com"),
        Customer {
            email: None,
            ..customer(6, "")
        },
        customer(7, "ALICE@example.com"),
        Customer {
            lifetime_value: 10.0,
            ..customer(8, "low@example.com")
        },
        Customer {
            opted_out: true,
            ..customer(9, "optout@example.com")
        },
    ]
}

const DAY1_EXPECTED: [&str; 3] = ["alice@example.com", "bob@example.com", "carol@example.org"];

#[tokio::test]
async fn first_run_adds_every_valid_identifier() {
    let project = Project::start().await;
    project.write_source(&day1());

    let result = project.run(&[]).await;
    result.expect_code(0);

    assert_eq!(project.audience(), hashes(&DAY1_EXPECTED));
    assert_eq!(result.report["status"], "warning");
    assert_eq!(result.count("members"), 7);
    assert_eq!(result.count("added"), 3);
    assert_eq!(result.count("planned_added"), 3);
    assert_eq!(result.count("removed"), 0);
    assert_eq!(result.count("criteo_valid"), 3);
    assert_eq!(result.report["invalid"]["malformed"], 1);
    assert_eq!(result.report["invalid"]["inner_whitespace"], 1);
    assert!(!result.stdout.contains("example.com"), "report leaks an email: {}", result.stdout);
    assert!(!result.stderr.contains("example.com"), "logs leak an email: {}", result.stderr);
}

#[tokio::test]
async fn unchanged_rerun_sends_nothing() {
    let project = Project::start().await;
    project.write_source(&day1());
    project.run(&[]).await.expect_code(0);
    project.sandbox.clear_requests();

    let result = project.run(&[]).await;
    result.expect_code(0);

    assert!(project.amendments().is_empty(), "rerun sent {:?}", project.amendments().len());
    assert_eq!(result.count("planned_added"), 0);
    assert_eq!(result.count("planned_removed"), 0);
    assert_eq!(result.count("unchanged"), 3);
}

#[tokio::test]
async fn next_day_sends_entries_and_exits() {
    let project = Project::start().await;
    project.write_source(&day1());
    project.run(&[]).await.expect_code(0);
    project.sandbox.clear_requests();

    let mut day2 = day1();
    day2.retain(|c| c.id != 2);
    day2.push(customer(10, "erin@example.net"));
    day2.push(customer(11, "frank@example.net"));
    project.write_source(&day2);
    let result = project.run(&["--allow-removals"]).await;
    result.expect_code(0);

    let expected = hashes(&["alice@example.com", "carol@example.org", "erin@example.net", "frank@example.net"]);
    assert_eq!(project.audience(), expected);
    assert_eq!(result.count("added"), 2);
    assert_eq!(result.count("removed"), 1);
    let amendments = project.amendments();
    let added: Vec<_> = amendments.iter().filter(|r| r.operation.as_deref() == Some("add")).collect();
    let removed: Vec<_> = amendments.iter().filter(|r| r.operation.as_deref() == Some("remove")).collect();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].identifiers.iter().cloned().collect::<std::collections::BTreeSet<_>>(), hashes(&["erin@example.net", "frank@example.net"]));
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].identifiers, vec![sha256_hex("bob@example.com")]);
}

#[tokio::test]
async fn changed_email_replaces_old_hash() {
    let project = Project::start().await;
    project.write_source(&[customer(1, "old@example.com"), customer(2, "b@example.com"), customer(3, "c@example.com"), customer(4, "d@example.com"), customer(5, "e@example.com"), customer(6, "f@example.com")]);
    project.run(&[]).await.expect_code(0);

    project.write_source(&[customer(1, "new@example.com"), customer(2, "b@example.com"), customer(3, "c@example.com"), customer(4, "d@example.com"), customer(5, "e@example.com"), customer(6, "f@example.com")]);
    let result = project.run(&[]).await;
    result.expect_code(0);

    assert!(!project.audience().contains(&sha256_hex("old@example.com")));
    assert!(project.audience().contains(&sha256_hex("new@example.com")));
    assert_eq!(result.count("added"), 1);
    assert_eq!(result.count("removed"), 1);
}

#[tokio::test]
async fn shared_email_stays_while_either_is_member() {
    let project = Project::start().await;
    let mut customers: Vec<Customer> = (1..=8).map(|id| customer(id, &format!("m{id}@example.com"))).collect();
    customers.push(customer(20, "shared@example.com"));
    customers.push(customer(21, "Shared@Example.com"));
    project.write_source(&customers);
    project.run(&[]).await.expect_code(0);
    let shared = sha256_hex("shared@example.com");

    customers.retain(|c| c.id != 20);
    project.write_source(&customers);
    let result = project.run(&[]).await;
    result.expect_code(0);
    assert!(project.audience().contains(&shared));
    assert_eq!(result.count("removed"), 0);

    customers.retain(|c| c.id != 21);
    project.write_source(&customers);
    let result = project.run(&[]).await;
    result.expect_code(0);
    assert!(!project.audience().contains(&shared));
    assert_eq!(result.count("removed"), 1);
}

#[tokio::test]
async fn failed_batch_is_sent_by_next_run() {
    let project = Project::start().await;
    project.write_activation("max_batch_identifiers = 2\nmax_concurrent_requests = 1");
    let customers: Vec<Customer> = (1..=6).map(|id| customer(id, &format!("u{id}@example.com"))).collect();
    project.write_source(&customers);
    project.sandbox.inject(Fault::Status {
        status: 400,
        count: 1,
        route: Some(RouteKind::Amend),
    });

    let result = project.run(&[]).await;
    result.expect_code(6);
    assert_eq!(result.report["status"], "partial");
    assert_eq!(result.count("added"), 4);
    assert_eq!(result.count("planned_added"), 6);
    assert_eq!(project.audience().len(), 4);

    project.sandbox.clear_requests();
    let result = project.run(&[]).await;
    result.expect_code(0);
    assert_eq!(result.count("added"), 2);
    let all: Vec<String> = customers.iter().map(|c| c.email.clone().unwrap()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_eq!(project.audience(), hashes(&all));
}

#[tokio::test]
async fn batches_are_sorted_and_within_limit() {
    let project = Project::start().await;
    project.write_activation("max_batch_identifiers = 3");
    let customers: Vec<Customer> = (1..=10).map(|id| customer(id, &format!("user{id}@example.com"))).collect();
    project.write_source(&customers);
    project.run(&[]).await.expect_code(0);

    let amendments = project.amendments();
    assert_eq!(amendments.len(), 4);
    let mut all = Vec::new();
    for request in &amendments {
        assert!(request.identifier_count <= 3);
        assert!(request.identifiers.windows(2).all(|pair| pair[0] < pair[1]), "batch not sorted");
        all.extend(request.identifiers.clone());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "an identifier was sent twice");
}

#[tokio::test]
async fn transient_faults_are_retried() {
    let project = Project::start().await;
    project.write_source(&day1());
    project.sandbox.inject(Fault::Status { status: 503, count: 2, route: Some(RouteKind::Amend) });
    project.sandbox.inject(Fault::DropConnection { count: 1, route: Some(RouteKind::Amend) });
    project.sandbox.inject(Fault::RateLimit { reset_after_secs: 1, count: 1, route: Some(RouteKind::Amend) });

    let result = project.run(&[]).await;
    result.expect_code(0);
    assert_eq!(project.audience(), hashes(&DAY1_EXPECTED));
}

#[tokio::test]
async fn expired_token_is_refreshed() {
    let project = Project::start().await;
    project.write_activation("max_batch_identifiers = 1\nmax_concurrent_requests = 1");
    project.write_source(&day1());
    project.sandbox.inject(Fault::Delay { delay_ms: 300, count: 1, route: Some(RouteKind::Amend) });
    // Expire every token as soon as the run has fetched its first one, so a later batch
    // reaches the API with a token that was valid when cached.
    let run = project.run(&[]);
    let expire = async {
        loop {
            let fetched = project.sandbox.requests().iter().any(|r| r.route == Some(RouteKind::Token) && r.status == 200);
            if fetched {
                project.sandbox.expire_tokens();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let (result, ()) = tokio::join!(run, expire);
    result.expect_code(0);
    assert_eq!(project.audience(), hashes(&DAY1_EXPECTED));
    let expired = project
        .sandbox
        .requests()
        .iter()
        .filter(|request| request.status == 401)
        .count();
    assert!(expired >= 1, "no request met the expired token");
}

#[tokio::test]
async fn exhausted_retries_exit_temporary() {
    let project = Project::start().await;
    project.write_activation("max_attempts = 2");
    project.write_source(&day1());
    project.sandbox.inject(Fault::Status { status: 503, count: 10, route: Some(RouteKind::Amend) });

    let result = project.run(&[]).await;
    result.expect_code(75);
    assert_eq!(result.report["status"], "failed");
    assert!(project.audience().is_empty());

    project.sandbox.clear_faults();
    let result = project.run(&[]).await;
    result.expect_code(0);
    assert_eq!(project.audience(), hashes(&DAY1_EXPECTED));
}

#[tokio::test]
async fn removal_guard_blocks_run() {
    let project = Project::start().await;
    let customers: Vec<Customer> = (1..=10).map(|id| customer(id, &format!("g{id}@example.com"))).collect();
    project.write_source(&customers);
    project.run(&[]).await.expect_code(0);
    project.sandbox.clear_requests();

    project.write_source(&customers[..5]);
    let result = project.run(&[]).await;
    result.expect_code(4);
    assert_eq!(result.report["status"], "blocked");
    assert!(project.amendments().is_empty());
    assert_eq!(project.audience().len(), 10);

    let result = project.run(&["--allow-removals"]).await;
    result.expect_code(0);
    assert_eq!(project.audience().len(), 5);
}

#[tokio::test]
async fn empty_segment_is_blocked() {
    let project = Project::start().await;
    project.write_source(&day1());
    project.run(&[]).await.expect_code(0);

    let opted_out: Vec<Customer> = day1().into_iter().map(|c| Customer { opted_out: true, ..c }).collect();
    project.write_source(&opted_out);
    let result = project.run(&[]).await;
    result.expect_code(4);
    assert_eq!(project.audience(), hashes(&DAY1_EXPECTED));
}

#[tokio::test]
async fn plan_sends_and_writes_nothing() {
    let project = Project::start().await;
    project.write_source(&day1());
    let activation = project.activation();
    let plan_dir = project.path("plan");
    let result = project
        .cli(&["plan", activation.to_str().unwrap(), "--write-plan", plan_dir.to_str().unwrap()])
        .await;
    result.expect_code(0);
    assert_eq!(result.count("planned_added"), 3);
    assert!(project.sandbox.requests().is_empty());
    assert!(plan_dir.join("adds.parquet").is_file());
    assert!(!project.path("state/vip/manifests").exists());
}

#[tokio::test]
async fn held_lock_exits_temporary() {
    let project = Project::start().await;
    project.write_source(&day1());
    std::fs::create_dir_all(project.path("state/vip")).unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    std::fs::write(
        project.path("state/vip/lock.json"),
        format!(r#"{{"run_id":"other-run","host":"worker-7","pid":42,"started_at":"2026-12-04T00:00:00Z","expires_at":"{}"}}"#, expires.to_rfc3339()),
    )
    .unwrap();

    let result = project.run(&[]).await;
    result.expect_code(75);
    assert!(result.stderr.contains("other-run"), "{}", result.stderr);
    assert!(project.sandbox.requests().is_empty());

    let activation = project.activation();
    project.cli(&["state", "unlock", activation.to_str().unwrap()]).await.expect_code(0);
    project.run(&[]).await.expect_code(0);
}

#[tokio::test]
async fn corrupt_snapshot_is_reported() {
    let project = Project::start().await;
    project.write_source(&day1());
    project.run(&[]).await.expect_code(0);
    let snapshots = project.path("state/vip/snapshots");
    let file = std::fs::read_dir(&snapshots).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    project.sandbox.clear_requests();

    let result = project.run(&[]).await;
    result.expect_code(2);
    assert!(result.stderr.contains("state reset"), "{}", result.stderr);
    assert!(project.amendments().is_empty());

    let activation = project.activation();
    project.cli(&["state", "reset", activation.to_str().unwrap(), "--yes"]).await.expect_code(0);
    project.run(&[]).await.expect_code(0);
    assert_eq!(project.audience(), hashes(&DAY1_EXPECTED));
}
