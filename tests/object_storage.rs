//! State and sources in S3, against a real moto server started by each test on 127.0.0.1.
//!
//! moto must be installed (`python3 -m pip install -r tests/requirements.txt`); without it
//! these tests fail with that command rather than pass without testing anything.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use audience_sync::config::{Activation, LoadOptions};
use audience_sync::identifiers::{IdentifierSet, IdentifierType};
use audience_sync::sandbox::{Fault, RouteKind};
use audience_sync::snapshot::{CommitInfo, StateError, StateStore};
use common::*;
use object_store::{ObjectStoreExt, PutPayload};

const BUCKET: &str = "audiences";

/// Writes an activation whose source and state both live in the moto bucket.
fn write_s3_activation(project: &Project, moto: &Moto, extra_destination: &str) {
    let text = format!(
        r#"segment = "segment.sql"
key = "customer_id"

[sources]
customers = "s3://{BUCKET}/data/customers.parquet"

[identifiers]
email = "email"

[destination]
advertiser_id = "{ADVERTISER}"
audience_id = "{AUDIENCE}"
api_url = "{{api_url}}"
retry_base_delay_ms = 20
{extra_destination}

[state]
url = "s3://{BUCKET}/state"

{storage}"#,
        storage = moto.storage_table(BUCKET)
    );
    project.write_activation_text(&text);
}

/// Writes the customers as Parquet locally, then uploads the file to the bucket.
async fn upload_customers(project: &Project, moto: &Moto, customers: &[Customer]) {
    let local = project.path("upload/customers.parquet");
    write_customers(&local, customers);
    let bytes = std::fs::read(&local).unwrap();
    moto.store(BUCKET)
        .put(&"data/customers.parquet".into(), PutPayload::from(bytes))
        .await
        .unwrap();
}

fn numbered(range: std::ops::RangeInclusive<i64>) -> Vec<Customer> {
    range.map(|id| customer(id, &format!("s3-{id}@example.com"))).collect()
}

fn emails(customers: &[Customer]) -> Vec<String> {
    customers.iter().map(|c| c.email.clone().unwrap()).collect()
}

fn expected_audience(customers: &[Customer]) -> std::collections::BTreeSet<String> {
    let emails = emails(customers);
    hashes(&emails.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn load_activation(project: &Project) -> Activation {
    Activation::load(&project.activation(), &LoadOptions::default()).unwrap()
}

fn info(run_id: &str) -> CommitInfo {
    CommitInfo {
        run_id: run_id.into(),
        audience_id: Some(AUDIENCE.into()),
        audience_name: None,
        audience_description: None,
    }
}

fn email_sets(digests: &[[u8; 32]]) -> BTreeMap<IdentifierType, IdentifierSet> {
    BTreeMap::from([(IdentifierType::Email, IdentifierSet::Hashed(digests.to_vec()))])
}

#[tokio::test]
async fn s3_state_and_source_sync_end_to_end() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let project = Project::start().await;
    write_s3_activation(&project, &moto, "");
    let day1 = numbered(1..=10);
    upload_customers(&project, &moto, &day1).await;

    project.run(&[]).await.expect_code(0);
    assert_eq!(project.audience(), expected_audience(&day1));
    let store = moto.store(BUCKET);
    let manifests = object_keys(&store, "state/vip/manifests").await;
    assert_eq!(manifests, ["state/vip/manifests/00000000000000000001.json"]);
    assert!(
        object_keys(&store, "state/vip").await.iter().all(|key| !key.ends_with("lock.json")),
        "the run left its lock behind"
    );

    let mut day2 = numbered(1..=9);
    day2.extend(numbered(20..=21));
    upload_customers(&project, &moto, &day2).await;
    project.sandbox.clear_requests();
    let result = project.run(&[]).await;
    result.expect_code(0);
    assert_eq!(result.count("added"), 2);
    assert_eq!(result.count("removed"), 1);
    assert_eq!(project.audience(), expected_audience(&day2));
    assert_eq!(object_keys(&store, "state/vip/manifests").await.len(), 2);

    project.sandbox.clear_requests();
    project.run(&[]).await.expect_code(0);
    assert!(project.amendments().is_empty(), "an unchanged rerun sent amendments");
}

#[tokio::test]
async fn s3_source_folder_is_read_whole() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let project = Project::start().await;
    write_s3_activation(&project, &moto, "");
    let text = std::fs::read_to_string(project.activation())
        .unwrap()
        .replace("data/customers.parquet\"", "data/\"");
    std::fs::write(project.activation(), text).unwrap();
    upload_customers(&project, &moto, &numbered(1..=3)).await;
    let second = project.path("upload/more.parquet");
    write_customers(&second, &numbered(4..=5));
    moto.store(BUCKET)
        .put(&"data/more.parquet".into(), PutPayload::from(std::fs::read(&second).unwrap()))
        .await
        .unwrap();

    project.run(&[]).await.expect_code(0);

    assert_eq!(project.audience(), expected_audience(&numbered(1..=5)));
}

#[tokio::test]
async fn s3_second_commit_of_same_version_fails() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let project = Project::start().await;
    write_s3_activation(&project, &moto, "");
    let state = StateStore::open(&load_activation(&project).await).unwrap();
    let empty = BTreeMap::new();

    let first = state.commit(None, info("run-a"), &email_sets(&[[1; 32], [2; 32]]), &empty).await.unwrap();
    let second = state.commit(None, info("run-b"), &email_sets(&[[3; 32]]), &empty).await;

    assert_eq!(first.version, 1);
    assert!(
        matches!(second, Err(StateError::ConcurrentCommit { version: 1 })),
        "second commit of version 1: {second:?}"
    );
    let loaded = state.load().await.unwrap();
    assert_eq!(loaded.manifest.unwrap().run_id, "run-a");
    assert_eq!(loaded.sets, email_sets(&[[1; 32], [2; 32]]));
    let snapshots = object_keys(&moto.store(BUCKET), "state/vip/snapshots").await;
    assert_eq!(snapshots.len(), 1, "the losing run left its data file: {snapshots:?}");
}

#[tokio::test]
async fn s3_commit_retried_by_same_run_succeeds() {
    // The store client retries a put whose response was lost, and the retry then meets the
    // manifest that the first attempt created. That is this run's commit, not another's.
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let project = Project::start().await;
    write_s3_activation(&project, &moto, "");
    let state = StateStore::open(&load_activation(&project).await).unwrap();
    let sets = email_sets(&[[7; 32]]);
    let empty = BTreeMap::new();

    state.commit(None, info("run-a"), &sets, &empty).await.unwrap();
    let again = state.commit(None, info("run-a"), &sets, &empty).await.unwrap();

    assert_eq!(again.version, 1);
    assert_eq!(state.load().await.unwrap().sets, sets);
}

#[tokio::test]
async fn s3_lock_is_exclusive_until_released_or_expired() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let project = Project::start().await;
    write_s3_activation(&project, &moto, "");
    let state = StateStore::open(&load_activation(&project).await).unwrap();

    let held = state.acquire_lock("run-a", 3600).await.unwrap();
    let refused = state.acquire_lock("run-b", 3600).await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, StateError::LockHeld { .. }), "{message}");
    assert!(message.contains("run-a"), "{message}");

    state.release_lock(&held).await.unwrap();
    let short = state.acquire_lock("run-b", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let replacing = state.acquire_lock("run-c", 3600).await.unwrap();
    assert_eq!(replacing.run_id, "run-c");

    // The run whose lock expired must not release the lock of the run that replaced it.
    state.release_lock(&short).await.unwrap();
    assert_eq!(state.read_lock().await.unwrap().unwrap().run_id, "run-c");
}

#[tokio::test]
async fn s3_expired_lock_is_replaced_by_one_run() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let project = Project::start().await;
    write_s3_activation(&project, &moto, "");
    let state = StateStore::open(&load_activation(&project).await).unwrap();

    for round in 0..5 {
        let dead = format!("dead-{round}");
        state.acquire_lock(&dead, 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let contenders = (0..4).map(|index| {
            let state = state.clone();
            async move { state.acquire_lock(&format!("run-{round}-{index}"), 3600).await }
        });
        let results = futures::future::join_all(contenders).await;

        let winners: Vec<_> = results.iter().filter_map(|result| result.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let holder = state.read_lock().await.unwrap().unwrap();
        assert_eq!(holder.run_id, winners[0].run_id, "round {round}");
        state.release_lock(&holder).await.unwrap();
    }
}

#[tokio::test]
async fn s3_concurrent_run_exits_75_naming_holder() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    let project = Project::start().await;
    write_s3_activation(&project, &moto, "");
    upload_customers(&project, &moto, &numbered(1..=4)).await;
    project.sandbox.inject(Fault::Delay { delay_ms: 3000, count: 1, route: Some(RouteKind::Amend) });
    let store = moto.store(BUCKET);

    let first = project.spawn_run(&[]);
    let lock_key = "state/vip/lock.json";
    let started = std::time::Instant::now();
    while !object_keys(&store, "state/vip").await.iter().any(|key| key == lock_key) {
        assert!(started.elapsed() < Duration::from_secs(30), "the first run never took the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holder: serde_json::Value =
        serde_json::from_slice(&store.get(&lock_key.into()).await.unwrap().bytes().await.unwrap()).unwrap();
    let second = project.run(&[]).await;
    let first = finish(first).await;

    second.expect_code(75);
    let holder_run = holder["run_id"].as_str().unwrap();
    assert!(second.stderr.contains(holder_run), "the message does not name {holder_run}: {}", second.stderr);
    first.expect_code(0);
    assert_eq!(project.audience(), expected_audience(&numbered(1..=4)));
    assert_eq!(project.acknowledged_identifiers().len(), 4, "an identifier was sent twice");
}

#[tokio::test]
async fn s3_unreachable_state_store_exits_75_sending_nothing() {
    let project = Project::start().await;
    project.write_source(&numbered(1..=3));
    let closed = free_port();
    let text = std::fs::read_to_string(project.activation()).unwrap().replace(
        "[state]\nurl = \"state\"\n",
        &format!(
            "[state]\nurl = \"s3://{BUCKET}/state\"\n\n[storage.\"s3://{BUCKET}\"]\n\
             endpoint = \"http://127.0.0.1:{closed}\"\nallow_http = \"true\"\nregion = \"{MOTO_REGION}\"\n\
             access_key_id = \"testing\"\nsecret_access_key = \"testing\"\nmax_retries = \"0\"\n"
        ),
    );
    std::fs::write(project.activation(), text).unwrap();

    let result = project.run(&[]).await;

    result.expect_code(75);
    assert!(result.stderr.contains("state store"), "{}", result.stderr);
    assert!(project.sandbox.requests().is_empty(), "a run without state sent requests");
}
