//! The audience lifecycle on Marketing Solutions: find by name, create, adopt a concurrent
//! create, record the id, rename, and the errors on the way.

mod common;

use audience_sync::sandbox::{AudienceInfo, DuplicateNamePolicy, Fault, RouteKind, SandboxConfig};
use common::*;

/// An activation that names no audience, so the run finds or creates one.
const NAMED_ACTIVATION: &str = r#"segment = "segment.sql"
key = "customer_id"

[sources]
customers = "data/customers.parquet"

[identifiers]
email = "email"

[destination]
advertiser_id = "12345"
api_url = "{api_url}"
retry_base_delay_ms = 20

[state]
url = "state"
"#;

const MEMBERS: [&str; 5] = [
    "a@example.com",
    "b@example.com",
    "c@example.com",
    "d@example.com",
    "e@example.com",
];

async fn named_project(config: SandboxConfig) -> Project {
    let project = Project::start_with(config).await;
    project.write_activation_text(NAMED_ACTIVATION);
    let customers: Vec<Customer> = MEMBERS
        .iter()
        .zip(1..)
        .map(|(email, id)| customer(id, email))
        .collect();
    project.write_source(&customers);
    project
}

fn audiences_named(project: &Project, name: &str) -> Vec<AudienceInfo> {
    project
        .sandbox
        .audiences()
        .into_iter()
        .filter(|audience| audience.name == name)
        .collect()
}

fn routes(project: &Project) -> Vec<(RouteKind, u16)> {
    project
        .sandbox
        .requests()
        .into_iter()
        .filter_map(|request| Some((request.route?, request.status)))
        .filter(|(route, _)| *route != RouteKind::Token)
        .collect()
}

#[tokio::test]
async fn created_audience_is_recorded() {
    let project = named_project(SandboxConfig::default()).await;

    let first = project.run(&[]).await;
    first.expect_code(0);

    let created = audiences_named(&project, "VIP customers");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].advertiser_id, ADVERTISER);
    assert_eq!(created[0].description.as_deref(), Some("Spent over 100"));
    assert_eq!(first.report["audience_source"], "created");
    assert_eq!(first.report["audience_id"], created[0].id.as_str());
    assert_eq!(
        project.sandbox.members(&created[0].id, "email"),
        hashes(&MEMBERS)
    );
    assert_eq!(project.requests_to(RouteKind::Create).len(), 1);

    project.sandbox.clear_requests();
    let second = project.run(&[]).await;
    second.expect_code(0);

    assert_eq!(second.report["audience_source"], "recorded");
    assert_eq!(second.report["audience_id"], created[0].id.as_str());
    assert!(project.requests_to(RouteKind::Search).is_empty());
    assert!(project.requests_to(RouteKind::Create).is_empty());
}

#[tokio::test]
async fn audience_found_on_second_page() {
    let project = named_project(SandboxConfig::default()).await;
    project
        .sandbox
        .create_audience("55555", "VIP customers", None);
    for index in 0..150 {
        project
            .sandbox
            .create_audience(ADVERTISER, &format!("Other audience {index}"), None);
    }
    project
        .sandbox
        .create_audience(ADVERTISER, "vip customers", None);
    let id = project
        .sandbox
        .create_audience(ADVERTISER, "VIP customers", Some("Spent over 100"));

    let result = project.run(&[]).await;
    result.expect_code(0);

    assert_eq!(result.report["audience_source"], "found");
    assert_eq!(result.report["audience_id"], id.as_str());
    assert_eq!(project.sandbox.members(&id, "email"), hashes(&MEMBERS));
    let pages: Vec<String> = project
        .requests_to(RouteKind::Search)
        .into_iter()
        .filter_map(|request| request.query)
        .collect();
    assert_eq!(pages, ["limit=100&offset=0", "limit=100&offset=100"]);
    assert!(project.requests_to(RouteKind::Create).is_empty());
    assert!(project.requests_to(RouteKind::Update).is_empty());
}

#[tokio::test]
async fn found_audience_gets_description() {
    let project = named_project(SandboxConfig::default()).await;
    let id = project
        .sandbox
        .create_audience(ADVERTISER, "VIP customers", None);

    project.run(&[]).await.expect_code(0);

    let updates = project.requests_to(RouteKind::Update);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].status, 200);
    let found = audiences_named(&project, "VIP customers");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
    assert_eq!(found[0].description.as_deref(), Some("Spent over 100"));
}

#[tokio::test]
async fn activation_name_overrides_header() {
    let project = named_project(SandboxConfig::default()).await;
    project.write_activation_text(&format!(
        "name = \"Gold tier\"\ndescription = \"Gold members\"\n{NAMED_ACTIVATION}"
    ));

    let result = project.run(&[]).await;
    result.expect_code(0);

    let created = audiences_named(&project, "Gold tier");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].description.as_deref(), Some("Gold members"));
    assert!(audiences_named(&project, "VIP customers").is_empty());
}

#[tokio::test]
async fn concurrent_create_rejected_is_adopted() {
    let project = named_project(SandboxConfig::default()).await;
    project.sandbox.inject(Fault::ConcurrentCreate { count: 1 });

    let result = project.run(&[]).await;
    result.expect_code(0);

    let audiences = audiences_named(&project, "VIP customers");
    assert_eq!(audiences.len(), 1);
    assert_eq!(result.report["audience_id"], audiences[0].id.as_str());
    assert_eq!(
        project.sandbox.members(&audiences[0].id, "email"),
        hashes(&MEMBERS)
    );
    let lifecycle: Vec<(RouteKind, u16)> = routes(&project)
        .into_iter()
        .filter(|(route, _)| *route != RouteKind::Amend)
        .collect();
    assert_eq!(
        lifecycle,
        [
            (RouteKind::Search, 200),
            (RouteKind::Create, 400),
            (RouteKind::Search, 200)
        ]
    );
}

#[tokio::test]
async fn concurrent_create_warned_is_adopted() {
    let config = SandboxConfig {
        duplicate_name_policy: DuplicateNamePolicy::Warn,
        ..SandboxConfig::default()
    };
    let project = named_project(config).await;
    project.sandbox.inject(Fault::ConcurrentCreate { count: 1 });

    let result = project.run(&[]).await;
    result.expect_code(0);

    let audiences = audiences_named(&project, "VIP customers");
    assert_eq!(audiences.len(), 1);
    assert_eq!(result.report["audience_id"], audiences[0].id.as_str());
    assert_eq!(
        project.sandbox.members(&audiences[0].id, "email"),
        hashes(&MEMBERS)
    );
    let lifecycle: Vec<(RouteKind, u16)> = routes(&project)
        .into_iter()
        .filter(|(route, _)| *route != RouteKind::Amend)
        .collect();
    assert_eq!(
        lifecycle,
        [
            (RouteKind::Search, 200),
            (RouteKind::Create, 200),
            (RouteKind::Search, 200)
        ]
    );
}

#[tokio::test]
async fn create_without_id_exits_5() {
    let project = named_project(SandboxConfig::default()).await;
    project.sandbox.inject(Fault::CreateWithoutId { count: 1 });

    let result = project.run(&[]).await;
    result.expect_code(5);

    assert!(
        result.stderr.contains("returned no id"),
        "{}",
        result.stderr
    );
    assert_eq!(result.report["status"], "failed");
    assert!(project.amendments().is_empty());
    assert!(!project.path("state/vip/manifests").exists());

    // The audience exists under its name, so the next run finds it instead of creating another.
    let next = project.run(&[]).await;
    next.expect_code(0);
    assert_eq!(next.report["audience_source"], "found");
    assert_eq!(audiences_named(&project, "VIP customers").len(), 1);
}

#[tokio::test]
async fn rename_updates_audience_once() {
    let project = named_project(SandboxConfig::default()).await;
    project.run(&[]).await.expect_code(0);
    let id = audiences_named(&project, "VIP customers")[0].id.clone();

    project.write_activation_text(&format!("name = \"VIP customers v2\"\n{NAMED_ACTIVATION}"));
    project.sandbox.clear_requests();
    project.run(&[]).await.expect_code(0);

    let updates = project.requests_to(RouteKind::Update);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].status, 200);
    let renamed = audiences_named(&project, "VIP customers v2");
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0].id, id);
    assert_eq!(renamed[0].description.as_deref(), Some("Spent over 100"));
    assert!(project.requests_to(RouteKind::Search).is_empty());

    project.sandbox.clear_requests();
    project.run(&[]).await.expect_code(0);
    assert!(project.requests_to(RouteKind::Update).is_empty());
}

#[tokio::test]
async fn description_change_updates_once() {
    let project = named_project(SandboxConfig::default()).await;
    project.run(&[]).await.expect_code(0);

    project.write_activation_text(&format!(
        "description = \"Spent over 200\"\n{NAMED_ACTIVATION}"
    ));
    project.sandbox.clear_requests();
    project.run(&[]).await.expect_code(0);

    assert_eq!(project.requests_to(RouteKind::Update).len(), 1);
    let audience = &audiences_named(&project, "VIP customers")[0];
    assert_eq!(audience.description.as_deref(), Some("Spent over 200"));

    project.sandbox.clear_requests();
    project.run(&[]).await.expect_code(0);
    assert!(project.requests_to(RouteKind::Update).is_empty());
}

#[tokio::test]
async fn foreign_advertiser_exits_5() {
    let project = named_project(SandboxConfig::default()).await;
    project.write_activation_text(&NAMED_ACTIVATION.replace("\"12345\"", "\"55555\""));

    let result = project.run(&[]).await;
    result.expect_code(5);

    assert!(
        result.stderr.contains("cannot use advertiser 55555"),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains("give the app access to this advertiser"),
        "{}",
        result.stderr
    );
    assert_eq!(result.report["errors"][0]["status"], 403);
    assert!(project.requests_to(RouteKind::Create).is_empty());
    assert!(project.amendments().is_empty());
}

#[tokio::test]
async fn check_creates_no_audience() {
    let project = named_project(SandboxConfig::default()).await;

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(0);

    assert_eq!(result.report["status"], "warning");
    let warnings = result.report["warnings"].to_string();
    assert!(warnings.contains("the first run creates it"), "{warnings}");
    assert!(project.requests_to(RouteKind::Create).is_empty());
    assert!(audiences_named(&project, "VIP customers").is_empty());
}

#[tokio::test]
async fn switched_audience_gets_every_identifier() {
    let project = Project::start().await;
    let customers: Vec<Customer> = MEMBERS
        .iter()
        .zip(1..)
        .map(|(email, id)| customer(id, email))
        .collect();
    project.write_source(&customers);
    project.run(&[]).await.expect_code(0);
    let second = project
        .sandbox
        .create_audience(ADVERTISER, "Second audience", None);

    let text = std::fs::read_to_string(project.activation()).unwrap();
    std::fs::write(project.activation(), text.replace(AUDIENCE, &second)).unwrap();
    let result = project.run(&[]).await;
    result.expect_code(0);

    assert_eq!(project.sandbox.members(&second, "email"), hashes(&MEMBERS));
    assert_eq!(project.audience(), hashes(&MEMBERS));
    assert_eq!(result.count("added"), 5);
    let warnings = result.report["warnings"].to_string();
    assert!(
        warnings.contains(&format!("not the configured audience {second}")),
        "{warnings}"
    );

    project.sandbox.clear_requests();
    let rerun = project.run(&[]).await;
    rerun.expect_code(0);
    assert!(project.amendments().is_empty());
}
