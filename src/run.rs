//! One run of an activation: plan, guards, delivery, commit, report.
//!
//! ```text
//!  lock ─> load snapshot ─> segment SQL ─> normalize + hash ─> diff ─> guards
//!                                                                       │
//!        report <─ release lock <─ commit acknowledged <─ deliver <─────┘
//! ```
//!
//! `plan` stops after the guards and writes nothing. `check` validates the settings, the
//! SQL, the state and destination access without reading any member, and it reports the
//! effective settings with secrets masked.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{Activation, Credentials, DestinationKind, Location, SyncMode};
use crate::destination::audience;
use crate::destination::delivery::{self, DeliveryOptions, DeliveryResult, Work};
use crate::destination::{CriteoClient, DestinationError, Operation};
use crate::diff::TypeDiff;
use crate::error::{Error, ExitCode};
use crate::identifiers::{IdentifierSet, IdentifierType, NormalizedIdentifiers, Normalizer};
use crate::report::{RunReport, Status, TypeReport};
use crate::snapshot::{self, CommitInfo, Snapshot, StateStore};
use crate::source::{self, SourceError};

/// Command to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    Plan,
    Check,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Run => "run",
            Command::Plan => "plan",
            Command::Check => "check",
        }
    }
}

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub command: Command,
    /// Lets this run pass the removal guards.
    pub allow_removals: bool,
    /// Sends every current identifier as an add and removes nothing.
    pub full_resync: bool,
    /// `plan` writes the planned identifiers (as they would be sent) under this folder.
    pub write_plan: Option<PathBuf>,
    /// Turns true when the run should stop at the next batch boundary (SIGTERM).
    pub stop: watch::Receiver<bool>,
}

/// Runs the command and returns its report; the report's `exit_code` is the process's.
pub async fn execute(activation: &Activation, options: RunOptions) -> RunReport {
    let started = Instant::now();
    let mut report = RunReport {
        activation: activation.id.clone(),
        run_id: new_run_id(),
        command: options.command.name().to_string(),
        ..RunReport::default()
    };
    let span = tracing::info_span!("run", activation = %activation.id, run_id = %report.run_id);
    let outcome = match options.command {
        Command::Check => check(activation, &mut report).instrument(span).await,
        Command::Run | Command::Plan => run_locked(activation, &options, &mut report).instrument(span).await,
    };
    match outcome {
        Ok(exit) => report.exit_code = exit.code(),
        Err(error) => {
            tracing::error!("{}", error_chain(&error));
            report.status = error.status();
            report.exit_code = error.exit_code().code();
            let problem = match &error {
                Error::Destination(DestinationError::Request(failure)) => failure.problem.clone(),
                Error::Destination(DestinationError::InvalidCredentials { problem })
                | Error::Destination(DestinationError::NoAdvertiserAccess { problem, .. })
                | Error::Destination(DestinationError::AudienceNotFound { problem, .. }) => problem.clone(),
                _ => Default::default(),
            };
            report.push_error(error_chain(&error), problem);
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Formats the error and its causes, one after the other.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn new_run_id() -> String {
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{now}-{}", &random[..8])
}

/// Takes the lock for `run` (not for `plan`, which writes nothing), runs, and releases it.
async fn run_locked(activation: &Activation, options: &RunOptions, report: &mut RunReport) -> Result<ExitCode, Error> {
    let credentials = match options.command {
        Command::Run => Some(Credentials::from_env()?),
        _ => None,
    };
    let state = StateStore::open(activation)?;
    if options.command != Command::Run {
        return plan_and_deliver(activation, options, report, &state, None).await;
    }
    let lock = state.acquire_lock(&report.run_id, activation.state.lock_ttl_secs).await?;
    let result = plan_and_deliver(activation, options, report, &state, credentials).await;
    if let Err(error) = state.release_lock(&lock).await {
        tracing::warn!(error = %error_chain(&error), "failed to release the lock; it expires on its own");
    }
    result
}

/// The identifiers of the segment, per type, with their counts.
struct Members {
    members: u64,
    duplicate_keys: u64,
    sets: BTreeMap<IdentifierType, IdentifierSet>,
}

async fn plan_and_deliver(
    activation: &Activation,
    options: &RunOptions,
    report: &mut RunReport,
    state: &StateStore,
    credentials: Option<Credentials>,
) -> Result<ExitCode, Error> {
    let mut phase = Instant::now();
    let mut previous = state.load().await?;
    record_phase(report, "load_snapshot", &mut phase);
    forget_other_audience(activation, &mut previous, report);
    tracing::info!(
        state = state.location(),
        version = previous.manifest.as_ref().map_or(0, |manifest| manifest.version),
        identifiers = previous.total(),
        in_doubt = previous.total_in_doubt(),
        "loaded snapshot"
    );

    let members = read_members(activation, report).await?;
    report.members = members.members;
    report.duplicate_keys = members.duplicate_keys;
    record_phase(report, "read_segment", &mut phase);

    let diffs = plan(activation, options, &previous, &members, report);
    record_phase(report, "plan", &mut phase);
    check_guards(activation, options, &previous, &members, &diffs, report)?;
    // The diffs carry everything later steps need; the current sets can go.
    drop(members);

    if options.command == Command::Plan {
        if let Some(folder) = &options.write_plan {
            write_plan(folder, &diffs)?;
        }
        report.status = summary_status(report);
        return Ok(ExitCode::Success);
    }
    let credentials = credentials.expect("run has credentials");
    let client = Arc::new(CriteoClient::new(&activation.destination, credentials)?);
    let (target, source) = audience::resolve_audience(&client, activation, previous.manifest.as_ref(), false).await?;
    let target = target.expect("resolve_audience creates the audience outside dry runs");
    report.audience_id = Some(target.id.clone());
    report.audience_source = Some(source);

    let work = delivery_work(&diffs);
    phase = Instant::now();
    let delivered = if work.is_empty() {
        tracing::info!("nothing changed since the last run; nothing to send");
        DeliveryResult::default()
    } else {
        let delivery_options = DeliveryOptions {
            max_batch_identifiers: activation.destination.max_batch_identifiers,
            max_concurrent_requests: activation.destination.max_concurrent_requests,
            gum_caller_id: activation.destination.gum_caller_id,
        };
        let intent = snapshot::union(work.iter().map(|item| (item.identifier_type, item.set.as_ref())));
        state.record_intent(previous.manifest.as_ref(), &report.run_id, &intent).await?;
        delivery::deliver(client.clone(), &target, &work, &delivery_options, options.stop.clone()).await
    };
    let acknowledged = tally(&delivered, &work, report);
    record_phase(report, "deliver", &mut phase);

    let recorded = previous.manifest.as_ref();
    let audience_changed = recorded.and_then(|manifest| manifest.audience_id.as_deref()) != Some(target.id.as_str())
        || recorded.and_then(|manifest| manifest.audience_name.as_deref()) != Some(activation.name.as_str())
        || recorded.and_then(|manifest| manifest.audience_description.as_deref()) != activation.description.as_deref();
    let failed = delivered.outcomes.iter().any(|outcome| outcome.result.is_err());
    if acknowledged.any || (audience_changed && !failed) {
        let unacknowledged = snapshot::union(acknowledged.unacknowledged.iter().map(|(identifier_type, set)| (*identifier_type, set)));
        let (next, in_doubt) = previous.next(&acknowledged.adds, &acknowledged.removes, &unacknowledged);
        let manifest = state
            .commit(
                previous.manifest.as_ref(),
                CommitInfo {
                    run_id: report.run_id.clone(),
                    audience_id: Some(target.id.clone()),
                    audience_name: Some(activation.name.clone()),
                    audience_description: activation.description.clone(),
                },
                &next,
                &in_doubt,
            )
            .await?;
        report.snapshot_version = Some(manifest.version);
        record_phase(report, "commit", &mut phase);
        tracing::info!(version = manifest.version, "committed snapshot");
    } else {
        report.snapshot_version = previous.manifest.as_ref().map(|manifest| manifest.version);
    }
    Ok(delivery_exit(&delivered, report))
}

/// Records the time since `phase` under `name` and restarts the clock.
fn record_phase(report: &mut RunReport, name: &str, phase: &mut Instant) {
    report.phases_ms.insert(name.to_string(), phase.elapsed().as_millis() as u64);
    *phase = Instant::now();
}

/// Empties the previous snapshot when it was delivered to another audience than the
/// configured one. The configured audience contains none of it, so every identifier is
/// sent again, and the other audience keeps its members.
fn forget_other_audience(activation: &Activation, previous: &mut Snapshot, report: &mut RunReport) {
    let recorded = previous.manifest.as_ref().and_then(|manifest| manifest.audience_id.clone());
    let (Some(configured), Some(recorded)) = (&activation.destination.audience_id, recorded) else {
        return;
    };
    if *configured != recorded && (!previous.sets.is_empty() || !previous.in_doubt.is_empty()) {
        report.push_warning(format!(
            "the snapshot holds what audience {recorded} received, not the configured audience \
             {configured}; every current identifier is sent to {configured}, and {recorded} keeps its members"
        ));
        previous.sets.clear();
        previous.in_doubt.clear();
    }
}

/// Creates one normalizer per identifier mapping, in the order of the mappings.
fn new_normalizers(activation: &Activation) -> Result<Vec<Normalizer>, Error> {
    let mut normalizers = Vec::new();
    for mapping in &activation.identifiers {
        let normalizer = Normalizer::new(mapping.identifier_type, &activation.normalize).map_err(|error| {
            crate::config::ConfigError::Invalid {
                path: activation.file.clone(),
                message: error.to_string(),
            }
        })?;
        normalizers.push(normalizer);
    }
    Ok(normalizers)
}

/// Runs the segment and normalizes every mapped column.
async fn read_members(activation: &Activation, report: &mut RunReport) -> Result<Members, Error> {
    let ctx = source::session_context(activation)?;
    source::register_sources(&ctx, activation).await?;
    let segment = source::run_segment(&ctx, activation).await?;

    // Each output partition is normalized and hashed by its own task, so hashing runs on
    // every core beside the scan instead of on one consumer.
    let mut tasks = JoinSet::new();
    for stream in segment.streams {
        let normalizers = new_normalizers(activation)?;
        let key_index = segment.key_index;
        let columns: Vec<(usize, String)> = segment
            .identifier_indices
            .iter()
            .map(|index| (*index, segment.schema.field(*index).name().clone()))
            .collect();
        tasks.spawn(read_partition(stream, key_index, columns, normalizers));
    }
    let mut members = 0u64;
    let mut keys = KeyCounter::default();
    let mut parts: Vec<Vec<NormalizedIdentifiers>> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let part = joined.map_err(|error| SourceError::Read {
            message: format!("a segment reader task failed: {error}"),
        })??;
        members += part.members;
        keys.keys.extend(part.keys.keys);
        parts.push(part.normalized);
    }
    let normalizers = merge_partitions(activation, parts);

    let mut sets = BTreeMap::new();
    for (normalized, mapping) in normalizers.into_iter().zip(&activation.identifiers) {
        let entry = report
            .identifiers
            .entry(mapping.identifier_type.config_name().to_string())
            .or_insert_with(TypeReport::default);
        entry.column = mapping.column.clone();
        entry.values = normalized.values;
        entry.identifiers = normalized.set.len() as u64;
        for (reason, count) in &normalized.invalid {
            entry.invalid.insert((*reason).to_string(), *count);
            *report.invalid.entry((*reason).to_string()).or_default() += count;
        }
        sets.insert(mapping.identifier_type, normalized.set);
    }
    let duplicate_keys = keys.duplicated_members();
    tracing::info!(members, duplicate_keys, "read segment");
    Ok(Members {
        members,
        duplicate_keys,
        sets,
    })
}

/// Members, keys and identifiers read from one partition of the segment.
struct PartitionMembers {
    members: u64,
    keys: KeyCounter,
    normalized: Vec<NormalizedIdentifiers>,
}

/// Reads one partition of the segment, normalizing each mapped column.
async fn read_partition(
    mut stream: datafusion::execution::SendableRecordBatchStream,
    key_index: usize,
    columns: Vec<(usize, String)>,
    mut normalizers: Vec<Normalizer>,
) -> Result<PartitionMembers, Error> {
    let mut keys = KeyCounter::default();
    let mut members = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|error| SourceError::Read {
            message: source::describe_datafusion_error(&error),
        })?;
        members += batch.num_rows() as u64;
        keys.push(batch.column(key_index).as_ref());
        for (normalizer, (index, name)) in normalizers.iter_mut().zip(&columns) {
            normalizer
                .push_array(batch.column(*index).as_ref())
                .map_err(|error| SourceError::Read {
                    message: format!("column `{name}`: {error}"),
                })?;
        }
    }
    Ok(PartitionMembers {
        members,
        keys,
        normalized: normalizers.into_iter().map(Normalizer::finish).collect(),
    })
}

/// Combines the partitions' identifiers of each mapping into one sorted, deduplicated set.
fn merge_partitions(activation: &Activation, parts: Vec<Vec<NormalizedIdentifiers>>) -> Vec<NormalizedIdentifiers> {
    let mut merged: Vec<Option<NormalizedIdentifiers>> = activation.identifiers.iter().map(|_| None).collect();
    for part in parts {
        for (slot, normalized) in merged.iter_mut().zip(part) {
            let Some(total) = slot else {
                *slot = Some(normalized);
                continue;
            };
            total.values += normalized.values;
            total.nulls += normalized.nulls;
            for (reason, count) in normalized.invalid {
                *total.invalid.entry(reason).or_default() += count;
            }
            total.set.merge(normalized.set);
        }
    }
    merged
        .into_iter()
        .zip(&activation.identifiers)
        .map(|(slot, mapping)| {
            slot.unwrap_or_else(|| NormalizedIdentifiers {
                identifier_type: mapping.identifier_type,
                set: IdentifierSet::empty_for(mapping.identifier_type),
                values: 0,
                nulls: 0,
                invalid: BTreeMap::new(),
            })
        })
        .collect()
}

/// Diffs every mapped type (and every type left in the snapshot) and fills the planned counts.
fn plan(
    activation: &Activation,
    options: &RunOptions,
    previous: &Snapshot,
    members: &Members,
    report: &mut RunReport,
) -> Vec<TypeDiff> {
    let mut types: Vec<IdentifierType> = members.sets.keys().copied().collect();
    // A type mapped before and unmapped now is not removed: the user may have dropped the
    // mapping on purpose or by mistake, and removing a whole type is never implicit.
    for identifier_type in previous.sets.keys() {
        if !types.contains(identifier_type) {
            report.push_warning(format!(
                "the snapshot holds {} identifiers that are no longer mapped; they stay in the audience",
                identifier_type.config_name()
            ));
        }
    }
    types.sort();
    let mut diffs = Vec::new();
    for identifier_type in types {
        let current = &members.sets[&identifier_type];
        let mut type_diff = previous.diff(identifier_type, current);
        if options.full_resync {
            type_diff.adds = current.clone();
            type_diff.removes = IdentifierSet::empty_for(identifier_type);
            type_diff.unchanged = 0;
        } else if activation.mode == SyncMode::AddOnly {
            type_diff.removes = IdentifierSet::empty_for(identifier_type);
        }
        let entry = report
            .identifiers
            .entry(identifier_type.config_name().to_string())
            .or_default();
        entry.planned_added = type_diff.adds.len() as u64;
        entry.planned_removed = type_diff.removes.len() as u64;
        entry.unchanged = type_diff.unchanged;
        report.planned_added += entry.planned_added;
        report.planned_removed += entry.planned_removed;
        report.unchanged += entry.unchanged;
        diffs.push(type_diff);
    }
    tracing::info!(
        planned_added = report.planned_added,
        planned_removed = report.planned_removed,
        unchanged = report.unchanged,
        "planned changes"
    );
    diffs
}

/// Stops the run before anything is sent when it would remove too much, empty the
/// audience, or when too many members share a key.
fn check_guards(
    activation: &Activation,
    options: &RunOptions,
    previous: &Snapshot,
    members: &Members,
    diffs: &[TypeDiff],
    report: &mut RunReport,
) -> Result<(), Error> {
    let guards = &activation.guards;
    if members.duplicate_keys > 0 {
        let ratio = members.duplicate_keys as f64 / members.members.max(1) as f64;
        let message = format!(
            "{} of {} members share their `{}` value with another member ({:.2} %)",
            members.duplicate_keys,
            members.members,
            activation.key,
            ratio * 100.0
        );
        if ratio > guards.max_duplicate_key_ratio {
            return Err(Error::Blocked(format!(
                "{message}, above `guards.max_duplicate_key_ratio` = {}; fix the segment's joins \
                 or raise the threshold",
                guards.max_duplicate_key_ratio
            )));
        }
        report.push_warning(message);
    }
    let in_snapshot = previous.total();
    if options.allow_removals || in_snapshot == 0 {
        return Ok(());
    }
    if members.members == 0 && !guards.allow_empty_segment {
        return Err(Error::Blocked(format!(
            "the segment returned no members, which would empty an audience of {in_snapshot} \
             identifiers; nothing was sent. If this is intended, rerun with --allow-removals"
        )));
    }
    // Removals of identifiers in doubt only settle an earlier failed run, so the ratio
    // counts removals of acknowledged identifiers.
    let removing: u64 = diffs
        .iter()
        .map(|type_diff| previous.count_acknowledged(type_diff.identifier_type, &type_diff.removes))
        .sum();
    let ratio = removing as f64 / in_snapshot as f64;
    if ratio > guards.max_removal_ratio {
        return Err(Error::Blocked(format!(
            "the run would remove {} of {in_snapshot} identifiers ({:.1} %), above \
             `guards.max_removal_ratio` = {}; nothing was sent. Check the segment and sources; \
             if the removals are intended, rerun with --allow-removals",
            removing,
            ratio * 100.0,
            guards.max_removal_ratio
        )));
    }
    Ok(())
}

fn delivery_work(diffs: &[TypeDiff]) -> Vec<Work> {
    let mut work = Vec::new();
    for type_diff in diffs {
        for (operation, set) in [(Operation::Add, &type_diff.adds), (Operation::Remove, &type_diff.removes)] {
            if !set.is_empty() {
                work.push(Work {
                    identifier_type: type_diff.identifier_type,
                    operation,
                    set: Arc::new(set.clone()),
                });
            }
        }
    }
    work
}

/// Identifiers Criteo acknowledged, per type, in sorted order.
struct Acknowledged {
    any: bool,
    adds: BTreeMap<IdentifierType, IdentifierSet>,
    removes: BTreeMap<IdentifierType, IdentifierSet>,
    /// Batches sent without an acknowledgement: Criteo may or may not have applied them.
    unacknowledged: Vec<(IdentifierType, IdentifierSet)>,
}

/// Fills the report's delivery counts and collects the acknowledged identifiers.
fn tally(delivered: &DeliveryResult, work: &[Work], report: &mut RunReport) -> Acknowledged {
    let mut acknowledged = Acknowledged {
        any: false,
        adds: BTreeMap::new(),
        removes: BTreeMap::new(),
        unacknowledged: Vec::new(),
    };
    report.batches.planned = (delivered.outcomes.len() + delivered.not_sent) as u64;
    report.batches.not_sent = delivered.not_sent as u64;
    for outcome in &delivered.outcomes {
        let entry = report
            .identifiers
            .entry(outcome.identifier_type.config_name().to_string())
            .or_default();
        match &outcome.result {
            Ok(ack) => {
                report.batches.acknowledged += 1;
                acknowledged.any = true;
                let count = outcome.range.len() as u64;
                entry.criteo_valid += ack.valid;
                entry.criteo_invalid += ack.invalid;
                report.criteo_valid += ack.valid;
                report.criteo_invalid += ack.invalid;
                let item = work
                    .iter()
                    .find(|item| item.identifier_type == outcome.identifier_type && item.operation == outcome.operation)
                    .expect("every outcome comes from a work item");
                let slice = slice_of(&item.set, outcome.range.clone());
                let target = match outcome.operation {
                    Operation::Add => {
                        entry.added += count;
                        report.added += count;
                        &mut acknowledged.adds
                    }
                    Operation::Remove => {
                        entry.removed += count;
                        report.removed += count;
                        &mut acknowledged.removes
                    }
                };
                append(target.entry(outcome.identifier_type).or_insert_with(|| IdentifierSet::empty_for(outcome.identifier_type)), slice);
            }
            Err(failure) => {
                report.batches.failed += 1;
                report.push_error(failure.to_string(), failure.problem.clone());
                let item = work
                    .iter()
                    .find(|item| item.identifier_type == outcome.identifier_type && item.operation == outcome.operation)
                    .expect("every outcome comes from a work item");
                acknowledged
                    .unacknowledged
                    .push((outcome.identifier_type, slice_of(&item.set, outcome.range.clone())));
            }
        }
    }
    tracing::info!(
        added = report.added,
        removed = report.removed,
        batches_acknowledged = report.batches.acknowledged,
        batches_failed = report.batches.failed,
        criteo_invalid = report.criteo_invalid,
        "delivered"
    );
    acknowledged
}

fn slice_of(set: &IdentifierSet, range: std::ops::Range<usize>) -> IdentifierSet {
    match set {
        IdentifierSet::Hashed(values) => IdentifierSet::Hashed(values[range].to_vec()),
        IdentifierSet::Clear(values) => IdentifierSet::Clear(values[range].to_vec()),
    }
}

/// Appends a batch to an acknowledged set; outcomes come sorted by range, so the set stays
/// sorted.
fn append(target: &mut IdentifierSet, slice: IdentifierSet) {
    match (target, slice) {
        (IdentifierSet::Hashed(target), IdentifierSet::Hashed(slice)) => target.extend(slice),
        (IdentifierSet::Clear(target), IdentifierSet::Clear(slice)) => target.extend(slice),
        _ => unreachable!("one type has one representation"),
    }
}

/// Status and exit code after delivery.
fn delivery_exit(delivered: &DeliveryResult, report: &mut RunReport) -> ExitCode {
    let failed = delivered.outcomes.iter().filter(|outcome| outcome.result.is_err()).count();
    let acknowledged = delivered.outcomes.len() - failed;
    let all_temporary = delivered
        .outcomes
        .iter()
        .filter_map(|outcome| outcome.result.as_ref().err())
        .all(|failure| failure.temporary);
    if delivered.interrupted {
        report.status = Status::Partial;
        report.push_warning("stopped by a signal; acknowledged batches were committed and the next run sends the rest");
        return ExitCode::Temporary;
    }
    if failed == 0 && delivered.not_sent == 0 {
        report.status = summary_status(report);
        return ExitCode::Success;
    }
    if acknowledged > 0 {
        report.status = Status::Partial;
        return ExitCode::Partial;
    }
    report.status = Status::Failed;
    if all_temporary { ExitCode::Temporary } else { ExitCode::Rejected }
}

/// `warning` when something deserves a look (invalid values, duplicate keys, Criteo
/// rejects), else `success`.
fn summary_status(report: &mut RunReport) -> Status {
    if report.criteo_invalid > 0 {
        report.push_warning(format!("Criteo counted {} sent identifiers as invalid", report.criteo_invalid));
    }
    let invalid: u64 = report.invalid.values().sum();
    if invalid > 0 {
        report.push_warning(format!("{invalid} values were invalid and not sent (see `invalid`)"));
    }
    if report.warnings.is_empty() { Status::Success } else { Status::Warning }
}

/// Writes `adds.parquet` and `removes.parquet` with the identifiers as they would be sent.
fn write_plan(folder: &std::path::Path, diffs: &[TypeDiff]) -> Result<(), Error> {
    use datafusion::arrow::array::StringBuilder;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    let io_error = |path: &std::path::Path, error: String| {
        Error::Config(crate::config::ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!("failed to write the plan: {error}"),
        })
    };
    std::fs::create_dir_all(folder).map_err(|error| io_error(folder, error.to_string()))?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("identifier_type", DataType::Utf8, false),
        Field::new("identifier", DataType::Utf8, false),
    ]));
    for (file_name, pick_removes) in [("adds.parquet", false), ("removes.parquet", true)] {
        let path = folder.join(file_name);
        let file = std::fs::File::create(&path).map_err(|error| io_error(&path, error.to_string()))?;
        let mut writer = ArrowWriter::try_new(file, schema.clone(), None).map_err(|error| io_error(&path, error.to_string()))?;
        for type_diff in diffs {
            let set = if pick_removes { &type_diff.removes } else { &type_diff.adds };
            let mut types = StringBuilder::new();
            let mut values = StringBuilder::new();
            let mut hex = Vec::with_capacity(64);
            match set {
                IdentifierSet::Hashed(digests) => {
                    for digest in digests {
                        hex.clear();
                        crate::identifiers::write_hex(digest, &mut hex);
                        types.append_value(type_diff.identifier_type.config_name());
                        values.append_value(std::str::from_utf8(&hex).expect("hex is ASCII"));
                    }
                }
                IdentifierSet::Clear(texts) => {
                    for text in texts {
                        types.append_value(type_diff.identifier_type.config_name());
                        values.append_value(text);
                    }
                }
            }
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(types.finish()), Arc::new(values.finish())])
                .map_err(|error| io_error(&path, error.to_string()))?;
            writer.write(&batch).map_err(|error| io_error(&path, error.to_string()))?;
        }
        writer.close().map_err(|error| io_error(&path, error.to_string()))?;
    }
    Ok(())
}

/// Counts members whose key appears more than once. Integer keys are compared exactly;
/// other keys by a 128-bit hash of their text, whose collisions are negligible at any
/// realistic member count.
#[derive(Default)]
struct KeyCounter {
    keys: Vec<u128>,
}

impl KeyCounter {
    fn push(&mut self, column: &dyn Array) {
        match column.data_type() {
            DataType::Int64 => self.push_integers(column.as_primitive::<datafusion::arrow::datatypes::Int64Type>().iter().map(|v| v.map(|v| v as i128))),
            DataType::Int32 => self.push_integers(column.as_primitive::<datafusion::arrow::datatypes::Int32Type>().iter().map(|v| v.map(|v| v as i128))),
            DataType::UInt64 => self.push_integers(column.as_primitive::<datafusion::arrow::datatypes::UInt64Type>().iter().map(|v| v.map(|v| v as i128))),
            DataType::UInt32 => self.push_integers(column.as_primitive::<datafusion::arrow::datatypes::UInt32Type>().iter().map(|v| v.map(|v| v as i128))),
            _ => {
                let text = datafusion::arrow::compute::cast(column, &DataType::Utf8);
                let Ok(text) = text else {
                    return;
                };
                for value in text.as_string::<i32>().iter().flatten() {
                    self.keys.push(hash128(value.as_bytes()));
                }
            }
        }
    }

    fn push_integers(&mut self, values: impl Iterator<Item = Option<i128>>) {
        // Integer keys are tagged in the top bit so they never equal a text key's hash.
        self.keys.extend(values.flatten().map(|value| (value as u128) | (1u128 << 127)));
    }

    fn duplicated_members(mut self) -> u64 {
        self.keys.sort_unstable();
        let mut duplicated = 0u64;
        let mut run = 1u64;
        for pair in self.keys.windows(2) {
            if pair[0] == pair[1] {
                run += 1;
            } else {
                if run > 1 {
                    duplicated += run;
                }
                run = 1;
            }
        }
        if run > 1 {
            duplicated += run;
        }
        duplicated
    }
}

/// Hashes `bytes` to 128 bits with two differently seeded SipHash runs. The seeds are
/// fixed, so every run gets the same value.
fn hash128(bytes: &[u8]) -> u128 {
    let mut low = std::hash::DefaultHasher::new();
    low.write(bytes);
    let mut high = std::hash::DefaultHasher::new();
    high.write_u8(0xA5);
    high.write(bytes);
    ((high.finish() as u128) << 64 | low.finish() as u128) & !(1u128 << 127)
}

/// Validates settings, SQL, state and destination access; reads no member, sends no
/// change and writes nothing. The report carries the effective settings, secrets masked.
async fn check(activation: &Activation, report: &mut RunReport) -> Result<ExitCode, Error> {
    let mut settings = activation.effective_settings();
    report.settings = Some(settings.clone());

    let ctx = source::session_context(activation)?;
    source::register_sources(&ctx, activation).await?;
    // Planning the query checks tables, columns and types without reading rows.
    let segment = source::run_segment(&ctx, activation).await?;
    // An empty array of each mapped column's type shows whether its identifier type reads it.
    for (mut normalizer, index) in new_normalizers(activation)?.into_iter().zip(&segment.identifier_indices) {
        let field = segment.schema.field(*index);
        let empty = datafusion::arrow::array::new_empty_array(field.data_type());
        normalizer.push_array(empty.as_ref()).map_err(|error| SourceError::Read {
            message: format!("column `{}`: {error}", field.name()),
        })?;
    }
    drop(segment);

    // Opening a local state store creates its folder, and a missing folder contains no state.
    let state_missing = matches!(&activation.state_location, Location::Local(path) if !path.exists());
    let previous = if state_missing {
        None
    } else {
        let state = StateStore::open(activation)?;
        if let Some(lock) = state.read_lock().await? {
            report.push_warning(format!("the activation is locked by run {} until {}", lock.run_id, lock.expires_at.to_rfc3339()));
        }
        state.latest_manifest().await?
    };

    let credentials = Credentials::from_env()?;
    settings["credentials"] = serde_json::json!({
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret.to_string(),
    });
    report.settings = Some(settings);
    let client = CriteoClient::new(&activation.destination, credentials)?;
    let (target, source) = audience::resolve_audience(&client, activation, previous.as_ref(), true).await?;
    match &target {
        Some(target) => audience::verify_access(&client, activation, target, source).await?,
        None => report.push_warning(format!("no audience named `{}` exists yet; the first run creates it", activation.name)),
    }
    if activation.destination.kind == DestinationKind::CriteoRetailMedia && activation.destination.account_id.is_none() {
        report.push_warning("set `destination.account_id` so that check can verify access to the customer list");
    }
    report.audience_id = target.map(|target| target.id);
    report.audience_source = Some(source);
    report.status = if report.warnings.is_empty() { Status::Success } else { Status::Warning };
    Ok(ExitCode::Success)
}
