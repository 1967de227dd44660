//! Bad input gives a clear error, the documented exit code, and sends nothing.

mod common;

use common::*;

async fn project_with_source() -> Project {
    let project = Project::start().await;
    project.write_source(&[customer(1, "a@example.com"), customer(2, "b@example.com")]);
    project
}

fn assert_nothing_sent(project: &Project) {
    assert!(project.sandbox.requests().is_empty(), "requests were sent: {:?}", project.sandbox.requests().len());
}

fn assert_one_line_report(result: &RunResult) {
    assert_eq!(result.stdout.lines().count(), 1, "stdout: {}", result.stdout);
    assert_eq!(result.report["status"], "failed");
}

#[tokio::test]
async fn missing_source_file_exits_3() {
    let project = Project::start().await;
    let result = project.run(&[]).await;
    result.expect_code(3);
    assert_one_line_report(&result);
    assert!(result.stderr.contains("not found"), "{}", result.stderr);
    assert!(result.stderr.contains("customers.parquet"), "{}", result.stderr);
    assert_nothing_sent(&project);
}

#[tokio::test]
async fn sql_error_exits_3() {
    let project = project_with_source().await;
    std::fs::write(project.path("segment.sql"), "SELECT customer_id, email FROM customerz").unwrap();
    let result = project.run(&[]).await;
    result.expect_code(3);
    assert!(result.stderr.contains("customerz"), "{}", result.stderr);
    assert_nothing_sent(&project);
}

#[tokio::test]
async fn unknown_column_lists_available() {
    let project = project_with_source().await;
    std::fs::write(project.path("segment.sql"), "SELECT customer_id, lifetime_value FROM customers").unwrap();
    let result = project.run(&[]).await;
    result.expect_code(3);
    assert!(result.stderr.contains("`email`"), "{}", result.stderr);
    assert!(result.stderr.contains("lifetime_value"), "{}", result.stderr);
    assert_nothing_sent(&project);
}

#[tokio::test]
async fn malformed_toml_exits_2() {
    let project = project_with_source().await;
    std::fs::write(project.activation(), "segment = \"segment.sql\"\nkey = [\n").unwrap();
    let result = project.run(&[]).await;
    result.expect_code(2);
    assert_one_line_report(&result);
    assert!(result.stderr.contains("invalid TOML"), "{}", result.stderr);
    assert_nothing_sent(&project);
}

#[tokio::test]
async fn missing_credentials_exit_2() {
    let project = project_with_source().await;
    let activation = project.activation();
    let result = project.cli_with_env(&["run", activation.to_str().unwrap()], &[]).await;
    result.expect_code(2);
    assert!(result.stderr.contains("CRITEO_CLIENT_ID"), "{}", result.stderr);
    assert_nothing_sent(&project);
}

#[tokio::test]
async fn wrong_secret_exits_5() {
    let project = project_with_source().await;
    let activation = project.activation();
    let result = project
        .cli_with_env(
            &["run", activation.to_str().unwrap()],
            &[("CRITEO_CLIENT_ID", CLIENT_ID), ("CRITEO_CLIENT_SECRET", "wrong-secret")],
        )
        .await;
    result.expect_code(5);
    assert!(!result.stderr.contains("wrong-secret"), "the secret leaked: {}", result.stderr);
    assert!(!result.stdout.contains("wrong-secret"), "the secret leaked: {}", result.stdout);
    assert!(project.amendments().is_empty());
}

#[tokio::test]
async fn broken_parquet_exits_3() {
    let project = Project::start().await;
    std::fs::create_dir_all(project.path("data")).unwrap();
    std::fs::write(project.path("data/customers.parquet"), b"PAR1 this is not parquet").unwrap();
    let result = project.run(&[]).await;
    result.expect_code(3);
    assert!(result.stderr.contains("customers"), "{}", result.stderr);
    assert_nothing_sent(&project);
}

#[tokio::test]
async fn unknown_audience_exits_5() {
    let project = project_with_source().await;
    project.write_activation("");
    let text = std::fs::read_to_string(project.activation()).unwrap().replace(AUDIENCE, "111");
    std::fs::write(project.activation(), text).unwrap();
    let result = project.run(&[]).await;
    result.expect_code(5);
    assert_eq!(result.report["errors"][0]["status"], 404);
    assert!(project.path("state/vip/manifests").read_dir().map_or(true, |mut d| d.next().is_none()));
}

#[tokio::test]
async fn ddl_in_segment_is_rejected() {
    let project = project_with_source().await;
    std::fs::write(project.path("segment.sql"), "CREATE TABLE x AS SELECT 1").unwrap();
    let result = project.run(&[]).await;
    result.expect_code(3);
    assert_nothing_sent(&project);
}
