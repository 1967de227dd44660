//! Operator-facing behaviour end to end: project defaults, `check`, the duplicate-key
//! guard, `audiences`, `state` and `run --full-resync`.

mod common;

use audience_sync::sandbox::RouteKind;
use common::*;

/// An activation that leaves the destination to the project's defaults.
const BARE_ACTIVATION: &str = r#"segment = "segment.sql"
key = "customer_id"

[sources]
customers = "data/customers.parquet"

[identifiers]
email = "email"
"#;

const PROJECT_DEFAULTS: &str = r#"[defaults.criteo.destination]
advertiser_id = "12345"
audience_id = "987654"
api_url = "{api_url}"
retry_base_delay_ms = 20
max_batch_identifiers = 2

[defaults.criteo.state]
url = "shared-state"

[defaults.criteo.guards]
max_removal_ratio = 0.5
"#;

fn customers(ids: std::ops::RangeInclusive<i64>) -> Vec<Customer> {
    ids.map(|id| customer(id, &format!("member{id}@example.com")))
        .collect()
}

fn emails(customers: &[Customer]) -> std::collections::BTreeSet<String> {
    customers
        .iter()
        .map(|customer| sha256_hex(customer.email.as_deref().unwrap()))
        .collect()
}

#[tokio::test]
async fn project_defaults_are_inherited() {
    let project = Project::start().await;
    std::fs::write(
        project.path("audience-sync.toml"),
        PROJECT_DEFAULTS.replace("{api_url}", &project.sandbox.base_url()),
    )
    .unwrap();
    project.write_activation_text(&format!(
        "{BARE_ACTIVATION}\n[destination]\nmax_batch_identifiers = 3\n"
    ));
    let members = customers(1..=7);
    project.write_source(&members);

    let result = project.run(&[]).await;
    result.expect_code(0);

    assert_eq!(project.audience(), emails(&members));
    let mut sizes: Vec<usize> = project
        .amendments()
        .iter()
        .map(|request| request.identifier_count)
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 3, 3]);
    assert!(project.path("shared-state/vip/manifests").is_dir());

    // 3 of 7 removed is above the built-in 0.2 but within the project's 0.5.
    project.write_source(&members[..4]);
    let shrunk = project.run(&[]).await;
    shrunk.expect_code(0);
    assert_eq!(shrunk.count("removed"), 3);
}

#[tokio::test]
async fn project_option_names_file() {
    let project = Project::start().await;
    std::fs::create_dir_all(project.path("team")).unwrap();
    let defaults = PROJECT_DEFAULTS
        .replace("{api_url}", &project.sandbox.base_url())
        .replace("shared-state", "team-state");
    std::fs::write(project.path("team/defaults.toml"), defaults).unwrap();
    project.write_activation_text(BARE_ACTIVATION);
    project.write_source(&customers(1..=3));
    let project_file = project.path("team/defaults.toml");

    let result = project
        .run(&["--project", project_file.to_str().unwrap()])
        .await;
    result.expect_code(0);

    assert_eq!(result.count("added"), 3);
    // A relative state URL in a project file is relative to that file's folder.
    assert!(project.path("team/team-state/vip/manifests").is_dir());

    let checked = project
        .activation_command(&["check"], &["--project", project_file.to_str().unwrap()])
        .await;
    checked.expect_code(0);
    let settings = &checked.report["settings"];
    assert_eq!(settings["destination"]["advertiser_id"], ADVERTISER);
    assert_eq!(settings["destination"]["max_batch_identifiers"], 2);
    assert_eq!(settings["guards"]["max_removal_ratio"], 0.5);
}

#[tokio::test]
async fn check_prints_settings_masked() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));
    let text = std::fs::read_to_string(project.activation()).unwrap();
    let storage = "\n[storage.\"s3://archive\"]\nsecret_access_key = \"storage-secret-value\"\nregion = \"eu-west-1\"\n";
    std::fs::write(project.activation(), text + storage).unwrap();

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(0);

    assert_eq!(result.stdout.lines().count(), 1, "{}", result.stdout);
    let settings = &result.report["settings"];
    assert_eq!(settings["name"], "VIP customers");
    assert_eq!(settings["destination"]["audience_id"], AUDIENCE);
    assert_eq!(
        settings["destination"]["api_url"],
        project.sandbox.base_url().as_str()
    );
    assert_eq!(settings["identifiers"]["email"], "email");
    assert_eq!(settings["credentials"]["client_id"], CLIENT_ID);
    assert_eq!(settings["credentials"]["client_secret"], "****");
    assert_eq!(
        settings["storage"]["s3://archive"]["secret_access_key"],
        "****"
    );
    assert_eq!(settings["storage"]["s3://archive"]["region"], "eu-west-1");
    for secret in [CLIENT_SECRET, "storage-secret-value"] {
        assert!(
            !result.stdout.contains(secret),
            "stdout leaks `{secret}`: {}",
            result.stdout
        );
        assert!(
            !result.stderr.contains(secret),
            "stderr leaks `{secret}`: {}",
            result.stderr
        );
    }
}

#[tokio::test]
async fn check_sends_and_writes_nothing() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(0);

    assert_eq!(result.report["audience_id"], AUDIENCE);
    assert!(
        !project.path("state").exists(),
        "check created the state folder"
    );
    let changes: Vec<_> = project
        .sandbox
        .requests()
        .into_iter()
        .filter(|request| {
            matches!(
                request.route,
                Some(
                    RouteKind::Amend
                        | RouteKind::Create
                        | RouteKind::Update
                        | RouteKind::Delete
                        | RouteKind::Wipe
                )
            )
        })
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
    assert!(project.audience().is_empty());
}

#[tokio::test]
async fn check_without_advertiser_reads_statistics() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));
    let text = std::fs::read_to_string(project.activation()).unwrap();
    std::fs::write(
        project.activation(),
        text.replace("advertiser_id = \"12345\"\n", ""),
    )
    .unwrap();

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(0);

    assert!(result.report["settings"]["destination"]["advertiser_id"].is_null());
    let statistics = project.requests_to(RouteKind::Statistics);
    assert_eq!(statistics.len(), 1);
    assert_eq!(
        statistics[0].path,
        format!(
            "/2026-07/marketing-solutions/audience-segments/{AUDIENCE}/contact-list/statistics"
        )
    );
    assert!(project.requests_to(RouteKind::Search).is_empty());
}

#[tokio::test]
async fn check_rejects_missing_column() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));
    project.write_segment("SELECT customer_id, lifetime_value FROM customers\n");

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(3);

    assert!(
        result.stderr.contains("`email` (for email)"),
        "{}",
        result.stderr
    );
    assert!(project.sandbox.requests().is_empty());
}

#[tokio::test]
async fn check_rejects_wrong_column_type() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));
    project.write_segment("SELECT customer_id, lifetime_value AS email FROM customers\n");

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(3);

    assert!(
        result
            .stderr
            .contains("cannot read email identifiers from an Arrow column of type Float64"),
        "{}",
        result.stderr
    );
    assert!(project.sandbox.requests().is_empty());
}

#[tokio::test]
async fn check_rejects_unknown_country() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));
    let text = std::fs::read_to_string(project.activation()).unwrap();
    std::fs::write(
        project.activation(),
        text + "\n[normalize]\ndefault_country = \"XX\"\n",
    )
    .unwrap();

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(2);

    assert!(
        result.stderr.contains("invalid default_country \"XX\""),
        "{}",
        result.stderr
    );
    assert!(project.sandbox.requests().is_empty());
}

#[tokio::test]
async fn check_unknown_audience_exits_5() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));
    let text = std::fs::read_to_string(project.activation()).unwrap();
    std::fs::write(project.activation(), text.replace(AUDIENCE, "111")).unwrap();

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(5);

    assert!(
        result.stderr.contains("audience 111 was not found"),
        "{}",
        result.stderr
    );
    assert!(project.amendments().is_empty());
}

#[tokio::test]
async fn few_duplicate_keys_warn() {
    let project = Project::start().await;
    let mut members = customers(1..=40);
    members.push(customer(1, "second-address@example.com"));
    project.write_source(&members);

    let result = project.run(&[]).await;
    result.expect_code(0);

    assert_eq!(result.count("duplicate_keys"), 2);
    assert_eq!(result.report["status"], "warning");
    let warnings = result.report["warnings"].to_string();
    assert!(
        warnings.contains("2 of 41 members share their `customer_id` value"),
        "{warnings}"
    );
    assert_eq!(result.count("added"), 41);
}

#[tokio::test]
async fn many_duplicate_keys_block() {
    let project = Project::start().await;
    let mut members = customers(1..=9);
    members.push(customer(1, "second-address@example.com"));
    project.write_source(&members);

    let result = project.run(&[]).await;
    result.expect_code(4);

    assert_eq!(result.report["status"], "blocked");
    assert_eq!(result.count("duplicate_keys"), 2);
    assert!(
        result
            .stderr
            .contains("`guards.max_duplicate_key_ratio` = 0.05"),
        "{}",
        result.stderr
    );
    assert!(project.amendments().is_empty());

    let allowed = project
        .run(&["--set", "guards.max_duplicate_key_ratio=0.5"])
        .await;
    allowed.expect_code(0);
    assert_eq!(allowed.count("added"), 10);
}

fn api_args(project: &Project) -> Vec<String> {
    vec![
        "--advertiser".into(),
        ADVERTISER.into(),
        "--api-url".into(),
        project.sandbox.base_url(),
    ]
}

#[tokio::test]
async fn audiences_create_then_list() {
    let project = Project::start().await;
    let mut create = vec!["audiences".to_string(), "create".into()];
    create.extend(api_args(&project));
    create.extend([
        "--name".into(),
        "Winback".into(),
        "--description".into(),
        "Lapsed buyers".into(),
    ]);
    let create: Vec<&str> = create.iter().map(String::as_str).collect();

    let created = project.cli(&create).await;
    created.expect_code(0);

    let id = created.report["id"].as_str().unwrap().to_string();
    let stored: Vec<_> = project
        .sandbox
        .audiences()
        .into_iter()
        .filter(|audience| audience.id == id)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "Winback");
    assert_eq!(stored[0].description.as_deref(), Some("Lapsed buyers"));

    let mut list = vec!["audiences".to_string(), "list".into()];
    list.extend(api_args(&project));
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let listed = project.cli(&list).await;
    listed.expect_code(0);

    assert_eq!(listed.stdout.lines().count(), 1, "{}", listed.stdout);
    let audiences = listed.report["audiences"].as_array().unwrap();
    let names: Vec<(&str, &str)> = audiences
        .iter()
        .map(|audience| {
            (
                audience["id"].as_str().unwrap(),
                audience["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [(AUDIENCE, "Sandbox audience"), (id.as_str(), "Winback")]
    );
}

#[tokio::test]
async fn audiences_list_foreign_advertiser_exits_5() {
    let project = Project::start().await;
    let url = project.sandbox.base_url();

    let result = project
        .cli(&[
            "audiences",
            "list",
            "--advertiser",
            "55555",
            "--api-url",
            &url,
        ])
        .await;
    result.expect_code(5);

    assert!(
        result.stderr.contains("cannot use advertiser 55555"),
        "{}",
        result.stderr
    );
}

#[tokio::test]
async fn state_show_reports_manifest() {
    let project = Project::start().await;
    project.write_source(&customers(1..=3));

    let empty = project.activation_command(&["state", "show"], &[]).await;
    empty.expect_code(0);
    assert!(empty.report["manifest"].is_null(), "{}", empty.stdout);

    project.run(&[]).await.expect_code(0);
    let after_run = project.activation_command(&["state", "show"], &[]).await;
    after_run.expect_code(0);

    let manifest = &after_run.report["manifest"];
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["audience_id"], AUDIENCE);
    assert_eq!(manifest["counts"]["email"], 3);
    assert!(after_run.report["lock"].is_null());
    assert!(
        after_run.report["location"]
            .as_str()
            .unwrap()
            .ends_with("state/vip"),
        "{}",
        after_run.stdout
    );
}

#[tokio::test]
async fn state_reset_needs_yes() {
    let project = Project::start().await;
    let members = customers(1..=3);
    project.write_source(&members);
    project.run(&[]).await.expect_code(0);

    let without_yes = project.activation_command(&["state", "reset"], &[]).await;
    without_yes.expect_code(2);
    assert!(
        without_yes.stderr.contains("--yes"),
        "{}",
        without_yes.stderr
    );
    let state_before_reset = project.activation_command(&["state", "show"], &[]).await;
    assert_eq!(state_before_reset.report["manifest"]["version"], 1);

    let reset = project
        .activation_command(&["state", "reset"], &["--yes"])
        .await;
    reset.expect_code(0);
    assert!(
        reset.report["deleted_objects"].as_u64().unwrap() >= 2,
        "{}",
        reset.stdout
    );
    let cleared = project.activation_command(&["state", "show"], &[]).await;
    assert!(cleared.report["manifest"].is_null(), "{}", cleared.stdout);

    let rerun = project.run(&[]).await;
    rerun.expect_code(0);
    assert_eq!(rerun.count("added"), 3);
    assert_eq!(project.audience(), emails(&members));
}

#[tokio::test]
async fn full_resync_adds_and_removes_nothing() {
    let project = Project::start().await;
    let members = customers(1..=6);
    project.write_source(&members);
    project.run(&[]).await.expect_code(0);
    project.sandbox.clear_requests();

    let mut current = customers(1..=5);
    current.push(customer(7, "member7@example.com"));
    project.write_source(&current);
    let result = project.run(&["--full-resync"]).await;
    result.expect_code(0);

    let amendments = project.amendments();
    assert!(
        amendments
            .iter()
            .all(|request| request.operation.as_deref() == Some("add")),
        "{amendments:?}"
    );
    let sent: std::collections::BTreeSet<String> = amendments
        .into_iter()
        .flat_map(|request| request.identifiers)
        .collect();
    assert_eq!(sent, emails(&current));
    assert_eq!(result.count("added"), 6);
    assert_eq!(result.count("planned_removed"), 0);
    assert!(
        project
            .audience()
            .contains(&sha256_hex("member6@example.com"))
    );

    // The snapshot still contains member 6, so the next ordinary run removes it.
    let next = project.run(&[]).await;
    next.expect_code(0);
    assert_eq!(next.count("removed"), 1);
    assert_eq!(project.audience(), emails(&current));
}
