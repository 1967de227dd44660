//! Every identifier type end to end: field mapping, normalization, one type per request,
//! Marketing Solutions and Retail Media names, and mapping errors.

mod common;

use std::collections::BTreeSet;

use audience_sync::sandbox::{RetailMediaSegmentSeed, RouteKind, SandboxConfig};
use common::*;

const MARKETING_ACTIVATION: &str = r#"segment = "segment.sql"
key = "customer_id"

[sources]
customers = "data/customers.parquet"

[identifiers]
email = "email"
madid = "maid"
identityLink = "ramp_id"
gum = "gum_id"
phoneNumber = "phone"

[normalize]
default_country = "FR"

[destination]
advertiser_id = "12345"
audience_id = "987654"
api_url = "{api_url}"
gum_caller_id = 329739
retry_base_delay_ms = 20

[state]
url = "state"
"#;

const ALL_COLUMNS_SQL: &str =
    "SELECT customer_id, email, maid, ramp_id, gum_id, phone, note FROM customers\n";

const MADID_1: &str = "3f097372-f01e-4b64-984c-395ae5828ee6";
const MADID_4: &str = "6b1d8f5e-2c4a-4e7b-9a3d-1f2e3c4d5e6f";

/// Four members with every type, some values invalid, and an unmapped `note` column.
fn write_members(project: &Project, madid_1: &str) {
    write_text_table(
        &project.path("data/customers.parquet"),
        &[1, 2, 3, 4],
        &[
            (
                "email",
                vec![
                    Some(" Alice@Example.com"),
                    Some("bob@example.com"),
                    Some("carol@example.org"),
                    None,
                ],
            ),
            (
                "maid",
                vec![
                    Some(madid_1),
                    Some("not-a-uuid"),
                    Some("00000000-0000-0000-0000-000000000000"),
                    Some(MADID_4),
                ],
            ),
            (
                "ramp_id",
                vec![Some(" XY-ramp-1 "), None, Some("XY-ramp-3"), Some("")],
            ),
            (
                "gum_id",
                vec![Some("gum-1"), Some("gum-2"), None, Some("gum-4")],
            ),
            (
                "phone",
                vec![
                    Some("06 12 34 56 78"),
                    Some("+1 415 555 2671"),
                    Some("call me"),
                    Some("12"),
                ],
            ),
            (
                "note",
                vec![
                    Some("internal-note-1"),
                    Some("internal-note-2"),
                    Some("internal-note-3"),
                    Some("internal-note-4"),
                ],
            ),
        ],
    );
}

async fn marketing_project() -> Project {
    let project = Project::start().await;
    project.write_activation_text(MARKETING_ACTIVATION);
    project.write_segment(ALL_COLUMNS_SQL);
    write_members(&project, &MADID_1.to_uppercase());
    project
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|value| value.to_string()).collect()
}

#[tokio::test]
async fn every_marketing_type_reaches_audience() {
    let project = marketing_project().await;

    let result = project.run(&[]).await;
    result.expect_code(0);

    assert_eq!(
        project.sandbox.members(AUDIENCE, "email"),
        hashes(&["alice@example.com", "bob@example.com", "carol@example.org"])
    );
    assert_eq!(
        project.sandbox.members(AUDIENCE, "madid"),
        set(&[MADID_1, MADID_4])
    );
    assert_eq!(
        project.sandbox.members(AUDIENCE, "identityLink"),
        set(&["XY-ramp-1", "XY-ramp-3"])
    );
    assert_eq!(
        project.sandbox.members(AUDIENCE, "gum"),
        set(&["gum-1", "gum-2", "gum-4"])
    );
    let phones: BTreeSet<String> = [sha256_hex("+33612345678"), sha256_hex("+14155552671")].into();
    assert_eq!(project.sandbox.members(AUDIENCE, "phoneNumber"), phones);
}

#[tokio::test]
async fn each_type_gets_its_own_request() {
    let project = marketing_project().await;

    project.run(&[]).await.expect_code(0);

    let amendments = project.amendments();
    let types: Vec<&str> = amendments
        .iter()
        .map(|request| request.identifier_type.as_deref().unwrap())
        .collect();
    let distinct: BTreeSet<&str> = types.iter().copied().collect();
    assert_eq!(types.len(), 5, "{types:?}");
    assert_eq!(
        distinct,
        BTreeSet::from(["email", "gum", "identityLink", "madid", "phoneNumber"])
    );
    for request in &amendments {
        // The sandbox returns 400 to a gum request without an integer `gumCallerId`.
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(request.method, "PATCH");
        assert_eq!(
            request.path,
            "/2026-07/marketing-solutions/audience-segments/987654/contact-list"
        );
    }
}

#[tokio::test]
async fn unmapped_columns_are_never_sent() {
    let project = marketing_project().await;

    let result = project.run(&[]).await;
    result.expect_code(0);

    let sent: Vec<String> = project
        .amendments()
        .into_iter()
        .flat_map(|request| request.identifiers)
        .collect();
    assert!(!sent.is_empty());
    assert!(
        sent.iter()
            .all(|identifier| !identifier.contains("internal-note")),
        "{sent:?}"
    );
    assert!(
        !result.stdout.contains("internal-note"),
        "{}",
        result.stdout
    );
    assert!(
        !result.stderr.contains("internal-note"),
        "{}",
        result.stderr
    );
}

#[tokio::test]
async fn report_counts_each_type() {
    let project = marketing_project().await;

    let result = project.run(&[]).await;
    result.expect_code(0);

    let report = &result.report;
    assert_eq!(report["audience_id"], AUDIENCE);
    let madid = &report["identifiers"]["madid"];
    assert_eq!(madid["column"], "maid");
    assert_eq!(madid["values"], 4);
    assert_eq!(madid["invalid"]["not_a_uuid"], 1);
    assert_eq!(madid["invalid"]["zero_uuid"], 1);
    assert_eq!(madid["added"], 2);
    assert_eq!(madid["removed"], 0);
    assert_eq!(madid["criteo_valid"], 2);
    assert_eq!(madid["criteo_invalid"], 0);
    let phone = &report["identifiers"]["phoneNumber"];
    assert_eq!(phone["values"], 4);
    assert_eq!(phone["invalid"]["invalid_character"], 1);
    assert_eq!(phone["invalid"]["wrong_length"], 1);
    assert_eq!(phone["added"], 2);
    let identity_link = &report["identifiers"]["identityLink"];
    assert_eq!(identity_link["values"], 3);
    assert_eq!(identity_link["invalid"]["empty"], 1);
    assert_eq!(identity_link["added"], 2);
    assert_eq!(report["identifiers"]["gum"]["added"], 3);
    assert_eq!(report["identifiers"]["email"]["values"], 3);
    assert_eq!(report["identifiers"]["email"]["added"], 3);
    assert_eq!(result.count("added"), 12);
    assert_eq!(result.count("criteo_valid"), 12);
    assert_eq!(report["invalid"]["empty"], 1);
    assert!(!result.stdout.contains("example.com"), "{}", result.stdout);
    assert!(
        !result.stdout.contains("4155552671"),
        "the report leaks a phone number: {}",
        result.stdout
    );
}

#[tokio::test]
async fn types_are_diffed_separately() {
    let project = marketing_project().await;
    project.run(&[]).await.expect_code(0);
    project.sandbox.clear_requests();

    let new_madid = "0f0e0d0c-0b0a-4908-8706-050403020100";
    write_members(&project, new_madid);
    let result = project.run(&[]).await;
    result.expect_code(0);

    let amendments = project.amendments();
    // Batches run concurrently, so the order of the requests is not fixed.
    let mut sent: Vec<(&str, &str, &[String])> = amendments
        .iter()
        .map(|request| {
            (
                request.identifier_type.as_deref().unwrap(),
                request.operation.as_deref().unwrap(),
                request.identifiers.as_slice(),
            )
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("madid", "add", &[new_madid.to_string()][..]),
            ("madid", "remove", &[MADID_1.to_string()][..])
        ]
    );
    assert_eq!(
        project.sandbox.members(AUDIENCE, "madid"),
        set(&[new_madid, MADID_4])
    );
    assert_eq!(result.report["identifiers"]["madid"]["unchanged"], 1);
    assert_eq!(result.report["identifiers"]["email"]["unchanged"], 3);
}

#[tokio::test]
async fn phone_without_country_needs_default() {
    let project = Project::start().await;
    project.write_activation_text(
        &MARKETING_ACTIVATION
            .replace("[normalize]\ndefault_country = \"FR\"\n", "")
            .replace(
                "madid = \"maid\"\nidentityLink = \"ramp_id\"\ngum = \"gum_id\"\n",
                "",
            ),
    );
    project.write_segment("SELECT customer_id, email, phone FROM customers\n");
    write_text_table(
        &project.path("data/customers.parquet"),
        &[1, 2],
        &[
            ("email", vec![Some("a@example.com"), Some("b@example.com")]),
            (
                "phone",
                vec![Some("06 12 34 56 78"), Some("+33 6 12 34 56 79")],
            ),
        ],
    );

    let result = project.run(&[]).await;
    result.expect_code(0);

    assert_eq!(
        result.report["identifiers"]["phoneNumber"]["invalid"]["no_country_code"],
        1
    );
    assert_eq!(
        project.sandbox.members(AUDIENCE, "phoneNumber"),
        BTreeSet::from([sha256_hex("+33612345679")])
    );
}

#[tokio::test]
async fn unknown_type_lists_valid_types() {
    let project = marketing_project().await;
    project
        .write_activation_text(&MARKETING_ACTIVATION.replace("madid = \"maid\"", "fax = \"maid\""));

    let result = project.run(&[]).await;
    result.expect_code(2);

    assert!(
        result.stderr.contains("unknown identifier type `fax`"),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains("email, madid, identityLink, gum, customerid, phoneNumber"),
        "{}",
        result.stderr
    );
    assert!(project.sandbox.requests().is_empty());
}

#[tokio::test]
async fn missing_column_lists_available() {
    let project = marketing_project().await;
    project.write_activation_text(
        &MARKETING_ACTIVATION.replace("madid = \"maid\"", "madid = \"device_id\""),
    );

    let result = project.run(&[]).await;
    result.expect_code(3);

    assert!(
        result.stderr.contains("`device_id` (for madid)"),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains("customer_id, email, maid, ramp_id, gum_id, phone, note"),
        "{}",
        result.stderr
    );
    assert!(project.amendments().is_empty());
}

#[tokio::test]
async fn gum_needs_caller_id() {
    let project = marketing_project().await;
    project.write_activation_text(&MARKETING_ACTIVATION.replace("gum_caller_id = 329739\n", ""));

    let result = project.run(&[]).await;
    result.expect_code(2);

    assert!(
        result.stderr.contains("`destination.gum_caller_id`"),
        "{}",
        result.stderr
    );
    assert!(project.sandbox.requests().is_empty());
}

#[tokio::test]
async fn customerid_needs_retail_media() {
    let project = marketing_project().await;
    project.write_activation_text(
        &MARKETING_ACTIVATION.replace("gum = \"gum_id\"", "customerid = \"gum_id\""),
    );

    let result = project.run(&[]).await;
    result.expect_code(2);

    assert!(
        result.stderr.contains("criteo-retail-media"),
        "{}",
        result.stderr
    );
    assert!(project.sandbox.requests().is_empty());
}

/// A Retail Media id above 2^53 that `f64` cannot represent: 2^53 < id and id is odd.
const LOYALTY_LIST: i64 = 568_708_742_535_471_105;

const RETAIL_ACTIVATION: &str = r#"segment = "segment.sql"
key = "customer_id"

[sources]
customers = "data/customers.parquet"

[identifiers]
customerid = "loyalty_id"

[destination]
kind = "criteo-retail-media"
account_id = "777"
audience_id = 568708742535471105
api_url = "{api_url}"
retry_base_delay_ms = 20

[state]
url = "state"
"#;

async fn retail_project() -> Project {
    let mut config = SandboxConfig::default();
    config.retail_media_segments.push(RetailMediaSegmentSeed {
        id: LOYALTY_LIST,
        account_id: "777".into(),
        retailer_id: "299".into(),
        name: "Loyalty members".into(),
        identifier_type: "CustomerId".into(),
    });
    let project = Project::start_with(config).await;
    project.write_activation_text(RETAIL_ACTIVATION);
    project.write_segment("SELECT customer_id, loyalty_id FROM customers\n");
    project
}

fn write_loyalty_ids(project: &Project, ids: &[Option<&str>]) {
    let keys: Vec<i64> = (1..=ids.len() as i64).collect();
    write_text_table(
        &project.path("data/customers.parquet"),
        &keys,
        &[("loyalty_id", ids.to_vec())],
    );
}

#[tokio::test]
async fn retail_media_customer_ids_in_clear() {
    let project = retail_project().await;
    write_loyalty_ids(
        &project,
        &[Some("C-100234"), Some(" C-100871 "), None, Some("")],
    );

    let result = project.run(&[]).await;
    result.expect_code(0);

    let list = LOYALTY_LIST.to_string();
    assert_eq!(
        project.sandbox.members(&list, "CustomerId"),
        set(&["C-100234", "C-100871"])
    );
    assert_eq!(result.report["audience_id"], list.as_str());
    assert_eq!(result.report["identifiers"]["customerid"]["added"], 2);
    assert_eq!(
        result.report["identifiers"]["customerid"]["invalid"]["empty"],
        1
    );
    let amendments = project.amendments();
    assert_eq!(amendments.len(), 1);
    assert_eq!(amendments[0].method, "POST");
    assert_eq!(
        amendments[0].path,
        format!("/2026-07/retail-media/audience-segments/{list}/contact-list/add-remove")
    );
    assert_eq!(amendments[0].identifier_type.as_deref(), Some("CustomerId"));
}

#[tokio::test]
async fn retail_media_removal_uses_same_route() {
    let project = retail_project().await;
    write_loyalty_ids(
        &project,
        &[
            Some("C-1"),
            Some("C-2"),
            Some("C-3"),
            Some("C-4"),
            Some("C-5"),
            Some("C-6"),
        ],
    );
    project.run(&[]).await.expect_code(0);
    project.sandbox.clear_requests();

    write_loyalty_ids(
        &project,
        &[
            Some("C-1"),
            Some("C-2"),
            Some("C-3"),
            Some("C-4"),
            Some("C-5"),
            Some("C-7"),
        ],
    );
    let result = project.run(&[]).await;
    result.expect_code(0);

    let list = LOYALTY_LIST.to_string();
    assert_eq!(
        project.sandbox.members(&list, "CustomerId"),
        set(&["C-1", "C-2", "C-3", "C-4", "C-5", "C-7"])
    );
    let mut operations: Vec<(String, Vec<String>)> = project
        .amendments()
        .into_iter()
        .map(|request| (request.operation.unwrap(), request.identifiers))
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        [
            ("add".to_string(), vec!["C-7".to_string()]),
            ("remove".to_string(), vec!["C-6".to_string()])
        ]
    );
}

#[tokio::test]
async fn retail_media_names_are_pascal_case() {
    let project = Project::start().await;
    let activation = RETAIL_ACTIVATION
        .replace(
            "customerid = \"loyalty_id\"",
            "email = \"email\"\nmadid = \"maid\"\nphoneNumber = \"phone\"",
        )
        .replace("568708742535471105", "568708742535471104");
    project.write_activation_text(&(activation + "\n[normalize]\ndefault_country = \"FR\"\n"));
    project.write_segment("SELECT customer_id, email, maid, phone FROM customers\n");
    write_text_table(
        &project.path("data/customers.parquet"),
        &[1],
        &[
            ("email", vec![Some("a@example.com")]),
            ("maid", vec![Some(MADID_4)]),
            ("phone", vec![Some("0612345678")]),
        ],
    );

    project.run(&[]).await.expect_code(0);

    let types: BTreeSet<String> = project
        .amendments()
        .into_iter()
        .filter_map(|request| request.identifier_type)
        .collect();
    assert_eq!(types, set(&["Email", "PhoneNumber", "UserIdentifier"]));
    let list = "568708742535471104";
    assert_eq!(
        project.sandbox.members(list, "Email"),
        hashes(&["a@example.com"])
    );
    assert_eq!(
        project.sandbox.members(list, "UserIdentifier"),
        set(&[MADID_4])
    );
    assert_eq!(
        project.sandbox.members(list, "PhoneNumber"),
        BTreeSet::from([sha256_hex("+33612345678")])
    );
}

#[tokio::test]
async fn retail_media_check_reads_list() {
    let project = retail_project().await;
    write_loyalty_ids(&project, &[Some("C-1")]);

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(0);

    assert_eq!(
        result.report["audience_id"],
        LOYALTY_LIST.to_string().as_str()
    );
    let statistics = project.requests_to(RouteKind::Statistics);
    assert_eq!(statistics.len(), 1);
    assert_eq!(
        statistics[0].path,
        format!("/2026-07/retail-media/accounts/777/audience-segments/{LOYALTY_LIST}/contact-list")
    );
    assert!(project.amendments().is_empty());
}

#[tokio::test]
async fn retail_media_check_foreign_account_exits_5() {
    let project = retail_project().await;
    write_loyalty_ids(&project, &[Some("C-1")]);
    project.write_activation_text(
        &RETAIL_ACTIVATION.replace("account_id = \"777\"", "account_id = \"778\""),
    );

    let result = project.activation_command(&["check"], &[]).await;
    result.expect_code(5);

    assert!(
        result.stderr.contains(&LOYALTY_LIST.to_string()),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("403"), "{}", result.stderr);
}
