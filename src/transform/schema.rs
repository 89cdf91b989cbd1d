//! Reads a stream's declared columns from an exported DCR: an ARM template (`resources[]`, or
//! `resources` as an object in language version 2.0), the resource JSON the portal's "JSON
//! view" or `az monitor data-collection rule show` prints (`properties.streamDeclarations`, or
//! `streamDeclarations` at the top), or a list of such resources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::columns::{validate_column_name, ColumnType};

/// Why a schema file gave no columns. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema file {} is not JSON: {message}", path.display())]
    Json { path: PathBuf, message: String },
    #[error(
        "schema file {} has no streamDeclarations; export the DCR (portal: Export template, or \
         JSON view) or use `az monitor data-collection rule show`", path.display()
    )]
    NoDeclarations { path: PathBuf },
    #[error("schema file {} declares no stream {stream:?}; it declares: {}", path.display(), present.join(", "))]
    StreamNotFound {
        path: PathBuf,
        stream: String,
        present: Vec<String>,
    },
    #[error("schema file {}, stream {stream}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        stream: String,
        message: String,
    },
}

/// The columns `stream` declares in the DCR exported to `path`.
pub fn load_stream_columns(
    path: &Path,
    stream: &str,
) -> Result<BTreeMap<String, ColumnType>, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    stream_columns(&text, stream).map_err(|e| e.at(path))
}

/// [`load_stream_columns`] on text; errors carry an empty path until [`SchemaError::at`].
pub fn stream_columns(
    text: &str,
    stream: &str,
) -> Result<BTreeMap<String, ColumnType>, SchemaError> {
    let none = PathBuf::new;
    let doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
        SchemaError::Json {
            path: none(),
            message: e.to_string(),
        }
    })?;
    let mut declarations = Vec::new();
    collect_declarations(&doc, &mut declarations);
    if declarations.is_empty() {
        return Err(SchemaError::NoDeclarations { path: none() });
    }
    let found = declarations.iter().find_map(|d| d.get(stream));
    let Some(decl) = found else {
        let mut present: Vec<String> = declarations
            .iter()
            .flat_map(|d| d.keys().cloned())
            .collect();
        present.sort();
        present.dedup();
        return Err(SchemaError::StreamNotFound {
            path: none(),
            stream: stream.to_string(),
            present,
        });
    };
    let invalid = |message: String| SchemaError::Invalid {
        path: none(),
        stream: stream.to_string(),
        message,
    };
    let columns = decl
        .get("columns")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no \"columns\" array".to_string()))?;
    let mut out = BTreeMap::new();
    for (i, c) in columns.iter().enumerate() {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("column {i} has no \"name\"")))?;
        let ty = c
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("column {name} has no \"type\"")))?;
        validate_column_name(name).map_err(&invalid)?;
        let ty = ColumnType::parse(ty).map_err(|e| invalid(format!("column {name}: {e}")))?;
        out.insert(name.to_string(), ty);
    }
    Ok(out)
}

/// Every `streamDeclarations` object where an export puts one.
fn collect_declarations<'v>(doc: &'v Value, out: &mut Vec<&'v serde_json::Map<String, Value>>) {
    match doc {
        Value::Array(items) => items.iter().for_each(|v| collect_declarations(v, out)),
        Value::Object(o) => {
            for holder in [Some(doc), o.get("properties")].into_iter().flatten() {
                if let Some(d) = holder.get("streamDeclarations").and_then(Value::as_object) {
                    out.push(d);
                }
            }
            match o.get("resources") {
                Some(Value::Array(rs)) => rs.iter().for_each(|r| collect_declarations(r, out)),
                Some(Value::Object(rs)) => rs.values().for_each(|r| collect_declarations(r, out)),
                _ => {}
            }
        }
        _ => {}
    }
}

impl SchemaError {
    /// The same error, naming `path`.
    fn at(self, path: &Path) -> SchemaError {
        let path = path.to_path_buf();
        match self {
            SchemaError::Read { source, .. } => SchemaError::Read { path, source },
            SchemaError::Json { message, .. } => SchemaError::Json { path, message },
            SchemaError::NoDeclarations { .. } => SchemaError::NoDeclarations { path },
            SchemaError::StreamNotFound {
                stream, present, ..
            } => SchemaError::StreamNotFound {
                path,
                stream,
                present,
            },
            SchemaError::Invalid {
                stream, message, ..
            } => SchemaError::Invalid {
                path,
                stream,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decl() -> Value {
        json!({
            "Custom-App_CL": {"columns": [
                {"name": "TimeGenerated", "type": "datetime"},
                {"name": "Count", "type": "long"},
                {"name": "Extra", "type": "dynamic"}
            ]},
            "Custom-Other_CL": {"columns": [{"name": "X", "type": "string"}]}
        })
    }

    fn want() -> BTreeMap<String, ColumnType> {
        BTreeMap::from([
            ("TimeGenerated".to_string(), ColumnType::Datetime),
            ("Count".to_string(), ColumnType::Long),
            ("Extra".to_string(), ColumnType::Dynamic),
        ])
    }

    #[test]
    fn every_export_shape_is_read() {
        let shapes = [
            json!({"$schema": "x", "resources": [
                {"type": "Microsoft.Insights/dataCollectionEndpoints", "properties": {}},
                {"type": "Microsoft.Insights/dataCollectionRules", "properties": {"streamDeclarations": decl()}}
            ]}),
            json!({"languageVersion": "2.0", "resources": {"dcr": {"properties": {"streamDeclarations": decl()}}}}),
            json!({"id": "/subscriptions/x", "properties": {"streamDeclarations": decl()}}),
            json!({"id": "/subscriptions/x", "streamDeclarations": decl()}),
            json!([{"properties": {"streamDeclarations": {}}}, {"properties": {"streamDeclarations": decl()}}]),
        ];
        for doc in shapes {
            let got = stream_columns(&doc.to_string(), "Custom-App_CL").expect("columns");
            assert_eq!(got, want(), "{doc}");
        }
    }

    #[test]
    fn errors_name_the_file_and_what_is_there() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dcr.json");
        let doc = json!({"properties": {"streamDeclarations": decl()}});
        std::fs::write(&path, doc.to_string()).expect("write");
        let e = load_stream_columns(&path, "Custom-Nope_CL")
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("dcr.json")
                && e.contains("Custom-Nope_CL")
                && e.contains("Custom-App_CL, Custom-Other_CL"),
            "{e}"
        );
        let e = load_stream_columns(&dir.path().join("none.json"), "S")
            .expect_err("absent")
            .to_string();
        assert!(e.contains("none.json"), "{e}");
        std::fs::write(&path, "{\"resources\": []}").expect("write");
        let e = load_stream_columns(&path, "S")
            .expect_err("empty")
            .to_string();
        assert!(e.contains("no streamDeclarations"), "{e}");
        std::fs::write(&path, "{").expect("write");
        let e = load_stream_columns(&path, "S")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("not JSON"), "{e}");
        let bad =
            json!({"streamDeclarations": {"S": {"columns": [{"name": "Id", "type": "guid"}]}}});
        let e = stream_columns(&bad.to_string(), "S")
            .expect_err("guid")
            .to_string();
        assert!(e.contains("toguid"), "{e}");
        let bad =
            json!({"streamDeclarations": {"S": {"columns": [{"name": "a-b", "type": "string"}]}}});
        let e = stream_columns(&bad.to_string(), "S")
            .expect_err("name")
            .to_string();
        assert!(e.contains("a-b"), "{e}");
    }
}
