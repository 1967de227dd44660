//! Source tables and the segment query: register tables with DataFusion, run the SQL,
//! check the columns, and stream the members as Arrow record batches.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SQLOptions, SessionConfig,
    SessionContext,
};
use datafusion::common::TableReference;

use crate::config::{Activation, Location};
use crate::storage::{self, StorageError};

/// A failure to read the sources or run the segment query.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{table}` not found at `{location}`; check the path in `[sources]`")]
    NotFound { table: String, location: String },

    #[error("failed to open source `{table}` at `{location}`: {message}")]
    Open {
        table: String,
        location: String,
        message: String,
    },

    #[error(transparent)]
    Storage(#[from] StorageError),

    #[error("segment SQL in `{file}` failed: {message}")]
    Sql { file: String, message: String },

    #[error(
        "the segment does not return {what} {missing}; it returns: {available}. \
         Fix `key` / `[identifiers]` in the activation or the SELECT list of the segment"
    )]
    MissingColumns {
        what: &'static str,
        missing: String,
        available: String,
    },

    #[error("failed to read segment rows: {message}")]
    Read { message: String },

    #[error("failed to set up the query engine: {message}")]
    Engine { message: String },
}

/// The running segment query.
pub struct Segment {
    /// Members, projected to the distinct columns the activation reads: one stream per
    /// output partition, so they can be normalized in parallel.
    pub streams: Vec<SendableRecordBatchStream>,
    pub schema: SchemaRef,
    /// Index of the key column in each batch.
    pub key_index: usize,
    /// Index of each identifier mapping's column, in the order of the mappings.
    pub identifier_indices: Vec<usize>,
}

/// Formats a DataFusion error as one line, without its internal backtrace decorations.
///
/// Runtime errors such as a failed cast quote the offending value, which may be a
/// member's email or phone number. Such values are replaced by `<redacted>`.
pub fn describe_datafusion_error(error: &DataFusionError) -> String {
    let text = error.to_string();
    redact_personal_values(text.lines().next().unwrap_or_default().trim())
}

/// Replaces quoted values that look like an email (contain `@`) or a phone number (seven
/// or more digits) with `<redacted>`. Table and column names in quotes are kept.
fn redact_personal_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['\'', '"']) {
        let quote = rest[start..].chars().next().expect("found a quote");
        let Some(length) = rest[start + 1..].find(quote) else {
            break;
        };
        let inner = &rest[start + 1..start + 1 + length];
        out.push_str(&rest[..=start]);
        let digits = inner.chars().filter(char::is_ascii_digit).count();
        if inner.contains('@') || digits >= 7 {
            out.push_str("<redacted>");
        } else {
            out.push_str(inner);
        }
        out.push(quote);
        rest = &rest[start + 2 + length..];
    }
    out.push_str(rest);
    out
}

/// Builds a session context with the activation's memory limit and parallelism.
pub fn session_context(activation: &Activation) -> Result<SessionContext, SourceError> {
    let engine_error = |error: DataFusionError| SourceError::Engine {
        message: describe_datafusion_error(&error),
    };
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit_mib) = activation.engine.memory_limit_mib {
        runtime = runtime.with_memory_limit((limit_mib as usize) * 1024 * 1024, 1.0);
    }
    if let Some(spill_dir) = &activation.engine.spill_dir {
        runtime = runtime.with_temp_file_path(spill_dir);
    }
    let runtime = runtime.build_arc().map_err(engine_error)?;

    // DataFusion's own `DATAFUSION_*` environment variables can tune the engine further.
    let mut config = SessionConfig::from_env()
        .map_err(engine_error)?
        .with_information_schema(false);
    // Batches of 32 Ki rows measured faster and smaller at peak than the default 8 Ki on
    // the benchmark extract (0.93 s and 252 MiB against 0.97 s and 264 MiB).
    if std::env::var_os("DATAFUSION_EXECUTION_BATCH_SIZE").is_none() {
        config = config.with_batch_size(32 * 1024);
    }
    // NOTE: Parquet filter pushdown (`DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true`)
    // was measured slower on the benchmark extract (1.13 s against 1.00 s), so it stays off.
    if let Some(partitions) = activation.engine.target_partitions {
        config = config.with_target_partitions(partitions.max(1));
    }
    if activation.engine.memory_limit_mib.is_some() {
        // Hash joins cannot spill; sort-merge joins can, so a memory limit keeps working
        // on joins larger than memory.
        config.options_mut().optimizer.prefer_hash_join = false;
    }
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// File format of a source, from its extension (Parquet unless the extension names
/// another format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceFormat {
    Parquet,
    Csv,
    NdJson,
}

impl SourceFormat {
    fn from_name(name: &str) -> SourceFormat {
        let lower = name.to_ascii_lowercase();
        let lower = lower
            .trim_end_matches(".gz")
            .trim_end_matches(".zst")
            .trim_end_matches(".bz2");
        if lower.ends_with(".csv") {
            SourceFormat::Csv
        } else if lower.ends_with(".json") || lower.ends_with(".ndjson") || lower.ends_with(".jsonl")
        {
            SourceFormat::NdJson
        } else {
            SourceFormat::Parquet
        }
    }

    fn extension(self, name: &str) -> String {
        match Path::new(name).extension() {
            Some(extension) if !name.ends_with('/') => format!(".{}", extension.to_string_lossy()),
            _ => match self {
                SourceFormat::Parquet => ".parquet".into(),
                SourceFormat::Csv => ".csv".into(),
                SourceFormat::NdJson => ".json".into(),
            },
        }
    }
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Registers every source table of the activation.
pub async fn register_sources(
    ctx: &SessionContext,
    activation: &Activation,
) -> Result<(), SourceError> {
    for table in &activation.sources {
        let shown = table.location.to_string();
        let (table_url, format_hint) = match &table.location {
            Location::Local(path) => local_table_url(&table.name, path)?,
            Location::Url(url) => {
                let resolved = storage::open_store(&table.location, &activation.storage)?;
                ctx.register_object_store(&resolved.root, resolved.store);
                (url.to_string(), url.path().to_string())
            }
        };
        let format = SourceFormat::from_name(&format_hint);
        let extension = format.extension(&format_hint);
        let reference = TableReference::bare(table.name.as_str());
        let registered = match format {
            SourceFormat::Parquet => {
                let options = ParquetReadOptions::default().file_extension(&extension);
                ctx.register_parquet(reference, &table_url, options).await
            }
            SourceFormat::Csv => {
                let options = CsvReadOptions::new().file_extension(&extension);
                ctx.register_csv(reference, &table_url, options).await
            }
            SourceFormat::NdJson => {
                let options = JsonReadOptions::default().file_extension(&extension);
                ctx.register_json(reference, &table_url, options).await
            }
        };
        registered.map_err(|error| SourceError::Open {
            table: table.name.clone(),
            location: shown.clone(),
            message: describe_datafusion_error(&error),
        })?;
    }
    Ok(())
}

/// Returns the URL DataFusion should list for a local path, and the name that decides its
/// format: the file itself, the glob, or the first data file of a folder.
fn local_table_url(table: &str, path: &Path) -> Result<(String, String), SourceError> {
    let text = path.display().to_string();
    let not_found = || SourceError::NotFound {
        table: table.to_string(),
        location: text.clone(),
    };
    if is_glob(&text) {
        let parent = text
            .split(['*', '?', '['])
            .next()
            .map(|prefix| Path::new(prefix).parent().unwrap_or(Path::new("/")).to_path_buf())
            .unwrap_or_default();
        if !parent.is_dir() {
            return Err(not_found());
        }
        return Ok((text.clone(), text));
    }
    if path.is_file() {
        return Ok((text.clone(), text));
    }
    if path.is_dir() {
        let first_file = std::fs::read_dir(path)
            .map_err(|error| SourceError::Open {
                table: table.to_string(),
                location: text.clone(),
                message: error.to_string(),
            })?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.') && !name.starts_with('_'))
            .min()
            .ok_or_else(|| SourceError::Open {
                table: table.to_string(),
                location: text.clone(),
                message: "the folder is empty".into(),
            })?;
        return Ok((format!("{}/", text.trim_end_matches('/')), first_file));
    }
    Err(not_found())
}

/// Runs the segment query and returns its members, projected to the key and the mapped
/// columns so no other column is read.
pub async fn run_segment(
    ctx: &SessionContext,
    activation: &Activation,
) -> Result<Segment, SourceError> {
    let sql_error = |error: DataFusionError| SourceError::Sql {
        file: activation.segment_file.display().to_string(),
        message: describe_datafusion_error(&error),
    };
    // The segment is a query: DDL, DML and SET statements are refused.
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(&activation.segment_sql, options)
        .await
        .map_err(sql_error)?;

    let available: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    let available_text = available.join(", ");
    if !available.contains(&activation.key) {
        return Err(SourceError::MissingColumns {
            what: "the key column",
            missing: format!("`{}`", activation.key),
            available: available_text,
        });
    }
    let missing: Vec<String> = activation
        .identifiers
        .iter()
        .filter(|mapping| !available.contains(&mapping.column))
        .map(|mapping| format!("`{}` (for {})", mapping.column, mapping.identifier_type.config_name()))
        .collect();
    if !missing.is_empty() {
        return Err(SourceError::MissingColumns {
            what: "the mapped columns",
            missing: missing.join(", "),
            available: available_text,
        });
    }

    // Two mappings may read the same column, or the key may be an identifier too, so the
    // projection lists each column once and the mappings refer to it by index.
    let mut columns: Vec<&str> = vec![activation.key.as_str()];
    let mut identifier_indices = Vec::new();
    for mapping in &activation.identifiers {
        let index = match columns.iter().position(|column| *column == mapping.column) {
            Some(index) => index,
            None => {
                columns.push(mapping.column.as_str());
                columns.len() - 1
            }
        };
        identifier_indices.push(index);
    }
    let projected = frame
        .select_columns(&columns)
        .map_err(sql_error)?;
    let schema: SchemaRef = Arc::new(projected.schema().as_arrow().clone());
    let streams = projected.execute_stream_partitioned().await.map_err(sql_error)?;
    Ok(Segment {
        streams,
        schema,
        key_index: 0,
        identifier_indices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_emails_and_phones() {
        let text = "Cast error: Cannot cast string 'jane.doe@example.com' to value of Int64 type";
        assert_eq!(
            redact_personal_values(text),
            "Cast error: Cannot cast string '<redacted>' to value of Int64 type"
        );
        let phone = redact_personal_values("invalid value \"+33 6 12 34 56 78\"");
        assert_eq!(phone, "invalid value \"<redacted>\"");
    }

    #[test]
    fn redaction_keeps_names() {
        let text = "table 'customerz' not found; column \"email\" missing";
        assert_eq!(redact_personal_values(text), text);
    }

    #[test]
    fn redaction_survives_unbalanced_quote() {
        assert_eq!(redact_personal_values("it's 'open"), "it's 'open");
    }
}
