//! What to tell the user about an inference: names Azure refuses or reserves (with a `--rename`
//! that fixes them), columns whose values were a mix, time fields that did not read, and the
//! table's limits. Errors stop `dcr template`; warnings and notes are printed.

use std::collections::{BTreeMap, BTreeSet};

use super::infer::{Column, Inference, Kind, MAX_TABLE_COLUMNS};
use super::names::{column_problem, suggest};
use super::template::Plan;
use crate::transform::columns::ColumnType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Azure would refuse the table or the DCR.
    Error,
    /// Likely to lose or mistype data.
    Warning,
    /// Worth knowing.
    Note,
}

/// One finding, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub problem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// How reading the sample went, beyond the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadCounts {
    /// Records read (rows and refused ones).
    pub records: u64,
    /// Records that are not rows (invalid JSON, a ragged CSV line, …).
    pub refused: u64,
    /// Lines the parser did not recognise (they became RawData rows or were refused).
    pub mismatched: u64,
    /// Rows whose time field was missing or unreadable.
    pub time_unparsable: u64,
    /// Rows with a `TimeGenerated` more than 2 days old or 1 day ahead.
    pub time_out_of_range: u64,
    /// Rows whose `TimeGenerated` is the time they were read (no time of their own).
    pub time_from_read: u64,
    /// The format `--format auto` chose, when it chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_format: Option<&'static str>,
    /// The sample stopped at `--sample` rows before the input ended.
    pub cut_at_sample: bool,
    /// The parser in use (`regex`, `logfmt`, `syslog`), if any.
    #[serde(skip)]
    pub parser: Option<&'static str>,
}

/// Every finding about `inf`. `plan` is the table plan when known (Auxiliary tables have rules
/// of their own).
pub fn issues(inf: &Inference, read: &ReadCounts, plan: Option<Plan>) -> Vec<Issue> {
    let columns: Vec<&str> = inf.columns.iter().map(|c| c.name.as_str()).collect();
    let mut out = name_issues(&columns, plan);
    for c in &inf.columns {
        mix(c, &mut out);
    }
    if inf.columns.len() > MAX_TABLE_COLUMNS || inf.untracked > 0 {
        out.push(Issue {
            severity: Severity::Error,
            column: None,
            problem: format!(
                "the rows have {}{} fields; a table holds at most {MAX_TABLE_COLUMNS} columns",
                inf.columns.len(),
                if inf.untracked > 0 { " or more" } else { "" }
            ),
            fix: Some(
                "leave fields out with --drop NAME, or keep them in one dynamic column".into(),
            ),
        });
    }
    time(inf, read, &mut out);
    reading(read, &mut out);
    out.sort_by_key(|i| i.severity);
    out
}

/// Whether any issue stops a template.
pub fn blocking(issues: &[Issue]) -> bool {
    issues.iter().any(|i| i.severity == Severity::Error)
}

/// The findings about column names alone: refused, reserved, or the same but for case.
pub fn name_issues(columns: &[&str], plan: Option<Plan>) -> Vec<Issue> {
    let mut out = Vec::new();
    // Compared without case: Auxiliary tables take `a` and `A` for the same column.
    let mut taken: BTreeSet<String> = columns.iter().map(|c| c.to_ascii_lowercase()).collect();
    for name in columns {
        let Some(problem) = column_problem(name) else {
            continue;
        };
        let better = suggest(name, &|s| taken.contains(&s.to_ascii_lowercase()));
        taken.insert(better.to_ascii_lowercase());
        out.push(Issue {
            severity: if problem.refused() {
                Severity::Error
            } else {
                Severity::Warning
            },
            column: Some(name.to_string()),
            problem: problem.describe(name),
            fix: Some(format!("--rename {name}={better}")),
        });
    }
    // Names that differ only in letter case.
    let mut by_folded: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for name in columns {
        by_folded
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(name);
    }
    for same in by_folded.values().filter(|v| v.len() > 1) {
        let auxiliary = plan == Some(Plan::Auxiliary);
        let first = same[0];
        let others = &same[1..];
        let better = suggest(&format!("{}_2", others[0]), &|s| {
            taken.contains(&s.to_ascii_lowercase())
        });
        taken.insert(better.to_ascii_lowercase());
        out.push(Issue {
            severity: if auxiliary {
                Severity::Error
            } else {
                Severity::Warning
            },
            column: Some(first.to_string()),
            problem: format!(
                "columns {} differ only in letter case: Auxiliary tables drop such rows, and \
                 queries confuse them{}",
                same.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if auxiliary {
                    ""
                } else {
                    " (fine in Analytics and Basic tables)"
                }
            ),
            fix: Some(format!("--rename {}={better}", others[0])),
        });
    }
    out
}

/// A column whose values did not agree.
fn mix(c: &Column, out: &mut Vec<Issue>) {
    if c.name == "TimeGenerated" {
        return;
    }
    if c.kinds.is_empty() {
        out.push(Issue {
            severity: Severity::Note,
            column: Some(c.name.clone()),
            problem: format!(
                "{:?} had no value in the sample (only null or empty): declared string",
                c.name
            ),
            fix: Some(format!(
                "if it holds something else, change its type in the template, or --drop {}",
                c.name
            )),
        });
        return;
    }
    if !c.mixed {
        return;
    }
    let seen = c
        .kinds
        .iter()
        .map(|(k, n, ex)| {
            format!(
                "{} in {} (first {} at input {} line {})",
                k.name(),
                crate::stats::counted(*n, "row", "rows"),
                ex.text,
                ex.at.input + 1,
                ex.at.line
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let fix = match c.ty {
        ColumnType::Dynamic => "a dynamic column holds every kind; query it with tostring(), \
                                toint() and friends"
            .to_string(),
        _ => {
            let (k, _, _) = c
                .kinds
                .iter()
                .filter(|(k, _, _)| *k != Kind::String)
                .max_by_key(|(_, n, _)| *n)
                .unwrap_or(&c.kinds[0]);
            format!(
                "declared string, which holds every value; to declare {} instead, change it in \
                 the template and [columns]: the other values are then sent as null",
                k.name()
            )
        }
    };
    out.push(Issue {
        severity: Severity::Warning,
        column: Some(c.name.clone()),
        problem: format!("{:?} has values of several types: {seen}", c.name),
        fix: Some(fix),
    });
}

fn time(inf: &Inference, read: &ReadCounts, out: &mut Vec<Issue>) {
    match &inf.time_field {
        Some(field) if read.time_unparsable > 0 => out.push(Issue {
            severity: Severity::Warning,
            column: Some(field.clone()),
            problem: format!(
                "the time field {field:?} was missing or unreadable in {} of {}: they get the \
                 time they are read as TimeGenerated",
                read.time_unparsable,
                crate::stats::counted(inf.rows, "row", "rows")
            ),
            fix: Some("say how it is written with --time-format (and --timezone)".into()),
        }),
        Some(_) => {}
        None if read.time_from_read > 0 => {
            let times: Vec<&str> = inf
                .columns
                .iter()
                .filter(|c| c.ty == ColumnType::Datetime && c.name != "TimeGenerated")
                .map(|c| c.name.as_str())
                .collect();
            out.push(Issue {
                severity: Severity::Note,
                column: Some("TimeGenerated".into()),
                problem: format!(
                    "TimeGenerated is the time of reading in {} (no time of their own){}",
                    crate::stats::counted(read.time_from_read, "row", "rows"),
                    if times.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; {} {} times",
                            times
                                .iter()
                                .map(|t| format!("{t:?}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                            if times.len() == 1 { "holds" } else { "hold" }
                        )
                    }
                ),
                // Only when no row has a time of its own: else the rows without one are the
                // odd ones (lines the parser did not match), and the time is already taken.
                fix: times
                    .first()
                    .filter(|_| read.time_from_read >= inf.rows)
                    .map(|t| format!("--time-field {t} takes the event's time from it")),
            });
        }
        None => {}
    }
    if read.time_out_of_range > 0 {
        out.push(Issue {
            severity: Severity::Note,
            column: Some("TimeGenerated".into()),
            problem: format!(
                "{} TimeGenerated more than 2 days old or 1 day ahead: Azure replaces such \
                 times with the time it receives the row",
                crate::stats::counted(read.time_out_of_range, "row has a", "rows have a")
            ),
            fix: None,
        });
    }
}

fn reading(read: &ReadCounts, out: &mut Vec<Issue>) {
    if read.refused > 0 {
        out.push(Issue {
            severity: Severity::Warning,
            column: None,
            problem: format!(
                "{} could not be read (the log says why): they are not in the sample, and \
                 send would dead-letter them",
                crate::stats::counted(read.refused, "record", "records")
            ),
            fix: read.detected_format.map(|f| {
                format!(
                    "--format auto read the input as {f} (by its extension or first bytes): give \
                     --format text, csv, syslog, … if it is not"
                )
            }),
        });
    }
    if read.mismatched > 0 {
        let parser = read.parser.unwrap_or("the parser");
        out.push(Issue {
            severity: Severity::Warning,
            column: None,
            problem: format!(
                "{} did not match {parser}: each is a RawData row (RawData, Computer, FilePath \
                 columns) unless --on-mismatch dead-letter",
                crate::stats::counted(read.mismatched, "line", "lines")
            ),
            fix: None,
        });
    }
    if read.cut_at_sample {
        out.push(Issue {
            severity: Severity::Note,
            column: None,
            problem: "the sample ended at --sample rows before the input did".into(),
            fix: Some("a larger --sample sees more of the input".into()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcr::infer::{At, Sampler, Source};
    use crate::transform::time::TimeParser;

    fn inference(rows: &[&str], time_field: Option<&str>) -> Inference {
        let mut s = Sampler::new(TimeParser::default(), time_field.map(str::to_string));
        for (i, r) in rows.iter().enumerate() {
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
        s.finish()
    }

    fn find<'a>(issues: &'a [Issue], column: &str) -> Vec<&'a Issue> {
        issues
            .iter()
            .filter(|i| i.column.as_deref() == Some(column))
            .collect()
    }

    #[test]
    fn refused_names_are_errors_with_a_rename() {
        let inf = inference(
            &[r#"{"TenantId":"t","my-field":1,"type":"x","Type_":"y","ok_name":2}"#],
            None,
        );
        let all = issues(&inf, &ReadCounts::default(), None);
        let tenant = find(&all, "TenantId");
        assert_eq!(tenant.len(), 1);
        assert_eq!(tenant[0].severity, Severity::Error);
        assert_eq!(
            tenant[0].fix.as_deref(),
            Some("--rename TenantId=TenantId_")
        );
        let dash = find(&all, "my-field");
        assert_eq!(dash[0].severity, Severity::Error);
        assert_eq!(dash[0].fix.as_deref(), Some("--rename my-field=my_field"));
        // "type" is only reserved in other case: a warning; "Type_" is taken, so another name
        let ty = find(&all, "type");
        assert_eq!(ty[0].severity, Severity::Warning);
        assert_eq!(ty[0].fix.as_deref(), Some("--rename type=type_2"));
        assert!(find(&all, "ok_name").is_empty());
        assert!(blocking(&all));
        assert_eq!(all[0].severity, Severity::Error, "errors come first");
    }

    #[test]
    fn case_duplicates_block_only_auxiliary_tables() {
        let inf = inference(&[r#"{"level":"a","Level":"b"}"#], None);
        let analytics = issues(&inf, &ReadCounts::default(), Some(Plan::Analytics));
        assert!(!blocking(&analytics));
        assert_eq!(analytics.len(), 1);
        let aux = issues(&inf, &ReadCounts::default(), Some(Plan::Auxiliary));
        assert!(blocking(&aux));
        assert_eq!(aux[0].fix.as_deref(), Some("--rename Level=Level_2"));
    }

    #[test]
    fn mixed_and_empty_columns_are_explained() {
        let inf = inference(
            &[
                r#"{"num":1,"empty":null,"dyn":{"a":1}}"#,
                r#"{"num":2,"empty":"","dyn":"text"}"#,
                r#"{"num":"N/A"}"#,
            ],
            None,
        );
        let all = issues(&inf, &ReadCounts::default(), None);
        let n = find(&all, "num");
        assert_eq!(n[0].severity, Severity::Warning);
        assert!(n[0].problem.contains("int in 2 rows") && n[0].problem.contains("\"N/A\""));
        assert!(n[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("declare int")));
        let d = find(&all, "dyn");
        assert!(d[0].fix.as_deref().is_some_and(|f| f.contains("dynamic")));
        let e = find(&all, "empty");
        assert_eq!(e[0].severity, Severity::Note);
        assert!(!blocking(&all));
    }

    #[test]
    fn time_and_reading_findings() {
        let inf = inference(&[r#"{"when":"2026-05-01T12:00:00Z","xx":1}"#], None);
        let own_time = issues(&inf, &ReadCounts::default(), None);
        assert!(own_time.is_empty(), "{own_time:?}");
        let read_time = ReadCounts {
            time_from_read: 1,
            ..ReadCounts::default()
        };
        let all = issues(&inf, &read_time, None);
        assert!(all.iter().any(|i| i
            .problem
            .starts_with("TimeGenerated is the time of reading in 1 row")
            && i.fix.as_deref() == Some("--time-field when takes the event's time from it")));
        let inf = inference(&[r#"{"ts":"soon"}"#], Some("ts"));
        let read = ReadCounts {
            records: 3,
            refused: 2,
            mismatched: 4,
            time_unparsable: 1,
            time_out_of_range: 1,
            time_from_read: 0,
            detected_format: Some("JSON"),
            cut_at_sample: true,
            parser: Some("syslog"),
        };
        let all = issues(&inf, &read, None);
        let text: Vec<&str> = all.iter().map(|i| i.problem.as_str()).collect();
        assert!(text
            .iter()
            .any(|t| t.contains("\"ts\" was missing or unreadable in 1 of 1 row")));
        assert!(text
            .iter()
            .any(|t| t.contains("2 records could not be read")));
        assert!(text
            .iter()
            .any(|t| t.contains("4 lines did not match syslog")));
        assert!(text.iter().any(|t| t.contains("1 row has a TimeGenerated")));
        assert!(text.iter().any(|t| t.contains("--sample")));
    }

    #[test]
    fn too_many_columns_is_an_error() {
        let mut row = String::from("{");
        for i in 0..(MAX_TABLE_COLUMNS + 1) {
            if i > 0 {
                row.push(',');
            }
            row.push_str(&format!("\"c{i}\":1"));
        }
        row.push('}');
        let inf = inference(&[&row], None);
        let all = issues(&inf, &ReadCounts::default(), None);
        assert!(blocking(&all));
        assert!(all[0].problem.contains("at most 500"));
    }
}
