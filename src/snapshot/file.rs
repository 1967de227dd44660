//! Snapshot data files: identifier sets as Parquet sorted by (identifier_type, identifier).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, BinaryArray, BinaryBuilder, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use crate::identifiers::{IdentifierSet, IdentifierType};

/// Rows per record batch in snapshot files.
const SNAPSHOT_BATCH_ROWS: usize = 65_536;

fn snapshot_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("identifier_type", DataType::Utf8, false),
        Field::new("identifier", DataType::Binary, false),
    ]))
}

/// Writes the sets as Parquet sorted by (type, identifier). Types are written in the order
/// of their config names, so the file is sorted as a whole.
pub(super) fn encode_snapshot(sets: &BTreeMap<IdentifierType, IdentifierSet>) -> Result<Vec<u8>, String> {
    let schema = snapshot_schema();

    // Most identifiers are SHA-256 digests, which are random bytes. Dictionary encoding,
    // compression and min/max statistics cost time on them and save nothing, so only the
    // type column uses them (clear identifiers such as madids are stored uncompressed too).
    let identifier = ColumnPath::from("identifier");
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
        .set_column_compression(identifier.clone(), Compression::UNCOMPRESSED)
        .set_column_dictionary_enabled(identifier.clone(), false)
        .set_column_statistics_enabled(identifier, EnabledStatistics::None)
        .build();

    // Sized for the digests plus some overhead, so the buffer does not double past it.
    let rows: usize = sets.values().map(IdentifierSet::len).sum();
    let mut buffer = Vec::with_capacity(rows * 40 + 4096);
    let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(properties))
        .map_err(|error| format!("failed to start the snapshot file: {error}"))?;

    let mut ordered: Vec<_> = sets.iter().collect();
    ordered.sort_by_key(|(identifier_type, _)| identifier_type.config_name());
    for (identifier_type, set) in ordered {
        let name = identifier_type.config_name();
        let mut start = 0;
        while start < set.len() {
            let end = (start + SNAPSHOT_BATCH_ROWS).min(set.len());
            let mut types = StringBuilder::with_capacity(end - start, (end - start) * name.len());
            let mut values = BinaryBuilder::new();
            for index in start..end {
                types.append_value(name);
                match set {
                    IdentifierSet::Hashed(digests) => values.append_value(digests[index]),
                    IdentifierSet::Clear(texts) => values.append_value(texts[index].as_bytes()),
                }
            }
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(types.finish()), Arc::new(values.finish())],
            )
            .map_err(|error| format!("failed to build a snapshot batch: {error}"))?;
            writer
                .write(&batch)
                .map_err(|error| format!("failed to write the snapshot file: {error}"))?;
            start = end;
        }
    }
    writer
        .close()
        .map_err(|error| format!("failed to finish the snapshot file: {error}"))?;
    Ok(buffer)
}

/// Reads a snapshot file back into sets, checking types, digest sizes and strict order.
pub(super) fn decode_snapshot(bytes: Bytes) -> Result<BTreeMap<IdentifierType, IdentifierSet>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|error| format!("the snapshot is not a readable Parquet file ({error})"))?
        .with_batch_size(SNAPSHOT_BATCH_ROWS)
        .build()
        .map_err(|error| format!("the snapshot is not a readable Parquet file ({error})"))?;
    let mut hashed: BTreeMap<IdentifierType, Vec<[u8; 32]>> = BTreeMap::new();
    let mut clear: BTreeMap<IdentifierType, Vec<Box<str>>> = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|error| format!("failed to read snapshot rows ({error})"))?;
        let types = batch
            .column_by_name("identifier_type")
            .and_then(|column| column.as_any().downcast_ref::<StringArray>())
            .ok_or("the snapshot has no `identifier_type` text column")?;
        let values = batch
            .column_by_name("identifier")
            .and_then(|column| column.as_any().downcast_ref::<BinaryArray>())
            .ok_or("the snapshot has no `identifier` binary column")?;
        if types.null_count() > 0 || values.null_count() > 0 {
            return Err("the snapshot contains null values".into());
        }
        for row in 0..batch.num_rows() {
            let name = types.value(row);
            let identifier_type = IdentifierType::parse(name)
                .ok_or_else(|| format!("unknown identifier type `{name}` in the snapshot"))?;
            let value = values.value(row);
            if identifier_type.is_hashed() {
                let digest: [u8; 32] = value
                    .try_into()
                    .map_err(|_| format!("a {name} identifier is not a 32-byte SHA-256"))?;
                hashed.entry(identifier_type).or_default().push(digest);
            } else {
                let text = std::str::from_utf8(value)
                    .map_err(|_| format!("a {name} identifier is not valid UTF-8"))?;
                clear.entry(identifier_type).or_default().push(text.into());
            }
        }
    }
    let mut sets = BTreeMap::new();
    for (identifier_type, digests) in hashed {
        if !digests.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(format!("the {} identifiers are not sorted and unique", identifier_type.config_name()));
        }
        sets.insert(identifier_type, IdentifierSet::Hashed(digests));
    }
    for (identifier_type, texts) in clear {
        if !texts.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(format!("the {} identifiers are not sorted and unique", identifier_type.config_name()));
        }
        sets.insert(identifier_type, IdentifierSet::Clear(texts));
    }
    Ok(sets)
}
