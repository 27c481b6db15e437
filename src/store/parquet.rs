//! Rows as Parquet, the columns trainers and the Hugging Face `datasets` library read:
//! `messages` as list<struct<role: string, content: string>> and `metadata` as a JSON string
//! (null for a row without metadata). Reading goes the other way for any Parquet file whose
//! columns make one of the row shapes import accepts (`messages`, `prompt`/`response`,
//! `instruction`/`input`/`output`, extra columns kept in the metadata).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StringArray, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

use super::row::Row;
use crate::error::SynthError;

/// Rows per record batch (and Parquet row group) when writing.
const BATCH_ROWS: usize = 8192;

fn message_fields() -> Fields {
    Fields::from(vec![Field::new("role", DataType::Utf8, false), Field::new("content", DataType::Utf8, false)])
}

fn message_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(message_fields()), true))
}

/// The schema synth writes.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("messages", DataType::List(message_item()), false),
        Field::new("metadata", DataType::Utf8, true),
    ]))
}

/// Writes `rows` as one Snappy-compressed Parquet file to `out`.
pub fn write_rows<W: Write + Send>(out: W, rows: &[Row]) -> std::io::Result<()> {
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(out, schema(), Some(props)).map_err(std::io::Error::other)?;
    for chunk in rows.chunks(BATCH_ROWS) {
        writer.write(&batch(chunk)?).map_err(std::io::Error::other)?;
    }
    writer.close().map_err(std::io::Error::other)?;
    Ok(())
}

fn batch(rows: &[Row]) -> std::io::Result<RecordBatch> {
    let messages = rows.iter().flat_map(|r| &r.messages);
    let roles = StringArray::from_iter_values(messages.clone().map(|m| m.role.as_str()));
    let contents = StringArray::from_iter_values(messages.map(|m| m.content.as_str()));
    let structs = StructArray::new(message_fields(), vec![Arc::new(roles), Arc::new(contents)], None);
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(|r| r.messages.len()));
    let list = ListArray::new(message_item(), offsets, Arc::new(structs), None);
    let metadata: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.metadata.as_ref().map(serde_json::to_string).transpose())
        .collect::<serde_json::Result<_>>()?;
    let columns: Vec<ArrayRef> = vec![Arc::new(list), Arc::new(StringArray::from(metadata))];
    RecordBatch::try_new(schema(), columns).map_err(std::io::Error::other)
}

/// Reads every row of a Parquet file as a JSON object keyed by column name (a null cell leaves
/// its key out; a `metadata` string is parsed as JSON). The error names the file, the row
/// (counted from 1) and the column.
pub fn read_objects(file: File, path: &Path) -> Result<Vec<Map<String, Value>>> {
    let shown = path.display();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| SynthError::invalid(format!("`{shown}` is not a Parquet file synth can read: {e}")))?;
    let mut objects = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| SynthError::invalid(format!("cannot read `{shown}`: {e}")))?;
        let first = objects.len();
        objects.extend((0..batch.num_rows()).map(|_| Map::new()));
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            for (i, object) in objects[first..].iter_mut().enumerate() {
                let at = || format!("{shown}: row {}: column `{}`", first + i + 1, field.name());
                if let Some(value) = cell(column, i).map_err(|e| SynthError::invalid(format!("{}: {e}", at())))? {
                    let value = match (field.name().as_str(), value) {
                        ("metadata", Value::String(text)) => serde_json::from_str(&text).map_err(|e| {
                            SynthError::invalid(format!("{}: not a JSON object: {e}", at()))
                                .hint("synth writes `metadata` as a JSON object in a string column")
                        })?,
                        (_, value) => value,
                    };
                    object.insert(field.name().clone(), value);
                }
            }
        }
    }
    Ok(objects)
}

/// One cell as JSON: strings, numbers, booleans, and lists and structs of them; `None` for null.
fn cell(array: &dyn Array, i: usize) -> std::result::Result<Option<Value>, String> {
    if array.is_null(i) {
        return Ok(None);
    }
    let value = match array.data_type() {
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Value::from(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Value::from(array.as_string_view().value(i)),
        DataType::Boolean => Value::from(array.as_boolean().value(i)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => Value::from(array.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(i)),
        DataType::List(_) => list(&array.as_list::<i32>().value(i))?,
        DataType::LargeList(_) => list(&array.as_list::<i64>().value(i))?,
        DataType::Struct(_) => {
            let s = array.as_struct();
            let mut object = Map::new();
            for (name, column) in s.column_names().iter().zip(s.columns()) {
                if let Some(v) = cell(column, i)? {
                    object.insert(name.to_string(), v);
                }
            }
            Value::Object(object)
        }
        other => return Err(format!("type {other} is not one synth imports (strings, numbers, lists, structs)")),
    };
    Ok(Some(value))
}

fn list(items: &ArrayRef) -> std::result::Result<Value, String> {
    (0..items.len())
        .map(|j| cell(items, j).map(|v| v.unwrap_or(Value::Null)))
        .collect::<Result<_, _>>()
        .map(Value::Array)
}
