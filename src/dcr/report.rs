//! `dcr infer`'s report: a table of the columns and the findings, as text or JSON.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::infer::Inference;
use super::issues::{Issue, ReadCounts, Severity};
use crate::stats::counted;

/// The report for a person. `inputs` names the inputs, in order.
pub fn text(inf: &Inference, read: &ReadCounts, issues: &[Issue], inputs: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} from {}",
        counted(inf.rows, "row", "rows"),
        inputs.join(", ")
    );
    if let Some(f) = &inf.time_field {
        let _ = writeln!(s, "time field {f:?} → TimeGenerated");
    }
    let width = inf
        .columns
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("column".len());
    let _ = writeln!(
        s,
        "\n{:width$}  {:8}  {:>7}  values seen",
        "column", "type", "rows"
    );
    for c in &inf.columns {
        let seen = if c.kinds.is_empty() {
            "none (null or empty)".to_string()
        } else {
            c.kinds
                .iter()
                .map(|(k, n, _)| format!("{} {n}", k.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "{:width$}  {:8}  {:>7}  {seen}",
            c.name,
            c.ty.name(),
            c.present
        );
    }
    if !issues.is_empty() {
        let _ = writeln!(s);
    }
    for i in issues {
        let tag = match i.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let _ = writeln!(s, "{tag}: {}", i.problem);
        if let Some(fix) = &i.fix {
            let _ = writeln!(s, "  fix: {fix}");
        }
    }
    if read.refused > 0 || read.mismatched > 0 {
        let _ = writeln!(
            s,
            "\n{} read, {} refused, {} not matching the parser",
            counted(read.records, "record", "records"),
            read.refused,
            read.mismatched
        );
    }
    s
}

/// The report for a program: `{rows, inputs, time_field, columns: [{name, type, rows,
/// values: {kind: count}, examples: {kind: text}}], issues: [{severity, column, problem,
/// fix}], read: {…}}`.
pub fn json(inf: &Inference, read: &ReadCounts, issues: &[Issue], inputs: &[String]) -> Value {
    let columns: Vec<Value> = inf
        .columns
        .iter()
        .map(|c| {
            let values: serde_json::Map<String, Value> = c
                .kinds
                .iter()
                .map(|(k, n, _)| (k.name().to_string(), json!(n)))
                .collect();
            let examples: serde_json::Map<String, Value> = c
                .kinds
                .iter()
                .map(|(k, _, ex)| (k.name().to_string(), json!(ex.text)))
                .collect();
            json!({
                "name": c.name, "type": c.ty.name(), "rows": c.present,
                "values": values, "examples": examples,
            })
        })
        .collect();
    json!({
        "rows": inf.rows,
        "inputs": inputs,
        "time_field": inf.time_field,
        "columns": columns,
        "issues": issues,
        "read": read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcr::infer::{At, Sampler, Source};
    use crate::dcr::issues::issues;
    use crate::transform::time::TimeParser;

    #[test]
    fn both_forms_show_every_column_and_finding() {
        let mut s = Sampler::new(TimeParser::default(), None);
        for (i, r) in [
            r#"{"TimeGenerated":"2026-05-01T12:00:00.000000Z","num":1,"Type":"a"}"#,
            r#"{"TimeGenerated":"2026-05-01T12:00:01.000000Z","num":"x","Type":"b"}"#,
        ]
        .iter()
        .enumerate()
        {
            s.add(
                r,
                Source::Json,
                At {
                    input: 0,
                    line: i as u64 + 1,
                },
            )
            .expect("row");
        }
        let inf = s.finish();
        let read = ReadCounts::default();
        let found = issues(&inf, &read, None);
        let inputs = vec!["a.ndjson".to_string()];
        let t = text(&inf, &read, &found, &inputs);
        assert!(t.starts_with("2 rows from a.ndjson"), "{t}");
        assert!(
            t.contains("TimeGenerated  datetime        2  datetime 2"),
            "{t}"
        );
        assert!(
            t.contains("num            string          2  int 1, string 1"),
            "{t}"
        );
        assert!(t.contains("error: column name \"Type\" is reserved"), "{t}");
        assert!(t.contains("  fix: --rename Type=Type_"), "{t}");
        let j = json(&inf, &read, &found, &inputs);
        assert_eq!(j["columns"][1]["name"], "num");
        assert_eq!(j["columns"][1]["values"], json!({"int": 1, "string": 1}));
        assert_eq!(j["columns"][1]["examples"]["string"], "\"x\"");
        assert_eq!(j["issues"][0]["severity"], "error");
        assert_eq!(j["issues"][0]["fix"], "--rename Type=Type_");
    }
}
